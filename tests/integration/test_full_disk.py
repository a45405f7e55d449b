"""A full disk is a message, never a traceback (issue 14, item 3).

The store lives on a real, tiny tmpfs filled to the last block and the last inode; every
command that writes then runs as a real ``python -m mirrorkit`` process. Each must exit 1 with
one ``error:`` naming what it could not write and the disk-full hint, with no traceback; the
store must still read, and once space is freed the same commands work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer


def _mk(store: Path, *args: str, gnupghome: Path | None = None) -> subprocess.CompletedProcess[str]:
    home = ["--gnupghome", str(gnupghome)] if gnupghome else []
    return subprocess.run(
        [sys.executable, "-m", "mirrorkit", "--store", str(store), *home, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(store: Path, *args: str, gnupghome: Path | None = None) -> str:
    r = _mk(store, *args, gnupghome=gnupghome)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs with 400 inodes, mounted for this test only."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=400,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(disk: Path) -> list[Path]:
    """Take every free block, then every free inode; returns what to delete to free them."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    taken = [filler]
    try:
        while True:
            path = disk / f"inode-{len(taken)}"
            path.touch()
            taken.append(path)
    except OSError:
        pass
    return taken


def _refused_cleanly(r: subprocess.CompletedProcess[str], what: str) -> None:
    assert r.returncode == 1, f"{what}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    assert "Traceback" not in r.stderr, f"{what}:\n{r.stderr}"
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, f"{what}:\n{r.stderr}"
    assert "No space left on device" in errors[0], f"{what}:\n{r.stderr}"
    assert "hint: the disk is full" in r.stderr, f"{what}:\n{r.stderr}"


def test_every_writing_command_on_a_full_disk_says_so_and_the_store_still_reads(
    tmp_path: Path, disk: Path, debs_dir: dict[str, Path], publish_key: TestKey,
    upstream: FaultServer, test_key: TestKey,
) -> None:  # fmt: skip
    store = disk / "store"
    home = publish_key.gnupghome
    _ok(store, "snapshot", "create", "s1", "--from-debs", str(debs_dir["greet-data"]))
    _ok(store, "snapshot", "create", "s0", "--from-debs", str(debs_dir["libgreet"]))
    _ok(store, "snapshot", "create", "gone", "--from-debs", str(debs_dir["libgreet"]))
    _ok(store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    # A bundle from another store, on a disk with room.
    other = tmp_path / "other"
    _ok(other, "snapshot", "create", "b1", "--from-debs", str(debs_dir["libalt"]))
    bundle = tmp_path / "b1.bundle"
    _ok(other, "bundle", "export", "b1", "-o", str(bundle), "--key", publish_key.fingerprint,
        gnupghome=home)  # fmt: skip
    listed = _ok(store, "snapshot", "list")

    taken = _fill(disk)
    keyring = str(publish_key.public_keyring)
    commands = {
        "snapshot create": ("snapshot", "create", "s2", "--from-debs", str(debs_dir["mta-one"])),
        "snapshot merge": ("snapshot", "merge", "m", "s1", "s0"),
        "bundle import": ("bundle", "import", str(bundle), "--keyring", keyring),
        # Past the free-space check (it refuses a full disk up front, and a 4 MiB disk is
        # below its margin): the write itself must fail cleanly too.
        "mirror update": ("mirror", "update", "up", "--no-space-check"),
        "publish fs": ("publish", "fs", "s1", str(disk / "www"), "--key",
                       publish_key.fingerprint),
    }  # fmt: skip
    for what, args in commands.items():
        _refused_cleanly(_mk(store, *args, gnupghome=home), what)

    # Removing needs no space: it is the way out of a full disk, so it works.
    r = _mk(store, "snapshot", "rm", "gone")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert _ok(store, "snapshot", "list") == "".join(
        line + "\n" for line in listed.splitlines() if not line.startswith("gone\t")
    )
    _ok(store, "snapshot", "verify", "s1")
    assert "up" in _ok(store, "mirror", "list")

    for path in taken:
        path.unlink()
    for what, args in commands.items():
        r = _mk(store, *args, gnupghome=home)
        assert r.returncode == 0, f"{what} after space was freed:\n{r.stdout}{r.stderr}"
    assert _ok(store, "gc").strip()
    for name in ("s1", "s2", "m", "b1"):
        _ok(store, "snapshot", "verify", name)
