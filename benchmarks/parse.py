"""parse: the real bookworm main/amd64 index read by python-debian, by mirrorkit's parser, by
mirrorkit's update up to its download plan, and by aptly's filtered update."""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
from pathlib import Path

from benchmarks.archives import index_archive
from benchmarks.bench import Bench
from benchmarks.common import NOTHING, BenchError, Row, ratio, render_table, run, self_cmd
from tests.helpers.httpserver import FaultServer


def run_section(bench: Bench) -> None:
    print("\n== parse: Debian bookworm main/binary-amd64 Packages ==")
    plain_or_none = bench.bookworm_index()
    if plain_or_none is None:
        return
    plain = plain_or_none
    work = bench.tmp / "parse"
    work.mkdir()
    text = plain.read_bytes()
    if bench.quick:
        text = b"\n\n".join(text.split(b"\n\n")[:8000]).rstrip(b"\n") + b"\n"
        plain = work / "Packages"
        plain.write_bytes(text)
    stanzas = len(re.findall(rb"^Package:", text, re.MULTILINE))
    size_mb = len(text) / 1e6
    del text
    print(
        f"index: {stanzas} packages, {size_mb:.1f} MB uncompressed"
        + (" (--quick: the first 8000 stanzas)" if bench.quick else "")
    )
    bench.log("  building the signed archive (xz -6 takes a while)...")
    root = work / "www"
    index_archive(root, plain, "bookworm", bench.key, bench.log)

    server = bench.stack.enter_context(FaultServer(root))
    keyring = str(bench.key.public_keyring)

    deb822 = Row("(a) python-debian deb822 iter_paragraphs")
    parse = Row("(b) mirrorkit archive.parse_packages")
    plan = Row("(c) mirrorkit add + update to download plan")
    aptly = Row("(d) aptly 1.5 mirror create + update (filtered)")
    rows = [deb822, parse, plan] + ([aptly] if bench.have_aptly else [])
    counter = iter(range(1_000_000))

    comp = root / "dists" / "bookworm" / "main" / "binary-amd64"
    names = {_sha256(f): f.name for f in comp.glob("Packages*")}
    fetched: dict[str, set[str]] = {}

    def attempt(row: Row) -> None:
        seen = len(server.paths())
        try:
            measure_once(row)
        finally:
            for path in server.paths()[seen:]:
                name = path.rsplit("/", 1)[1]
                shown = f"{names[name]} (by-hash)" if name in names else name
                fetched.setdefault(row.name[:3], set()).add(shown)

    def measure_once(row: Row) -> None:
        if row is deb822 or row is parse:
            mode = "parse-deb822" if row is deb822 else "parse-mirrorkit"
            proc = run(self_cmd("_child", mode, str(plain))).check()
            result = proc.json()
            if result["count"] != stanzas:
                raise BenchError(f"{row.name}: {result['count']} paragraphs, not {stanzas}")
            row.seconds.append(result["seconds"])
            row.wall.append(proc.seconds)
            row.rss_mb.append(proc.rss_mb)
        elif row is plan:
            store = work / f"store-{next(counter)}"
            try:
                proc = run(
                    self_cmd("_child", "plan", str(store), server.url, "bookworm", keyring)
                ).check()
            finally:
                shutil.rmtree(store, ignore_errors=True)
            result = proc.json()
            if result["packages"] != stanzas or result["to_fetch"] > stanzas:
                raise BenchError(f"{row.name}: planned {result}, expected {stanzas} packages")
            row.seconds.append(result["seconds"])
            row.wall.append(proc.seconds)
            row.rss_mb.append(proc.rss_mb)
            row.extra.append(result)
        else:
            n = next(counter)
            procs, out = bench.aptly_mirror(
                work / f"aptly-{n}", server.url, "bookworm", keyring, filter_query=NOTHING
            )
            seconds = sum(p.seconds for p in procs)
            match = re.search(r"Packages filtered: (\d+) -> (\d+)", out)
            if match is None or int(match.group(1)) != stanzas:
                raise BenchError(f"{row.name}: did not parse {stanzas} packages:\n{out}")
            row.seconds.append(seconds)
            row.wall.append(seconds)
            row.rss_mb.append(max(p.rss_mb for p in procs))

    bench.measure(rows, attempt)
    _print(bench, rows, deb822, parse, plan, aptly, fetched)
    if bench.args.profile and parse.ok and plan.ok:
        _profile(bench, plain, server.url, keyring, work)


