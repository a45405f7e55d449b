"""Killing real mirrorkit processes at random moments, and what must hold afterwards.

Shared by the fault tests (small loops) and ``scripts/bench faults`` (the full loops): a
command runs as a real ``python -m mirrorkit`` process and gets a real SIGKILL (no handler, no
``finally``) at a random moment; the store is then checked the hard way (``store verify``)
and a published tree against its records.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.archive import build_index_archive
from tests.helpers.gpgkeys import TestKey

REPO = Path(__file__).resolve().parents[2]


def fake_archive(root: Path, key: TestKey, count: int, *, seed: int = 14, size: int = 4096) -> Path:
    """A signed archive of ``count`` packages ``pkgNNNN`` whose files are random bytes (mirror
    update and publish check sizes and hashes, not contents; apt's --download-only too)."""
    rng = random.Random(seed)
    stanzas = []
    for n in range(count):
        name = f"pkg{n:04d}"
        rel = f"pool/main/p/{name}/{name}_1.0_amd64.deb"
        data = rng.randbytes(size + rng.randrange(size))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stanzas.append(
            f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nFilename: {rel}\n"
            f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
            f"Description: test package {n}\n"
        )
    index = root.parent / f"{root.name}.Packages"
    index.write_text("\n".join(stanzas))
    build_index_archive(root, key, index)
    return root


def argv(store: Path, *args: str, gnupghome: Path | None = None) -> list[str]:
    head = [sys.executable, "-m", "mirrorkit", "--store", str(store)]
    if gnupghome is not None:
        head += ["--gnupghome", str(gnupghome)]
    return [*head, *args]


def environment() -> dict[str, str]:
    """The children run this checkout's mirrorkit, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run(cmd: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd), env=environment(), capture_output=True, text=True, check=False, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[3:])}: exit {proc.returncode}\n{proc.stderr}")
    return proc


@dataclass(frozen=True)
class Kill:
    """One trial: how long after the start the SIGKILL came, and whether the command had
    already ended by then (a "survivor": nothing was interrupted)."""

    after: float
    survived: bool
    returncode: int


def kill_at(cmd: Sequence[str], delay: float, *, ready: Callable[[], bool] | None = None) -> Kill:
    """Start ``cmd``, wait until ``ready()`` (if given; polled each millisecond) and ``delay``
    seconds more, then SIGKILL it."""
    proc = subprocess.Popen(
        list(cmd),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    if ready is not None:
        deadline = start + 60
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
    time.sleep(delay)
    survived = proc.poll() is not None
    if not survived:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    if survived and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[3:])}: exit {proc.returncode}\n{err}")
    return Kill(time.monotonic() - start, survived, proc.returncode)


def written(path: Path) -> Callable[[], bool]:
    """A ``ready`` for :func:`kill_at`: true once ``path`` is written anew from now on (a
    killed run may have left an older one)."""
    since = time.time_ns()

    def ready() -> bool:
        try:
            return path.stat().st_mtime_ns >= since
        except FileNotFoundError:
            return False

    return ready


def verify(store: Path) -> dict[str, object]:
    """``store verify --json`` (in this process, through the real CLI), its report; raises
    with the problems when it found any."""
    from tests.mk import run_cli

    r = run_cli(store, "store", "verify", "--json")
    report: dict[str, object] = json.loads(r.stdout or "{}")
    if r.exit_code != 0 or not report.get("ok"):
        raise AssertionError(f"store verify: exit {r.exit_code}\n{r.stdout}{r.stderr}")
    return report


@dataclass(frozen=True)
class TreeState:
    """A published directory's pool files and what its records say about them."""

    files: frozenset[str]  # every file under pool/
    record: dict[str, str]  # .mirrorkit/pool.sha256
    intent: dict[str, str]  # .mirrorkit/pool.intent (a killed publish's)

    def debris(self) -> set[str]:
        """A killed link's temp files (``.tmp-*``): the next publish or gc sweeps them."""
        return {rel for rel in self.files if rel.rpartition("/")[2].startswith(".tmp-")}

    def unrecorded(self) -> set[str]:
        """Pool files neither the record nor an intent lists, nor debris: nothing would ever
        remove them."""
        return set(self.files) - set(self.record) - set(self.intent) - self.debris()


def _sha256sum_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        sha, _, rel = line.partition("  ")
        out[rel] = sha
    return out


def tree_state(root: Path) -> TreeState:
    pool = root / "pool"
    files = (
        {p.relative_to(root).as_posix() for p in pool.rglob("*") if p.is_file()}
        if pool.is_dir()
        else set()
    )
    return TreeState(
        frozenset(files),
        _sha256sum_file(root / ".mirrorkit/pool.sha256"),
        _sha256sum_file(root / ".mirrorkit/pool.intent"),
    )


def listed(root: Path) -> set[str]:
    """The pool files the suites published in ``root`` list (every binary Packages)."""
    names: set[str] = set()
    for index in sorted((root / "dists").glob("*/*/binary-*/Packages")):
        for line in index.read_text().splitlines():
            if line.startswith("Filename: "):
                names.add(line.removeprefix("Filename: "))
    return names
