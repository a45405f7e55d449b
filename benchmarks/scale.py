"""scale: everything that works on a whole snapshot, at the full size of Debian's archive.

The synthetic archive of scale_archive.py (the real bookworm index, a tiny real .deb at every
Filename; day1 and day2) is mirrored once by mirrorkit and by aptly (cached with the archive),
then every round works on fresh copies of both stores (pool and meta objects hard-linked,
everything else copied; outside the timed region) and runs, each as its own timed child:

  publish fs, first          publish snap1 as suite "day" into an empty directory
  publish, second suite      the same snapshot as suite "second"
  switch to the next         suite "day" to snap2 (day2: 1 package in 100 at a new version)
  switch back                suite "day" back to snap1 (its indices were made before)
  snapshot merge             snap1 + snap2 (later wins)
  snapshot diff              snap1 -> snap2
  filter --with-deps         the resolve section's filter, with dependencies
  bundle export              snap1 (signed) beside ``tar -cf - pool | zstd -T0 -3``
  bundle import              into an empty store beside ``zstd -d | tar -x``
  gc, 30 snapshots           gc of the store (30 snapshots of the index) beside aptly db cleanup

aptly 1.5 does the same on its own store (publish with -skip-contents, as mirrorkit publishes
no Contents; signed with the same key). Time: wall time of the whole command, median of the
runs; memory: peak RSS (GNU time). With several sizes (``--scale-sizes quarter,half,full``)
the growth exponent of each row is printed: 1.0 is linear.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench import Bench
from benchmarks.common import APTLY, FILTER, JOBS, REPO, BenchError, Proc, Row, child_env, run
from benchmarks.scale_archive import ScaleArchive, scale_archive
from benchmarks.sendfile import SendfileServer

SIZES = {"quarter": 0.25, "half": 0.5, "full": 1.0}
# The goals: mirrorkit time at most this many times aptly's (or the reference's).
GOALS = {
    "publish fs, first": 1.0,
    "publish, second suite": 0.5,
    "switch to the next snapshot": 1.0,
    "switch back": 0.5,
    "snapshot merge": 3.0,
    "snapshot diff": 3.0,
    "snapshot filter --with-deps": 1.0,
    "bundle export": 1.5,
    "bundle import": 1.0,
    "gc, 30 snapshots": 1.0,
}
DAILY = 28  # snapshots of day1 beside snap1 and snap2: gc's roots, 30 snapshots in all
STORE_VERSION = 2  # what the cached stores hold (bump to rebuild them)
STEPS = tuple(GOALS)


def _source_digest() -> str:
    """What a cached mirrorkit store depends on: the store's layout and record versions, and
    the key lists mirror update writes."""
    h = hashlib.sha256(b"%d" % STORE_VERSION)
    for rel in ("mirrorkit/store/records.py", "mirrorkit/store/layout.py", "mirrorkit/keylist.py"):
        h.update((REPO / rel).read_bytes())
    return h.hexdigest()[:12]


class Stores:
    """The cached stores of one archive: mirrorkit's and aptly's, each with snap1 and snap2."""

    def __init__(self, bench: Bench, archive: ScaleArchive, gnupghome: Path) -> None:
        self.bench = bench
        self.archive = archive
        self.gnupghome = gnupghome
        self.mk = archive.root / f"store-mirrorkit-{_source_digest()}"
        self.aptly = archive.root / f"store-aptly-{STORE_VERSION}"

    def mk_cli(self, store: Path) -> list[str]:
        return [sys.executable, "-m", "mirrorkit", "--store", str(store), "-q"]

    def aptly_cli(self, root: Path) -> list[str]:
        config = root / "aptly.conf"
        if not config.exists():
            config.write_text(
                json.dumps(
                    {
                        "rootDir": str(root),
                        "downloadConcurrency": JOBS,
                        "architectures": [],
                        "gpgDisableSign": False,
                        "gpgDisableVerify": False,
                        "gpgProvider": "gpg",
                        "skipLegacyPool": True,
                        "skipContentsPublishing": True,
                    }
                )
            )
        return [APTLY, f"-config={config}"]

    @property
    def key_env(self) -> dict[str, str]:
        return child_env({"GNUPGHOME": str(self.gnupghome), "HOME": str(self.gnupghome.parent)})

    def ensure(self) -> None:
        if not (self.mk / "ready").exists() or (
            self.bench.have_aptly and not (self.aptly / "ready").exists()
        ):
            with SendfileServer(self.archive.www) as server:
                if not (self.mk / "ready").exists():
                    self._build_mk(server.url)
                if self.bench.have_aptly and not (self.aptly / "ready").exists():
                    self._build_aptly(server.url)

    def _build_mk(self, url: str) -> None:
        self.bench.log(f"  mirroring the archive with mirrorkit into {self.mk} ...")
        shutil.rmtree(self.mk, ignore_errors=True)
        cli = self.mk_cli(self.mk)
        keyring = str(self.archive.key.public_keyring)
        for n in (1, 2):
            run([*cli, "mirror", "add", f"day{n}", url, f"day{n}", "--keyring", keyring]).check()
            proc = run([*cli, "mirror", "update", f"day{n}", "--jobs", str(JOBS)]).check()
            self.bench.log(f"  mirrorkit mirror update day{n}: {proc.seconds:.1f} s")
            run([*cli, "snapshot", "create", f"snap{n}", "--from-mirror", f"day{n}"]).check()
        for n in range(1, DAILY + 1):
            run([*cli, "snapshot", "create", f"daily-{n:02}", "--from-mirror", "day1"]).check()
        (self.mk / "ready").write_text("")

    def _build_aptly(self, url: str) -> None:
        self.bench.log(f"  mirroring the archive with aptly into {self.aptly} ...")
        shutil.rmtree(self.aptly, ignore_errors=True)
        self.aptly.mkdir(parents=True)
        cli = self.aptly_cli(self.aptly)
        keyring = f"-keyring={self.archive.key.public_keyring}"
        env = self.key_env
        for n in (1, 2):
            create = [*cli, "mirror", "create", keyring, "-architectures=amd64"]
            run([*create, f"day{n}", url, f"day{n}", "main"], env=env).check()
            update = [*cli, "mirror", "update", keyring, f"day{n}"]
            proc = run(update, env=env).check()
            self.bench.log(f"  aptly mirror update day{n}: {proc.seconds:.1f} s")
            snap = [*cli, "snapshot", "create", f"snap{n}", "from", "mirror", f"day{n}"]
            run(snap, env=env).check()
        for n in range(1, DAILY + 1):
            daily = [*cli, "snapshot", "create", f"daily-{n:02}", "from", "mirror", "day1"]
            run(daily, env=env).check()
        (self.aptly / "ready").write_text("")


def _clone(src: Path, dest: Path, linked: Sequence[str]) -> None:
    """A working copy of a store: the write-once object directories hard-linked, the rest
    (records, aptly's leveldb, which is written in place) copied."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for entry in src.iterdir():
        flag = "-al" if entry.name in linked else "-a"
        subprocess.run(["cp", flag, str(entry), str(dest / entry.name)], check=True)


def _exponent(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of log(time) over log(size): 1.0 is linear growth."""
    pts = [(math.log(n), math.log(t)) for n, t in points if n > 0 and t > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def _measure_size(bench: Bench, archive: ScaleArchive) -> dict[str, tuple[Row, Row]]:
    work = bench.tmp / f"scale-{int(archive.fraction * 100)}"
    work.mkdir()
    gnupghome = work / "gnupg"
    shutil.copytree(archive.key.gnupghome, gnupghome)
    bench.stack.callback(
        subprocess.run,
        ["gpgconf", "--homedir", str(gnupghome), "--kill", "all"],
        capture_output=True,
        check=False,
    )
    stores = Stores(bench, archive, gnupghome)
    stores.ensure()
    fpr = archive.key.fingerprint
    keyring = str(archive.key.public_keyring)
    env = stores.key_env
    ref_names = {"bundle export": "tar | zstd -T0 -3", "bundle import": "zstd -d | tar -x"}
    rows = {
        step: (
            Row(f"mirrorkit: {step}"),
            Row(f"{ref_names.get(step, 'aptly')}: {step}", error=None),
        )
        for step in STEPS
    }
    if not bench.have_aptly:
        for step, (_, ref) in rows.items():
            if step not in ref_names:
                ref.error = "aptly not used"
    mk, apt = work / "mk", work / "aptly"
    out_mk = work / "published"
    bundle, tarball = work / "snap1.bundle", work / "pool.tar.zst"
    imported, untarred = work / "imported", work / "untarred"

    def mk_step(step: str) -> Proc:
        cli = stores.mk_cli(mk)
        publish = [*cli, "publish", "fs"]
        key = ["--key", fpr]
        cmd = {
            "publish fs, first": [*publish, "snap1", str(out_mk), "--suite", "day", *key],
            "publish, second suite": [*publish, "snap1", str(out_mk), "--suite", "second", *key],
            "switch to the next snapshot": [*publish, "snap2", str(out_mk), "--suite", "day", *key],
            "switch back": [*publish, "snap1", str(out_mk), "--suite", "day", *key],
            "snapshot merge": [*cli, "snapshot", "merge", "merged", "snap1", "snap2"],
            "snapshot diff": [*cli, "snapshot", "diff", "snap1", "snap2"],
            "snapshot filter --with-deps": [
                *cli,
                *(
                    "snapshot",
                    "filter",
                    "snap1",
                    "filtered",
                    FILTER,
                    "--with-deps",
                    "--allow-missing",
                ),
            ],
            "bundle export": [*cli, "bundle", "export", "snap1", "-o", str(bundle), *key],
            "bundle import": [
                *stores.mk_cli(imported),
                *("bundle", "import", str(bundle), "--keyring", keyring),
            ],
            "gc, 30 snapshots": [*cli, "gc"],
        }[step]
        if step == "publish fs, first":
            _clone(stores.mk, mk, ("pool", "meta"))
            shutil.rmtree(out_mk, ignore_errors=True)
        elif step == "bundle export":
            bundle.unlink(missing_ok=True)
        elif step == "bundle import":
            shutil.rmtree(imported, ignore_errors=True)
        try:
            return run(cmd, env=env).check()
        finally:
            if step == "bundle import":
                shutil.rmtree(imported, ignore_errors=True)

    def ref_step(step: str) -> Proc:
        if step == "bundle export":
            tarball.unlink(missing_ok=True)
            script = 'tar -cf - -C "$1" pool | zstd -q -T0 -3 -o "$2"'
            return run(["bash", "-c", script, "-", str(stores.mk), str(tarball)]).check()
        if step == "bundle import":
            shutil.rmtree(untarred, ignore_errors=True)
            untarred.mkdir()
            try:
                script = 'zstd -q -d -c "$1" | tar -x -C "$2"'
                return run(["bash", "-c", script, "-", str(tarball), str(untarred)]).check()
            finally:
                shutil.rmtree(untarred, ignore_errors=True)
        if step == "publish fs, first":
            _clone(stores.aptly, apt, ("pool",))
            (apt / "aptly.conf").unlink()
            shutil.rmtree(apt / "public", ignore_errors=True)
        cli = stores.aptly_cli(apt)
        sign = [f"-gpg-key={fpr}", "-skip-contents"]
        cmd = {
            "publish fs, first": [*cli, "publish", "snapshot", "-distribution=day", *sign],
            "publish, second suite": [*cli, "publish", "snapshot", "-distribution=second", *sign],
            "switch to the next snapshot": [*cli, "publish", "switch", *sign, "day", "snap2"],
            "switch back": [*cli, "publish", "switch", *sign, "day", "snap1"],
            "snapshot merge": [*cli, "snapshot", "merge", "merged", "snap1", "snap2"],
            "snapshot diff": [*cli, "snapshot", "diff", "snap1", "snap2"],
            "snapshot filter --with-deps": [
                *cli,
                *("snapshot", "filter", "-with-deps", "snap1", "filtered", FILTER),
            ],
            "gc, 30 snapshots": [*cli, "db", "cleanup"],
        }[step]
        if step in ("publish fs, first", "publish, second suite"):
            cmd.append("snap1")
        return run(cmd, env=env).check()

    flat = [row for pair in rows.values() for row in pair]
    which = {id(row): (step, n) for step, pair in rows.items() for n, row in enumerate(pair)}

    def attempt(row: Row) -> None:
        step, n = which[id(row)]
        proc = mk_step(step) if n == 0 else ref_step(step)
        row.seconds.append(proc.seconds)
        row.rss_mb.append(proc.rss_mb)

    # No warm-up round: every round starts from fresh copies of the stores, whose objects the
    # copy has just brought into the page cache.
    bench.measure(flat, attempt, warmup=False)
    shutil.rmtree(mk, ignore_errors=True)
    shutil.rmtree(apt, ignore_errors=True)
    return rows


def _table(archive: ScaleArchive, rows: dict[str, tuple[Row, Row]]) -> None:
    lines = [
        f"| step at {archive.packages:,} packages | mirrorkit | aptly / reference | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    for step, (ours, ref) in rows.items():

        def cell(row: Row) -> str:
            if not row.ok:
                return f"error: {row.error}" if row.error else "-"
            return f"{row.median:.2f} s, {statistics_max(row.rss_mb):.0f} MB"

        ratio = f"{ours.median / ref.median:.2f}" if ours.ok and ref.ok and ref.median else "-"
        verdict = ""
        if ratio != "-":
            verdict = "met" if float(ratio) <= GOALS[step] else "missed"
        lines.append(
            f"| {step} | {cell(ours)} | {cell(ref)} | {ratio} | <= {GOALS[step]:g} {verdict} |"
        )
    print("\n".join(lines))


def statistics_max(values: Sequence[float]) -> float:
    return max(values) if values else 0.0


def run_section(bench: Bench) -> None:
    names = ["quarter"] if bench.quick else list(bench.args.scale_sizes.split(","))
    if unknown := [n for n in names if n not in SIZES]:
        raise BenchError(f"unknown --scale-sizes {unknown}; choose from {', '.join(SIZES)}")
    print(f"\n== scale: whole-snapshot work at {', '.join(names)} of the bookworm index ==")
    missing = [t for t in ("lz4", "xz", "tar", "zstd", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} needed.")
        return
    if not bench.have_aptly:
        print("(aptly not used: only the tar/zstd references are measured)")
    results: dict[str, tuple[ScaleArchive, dict[str, tuple[Row, Row]]]] = {}
    for name in names:
        archive = scale_archive(SIZES[name], bench.log)
        print(
            f"\n{name}: {archive.packages:,} packages in day1, {archive.changed:,} at a new "
            f"version in day2 ({archive.root})"
        )
        rows = _measure_size(bench, archive)
        _table(archive, rows)
        results[name] = (archive, rows)
        sys.stdout.flush()
    print(
        "time: median wall time of the whole command (start-up included); MB: peak RSS. "
        "aptly publishes with -skip-contents (mirrorkit publishes no Contents), gz+bz2 "
        "indices (mirrorkit: gz+xz)."
    )
    if len(results) > 1:
        print("\ngrowth exponents (slope of log time over log packages; 1.0 is linear):")
        print("| step | mirrorkit | aptly / reference |")
        print("|---|---|---|")
        for step in STEPS:
            cells = []
            for side in (0, 1):
                pts = [
                    (float(a.packages), rows[step][side].median)
                    for a, rows in results.values()
                    if rows[step][side].ok
                ]
                exp = _exponent(pts)
                cells.append(f"{exp:.2f}" if exp is not None else "-")
            print(f"| {step} | {cells[0]} | {cells[1]} |")
