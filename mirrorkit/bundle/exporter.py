"""``bundle export``: snapshots, their indices, channel pins and the pool objects they need,
written as one signed bundle (or split parts and an index).

The manifest is signed before the members are written, so the bytes going out must be the
bytes it vouches for: every object streamed from the store is hashed in the same pass that
writes it (on a thread of its own: ``workers.HashAhead``), and the bundle gets its name only
after every object matched. A damaged store must not produce a bundle whose signature vouches
for the damage. Memory does not grow with the bundle: members move in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import zstandard

from mirrorkit import archive, channel, gpg, keylist, mirror, snapshot
from mirrorkit._version import __version__
from mirrorkit.bundle.container import CHUNK, TarWriter
from mirrorkit.bundle.manifest import (
    MANIFEST,
    SIGNATURE,
    SUMS,
    SUMS_SIGNATURE,
    Base,
    BundledSnapshot,
    ChannelPin,
    Manifest,
    Member,
    render_sums,
)
from mirrorkit.bundle.parts import Part, PartsWriter, index_path, write_index
from mirrorkit.bundle.workers import HashAhead
from mirrorkit.errors import IntegrityError, StorageError, UsageError
from mirrorkit.models import IndexRef
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import Store

# Level 1: .deb files are compressed already. On 2.3 GB of real Debian .debs, level 1 gives a
# bundle 0.1% larger than level 3 (2,365.7 against 2,363.0 MB) in 22% less time; an index
# grows 4% (bookworm's Packages: 12.0 against 11.5 MB), and indexes are a small share.
# The tar headers between incompressible members cost level 3 (double-fast) much more than
# level 1: 303 MB in 2,000 members, 0.26 s against 0.20 s.
ZSTD_LEVEL = 1
# zstd's workers: the cores beyond the two that read + compress and hash (HashAhead), at most
# 4: each holds ~15-30 MB of buffers (measured: 2 -> +64 MB, 4 -> +97 MB, 16 -> +177 MB), and
# peak memory must stay well under 200 MB on big machines too. With none, zstd compresses on
# the calling thread: on 2 cores that is faster than workers competing with the hashing
# (303 MB of random bytes: 0.145 s against 0.21 s with 2 workers).
ZSTD_THREADS = min(max(archive.usable_cpus() - 2, 0), 4)


@dataclass(frozen=True, slots=True)
class _Planned:
    member: Member
    data: bytes | None = None  # small members, held in memory
    file: Path | None = None  # a pool object, streamed as it is
    meta: Path | None = None  # a zstd-compressed metadata object, streamed decompressed


@dataclass(frozen=True, slots=True)
class ExportResult:
    files: tuple[Part, ...]
    index: Path | None
    manifest: Manifest
    signer: str
    seconds: float

    @property
    def compressed_bytes(self) -> int:
        return sum(p.size for p in self.files)


def _snapshot_record(store: Store, info: snapshot.SnapshotInfo) -> bytes:
    """The snapshot's file, checked against its recorded digest (we are about to sign it)."""
    path = store.snapshot_record(info.name)
    try:
        raw = path.read_bytes()
        body = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise StorageError(f"{path}: cannot read the snapshot record ({exc})") from exc
    recorded = body.pop("digest", "")
    if snapshot.record_digest(body) != recorded or recorded != info.digest:
        raise IntegrityError(
            str(path),
            info.digest,
            snapshot.record_digest(body),
            kind="digest",
            hint="the snapshot was modified on disk; nothing was exported. "
            f"See 'mirrorkit snapshot show {info.name}'.",
        )
    return raw


def _pool_needs(
    store: Store, infos: Sequence[snapshot.SnapshotInfo], sizes: dict[str, int] | None = None
) -> dict[str, tuple[int, str]]:
    """Every pool object the snapshots' indices name: SHA256 -> (size, a package that names
    it). Notes each index's uncompressed size in ``sizes`` (reading it checks its SHA256)."""
    needs: dict[str, tuple[int, str]] = {}
    for info in infos:
        for ref in info.indexes:
            text = store.meta.get(ref.sha256)
            if sizes is not None:
                sizes[ref.sha256] = len(text)
            for name, sha, want in _files_of(store, info, ref, text):
                size, _ = needs.setdefault(sha, (want, name))
                if size != want:
                    raise IntegrityError(
                        f"snapshot {info.name}: {name}", str(size), str(want), kind="size"
                    )
    return needs


def _files_of(
    store: Store, info: snapshot.SnapshotInfo, ref: IndexRef, text: bytes
) -> Iterator[tuple[str, str, int]]:
    """(package, SHA256, size) of every pool file an index names: from its key list
    (keylist.py) where it has one, else parsed."""
    keys = keylist.keys(store, ref)
    if keys is not None:
        for k in keys:
            yield f"{k.name}_{k.version}_{k.architecture}", k.sha256, k.size
        return
    for p in mirror.parse_index(text, ref, f"{info.name}: {mirror.index_label(ref)}"):
        for f in p.pool_files:
            yield p.ref, f.sha256, f.size


