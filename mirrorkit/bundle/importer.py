"""``bundle import``: verify a bundle and add what it carries to a store.

Import trusts nothing before the signature: it reads the manifest and its signature, verifies
them against the given keyring, and only then takes the store lock and reads on, checking each
member against the manifest while streaming it into a staging directory under ``tmp/``
(``reader``). Pool objects, metadata, snapshots and channel pins are committed only after every
member verified and every snapshot was found complete, so a bad bundle leaves the store as it
was. Importing a bundle again changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from mirrorkit import mirror, refs, snapshot
from mirrorkit.bundle.manifest import (
    DAMAGED,
    HOSTILE,
    OBJECT,
    BundledSnapshot,
    Manifest,
    Member,
)
from mirrorkit.bundle.pins import ChannelMove, apply_pins, check_log, log_import
from mirrorkit.bundle.reader import Discard, Problems, Target, open_reading
from mirrorkit.bundle.workers import Pipe
from mirrorkit.errors import (
    BundleError,
    ConflictError,
    IntegrityError,
    MirrorkitError,
    NotFoundError,
    StoreFormatError,
)
from mirrorkit.models import FileRef
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import Store, storage_error, syncfs, temp_dir

_MAX_CHANNEL = 64 << 10
_SNAPSHOT = re.compile(r"^snapshots/([^/]+)/snapshot\.json$")
_CHANNEL = re.compile(r"^channels/([^/]+)\.json$")


class _FileTarget:
    """A staged file, written by the import's writer thread (see :class:`Pipe`): the caller
    only hashes and queues copies of the chunks."""

    def __init__(self, pipe: Pipe, path: Path, on_keep: Callable[[Path], None]) -> None:
        self.path = path
        self._pipe = pipe
        self._on_keep = on_keep
        self._fh: BinaryIO | None = None
        pipe.submit(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("xb", buffering=0)
        except OSError as exc:
            raise storage_error(self.path, exc) from exc

    def _write(self, data: bytes) -> None:
        assert self._fh is not None
        try:
            self._fh.write(data)
        except OSError as exc:
            raise storage_error(self.path, exc) from exc

    def _close(self, remove: bool) -> None:
        if self._fh is not None:
            self._fh.close()
        if remove:
            self.path.unlink(missing_ok=True)

    def write(self, data: memoryview) -> None:
        self._pipe.submit(self._write, bytes(data))  # the chunk's buffer is reused at once

    def keep(self) -> None:
        self._pipe.submit(self._close, False)
        self._on_keep(self.path)

    def discard(self) -> None:
        self._pipe.submit(self._close, True)


class _SmallFileTarget:
    """A small staged file: gathered in memory and, once verified, written by the writer
    thread with others in one batch (a pool of 63,000 small .debs: a hand-off per batch, not
    three per file; nothing touches the disk for a member that fails its check)."""

    def __init__(self, batch: _Batch, path: Path, on_keep: Callable[[Path], None]) -> None:
        self.path = path
        self._batch = batch
        self._on_keep = on_keep
        self._parts: list[bytes] = []

    def write(self, data: memoryview) -> None:
        self._parts.append(bytes(data))

    def keep(self) -> None:
        self._batch.add(self.path, b"".join(self._parts))
        self._parts = []
        self._on_keep(self.path)

    def discard(self) -> None:
        self._parts = []


class _Batch:
    """Small files for the writer thread, handed over a batch at a time."""

    MAX_FILES = 128
    MAX_BYTES = 4 << 20

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._files: list[tuple[Path, bytes]] = []
        self._bytes = 0

    def add(self, path: Path, data: bytes) -> None:
        self._files.append((path, data))
        self._bytes += len(data)
        if len(self._files) >= self.MAX_FILES or self._bytes >= self.MAX_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._files:
            self._pipe.submit(_save_all, self._files)
            self._files, self._bytes = [], 0


def _save_all(files: list[tuple[Path, bytes]]) -> None:
    for path, data in files:
        try:
            try:
                fh = path.open("xb", buffering=0)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = path.open("xb", buffering=0)
            with fh:
                fh.write(data)
        except OSError as exc:
            raise storage_error(path, exc) from exc


_SMALL = 256 << 10  # members up to this size are staged by _SmallFileTarget


class _MemoryTarget:
    def __init__(self, on_keep: Callable[[bytes], None]) -> None:
        self._parts: list[bytes] = []
        self._on_keep = on_keep

    def write(self, data: memoryview) -> None:
        self._parts.append(bytes(data))

    def keep(self) -> None:
        self._on_keep(b"".join(self._parts))

    def discard(self) -> None:
        self._parts = []


@dataclass
class _Staging:
    """What an import has verified so far, in ``root`` under the store's tmp/."""

    store: Store
    root: Path
    skip_snapshots: frozenset[str]
    pipe: Pipe = field(default_factory=Pipe)
    batch: _Batch = field(init=False)
    pool: dict[str, Path] = field(default_factory=dict)
    pool_present: int = 0
    meta: dict[str, Path] = field(default_factory=dict)
    snapshots: dict[str, Path] = field(default_factory=dict)
    channels: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.batch = _Batch(self.pipe)

    def open(self, member: Member) -> Target:
        path = member.path
        if m := OBJECT.match(path):
            kind, sha = m.groups()
            if kind == "pool":
                if self._have(sha, member.size):
                    self.pool_present += 1
                    return Discard()
                on_keep = partial(self.pool.__setitem__, sha)
                if member.size <= _SMALL:
                    return _SmallFileTarget(self.batch, self.root / path, on_keep)
                return _FileTarget(self.pipe, self.root / path, on_keep)
            if self.store.meta.has(sha):
                return Discard()
            return _FileTarget(self.pipe, self.root / path, partial(self.meta.__setitem__, sha))
        if m := _SNAPSHOT.match(path):
            name = m.group(1)
            if name in self.skip_snapshots:
                return Discard()
            on_keep = partial(self.snapshots.__setitem__, name)
            return _FileTarget(self.pipe, self.root / path, on_keep)
        if m := _CHANNEL.match(path):
            name = m.group(1)
            if member.size > _MAX_CHANNEL:
                raise BundleError(f"{path}: too large for a channel pin", HOSTILE)
            return _MemoryTarget(lambda data: self.channels.__setitem__(name, data))
        return Discard()  # SHA256SUMS and its signature: checked against the manifest only

    def _have(self, sha: str, size: int) -> bool:
        """The store has this pool object already (with the right size: an object a crash
        left short is replaced, not trusted)."""
        if sha in self.pool:
            return True
        try:
            return os.stat(self.store.pool.path(sha)).st_size == size
        except FileNotFoundError:
            return False


