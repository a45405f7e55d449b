"""Publish a snapshot as a signed APT tree on a filesystem, switched atomically.

```
DIR/
  pool/<component>/<prefix>/<source>/<file>.deb   hard links to the store's pool (shared by suites)
  dists/SUITE -> ../.mirrorkit/dists/SUITE.<id>    a symlink, replaced atomically
  .mirrorkit/dists/SUITE.<id>/                     one complete generation: InRelease, Release,
                                                   Release.gpg, indices and by-hash copies
  KEYNAME.gpg, KEYNAME.asc                          the public key clients pin with Signed-By
```
Order: pool files first, then the new generation (complete and durable), then one rename of the
``dists/SUITE`` symlink. A client sees the old suite or the new one, never a Release that points
at a missing file. The by-hash files of the previous generation are carried into the new one, so
a client that read the old InRelease a moment before the switch still finds its indices.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirrorkit import archive
from mirrorkit.errors import PublishError
from mirrorkit.publish.layout import SuitePlan
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


def _prune_pool(root: Path) -> int:
    """Remove pool files no suite lists; called only after the new Release is in place, so a
    client never sees a Release that points at a missing file."""
    keep = set(published_files(root))
    removed = 0
    pool = root / "pool"
    if not pool.is_dir():
        return 0
    for path in sorted(pool.rglob("*"), reverse=True):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


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


def _link_into(src: Path, dest: Path) -> bool:
    """Hard-link (or, across filesystems, copy) ``src`` to ``dest`` atomically.
    Returns False when ``dest`` already holds that file."""
    if dest.exists():
        st_dest, st_src = dest.stat(), src.stat()
        if st_dest.st_ino == st_src.st_ino and st_dest.st_dev == st_src.st_dev:
            return False
        if st_dest.st_size == st_src.st_size:
            # Published earlier from another store or by copy: same name and size. Pool names
            # carry name, version and arch, so only a rebuilt package could differ; that case
            # is caught by the layout plan when both are in one snapshot.
            return False
        raise PublishError(
            f"{dest}: exists with different contents",
            "another package with this file name is published in this tree; publish to a "
            "fresh directory or remove the conflicting suite.",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{secrets.token_hex(6)}-{dest.name}"
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(dest, exc) from exc
    return True


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
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(root, exc) from exc
    with _locked(root):
        for link in plan.pool:
            if not pool.has(link.sha256):
                raise PublishError(
                    f"{link.path}: the store has no pool object {link.sha256}",
                    "the store is incomplete; run 'mirrorkit mirror update' for its mirror.",
                )
        linked = sum(_link_into(pool.path(li.sha256), root / li.path) for li in plan.pool)

        dists = root / "dists"
        dists.mkdir(exist_ok=True)
        suite_link = dists / plan.suite
        if suite_link.exists() and not suite_link.is_symlink():
            raise PublishError(
                f"{suite_link}: exists and was not published by mirrorkit",
                "publish into another directory or suite name.",
            )
        generations = root / STATE_DIR / "dists"
        generations.mkdir(parents=True, exist_ok=True)
        gen_name = f"{plan.suite}.{secrets.token_hex(8)}"
        gen = generations / gen_name
        try:
            gen.mkdir()
            carried = _previous_by_hash(suite_link) if suite_link.exists() else {}
            for rel_path, src in carried.items():
                dest = gen / rel_path
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dest)
            for rel_path, data in sorted(plan.files.items()):
                dest = gen / rel_path
                dest.parent.mkdir(parents=True, exist_ok=True)
                if rel_path in carried:
                    dest.unlink()
                dest.write_bytes(data)
            (gen / "Release").write_bytes(plan.release)
            (gen / "Release.gpg").write_bytes(release_gpg)
            (gen / "InRelease").write_bytes(inrelease)
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

        removed = _prune_pool(root)

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
