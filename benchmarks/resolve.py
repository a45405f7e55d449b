"""resolve: the dependency closure over the real bookworm index, then a filtered update end to
end (mirrorkit's CLI and API beside aptly's -filter-with-deps) against that index with stand-in
.debs for what either tool selects."""

from __future__ import annotations

import posixpath
import re
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.archives import index_archive, stand_in_archive
from benchmarks.bench import Bench
from benchmarks.common import (
    CLOSURE_TARGET_S,
    FILTER,
    JOBS,
    SEEDS,
    BenchError,
    Row,
    ratio,
    render_table,
    run,
    self_cmd,
)
from benchmarks.sendfile import SendfileServer

_APTLY_GOT = re.compile(r"^Success downloading https?://[^/\s]+/(pool/\S+)$", re.MULTILINE)


def run_section(bench: Bench) -> None:
    print("\n== resolve: dependency closure over Debian bookworm main/binary-amd64 ==")
    print(f"filter: {FILTER!r}, with dependencies (Pre-Depends, Depends)")
    plain = bench.bookworm_index()
    if plain is None:
        return
    if bench.quick:
        print("(--quick does not shrink this section: a closure needs the whole index)")
    work = bench.tmp / "resolve"
    work.mkdir()
    closure = _closure_timing(bench, plain)
    if closure is not None:
        _filtered_update(bench, plain, work, closure)


def _closure_timing(bench: Bench, plain: Path) -> list[list[str]] | None:
    """Part 1: load + closures in a fresh child per run. Returns mirrorkit's selection,
    [[name, version, architecture, Filename], ...], or None if the child failed."""
    row = Row("mirrorkit closure child")

    def attempt(row: Row) -> None:
        proc = run(self_cmd("_child", "closure", str(plain))).check()
        result = proc.json()
        if result["unmet"] or not result["same"]:
            raise BenchError(
                f"closure: unmet {result['unmet'][:3]}; the closures agree: {result['same']}"
            )
        row.seconds.append(result["times"]["first"])
        row.wall.append(proc.seconds)
        row.rss_mb.append(proc.rss_mb)
        row.extra.append(result)

    bench.measure([row], attempt)
    if not row.ok:
        print(f"closure: error: {row.error}")
        return None
    last = row.extra[-1]
    print(
        f"index: {last['packages']} packages; seeds {', '.join(SEEDS)} "
        f"({last['matched']} matched by the filter)"
    )
    labels = {
        "parse": "archive.parse_packages (for reference)",
        "load": "resolve.Universe(packages, ['amd64']): the load",
        "first": "first resolve_closure(seeds): builds the Provides index",
        "second": "second resolve_closure(seeds): caches warm",
        "search": "resolve.search(filter) on a fresh Universe",
        "apply": "resolve.apply(filter, with_deps) on a fresh Universe",
    }
    table = []
    for key, label in labels.items():
        values = [e["times"][key] for e in row.extra]
        spread = f"{min(values):.3f}-{max(values):.3f}"
        table.append([label, f"{statistics.median(values):.3f}", spread])
    print(render_table(["", "median s", "min-max"], table))
    print(
        f"in-process timers; {len(row.extra)} runs after 1 warm-up, each a fresh child "
        f"process ({row.median_wall:.2f} s wall, {max(row.rss_mb):.0f} MB peak RSS).\n"
        "search: the filter tried on every package; apply: search + closure with cold "
        "caches, as mirror\n  update runs it (after merge_packages and its own Universe).\n"
        f"closure: {len(last['closure'])} packages, no unmet dependency; the two closures "
        "and apply select the same set."
    )
    first = row.median
    load = statistics.median(e["times"]["load"] for e in row.extra)
    verdict = "MET" if first < CLOSURE_TARGET_S else "MISSED"
    print(
        f"target closure < {CLOSURE_TARGET_S} s once the index is loaded: {verdict}\n"
        f"  (first closure {first:.3f} s median, Provides index included; "
        f"the load, Universe(...), {load:.3f} s before it)"
    )
    closure: list[list[str]] = last["closure"]
    return closure