@dataclass(frozen=True, slots=True)
class ImportResult:
    what: str
    manifest: Manifest
    signers: tuple[str, ...]
    added: tuple[str, ...]  # snapshots committed
    present: tuple[str, ...]  # already in the store with the same digest
    channels: tuple[ChannelMove, ...]
    pool_added: int
    pool_present: int
    bytes: int  # compressed bytes read
    seconds: float


def _precheck(store: Store, manifest: Manifest, what: str) -> frozenset[str]:
    """Everything that can be refused before a byte is written: a missing or different base,
    snapshots that exist with other contents, names taken by the other kind (snapshot and
    channel). Returns the snapshots already present (same digest)."""
    check_log(store)
    base = manifest.since
    if base is not None:
        if not snapshot.exists(store, base.name):
            raise NotFoundError(
                f"{what}: an incremental bundle made against snapshot {base.name}, which this "
                "store does not have",
                f"import the bundle that carries {base.name} first, then this one.",
            )
        local = snapshot.load(store, base.name)
        if local.digest != base.digest:
            raise ConflictError(
                f"{what}: made against snapshot {base.name} (digest {base.digest}), but this "
                f"store's {base.name} is different (digest {local.digest})",
                f"this delta does not fit this store; ask for a bundle without --since "
                f"{base.name}.",
            )
    present = set()
    for s in manifest.snapshots:
        if snapshot.exists(store, s.name):
            local = snapshot.load(store, s.name)
            if local.digest != s.digest:
                raise ConflictError(
                    f"{what}: snapshot {s.name} exists in this store with other contents "
                    f"(digest {local.digest}, the bundle's is {s.digest})",
                    f"snapshots never change: remove this store's {s.name} "
                    "('mirrorkit snapshot rm') if it is the wrong one, then import again.",
                )
            present.add(s.name)
        elif refs.kind_of(store, s.name, "snapshot") == "channel":
            raise ConflictError(
                f"{what}: snapshot {s.name} has the name of a channel in this store",
                "publish and bundle export take either; a name cannot be both. Rename or remove "
                "the channel, then import again.",
            )
    for pin in manifest.channels:
        if refs.kind_of(store, pin.name, "channel") == "snapshot":
            raise ConflictError(
                f"{what}: channel {pin.name} has the name of a snapshot in this store",
                "rename or remove that snapshot, then import again.",
            )
    return frozenset(present)


