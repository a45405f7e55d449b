"""Publish a snapshot as a signed APT tree on a filesystem, switched atomically.

```
DIR/
  pool/<component>/<prefix>/<source>/<file>.deb   hard links to the store's pool (shared by suites)
  dists/SUITE -> ../.mirrorkit/dists/SUITE.<id>    a symlink, replaced atomically
  .mirrorkit/dists/SUITE.<id>/                     one complete generation: InRelease, Release,
                                                   Release.gpg, indices and by-hash copies
  .mirrorkit/pool.sha256                            every pool file mirrorkit placed here, with
                                                   its SHA256 (only those are ever removed)
  KEYNAME.gpg, KEYNAME.asc                          the public key clients pin with Signed-By
```
Order: pool files first, then the new generation (complete and durable), then one rename of the
``dists/SUITE`` symlink. A client sees the old suite or the new one, never a Release that points
at a missing file. The by-hash files of the previous generation are carried into the new one, so
a client that read the old InRelease a moment before the switch still finds its indices.
Everything is world-readable (0644 files, 0755 directories) whatever the umask: a web server
or apt's sandbox user reads the tree.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirrorkit import archive
from mirrorkit.errors import PublishError
from mirrorkit.publish.layout import (
    POOL_RECORD,
    SuitePlan,
    parse_pool_record,
    render_pool_record,
)
from mirrorkit.store import Pool, atomic_write, fsync_dir, storage_error, syncfs

STATE_DIR = ".mirrorkit"


@dataclass(frozen=True, slots=True)
class PublishResult:
    root: Path
    suite: str
    generation: str
    linked: int
    reused: int
    key_file: Path
    removed: int = 0  # pool files no suite needs any more


def published_files(root: Path) -> dict[str, str]:
    """Pool path -> SHA256 of every file a suite currently published in ``root`` lists."""
    listed: dict[str, str] = {}
    dists = root / "dists"
    if not dists.is_dir():
        return listed
    for suite in sorted(dists.iterdir()):
        if not suite.is_symlink() or not suite.exists():
            continue
        for index in sorted(suite.glob("*/binary-*/Packages")):
            for pkg in archive.parse_packages(index.read_bytes(), "", str(index)):
                listed[pkg.filename] = pkg.sha256
    return listed


def _read_record(root: Path) -> dict[str, str]:
    """Pool path -> SHA256 of every file mirrorkit placed in ``root`` (POOL_RECORD)."""
    try:
        return parse_pool_record((root / POOL_RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        # A tree published before the record existed: what its suites list was placed by
        # mirrorkit (or checked against the same SHA256 when it was published).
        return {path: sha for path, sha in published_files(root).items() if (root / path).is_file()}


def _write_record(root: Path, record: dict[str, str]) -> None:
    # Not durable by itself: the publish's syncfs covers the first write, and a lost second
    # write (after pruning) only lists files that are gone, which the next prune skips.
    atomic_write(root / POOL_RECORD, render_pool_record(record), durable=False, mode=0o644)


def _prune_pool(root: Path, record: dict[str, str]) -> int:
    """Remove the pool files mirrorkit placed that no suite lists any more; called only after
    the new Release is in place, so a client never sees a Release that points at a missing
    file. Files mirrorkit did not place (another tool's) are never touched."""
    keep = published_files(root)
    removed = 0
    pool = root / "pool"
    for rel in sorted(set(record) - set(keep)):
        path = root / rel
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        del record[rel]
        parent = path.parent
        while parent != pool and parent.is_relative_to(pool):
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break
            parent = parent.parent
    # Temp files a killed publish left behind (_link_into's names).
    for leftover in pool.glob("**/.tmp-*") if pool.is_dir() else ():
        if _TMP_NAME.match(leftover.name):
            leftover.unlink(missing_ok=True)
    _write_record(root, record)
    return removed


def _mkdir_public(path: Path) -> None:
    """``mkdir -p`` giving new directories 0755 whatever the umask."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        os.chmod(directory, 0o755)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o644)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PublishError(
                f"{root}: another mirrorkit is publishing into this tree",
                "wait for it to finish and run the command again.",
            ) from exc
        yield
    finally:
        os.close(fd)


_TMP_NAME = re.compile(r"\.tmp-[0-9a-f]{12}-")


def _link_into(src: Path, dest: Path, sha256: str, recorded: str | None) -> bool:
    """Hard-link (or, across filesystems, copy) ``src`` to ``dest`` atomically.
    Returns False when ``dest`` already holds that file. ``recorded``: the SHA256 the tree's
    record has for ``dest``, if mirrorkit placed it."""
    if dest.exists():
        st_dest, st_src = dest.stat(), src.stat()
        if st_dest.st_ino == st_src.st_ino and st_dest.st_dev == st_src.st_dev:
            return False
        if recorded == sha256 and st_dest.st_size == st_src.st_size:
            return False  # placed by an earlier publish (a copy, or from another store)
        if st_dest.st_size == st_src.st_size and _sha256_of(dest) == sha256:
            return False  # not recorded (an older tree), but the same bytes
        if recorded is not None:
            hint = (
                "another build of this package version is published in this tree; give the "
                "rebuild a new version, or publish into another directory."
            )
        else:
            hint = "mirrorkit did not put it there; publish into another directory."
        raise PublishError(f"{dest}: exists with different contents", hint)
    _mkdir_public(dest.parent)
    tmp = dest.parent / f".tmp-{secrets.token_hex(6)}-{dest.name}"
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(dest, exc) from exc
        raise
    return True


def _sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _previous_by_hash(current: Path) -> dict[str, Path]:
    """The by-hash files the currently published Release names, to carry them over."""
    release = current / "Release"
    if not release.is_file():
        return {}
    try:
        rel = archive.parse_release(release.read_bytes(), str(release))
    except Exception:  # an unreadable old generation just carries nothing over
        return {}
    carried: dict[str, Path] = {}
    for name, ref in rel.files.items():
        path = archive.by_hash_path(name, ref.sha256)
        if (current / path).is_file():
            carried[path] = current / path
    return carried


def _newer_than_before(gen: Path, suite_link: Path) -> None:
    """Give the new Release files a modification time later than the old ones'.

    Web servers answer apt's If-Modified-Since from mtimes with one-second resolution: a
    publish within the same second as the last one (or a rollback, whose content is older)
    would otherwise be answered "304 Not Modified" and stay invisible to clients."""
    old = suite_link / "InRelease"
    floor = int(old.stat().st_mtime) + 1 if old.exists() else 0
    when = max(int(time.time()), floor)
    for name in ("Release", "Release.gpg", "InRelease"):
        os.utime(gen / name, (when, when))


def publish_tree(
    root: Path,
    plan: SuitePlan,
    pool: Pool,
    inrelease: bytes,
    release_gpg: bytes,
    public_key: tuple[bytes, bytes],
    key_name: str,
) -> PublishResult:
    """Write ``plan`` into ``root`` and switch ``dists/SUITE`` to it."""
    if root.exists() and not root.is_dir():
        raise PublishError(
            f"{root}: not a directory", "publish into a directory (it is created if missing)."
        )
    try:
        _mkdir_public(root / STATE_DIR)
    except OSError as exc:
        raise storage_error(root, exc) from exc
    with _locked(root):
        for link in plan.pool:
            if not pool.has(link.sha256):
                raise PublishError(
                    f"{link.path}: the store has no pool object {link.sha256}",
                    "the store is incomplete; run 'mirrorkit mirror update' for its mirror.",
                )
        record = _read_record(root)
        linked = 0
        try:
            for li in plan.pool:
                linked += _link_into(
                    pool.path(li.sha256), root / li.path, li.sha256, record.get(li.path)
                )
                record[li.path] = li.sha256
        finally:
            _write_record(root, record)  # what is in the pool now is ours to remove later

        dists = root / "dists"
        _mkdir_public(dists)
        suite_link = dists / plan.suite
        if suite_link.exists() and not suite_link.is_symlink():
            raise PublishError(
                f"{suite_link}: exists and was not published by mirrorkit",
                "publish into another directory or suite name.",
            )
        generations = root / STATE_DIR / "dists"
        gen_name = f"{plan.suite}.{secrets.token_hex(8)}"
        gen = generations / gen_name
        try:
            _mkdir_public(gen)
            carried = _previous_by_hash(suite_link) if suite_link.exists() else {}
            for rel_path, src in carried.items():
                dest = gen / rel_path
                _mkdir_public(dest.parent)
                os.link(src, dest)
                os.chmod(dest, 0o644)  # an older publish may have followed a stricter umask
            for rel_path, data in sorted(plan.files.items()):
                dest = gen / rel_path
                _mkdir_public(dest.parent)
                if rel_path in carried:
                    dest.unlink()
                _write_public(dest, data)
            _write_public(gen / "Release", plan.release)
            _write_public(gen / "Release.gpg", release_gpg)
            _write_public(gen / "InRelease", inrelease)
            _newer_than_before(gen, suite_link)
            syncfs(root)
        except OSError as exc:
            shutil.rmtree(gen, ignore_errors=True)
            error = storage_error(gen, exc)
            error.hint = f"{error.hint or 'fix the cause'} The published suite is untouched."
            raise error from exc

        # The switch: one rename of a symlink.
        tmp_link = dists / f".{plan.suite}.{secrets.token_hex(4)}"
        os.symlink(os.path.join("..", STATE_DIR, "dists", gen_name), tmp_link)
        os.replace(tmp_link, suite_link)
        fsync_dir(dists)

        # Old generations of this suite are unreachable now.
        for old in generations.glob(f"{plan.suite}.*"):
            if old.name != gen_name and old.name.rpartition(".")[0] == plan.suite:
                shutil.rmtree(old, ignore_errors=True)

        removed = _prune_pool(root, record)

        binary, armored = public_key
        key_file = root / f"{key_name}.gpg"
        # World-readable: the web server serves it, and apt reads Signed-By files as _apt.
        atomic_write(key_file, binary, mode=0o644)
        atomic_write(root / f"{key_name}.asc", armored, mode=0o644)
        return PublishResult(
            root=root,
            suite=plan.suite,
            generation=gen_name,
            linked=linked,
            reused=len(plan.pool) - linked,
            key_file=key_file,
            removed=removed,
        )