def _aptly_selection(bench: Bench, plain: Path, work: Path, keyring: str) -> set[str]:
    """The Filenames aptly's filter with -filter-with-deps downloads: one run against the
    real index (served uncompressed: nothing to build) whose pool answers every file with
    an empty body, which aptly takes under -ignore-checksums."""
    root = work / "discover"
    index_archive(root / "www", plain, "bookworm", bench.key, bench.log, compressions=("plain",))
    try:
        with SendfileServer(root / "www", any_pool=True) as server:
            _, out = bench.aptly_mirror(
                root / "aptly",
                server.url,
                "bookworm",
                keyring,
                filter_query=FILTER,
                with_deps=True,
                update_flags=["-ignore-checksums"],
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    selected = set(_APTLY_GOT.findall(out))
    queued = re.search(r"Download queue: (\d+) items", out)
    if not selected or queued is None or int(queued.group(1)) != len(selected):
        raise BenchError(f"aptly's selection is unclear:\n{out[-1500:]}")
    return selected


def _filtered_update(bench: Bench, plain: Path, work: Path, closure: list[list[str]]) -> None:
    """Part 2: mirrorkit's and aptly's filtered update of the real index, end to end."""
    print("\n-- filtered mirror update, end to end: mirror add --filter FILTER --with-deps --")
    keyring = str(bench.key.public_keyring)
    mine = {entry[3] for entry in closure}
    theirs: set[str] = set()
    have_aptly = bench.have_aptly
    if have_aptly:
        bench.log("  asking aptly what its filter selects...")
        try:
            theirs = _aptly_selection(bench, plain, work, keyring)
        except BenchError as exc:
            print(f"aptly: error finding its selection, no aptly row: {exc}")
            have_aptly = False
    bench.log("  building the archive with stand-in .debs (xz -6 takes a while)...")
    root = work / "www"
    made = stand_in_archive(root, plain, mine | theirs, bench.key, bench.log)
    by_sha = {sha: name for name, (_, sha) in made.items()}

    def mb(names: set[str]) -> float:
        return sum(made[n][0] for n in names) / 1e6

    print(
        f"archive: the real index, in which the {len(made)} packages that either tool "
        "selects point at stand-in\n  .debs (build_deb, 20-200 kB of random payload each; "
        f"{mb(set(made)):.1f} MB in all); signed with a throwaway\n  key; served by "
        "the sendfile server on 127.0.0.1."
    )
    server = bench.stack.enter_context(SendfileServer(root))
    cli = Row("(a) mirrorkit mirror add + update (CLI)", mbytes=mb(mine))
    api = Row("(a') mirrorkit add + update, one process (API)", mbytes=mb(mine))
    aptly = Row("(b) aptly 1.5 mirror create + update", mbytes=mb(theirs))
    rows = [cli, api] + ([aptly] if have_aptly else [])
    counter = iter(range(1_000_000))

    def attempt(row: Row) -> None:
        target = work / f"run-{next(counter)}"
        target.mkdir()
        try:
            measure_once(row, target)
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def measure_once(row: Row, target: Path) -> None:
        store = target / "store"
        if row is cli:
            base = [sys.executable, "-m", "mirrorkit", "--store", str(store), "mirror"]
            add = [*base, "add", "x", server.url, "bookworm", "-c", "main", "-a", "amd64"]
            add += ["--keyring", keyring, "--filter", FILTER, "--with-deps"]
            procs = [run(add).check(), run([*base, "update", "x", "--jobs", str(JOBS)])]
            summary = procs[1].check().stdout
            fetched = {
                by_sha.get(p.name, p.name) for p in (store / "pool").rglob("*") if p.is_file()
            }
            match = re.search(r"fetched (\d+) files.* in ([\d.]+) s", summary)
            if match is None or int(match.group(1)) != len(mine) or fetched != mine:
                raise BenchError(f"mirrorkit fetched {len(fetched)} files, not {len(mine)}")
            row.seconds.append(sum(p.seconds for p in procs))
            row.rss_mb.append(max(p.rss_mb for p in procs))
            row.extra.append({"fetch": float(match.group(2)), "filter": procs[1].stderr})
        elif row is api:
            proc = run(self_cmd("_child", "filtered", str(store), server.url, keyring))
            result = proc.check().json()
            if result["fetched"] != len(mine):
                raise BenchError(f"mirrorkit fetched {result['fetched']}, not {len(mine)}")
            row.seconds.append(proc.seconds)
            row.rss_mb.append(proc.rss_mb)
            row.extra.append(result)
        else:
            procs, out = bench.aptly_mirror(
                target, server.url, "bookworm", keyring, filter_query=FILTER, with_deps=True
            )
            fetched = set(_APTLY_GOT.findall(out))
            pool = [p for p in (target / "aptly" / "pool").rglob("*") if p.is_file()]
            if fetched != theirs or len(pool) != len(theirs):
                raise BenchError(f"aptly fetched {len(pool)} files, not {len(theirs)}")
            row.seconds.append(sum(p.seconds for p in procs))
            row.rss_mb.append(max(p.rss_mb for p in procs))

    bench.measure(rows, attempt)
    _print_filtered(bench, rows, cli, api, aptly, mine, theirs, made)
    if bench.args.profile and api.ok:
        print("\n-- profile of (a'): cProfile, tottime, every thread --")
        out = work / "profile.txt"
        store = work / "store-profile"
        proc = run(self_cmd("_child", "filtered", str(store), server.url, keyring, str(out)))
        print(f"(a') under cProfile: {proc.check().json()['seconds']:.2f} s")
        print(out.read_text())


def _print_filtered(
    bench: Bench,
    rows: list[Row],
    cli: Row,
    api: Row,
    aptly: Row,
    mine: set[str],
    theirs: set[str],
    made: dict[str, tuple[int, str]],
) -> None:
    headers = ["", "runs", "seconds", "min-max", "peak RSS MB", "packages", "MB", "ratio*"]
    table = []
    for row in rows:
        if not row.ok:
            table.append([row.name, "-", "error", "", "", "", "", ""])
            continue
        count = len(theirs) if row is aptly else len(mine)
        table.append(
            [
                row.name,
                str(len(row.seconds)),
                f"{row.median:.2f}",
                row.spread(),
                f"{max(row.rss_mb):.0f}",
                str(count),
                f"{row.mbytes or 0:.1f}",
                ratio(aptly.median, row.median) if aptly.ok and row is not aptly else "-",
            ]
        )
    print(render_table(headers, table))
    print(
        "seconds: median wall time of the whole commands (both processes for a and b; "
        "the one child\n  for a'), from an empty store/rootDir each run: start-up, "
        "InRelease + signature, index\n  download + parse, filter + closure, downloads, "
        "and mirrorkit's syncfs + commit.\n* ratio: aptly (b) / this row in seconds; "
        "above 1, mirrorkit is faster."
    )
    if cli.ok:
        fetch = statistics.median(e["fetch"] for e in cli.extra)
        said = next((line for line in cli.extra[-1]["filter"].splitlines() if "filter" in line), "")
        print(f"(a) mirrorkit says: {said.strip()}\n  and its fetch phase took {fetch:.2f} s")
    if api.ok:
        phases = {
            k: statistics.median(e["phases"].get(k, 0.0) for e in api.extra)
            for k in api.extra[0]["phases"]
        }
        width = max(len(name) for name in phases)
        print("(a') phases, median s:")
        for name, value in phases.items():
            print(f"      {name:<{width}}  {value:6.3f}")
    if aptly.ok or theirs:

        def names(files: set[str]) -> list[str]:
            return sorted(posixpath.basename(f).split("_", 1)[0] for f in files)

        if mine == theirs:
            print(f"selection: the same {len(mine)} packages for both.")
        else:
            only_theirs, only_mine = names(theirs - mine), names(mine - theirs)
            print(
                f"selection: mirrorkit {len(mine)} packages, aptly {len(theirs)}; "
                f"{len(mine & theirs)} in common."
            )
            if only_theirs:
                print(
                    f"  aptly only ({len(only_theirs)}, "
                    f"{sum(made[f][0] for f in theirs - mine) / 1e6:.1f} MB): "
                    + ", ".join(only_theirs)
                )
            if only_mine:
                print(f"  mirrorkit only ({len(only_mine)}): " + ", ".join(only_mine))
            print(
                "  (mirrorkit takes the alternative apt would install; aptly's "
                "-filter-with-deps takes every\n  alternative and every provider of a "
                "virtual package)"
            )
    if cli.ok and aptly.ok:
        verdict = "MET" if cli.median <= aptly.median else "MISSED"
        hint = "" if verdict == "MET" or bench.args.profile else " (--profile: where it goes)"
        print(
            f"target filtered update mirrorkit (a) <= aptly (b): {verdict}{hint}\n"
            f"  ({cli.median:.2f} s vs {aptly.median:.2f} s, ratio "
            f"{aptly.median / cli.median:.2f}; peak RSS {max(cli.rss_mb):.0f} MB vs "
            f"{max(aptly.rss_mb):.0f} MB)"
        )


# --- download ----------------------------------------------------------------------------
