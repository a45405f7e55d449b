"""What every benchmark section shares: constants, child processes (wall time and peak RSS of
each), and the tables the figures are printed in."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench"  # the entry point; children run it again
APT_INDEX = Path(
    "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
)
APTLY = "/usr/bin/aptly"
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
SEEDS = ("nginx", "curl", "openssh-server", "postgresql", "python3")
FILTER = " | ".join(SEEDS)
NOTHING = "Name (= mirrorkit-bench-selects-nothing)"  # aptly's stand-in for a dry run
CLOSURE_TARGET_S = 0.2
UNCHANGED_TARGET_S = 1.0  # a mirror update with nothing new upstream
JOBS = 8
CHILD_TIMEOUT = 900.0
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"}

# --- child processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """One finished command: wall time, peak RSS (GNU time's %M), exit status, output."""

    cmd: list[str]
    seconds: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Proc:
        if self.returncode != 0:
            tail = (self.stderr.strip() or self.stdout.strip())[-1500:]
            raise BenchError(f"{' '.join(self.cmd[:6])} ... exited {self.returncode}:\n{tail}")
        return self

    def json(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        if not lines:
            raise BenchError(f"{' '.join(self.cmd[:6])}: no output\n{self.stderr[-1500:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


class BenchError(Exception):
    pass


_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    # Every child runs in its own session, so its process group id is its pid: this reaches the
    # child and whatever it started (gpg, gpgv), and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def track(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` with the others in stop_all_children (on exit, on Ctrl-C)."""
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc


def untrack(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


def stop_all_children() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
        _LIVE.clear()
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> Proc:
    """Run ``cmd`` to completion: its wall time, and its peak RSS as GNU time reports it.

    Not wait4's rusage of our own child: Linux starts a child's maxrss at its parent's peak RSS
    (the mm that exec replaces), so every child would look at least as big as this process.
    /usr/bin/time is a small process, so the RSS it reports is the command's own.
    """
    argv = [str(c) for c in cmd]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(prefix="mkbench-rss-") as rss,
    ):
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if GNU_TIME else argv
        started = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env if env is not None else child_env(),
            cwd=cwd,
            start_new_session=True,
        )
        track(proc)
        timer = threading.Timer(timeout, kill_group, (proc,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill_group(proc)
            proc.wait()
            raise
        finally:
            timer.cancel()
            untrack(proc)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss_kib = usage.ru_maxrss  # KiB; an upper bound, see above
        if GNU_TIME:
            # "Command exited with non-zero status N" may precede the number.
            last = Path(rss.name).read_text().strip().rsplit("\n", 1)[-1]
            rss_kib = int(last) if last.isdigit() else 0
        out.seek(0)
        err.seek(0)
        return Proc(
            cmd=argv,
            seconds=elapsed,
            rss_mb=rss_kib / 1024,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), *args]


# --- results and tables ------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    seconds: list[float] = field(default_factory=list)  # the measured operation, per run
    wall: list[float] = field(default_factory=list)  # whole child process(es), per run
    rss_mb: list[float] = field(default_factory=list)
    mbytes: float | None = None  # payload size, for MB/s
    error: str | None = None
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def mb_s(self) -> float:
        return (self.mbytes or 0.0) / self.median

    def spread(self) -> str:
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def ratio(num: float, den: float) -> str:
    return f"{num / den:.2f}" if den > 0 else "-"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def capture(cmd: list[str]) -> str:
    """The stripped stdout of ``cmd``; "" if it cannot run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""