def _complete(store: Store, manifest: Manifest, staging: _Staging, what: str) -> None:
    """Every new snapshot's record fits the manifest and every object it names is here (in
    the bundle or already in the store), so committing it cannot leave a broken snapshot."""
    sizes = {m.path: m.size for m in manifest.members}
    for s in manifest.snapshots:
        if s.name in staging.skip_snapshots:
            continue
        if not _record_fits(staging.snapshots[s.name].read_bytes(), s):
            raise BundleError(f"{what}: {s.path}: does not match the signed manifest", HOSTILE)
        for extra in s.extras:
            if extra.sha256 not in staging.meta and not store.meta.has(extra.sha256):
                raise BundleError(
                    f"{what}: snapshot {s.name} needs metadata object {extra.sha256}, which is "
                    "neither in the bundle nor in this store",
                    "the bundle is incomplete; export it again.",
                )
        for ref in s.indexes:
            staged = staging.meta.get(ref.sha256)
            text = staged.read_bytes() if staged is not None else store.meta.get(ref.sha256)
            label = f"{what}: {s.name}: {mirror.index_label(ref)}"
            for p in mirror.parse_index(text, ref, label):
                for f in p.pool_files:
                    _check_present(store, manifest, sizes, s.name, p.ref, f, what)
    for pin in manifest.channels:
        if staging.channels.get(pin.name) != pin.record():
            raise BundleError(f"{what}: {pin.path}: does not match the signed manifest", HOSTILE)


def _check_present(
    store: Store,
    manifest: Manifest,
    sizes: dict[str, int],
    name: str,
    ref: str,
    f: FileRef,
    what: str,
) -> None:
    """Pool object ``f`` of package ``ref`` is in the bundle or the store, with its size."""
    member = f"pool/{f.sha256}"
    if member in sizes:
        size = sizes[member]
    else:
        try:
            size = store.pool.path(f.sha256).stat().st_size
        except FileNotFoundError:
            raise BundleError(
                f"{what}: snapshot {name} needs {ref} (pool object "
                f"{f.sha256}), which is neither in the bundle nor in this store",
                f"import the bundle that carries {manifest.since.name} first."
                if manifest.since
                else "the bundle is incomplete; export it again.",
            ) from None
    if size != f.size:
        raise BundleError(
            f"{what}: snapshot {name}: {ref} is {f.size} bytes in its index, "
            f"but pool object {f.sha256} has {size}",
            HOSTILE,
        )


def _record_fits(raw: bytes, s: BundledSnapshot) -> bool:
    """A snapshot record is the one the manifest describes, and its own digest holds."""
    try:
        info = snapshot.parse_record(raw, s.path)
    except StoreFormatError:
        raise  # a record of a newer version: refused as such, not committed
    except MirrorkitError:
        return False
    return (
        info.name == s.name
        and info.digest == s.digest
        and info.indexes == s.indexes
        and info.extras == s.extras
    )