def _plan(
    store: Store,
    infos: Sequence[snapshot.SnapshotInfo],
    base: snapshot.SnapshotInfo | None,
    pins: Sequence[ChannelPin],
) -> list[_Planned]:
    planned: list[_Planned] = []
    for info in infos:
        raw = _snapshot_record(store, info)
        member = Member(f"snapshots/{info.name}/snapshot.json", len(raw), _sha(raw))
        planned.append(_Planned(member, data=raw))
    sizes: dict[str, int] = {}
    needs = _pool_needs(store, infos, sizes)
    for extra in (e for info in infos for e in info.extras):
        if extra.sha256 not in sizes:
            sizes[extra.sha256] = len(store.meta.get(extra.sha256))  # checks its SHA256
    for sha, size in sizes.items():
        planned.append(_Planned(Member(f"meta/{sha}", size, sha), meta=store.meta.path(sha)))
    for pin in pins:
        record = pin.record()
        planned.append(_Planned(Member(pin.path, len(record), _sha(record)), data=record))
    have = set(_pool_needs(store, [base])) if base is not None else set()
    for sha in sorted(needs.keys() - have):
        (expected, pkg), path = needs[sha], store.pool.path(sha)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError as exc:
            raise IntegrityError(
                f"pool object {sha} ({pkg})",
                "present",
                "missing",
                kind="presence",
                hint="the store is damaged; 'mirrorkit snapshot show SNAPSHOT' lists what is "
                "missing. Nothing was exported.",
            ) from exc
        if size != expected:
            raise IntegrityError(
                f"pool object {sha} ({pkg})",
                str(expected),
                str(size),
                kind="size",
                hint="the store is damaged; nothing was exported.",
            )
        planned.append(_Planned(Member(f"pool/{sha}", size, sha), file=path))
    return planned


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pins(
    store: Store,
    names: Sequence[str],
    infos: Sequence[snapshot.SnapshotInfo],
    base: snapshot.SnapshotInfo | None,
) -> list[ChannelPin]:
    carried = {i.name: i.digest for i in infos}
    if base is not None:
        carried[base.name] = base.digest
    pins = []
    for name in dict.fromkeys(names):
        ch, _ = channel.resolve(store, name)
        if ch.snapshot not in carried:
            raise UsageError(
                f"channel {name} points at snapshot {ch.snapshot}, which this bundle does not "
                "carry",
                f"add {ch.snapshot} to the snapshots to export.",
            )
        pins.append(ChannelPin(name, ch.snapshot, carried[ch.snapshot]))
    return pins


def export(
    store: Store,
    names: Sequence[str],
    output: Path,
    *,
    key: str | None,
    gnupghome: str | None = None,
    channels: Sequence[str] = (),
    since: str | None = None,
    split: int | None = None,
    reporter: Reporter | None = None,
) -> ExportResult:
    """Write snapshots ``names`` (and the pool objects they need; with ``since``, only those
    snapshot ``since`` lacks) as a signed bundle to ``output`` (or ``output.001``... and
    ``output.index.json`` with ``split``). Memory does not grow with the bundle: members are
    streamed in chunks, and pool objects are hashed as they go out (a damaged store must not
    produce a bundle whose signature vouches for the damage)."""
    reporter = reporter or NullReporter()
    if not names:
        raise UsageError("bundle export needs at least one snapshot")
    if split is not None and split < 1:
        raise UsageError("--split must be at least one byte")
    started = time.monotonic()
    names = list(dict.fromkeys(names))
    if since in names:
        raise UsageError(f"--since {since}: the base cannot be one of the exported snapshots")
    for name in [*names, *([since] if since else [])]:
        snapshot.load(store, name)  # fail fast, before the store is locked
    fingerprint = gpg.resolve_signing_key(key, gnupghome)
    # What it reads: no snapshot it exports is removed, no channel it pins moved, meanwhile.
    read = [*names, *([since] if since else [])]
    with store.locked(*(f"snapshot/{n}" for n in read), *(f"channel/{c}" for c in channels)):
        infos = [snapshot.load(store, n) for n in names]
        base = snapshot.load(store, since) if since else None
        pins = _pins(store, channels, infos, base)
        planned = _plan(store, infos, base, pins)
        created = datetime.now(UTC)  # microseconds: pins compare bundles by it
        sums = render_sums([p.member for p in planned])
        sums_sig = gpg.sign_detached(sums, fingerprint, gnupghome, what=SUMS)
        head = [
            _Planned(Member(SUMS, len(sums), _sha(sums)), data=sums),
            _Planned(Member(SUMS_SIGNATURE, len(sums_sig), _sha(sums_sig)), data=sums_sig),
        ]
        planned = head + planned
        manifest = Manifest(
            created_at=created.isoformat(),
            mirrorkit_version=__version__,
            snapshots=tuple(_bundled(i) for i in infos),
            channels=tuple(pins),
            since=None if base is None else Base(base.name, base.digest),
            members=tuple(p.member for p in planned),
        )
        body = manifest.render()
        signature = gpg.sign_detached(body, fingerprint, gnupghome, what=MANIFEST)
        mtime = int(created.timestamp())
        parts = _write(output, split, body, signature, planned, mtime, reporter)
    index = None
    if split is not None:
        index = index_path(output)
        write_index(index, output.name, split, parts)
    return ExportResult(tuple(parts), index, manifest, fingerprint, time.monotonic() - started)