def _print(
    bench: Bench,
    rows: list[Row],
    deb822: Row,
    parse: Row,
    plan: Row,
    aptly: Row,
    fetched: dict[str, set[str]],
) -> None:
    headers = ["", "runs", "seconds", "min-max", "process s", "peak RSS MB", "ratio*"]
    table = []
    for row in rows:
        if not row.ok:
            table.append([row.name, "-", "error", "", "", "", ""])
            continue
        if row is deb822 and parse.ok:
            r = ratio(row.median, parse.median)
        elif row is aptly and plan.ok:
            r = ratio(row.median_wall, plan.median_wall)
        elif row in (parse, plan):
            r = "1.00"
        else:
            r = "-"
        table.append(
            [
                row.name,
                str(len(row.seconds)),
                f"{row.median:.3f}",
                row.spread(),
                f"{row.median_wall:.3f}",
                f"{max(row.rss_mb):.0f}",
                r,
            ]
        )
    print(render_table(headers, table))
    print(
        "seconds: median of the measured work (in-process timer for a-c, from mirror add to "
        "the plan for c;\n  the whole commands for d). process s: the child process(es) "
        "wall time, interpreter\n  start-up and imports included. peak RSS: max over runs "
        "of GNU time's %M for each command.\n* ratio: (a) / (b) in seconds; (d) / (c) in "
        "process seconds. Above 1: mirrorkit is faster."
    )
    if plan.ok:
        phases = {
            k: statistics.median(e["phases"][k] for e in plan.extra)
            for k in plan.extra[0]["phases"]
        }
        print("(c) phases, median s:")
        width = max(len(name) for name in phases)
        for name, value in phases.items():
            print(f"      {name:<{width}}  {value:6.3f}")
        last = plan.extra[-1]
        print(
            f"(c) planned {last['to_fetch']} files, {last['to_fetch_bytes'] / 1e9:.1f} GB, "
            f"of {last['packages']} packages (not downloaded)."
        )
        for warning in sorted({w for e in plan.extra for w in e["warnings"]}):
            print(f"WARNING: {warning}")
        sec, wall, rss = plan.median, plan.median_wall, max(plan.rss_mb)
        verdict = "MET" if sec <= 1.3 and rss <= 300 else "MISSED"
        if bench.quick:
            verdict = "not judged (it is for the whole index, not --quick's part)"
        print(
            f"target (c) <= 1.3 s and <= 300 MB: {verdict}\n  ({sec:.2f} s measured work, "
            f"{wall:.2f} s with interpreter start-up, {rss:.0f} MB peak RSS)"
        )
    if aptly.ok and plan.ok:
        print(
            f"aptly/mirrorkit, process seconds (d)/(c): "
            f"{aptly.median_wall / plan.median_wall:.2f}; "
            f"peak RSS aptly/mirrorkit: {max(aptly.rss_mb) / max(plan.rss_mb):.2f}"
        )
    if deb822.ok and parse.ok:
        print(f"python-debian/mirrorkit parse time (a)/(b): {deb822.median / parse.median:.2f}")
    if bench.have_aptly:
        print(
            "(d) aptly 1.5 has no dry-run: 'mirror create -filter' selects no package, so "
            "'mirror update'\n  fetches and verifies InRelease, downloads and parses the "
            "whole index, filters, and queues\n  nothing; it stores no package in its "
            "database (nor does (c) store anything)."
        )
    for who, what in sorted(fetched.items()):
        print(f"{who} fetched: {', '.join(sorted(what))}")


def _profile(bench: Bench, plain: Path, url: str, keyring: str, work: Path) -> None:
    print("\n-- profile (cProfile, tottime; for (c) its worker threads too) --")
    out = work / "profile.txt"
    proc = run(self_cmd("_child", "parse-mirrorkit", str(plain), str(out))).check()
    print(f"(b) parse_packages under cProfile: {proc.json()['seconds']:.2f} s")
    print(out.read_text())
    store = work / "store-profile"
    proc = run(self_cmd("_child", "plan", str(store), url, "bookworm", keyring, str(out))).check()
    print(f"(c) plan path under cProfile: {proc.json()['seconds']:.2f} s")
    print(out.read_text())


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