def _commit_objects(store: Store, staging: _Staging) -> None:
    # Durable before anything refers to them (one syncfs, not an fsync per file).
    syncfs(store.root)
    for sha, path in staging.pool.items():
        store.pool.commit(path, sha)  # replaces a short copy a crash may have left
    for sha, path in staging.meta.items():
        if not store.meta.has(sha) and store.meta.put(path.read_bytes()) != sha:
            raise IntegrityError(str(path), sha, "another digest", hint=DAMAGED)
    syncfs(store.root)


def _commit_snapshots(store: Store, staging: _Staging) -> list[str]:
    """Through the snapshot module's own writer, as every snapshot is made: the record as
    the bundle carried it (verified by _complete), after every object it names."""
    for name, path in staging.snapshots.items():
        snapshot.commit_record(store, path.read_bytes(), f"snapshots/{name}/snapshot.json")
    return list(staging.snapshots)


def import_locks(manifest: Manifest) -> list[str]:
    """What an import locks: the import log (``bundle-import``: one import at a time, which
    also owns the staging directories under ``tmp/``), the names of the snapshots it adds, and
    the channels it pins with the snapshots they point at."""
    locks = ["bundle-import"]
    for s in manifest.snapshots:
        locks += refs.name_locks(s.name)
    for pin in manifest.channels:
        locks += [f"channel/{pin.name}", f"snapshot/{pin.snapshot}"]
    return locks


def import_bundle(
    store: Store, path: Path, keyring: Path, reporter: Reporter | None = None
) -> ImportResult:
    """Import a bundle (a file, or the first part or index of a split one) into ``store``.

    The signature is verified before anything is written; every member is verified while it
    streams into a staging directory; objects, snapshots and channel pins are committed only
    after the whole bundle verified. Importing a bundle again changes nothing."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    with open_reading(path) as reading:
        with reading.naming_parts():
            manifest, signers = reading.head(keyring)
        assert signers is not None
        manifest_sha = hashlib.sha256(reading.manifest_bytes).hexdigest()
        _precheck(store, manifest, reading.what)  # refuse early, without creating a store
        with store.locked(*import_locks(manifest)):
            present = _precheck(store, manifest, reading.what)
            # Left by an import that was killed (SIGKILL, power loss): no import runs without
            # the lock, so none of these is in use.
            for stale in store.tmp.glob("bundle-import-*"):
                shutil.rmtree(stale, ignore_errors=True)
            root = temp_dir(store.tmp, "bundle-import-", store.root)
            staging: _Staging | None = None
            try:
                staging = _Staging(store, root, present)
                problems = Problems(collect=False)
                reporter.start("import", len(manifest.members), manifest.total_bytes)
                try:
                    with reading.naming_parts():
                        reading.members(manifest, staging, problems, reporter)
                        reading.finish(problems)
                finally:
                    reporter.finish()
                staging.batch.flush()
                staging.pipe.drain()
                _complete(store, manifest, staging, reading.what)
                _commit_objects(store, staging)
                added = _commit_snapshots(store, staging)
                moves = apply_pins(store, manifest, manifest_sha, signers)
                if added or any(m.applied for m in moves) or staging.pool or staging.meta:
                    log_import(store, manifest, manifest_sha, signers)
            finally:
                if staging is not None:
                    staging.pipe.close()
                shutil.rmtree(root, ignore_errors=True)
    return ImportResult(
        what=reading.what,
        manifest=manifest,
        signers=signers,
        added=tuple(added),
        present=tuple(sorted(present)),
        channels=tuple(moves),
        pool_added=len(staging.pool),
        pool_present=staging.pool_present,
        bytes=reading.raw.consumed,
        seconds=time.monotonic() - started,
    )