def _bundled(info: snapshot.SnapshotInfo) -> BundledSnapshot:
    return BundledSnapshot(
        info.name,
        info.digest,
        info.created_at,
        info.mirrorkit_version,
        info.sources,
        info.indexes,
        info.extras,
    )


def _write(
    output: Path,
    split: int | None,
    manifest: bytes,
    signature: bytes,
    planned: Sequence[_Planned],
    mtime: int,
    reporter: Reporter,
) -> list[Part]:
    """Stream the bundle into ``output``; returns its file(s)."""
    sink = PartsWriter(output, split)
    total = len(manifest) + len(signature) + sum(p.member.size for p in planned)
    reporter.start("export", len(planned) + 2, total)
    try:
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS, write_checksum=True)
        z = cctx.stream_writer(cast(IO[bytes], sink), write_size=CHUNK, closefd=False)
        tar = TarWriter(z, mtime)
        for name, data in ((MANIFEST, manifest), (SIGNATURE, signature)):
            tar.add(name, data)
            reporter.advance(1, len(data))
        # End the block: the signed head decompresses from the first bytes alone ('show' reads
        # nothing else, and needs only the first part of a split bundle).
        z.flush(zstandard.FLUSH_BLOCK)
        # This thread reads and compresses, another one hashes (see ZSTD_THREADS).
        hashing = HashAhead(CHUNK)
        try:
            for p in planned:
                _write_member(tar, p, hashing, reporter)
                reporter.advance(1, 0)
            hashing.finish()  # every object checked before the bundle gets its name
        finally:
            hashing.close()
        tar.close()
        z.flush(zstandard.FLUSH_FRAME)
        return sink.commit()
    except zstandard.ZstdError as exc:
        sink.abort()
        raise StorageError(f"{output}: compression failed ({exc})") from exc
    except BaseException:
        sink.abort()
        raise
    finally:
        reporter.finish()


def _write_member(tar: TarWriter, p: _Planned, hashing: HashAhead, reporter: Reporter) -> None:
    m = p.member
    if p.data is not None:
        tar.add(m.path, p.data)
        reporter.advance(0, len(p.data))
        return
    if p.file is not None and m.size <= _SMALL:
        _write_small(tar, p.file, m)
        reporter.advance(0, m.size)
        return
    tar.begin(m.path, m.size)
    hasher = hashlib.sha256()
    left = m.size
    source = p.file or p.meta
    assert source is not None
    try:
        with source.open("rb", buffering=0) as raw:
            fh: Any = raw
            if p.meta is not None:
                fh = zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK)
            while left:
                buffer = hashing.take()
                view = memoryview(buffer)[: min(left, len(buffer))]
                n = fh.readinto(view)
                if not n:
                    hashing.give_back(buffer)
                    break
                hashing.update(hasher, buffer, n)
                tar.write(view[:n])  # zstd copies what it keeps
                left -= n
                reporter.advance(0, n)
            extra = fh.read(1)
    except FileNotFoundError as exc:
        raise IntegrityError(str(source), "present", "missing", kind="presence") from exc
    except (OSError, zstandard.ZstdError) as exc:
        raise StorageError(f"{source}: cannot read ({exc})") from exc
    if left or extra:
        raise IntegrityError(
            str(source),
            str(m.size),
            f"{m.size - left}{'+' if extra else ''}",
            kind="size",
            hint="the store changed or is damaged; nothing was exported.",
        )

    def verify(got: str) -> None:
        if got != m.sha256:
            raise IntegrityError(
                str(source),
                m.sha256,
                got,
                hint="the store is damaged (the object does not match its name); "
                "nothing was exported.",
            )

    hashing.check(hasher, verify)


_SMALL = 256 << 10  # pool objects up to this size go out whole (most of Debian's .debs)


def _write_small(tar: TarWriter, path: Path, m: Member) -> None:
    """A small pool object: read whole, hashed here and written with its header in one go.
    Handing it to the hashing thread would cost more in thread switches than the hash."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, m.size + 1)
        finally:
            os.close(fd)
    except FileNotFoundError as exc:
        raise IntegrityError(str(path), "present", "missing", kind="presence") from exc
    except OSError as exc:
        raise StorageError(f"{path}: cannot read ({exc})") from exc
    if len(data) != m.size:
        raise IntegrityError(
            str(path),
            str(m.size),
            str(len(data)) if len(data) <= m.size else f"{m.size}+",
            kind="size",
            hint="the store changed or is damaged; nothing was exported.",
        )
    got = hashlib.sha256(data).hexdigest()
    if got != m.sha256:
        raise IntegrityError(
            str(path),
            m.sha256,
            got,
            hint="the store is damaged (the object does not match its name); nothing was exported.",
        )
    tar.add_whole(m.path, data)  # the bytes just checked are the bytes that go out
