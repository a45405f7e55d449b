"""The directory target: how the executor's writes land on a filesystem, switched atomically.

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
Pool files are hard-linked (copied across filesystems) under a temporary name and renamed into
place. A suite's files go into a new generation directory; the switch makes it durable and
renames one symlink, so a client sees the old suite or the new one. The by-hash files of the
previous generation are carried into the new one (hard links), so a client that read the old
InRelease a moment before the switch still finds its indices. A different file already at a
pool path is refused, never replaced (other tools may share the directory). Everything is
world-readable (0644 files, 0755 directories) whatever the umask: a web server or apt's
sandbox user reads the tree. An flock on ``.mirrorkit/lock`` keeps two publishers apart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirrorkit import archive
from mirrorkit.errors import FormatError, PublishError
from mirrorkit.publish.executor import Item
from mirrorkit.publish.plan import index_files
from mirrorkit.store import Pool, atomic_write, fsync_dir, storage_error, syncfs

STATE_DIR = ".mirrorkit"
_UNTOUCHED = "The published suite is untouched."
_TMP_NAME = re.compile(r"\.tmp-[0-9a-f]{12}-")
_TEMP_MARK = f"{STATE_DIR}/pool-temp"  # a publish made temp files in the pool (see switch)


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
            listed.update(_listed_files(index))
        for index in sorted(suite.glob("*/debian-installer/binary-*/Packages")):
            listed.update(_listed_files(index))
        for index in sorted(suite.glob("*/source/Sources")):
            listed.update(index_files(index.read_bytes(), index.name, str(index)))
    return listed


_FILENAME = re.compile(rb"^Filename: *([^\n]*?)[ \t]*$", re.MULTILINE)
_SHA256 = re.compile(rb"^SHA256: *([0-9a-fA-F]{64})[ \t]*$", re.MULTILINE)


_BOTH = re.compile(rb"^(Filename|SHA256): *([^\n]*?)[ \t]*$", re.MULTILINE)


def _listed_files(index: Path) -> Iterator[tuple[str, str]]:
    """(Filename, SHA256) of every stanza of a published index: two fields, not a parse of
    every stanza into a package (a 63,000-package index is read at every publish's prune)."""
    text = index.read_bytes()
    found = _BOTH.findall(text)
    # One pass over the text: the fields come in pairs, one pair per stanza (in either order)
    # when every stanza has both once; anything else is read stanza by stanza below.
    pairs = [dict(found[i : i + 2]) for i in range(0, len(found), 2)]
    if text.count(b"\nPackage:") + text.startswith(b"Package:") == len(pairs) and all(
        len(pair) == 2 and len(pair[b"SHA256"]) == 64 for pair in pairs
    ):
        for pair in pairs:
            yield pair[b"Filename"].decode("utf-8", "surrogateescape"), pair[b"SHA256"].decode()
        return
    for number, stanza in enumerate(archive.iter_stanzas(text), 1):
        name, sha = _FILENAME.search(stanza), _SHA256.search(stanza)
        if name is None or sha is None:
            raise FormatError(
                f"{index}: stanza {number} lacks {'Filename' if name is None else 'SHA256'}"
            )
        yield name[1].decode("utf-8", "surrogateescape"), sha[1].decode().lower()


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


def _sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _no_op() -> None:
    pass


def _link_into(
    src: Path, dest: Path, made: set[str] | None = None, before_temp: Callable[[], None] = _no_op
) -> None:
    """Hard-link (or, across filesystems, copy) ``src`` to ``dest`` atomically. ``made``:
    directories known to exist (a tree's pool has one per source package: 34,000 for Debian,
    each checked once, not once per file). ``before_temp`` runs before a temp file is made."""
    parent = os.path.dirname(dest)
    if made is None or parent not in made:
        _mkdir_public(dest.parent)
        if made is not None:
            made.add(parent)
    with contextlib.suppress(FileExistsError, OSError):
        # A hard link appears whole: no temp name needed. Where it cannot be made (another
        # file there, another filesystem), the temp file and rename below.
        os.link(src, dest)
        return
    before_temp()
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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def sweep(root: Path, *, dry_run: bool = False) -> list[str]:
    """Remove what killed publishes left in ``root``: link temp files in pool/ (``_link_into``'s
    names), the switch's temp symlinks in dists/, and generation directories no suite's
    symlink points at. Call under the tree's lock. Returns the names (below ``root``)."""
    found: list[Path] = []
    pool = root / "pool"
    # Only a publish that made temp files in the pool leaves the mark (made durable before
    # the first), so a tree's 34,000 pool directories are rarely walked.
    marker = root / _TEMP_MARK
    if marker.exists() and pool.is_dir():
        found += [p for p in pool.glob("**/.tmp-*") if _TMP_NAME.match(p.name)]
    dists = root / "dists"
    live: set[str] = set()
    if dists.is_dir():
        for entry in dists.iterdir():
            if entry.is_symlink():
                if entry.name.startswith("."):
                    found.append(entry)  # a switch's temp link: never renamed into place
                else:
                    live.add(os.path.basename(os.readlink(entry)))
    generations = root / STATE_DIR / "dists"
    if generations.is_dir():
        found += [g for g in generations.iterdir() if g.name not in live]
    for path in found if not dry_run else ():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if not dry_run:
        marker.unlink(missing_ok=True)
    return sorted(str(path.relative_to(root)) for path in found)


class DirectoryTarget:
    """A publish target in a local directory (see the module's docstring)."""

    jobs = 1  # linking is cheap: threads would only add overhead
    replaces_unlisted = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = ""  # the generation the last switch published
        self._gen: Path | None = None
        self._made: set[str] = set()  # directories known to exist (see _link_into)
        self._marked = False  # whether _TEMP_MARK is set (see switch)

    @property
    def label(self) -> str:
        return f"publish into {self.root}"

    @contextmanager
    def lock(self, suite: str) -> Iterator[None]:
        if self.root.exists() and not self.root.is_dir():
            raise PublishError(
                f"{self.root}: not a directory",
                "publish into a directory (it is created if missing).",
            )
        state = self.root / STATE_DIR
        try:
            _mkdir_public(state)
            fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise PublishError(
                    f"{self.root}: another mirrorkit is publishing into this tree",
                    "wait for it to finish and run the command again.",
                ) from exc
            yield
        finally:
            os.close(fd)

    def check_lock(self) -> None:
        pass  # an flock cannot be taken from its holder

    def get(self, rel: str) -> bytes | None:
        path = self.root / rel
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise storage_error(path, exc) from exc

    def _staged(self, rel: str) -> Path | None:
        """Where a name below ``dists/SUITE/`` goes while that suite is being written."""
        if self._gen is None:
            return None
        suite_dir = f"dists/{self._gen.name.rpartition('.')[0]}/"
        return self._gen / rel[len(suite_dir) :] if rel.startswith(suite_dir) else None

    def compare(self, item: Item, recorded: str | None) -> bool | None:
        staged = self._staged(item.rel)
        dest = staged or self.root / item.rel
        try:
            st_dest = dest.stat()
        except FileNotFoundError:
            return None
        if st_dest.st_size != item.size:
            return False
        if item.kind == "pool" and item.path is not None:
            if recorded == item.sha256:
                return True  # placed by an earlier publish (a link, a copy, another store)
            st_src = item.path.stat()
            if (st_dest.st_ino, st_dest.st_dev) == (st_src.st_ino, st_src.st_dev):
                return True
        if item.kind == "by-hash" and staged is not None:
            return True  # carried from the previous generation; the name is its hash
        return _sha256_of(dest) == item.sha256

    def put(self, item: Item) -> None:
        staged = self._staged(item.rel)
        dest = staged or self.root / item.rel
        try:
            if item.kind == "pool":
                assert item.path is not None
                _link_into(item.path, dest, self._made, self._mark_temp)
            elif staged is not None:
                assert item.data is not None
                _mkdir_public(dest.parent)
                dest.unlink(missing_ok=True)  # a carried hard link: never write through it
                dest.write_bytes(item.data)
                os.chmod(dest, 0o644)
            else:
                assert item.data is not None
                # World-readable: the web server serves the key, and apt reads Signed-By files
                # as _apt. Durable at once: the pool intent must be on disk before the first
                # link, and the record before the intent it replaces is removed.
                atomic_write(dest, item.data, mode=0o644)
        except OSError as exc:
            error = storage_error(dest, exc)
            if staged is not None:
                error.hint = f"{error.hint or 'fix the cause'} {_UNTOUCHED}"
            raise error from exc

    def list(self, rel_prefix: str) -> Iterator[str]:
        base = self.root / rel_prefix
        if not base.is_dir():
            return
        for dirpath, _, filenames in os.walk(base, followlinks=True):
            rel_dir = Path(os.path.relpath(dirpath, self.root)).as_posix()
            for name in sorted(filenames):
                yield f"{rel_dir}/{name}"

    def delete(self, rels: Sequence[str]) -> None:
        for rel in rels:
            path = self.root / rel
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise storage_error(path, exc) from exc
            top = self.root / rel.partition("/")[0]
            parent = path.parent
            while parent != top and parent.is_relative_to(top):
                try:
                    parent.rmdir()  # only if empty
                except OSError:
                    break
                parent = parent.parent

    def listed_pool(self) -> dict[str, str]:
        return published_files(self.root)

    def conflict(self, item: Item, listed: str | None, recorded: str | None) -> PublishError:
        if recorded is not None:
            hint = (
                "another build of this package version is published in this tree; give the "
                "rebuild a new version, or publish into another directory."
            )
        else:
            hint = "mirrorkit did not put it there; publish into another directory."
        return PublishError(f"{self.root / item.rel}: exists with different contents", hint)

    def begin_suite(self, suite: str, carry: set[str]) -> None:
        dists = self.root / "dists"
        suite_link = dists / suite
        try:
            _mkdir_public(dists)
        except OSError as exc:
            raise storage_error(dists, exc) from exc
        if suite_link.exists() and not suite_link.is_symlink():
            raise PublishError(
                f"{suite_link}: exists and was not published by mirrorkit",
                "publish into another directory or suite name.",
            )
        gen = self.root / STATE_DIR / "dists" / f"{suite}.{secrets.token_hex(8)}"
        try:
            _mkdir_public(gen)
            self._gen = gen
            for rel in sorted(carry):
                src = suite_link / rel
                if src.is_file():
                    dest = gen / rel
                    _mkdir_public(dest.parent)
                    os.link(src, dest)
                    os.chmod(dest, 0o644)  # an older publish may have followed a stricter umask
        except OSError as exc:
            self.abort_suite(suite)
            error = storage_error(gen, exc)
            error.hint = f"{error.hint or 'fix the cause'} {_UNTOUCHED}"
            raise error from exc

    def prepare_switch(self, suite: str) -> None:
        pass  # the switch is a rename: nothing is visible before it

    def switch(self, suite: str) -> None:
        gen = self._gen
        assert gen is not None
        dists = self.root / "dists"
        suite_link = dists / suite
        try:
            _newer_than_before(gen, suite_link)
            syncfs(self.root)
            # The switch: one rename of a symlink.
            tmp_link = dists / f".{suite}.{secrets.token_hex(4)}"
            os.symlink(os.path.join("..", STATE_DIR, "dists", gen.name), tmp_link)
            os.replace(tmp_link, suite_link)
            fsync_dir(dists)
        except OSError as exc:
            error = storage_error(gen, exc)
            error.hint = f"{error.hint or 'fix the cause'} {_UNTOUCHED}"
            raise error from exc
        self._gen = None
        self.generation = gen.name
        # Old generations of this suite are unreachable now, and so is what killed publishes
        # of any suite left (no other publisher runs: we hold the tree's lock).
        sweep(self.root)
        self._marked = False

    def _mark_temp(self) -> None:
        """Before the first temp file in the pool: leave the mark sweep() looks for."""
        if not self._marked:
            marker = self.root / _TEMP_MARK
            marker.touch()
            fsync_dir(marker.parent)
            self._marked = True

    def abort_suite(self, suite: str) -> None:
        if self._gen is not None:
            shutil.rmtree(self._gen, ignore_errors=True)
            self._gen = None


def tidy_tree(root: Path, pool: Pool, *, dry_run: bool = False) -> list[str]:
    """``gc``'s part in a published directory, under its lock: what a killed publish placed is
    claimed and, with every other pool file mirrorkit placed that no suite lists, removed; the
    debris of killed publishes goes too (:func:`sweep`). Returns the names (below ``root``)."""
    from mirrorkit.publish import executor

    target = DirectoryTarget(root)
    with target.lock(""):
        return executor.tidy(target, pool, dry_run=dry_run) + sweep(root, dry_run=dry_run)
