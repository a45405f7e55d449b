"""Files in the store: names, atomic writes, durability, and the error a refused write gives.

Nothing becomes visible before it is complete: write to a temp file in the same filesystem,
fsync, rename (``atomic_write``). These helpers are shared by every writer in the store.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mirrorkit.errors import StorageError, UsageError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_name(name: str, kind: str) -> str:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid {kind} name {name!r}",
            "use letters, digits and . _ + - (not starting with a punctuation mark).",
        )
    return name


def default_store_path() -> Path:
    if env := os.environ.get("MIRRORKIT_HOME"):
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "mirrorkit"


def storage_error(path: Path | str, exc: OSError) -> StorageError:
    hint = None
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free space and run the command again (nothing was committed)."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        # The path says whose: the store's (--store, $MIRRORKIT_HOME) or an output directory.
        hint = "check that this user may write there and that the filesystem is not read-only."
    return StorageError(f"{path}: cannot write ({exc.strerror or exc})", hint)


def temp_dir(parent: Path, prefix: str, what: Path | str) -> Path:
    """A new private directory under ``parent`` for work on ``what``; a full disk or a
    read-only store is a StorageError naming ``what`` (what the user asked to write), never a
    bare OSError from ``tempfile``."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    except OSError as exc:
        raise storage_error(what, exc) from exc


def temp_file(parent: Path, prefix: str, what: Path | str, suffix: str = "") -> tuple[int, Path]:
    """:func:`temp_dir` for a file: (open descriptor, path)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=suffix)
    except OSError as exc:
        raise storage_error(what, exc) from exc
    return fd, Path(name)


@contextmanager
def held_dir(path: Path) -> Iterator[int]:
    """Hold an flock on directory ``path`` for the block: it marks the directory as in use by
    a live process (the kernel drops the lock when the process dies, even by SIGKILL), so
    :func:`reclaim_dirs` leaves it alone. Yields the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def work_dir(parent: Path, prefix: str, what: Path | str) -> Iterator[Path]:
    """:func:`temp_dir` held (:func:`held_dir`) for the block. It is created under a name
    :func:`reclaim_dirs` does not look at and renamed to ``prefix...`` once held, so a
    reclaimer never sees it unheld; a rename keeps the inode, and with it the flock."""
    fresh = temp_dir(parent, f".new-{prefix}", what)
    with held_dir(fresh):
        path = parent / fresh.name.removeprefix(".new-")
        try:
            os.rename(fresh, path)
        except OSError as exc:
            shutil.rmtree(fresh, ignore_errors=True)
            raise storage_error(what, exc) from exc
        yield path


def reclaim_dirs(parent: Path, prefixes: tuple[str, ...]) -> list[Path]:
    """Remove the directories ``parent/PREFIX*`` no live process holds: what commands killed
    mid-way (SIGKILL, power loss) left. Whoever holds one (:func:`held_dir`) is running, so
    this is safe beside other commands, under any lock. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = sorted(parent.iterdir())
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise storage_error(parent, exc) from exc
    for path in entries:
        if not path.name.startswith(prefixes):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or not a directory
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running command's
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    tmp_dir: Path | None = None,
    durable: bool = True,
    mode: int = 0o600,
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    ``durable=False`` skips the fsyncs, for a caller that makes the whole store durable with
    one ``syncfs`` before anything refers to the file. ``mode``: the store's own files are
    private; what a web server or apt's sandbox user must read needs 0o644."""
    fd, tmp = temp_file(tmp_dir or path.parent, ".tmp-", path)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != 0o600:  # mkstemp's
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise storage_error(path, exc) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, *, tmp_dir: Path | None = None) -> None:
    atomic_write(path, canonical_json(obj) + b"\n", tmp_dir=tmp_dir)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise StorageError(
            f"{path}: corrupt JSON ({exc})", "the store was modified by hand or damaged."
        ) from exc


def syncfs(path: Path) -> None:
    """Make everything written under ``path``'s filesystem durable, in one call.

    One syncfs after a batch of downloads is far cheaper than an fsync per file, and gives the
    same guarantee at the point that matters: before the mirror's new state is committed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc_name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
        if libc is None or not hasattr(libc, "syncfs") or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
