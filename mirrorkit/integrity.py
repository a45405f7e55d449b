"""``store verify``: check the store the hard way.

Every pool object is re-hashed against its name and every metadata object decompressed and
re-hashed against its; every record (format file, mirrors, snapshots, channels, published
targets, the bundle import log) is read with the one codec; every snapshot is checked intact
(its digest, its indices, each package's pool object with the right size) and so is each
mirror's committed state; every channel points at a snapshot that exists. In each directory
published from the store, every suite's Release files name indices that hold their SHA256,
every pool file a suite lists is there with its SHA256, and the pool files no record lists
are reported apart (``unrecorded``: another tool's, or what a killed publish left before the
next publish or ``gc`` claimed it); a pending intent (``pool.intent``) is named too.

Problems are collected, never raised: the caller wants all of them. Runs under the store lock,
so that what it reads is not being written.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mirrorkit import archive
from mirrorkit.errors import MirrorkitError, NotFoundError
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import IMPORTED_BUNDLES, PUBLISHED, Store, read_record

_SHA = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True, slots=True)
class StoreVerifyReport:
    """What ``store verify`` checked, and what it found (``ok``: no problem)."""

    store: str
    pool_objects: int
    meta_objects: int
    records: int
    snapshots: int
    mirrors: int
    trees: int
    problems: tuple[str, ...] = ()
    # In published directories: pool files no record lists, and pending intents (not damage).
    unrecorded: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    records: int = 0

    def guard(self, what: str, check: Callable[[], object]) -> None:
        """Run ``check``; a MirrorkitError or OSError becomes a problem about ``what``."""
        try:
            check()
        except MirrorkitError as exc:
            self.problems.append(exc.message if what in exc.message else f"{what}: {exc.message}")
        except OSError as exc:
            self.problems.append(f"{what}: {exc.strerror or exc}")


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _objects(root: Path, suffix: str, problems: list[str]) -> Iterator[tuple[Path, str]]:
    """(path, name digest) of every object under ``root/xx/``; misnamed files are problems."""
    if not root.is_dir():
        return
    for sub in sorted(root.iterdir()):
        if not sub.is_dir() or len(sub.name) != 2:
            problems.append(f"{sub}: not an object directory")
            continue
        for path in sorted(sub.iterdir()):
            digest = path.name.removesuffix(suffix) if path.name.endswith(suffix) else ""
            if not _SHA.match(digest) or not digest.startswith(sub.name) or not path.is_file():
                problems.append(f"{path}: not an object (its name is not its SHA256)")
                continue
            yield path, digest


def _check_pool(store: Store, found: _Findings, reporter: Reporter) -> int:
    objects = [
        (path, digest, path.stat().st_size)
        for path, digest in _objects(store.pool.root, "", found.problems)
    ]
    reporter.start("verify pool", len(objects), sum(size for _, _, size in objects))

    def one(item: tuple[Path, str, int]) -> str | None:
        path, digest, _ = item
        try:
            got = _sha256_file(path)
        except OSError as exc:
            return f"{path}: cannot read ({exc.strerror or exc})"
        return None if got == digest else f"{path}: SHA256 is {got}, not its name"

    # hashlib releases the GIL: a few threads read and hash at disk speed.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for item, problem in zip(objects, pool.map(one, objects), strict=True):
            if problem:
                found.problems.append(problem)
            reporter.advance(1, item[2])
    reporter.finish()
    return len(objects)


def _check_meta(store: Store, found: _Findings) -> int:
    objects = list(_objects(store.meta.root, ".zst", found.problems))
    for path, digest in objects:
        found.guard(str(path), lambda digest=digest: store.meta.get(digest))  # type: ignore[misc]
    return len(objects)


def _check_records(store: Store, found: _Findings) -> tuple[int, int]:
    """Every record read; snapshots checked intact, mirrors' states complete, channels'
    snapshots present. Returns (snapshots, mirrors)."""
    from mirrorkit import channel, mirror, mirrors, snapshot
    from mirrorkit.bundle import pins

    snapshots = mirror_count = 0
    found.records += 1 if store.format_file.exists() else 0
    for path in sorted(store.snapshots.glob("*")) if store.snapshots.is_dir() else []:
        if not (path / "snapshot.json").exists():
            found.problems.append(f"{path}: a snapshot directory without snapshot.json")
            continue
        snapshots += 1
        found.records += 1

        def one_snapshot(name: str = path.name) -> None:
            info = snapshot.load(store, name)
            found.problems.extend(f"snapshot {name}: {p}" for p in snapshot.check(store, info))

        found.guard(f"snapshot {path.name}", one_snapshot)
    for path in sorted(store.mirrors.glob("*.json")) if store.mirrors.is_dir() else []:
        mirror_count += 1
        found.records += 1

        def one_mirror(name: str = path.stem) -> None:
            m = mirrors.load(store, name)
            if m.state is None:
                return
            store.meta.get(m.state.inrelease_sha256)
            for ref in m.state.upstream:
                store.meta.get(ref.sha256)
            for p in mirror.packages(store, m.state.indexes):
                obj = store.pool.path(p.sha256)
                if not obj.exists():
                    found.problems.append(
                        f"mirror {name}: {p.ref}: pool object {p.sha256} is missing"
                    )
                elif obj.stat().st_size != p.size:
                    found.problems.append(
                        f"mirror {name}: {p.ref}: pool object {p.sha256} has the wrong size"
                    )

        found.guard(f"mirror {path.stem}", one_mirror)
    for path in sorted(store.channels.glob("*.json")) if store.channels.is_dir() else []:
        found.records += 1

        def one_channel(name: str = path.stem) -> None:
            ch = channel.load(store, name)
            if not snapshot.exists(store, ch.snapshot):
                found.problems.append(
                    f"channel {name}: points at snapshot {ch.snapshot}, which is missing"
                )

        found.guard(f"channel {path.stem}", one_channel)
    for path in sorted(store.published.glob("*.json")) if store.published.is_dir() else []:
        found.records += 1
        found.guard(str(path), lambda path=path: read_record(path, PUBLISHED))  # type: ignore[misc]
    if store.imported_bundles.exists():
        found.records += 1
        found.guard(
            str(store.imported_bundles),
            lambda: read_record(store.imported_bundles, IMPORTED_BUNDLES),
        )
        found.guard(str(store.imported_bundles), lambda: pins.check_log(store))
    return snapshots, mirror_count


def _check_tree(store: Store, root: Path, found: _Findings) -> None:
    """A directory published from the store (see the module docstring)."""
    from mirrorkit.publish import executor
    from mirrorkit.publish.fs import published_files

    dists = root / "dists"
    for suite in sorted(dists.iterdir()) if dists.is_dir() else []:
        if not suite.is_symlink():
            continue
        if not suite.exists():
            found.problems.append(f"{suite}: points at a generation that is missing")
            continue

        def one_suite(suite: Path = suite) -> None:
            release = archive.parse_release(
                (suite / "InRelease").read_bytes(), str(suite / "InRelease")
            )
            for name, ref in sorted(release.files.items()):
                path = suite / name
                if not path.exists():
                    found.problems.append(f"{path}: listed in its InRelease, missing")
                elif _sha256_file(path) != ref.sha256:
                    found.problems.append(f"{path}: SHA256 differs from its InRelease")

        found.guard(str(suite), one_suite)
    listed: dict[str, str] = {}
    found.guard(str(root), lambda: listed.update(published_files(root)))
    for rel, sha in sorted(listed.items()):
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            found.problems.append(f"{path}: listed by a published suite, missing")
            continue
        obj = store.pool.path(sha)
        # A hard link to a pool object was hashed with the pool; a copy is hashed here.
        if obj.exists() and os.path.samestat(st, obj.stat()):
            continue
        if _sha256_file(path) != sha:
            found.problems.append(f"{path}: SHA256 differs from what a published suite lists")
    state = root / ".mirrorkit"
    record = (
        executor.parse_pool_record((state / "pool.sha256").read_text("utf-8", "replace"))
        if (state / "pool.sha256").exists()
        else dict(listed)
    )
    intent = (
        executor.parse_pool_record((state / "pool.intent").read_text("utf-8", "replace"))
        if (state / "pool.intent").exists()
        else {}
    )
    if intent:
        found.pending.append(f"{state / 'pool.intent'}: an intent naming {len(intent)} files")
    pool = root / "pool"
    for dirpath, _, files in os.walk(pool) if pool.is_dir() else ():
        for name in sorted(files):
            rel = Path(os.path.relpath(os.path.join(dirpath, name), root)).as_posix()
            if name.startswith(".tmp-"):
                found.pending.append(f"{root / rel}: a temp file")
            elif rel not in record and rel not in intent:
                found.unrecorded.append(str(root / rel))


def verify(store: Store, reporter: Reporter | None = None) -> StoreVerifyReport:
    """Check the store at ``store`` the hard way (see the module docstring)."""
    from mirrorkit.publish.records import published_trees

    if store.format is None:
        raise NotFoundError(f"no mirrorkit store at {store.root}", "give the store with --store.")
    reporter = reporter or NullReporter()
    found = _Findings()
    with store.locked():
        pool_objects = _check_pool(store, found, reporter)
        meta_objects = _check_meta(store, found)
        snapshots, mirror_count = _check_records(store, found)
        trees: list[Path] = []
        found.guard(str(store.published), lambda: trees.extend(published_trees(store)))
        for tree in trees:
            if tree.is_dir():
                _check_tree(store, tree, found)
    return StoreVerifyReport(
        store=str(store.root),
        pool_objects=pool_objects,
        meta_objects=meta_objects,
        records=found.records,
        snapshots=snapshots,
        mirrors=mirror_count,
        trees=len(trees),
        problems=tuple(found.problems),
        unrecorded=tuple(found.unrecorded),
        pending=tuple(found.pending),
    )
