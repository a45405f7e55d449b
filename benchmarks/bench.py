"""The bench itself: its temp dir and key, the measuring loop, and the runs of mirrorkit and
the reference tools that more than one section makes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    APT_INDEX,
    APTLY,
    GNU_TIME,
    JOBS,
    REPO,
    BenchError,
    Proc,
    Row,
    capture,
    child_env,
    loadavg,
    run,
)
from tests.helpers.gpgkeys import TestKey, kill_agents, make_key


class Bench:
    """One run of scripts/bench: what every section uses."""

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.quick: bool = args.quick
        self.runs: int = args.runs
        base = Path(args.tmpdir) if args.tmpdir else None
        self.tmp = Path(tempfile.mkdtemp(prefix="mkbench-", dir=base))
        if args.keep:
            print(f"(keeping {self.tmp})")
        else:
            stack.callback(shutil.rmtree, self.tmp, True)
        self.failed = False
        self._key: TestKey | None = None
        self.have_aptly = Path(APTLY).exists() and not args.no_aptly

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    @property
    def key(self) -> TestKey:
        """A throwaway signing key (tests/helpers/gpgkeys.py), made on first use."""
        if self._key is None:
            self._key = make_key(self.tmp / "key", "mirrorkit bench <bench@example.org>")
            self.stack.callback(kill_agents, self._key)
        return self._key

    def measure(
        self, rows: Sequence[Row], attempt: Callable[[Row], None], *, warmup: bool = True
    ) -> None:
        """One warm-up each, then ``runs`` rounds; rows alternate within a round so that drift
        (thermal, page cache, other tenants) spreads over every tool alike."""
        rounds = ([True] if warmup else []) + [False] * self.runs
        for number, is_warmup in enumerate(rounds):
            label = "warm-up" if is_warmup else f"run {number + (0 if warmup else 1)}"
            for row in rows:
                if row.error is not None:
                    continue
                self.log(f"  {label}: {row.name}")
                os.sync()  # settle the last run's writeback outside every timed region
                before = (len(row.seconds), len(row.wall), len(row.rss_mb), len(row.extra))
                try:
                    attempt(row)
                except BenchError as exc:
                    row.error = str(exc).splitlines()[0][:200]
                    self.log(f"  FAILED: {exc}")
                    if "mirrorkit" in row.name:
                        self.failed = True
                    continue
                if is_warmup:
                    del row.seconds[before[0] :], row.wall[before[1] :]
                    del row.rss_mb[before[2] :], row.extra[before[3] :]

    def bookworm_index(self) -> Path | None:
        """apt's bookworm main/amd64 index, decompressed once for every section; None (with
        the reason printed) when it or the tools are missing."""
        if not APT_INDEX.exists():
            print(f"SKIPPED: {APT_INDEX} is absent (run 'apt-get update' to get it).")
            return None
        if shutil.which("lz4") is None or shutil.which("xz") is None:
            print("SKIPPED: the lz4 and xz command-line tools are needed.")
            return None
        plain = self.tmp / "bookworm-Packages"
        if not plain.exists():
            with plain.open("wb") as fh:
                subprocess.run(["lz4", "-dc", str(APT_INDEX)], stdout=fh, check=True)
        return plain

    def aptly_mirror(
        self,
        root: Path,
        url: str,
        suite: str,
        keyring: str,
        *,
        filter_query: str = "",
        with_deps: bool = False,
        update_flags: Sequence[str] = (),
        check: bool = True,
        again: bool = False,
    ) -> tuple[list[Proc], str]:
        """aptly mirror create + mirror update in a fresh rootDir; (processes, update stdout).
        Without ``check``, a failed update is returned, not raised. With ``again``, a second
        update (nothing new upstream) is the third process."""
        home = root / "home"
        (home / "gnupg").mkdir(parents=True, mode=0o700)
        config = root / "aptly.conf"
        config.write_text(
            json.dumps(
                {
                    "rootDir": str(root / "aptly"),
                    "downloadConcurrency": JOBS,
                    "downloadSpeedLimit": 0,
                    "architectures": [],
                    "gpgDisableSign": True,
                    "gpgDisableVerify": False,
                    "gpgProvider": "gpg",
                    "skipLegacyPool": True,
                }
            )
        )
        env = child_env({"HOME": str(home), "GNUPGHOME": str(home / "gnupg")})
        create = [APTLY, f"-config={config}", "mirror", "create", f"-keyring={keyring}"]
        create += ["-architectures=amd64"]
        if filter_query:
            create.append(f"-filter={filter_query}")
        if with_deps:
            create.append("-filter-with-deps")
        create += ["bench", url, suite, "main"]
        update = [APTLY, f"-config={config}", "mirror", "update", f"-keyring={keyring}"]
        update += ["-max-tries=1", *update_flags, "bench"]
        try:
            procs = [run(create, env=env).check(), run(update, env=env)]
            if check:
                procs[1].check()
            if again:
                procs.append(run(update, env=env).check())
        finally:
            subprocess.run(
                ["gpgconf", "--homedir", str(home / "gnupg"), "--kill", "all"],
                capture_output=True,
                check=False,
            )
        return procs, procs[1].stdout

    # --- resolve -----------------------------------------------------------------------------

    def curl_all(self, url: str, files: list[tuple[str, int]], target: Path) -> Proc:
        config = target / "curl.conf"
        with config.open("w") as fh:
            for rel, _ in files:
                name = rel.rsplit("/", 1)[1]
                fh.write(f'url = "{url}/{rel}"\noutput = "{target / name}"\n')
        cmd = ["curl", "--parallel", "--parallel-immediate", "--parallel-max", str(JOBS)]
        cmd += ["-sS", "--fail", "--noproxy", "*", "--config", str(config)]
        return run(cmd).check()

    def mirrorkit_cli(
        self, store: Path, url: str, keyring: str, *, again: bool = False
    ) -> list[Proc]:
        """mirror add + mirror update; with ``again``, a second (unchanged) update too."""
        cli = [sys.executable, "-m", "mirrorkit", "--store", str(store), "-q", "mirror"]
        procs = [run([*cli, "add", "bench", url, "bench", "--keyring", keyring]).check()]
        for _ in range(2 if again else 1):
            procs.append(run([*cli, "update", "bench", "--jobs", str(JOBS)]).check())
        return procs

    # --- header ------------------------------------------------------------------------------

    def header(self) -> None:
        cpu = "?"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem = "?"
        with contextlib.suppress(OSError, ValueError, IndexError):
            kb = int(Path("/proc/meminfo").read_text().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
        from mirrorkit import __version__

        rev = capture(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = capture(["git", "-C", str(REPO), "status", "--porcelain", "--", "mirrorkit"])
        aptly = capture([APTLY, "version"]) if self.have_aptly else "not used"
        print("mirrorkit benchmark" + (" (--quick)" if self.quick else ""))
        print(f"machine: nproc {os.cpu_count()}, {cpu}, {mem} RAM; {platform.platform()}")
        print(f"python {platform.python_version()} ({sys.executable})")
        print(
            f"mirrorkit {__version__} at {rev or '?'}"
            + (" + uncommitted changes in mirrorkit/" if dirty else "")
        )
        curl = " ".join(capture(["curl", "--version"]).split()[:2]) or "curl: not found"
        print(f"{aptly}; {curl}; GNU time: {GNU_TIME or 'not found (RSS is an upper bound)'}")
        print(f"runs: {self.runs} per row after 1 warm-up; every run a fresh child process")
        print(f"load average (1, 5, 15 min) at start: {loadavg()} (other work skews the figures)")
