"""Air-gap bundles: carry snapshots across the gap and be sure every byte is what was sent.

A bundle is one zstd-compressed tar stream (``bundleio``) whose first member is a manifest
listing every other member's path, size and SHA256, the second an OpenPGP signature of the
manifest's exact bytes. Then come ``SHA256SUMS`` and its signature (so that ``sha256sum -c``
can check the members without a JSON tool), the snapshot records, their Packages indices
(uncompressed), channel pins, and the pool objects the snapshots need, named by SHA256.
docs/bundle-format.md describes it for a third party.

Import trusts nothing before the signature: it reads the manifest and its signature, verifies
them against the given keyring, and only then takes the store lock and reads on, checking each
member against the manifest while streaming it into a staging directory under ``tmp/``. Pool
objects, metadata, snapshots and channel pins are committed only after every member verified
and every snapshot was found complete, so a bad bundle leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

import zstandard

from mirrorkit import __version__, archive, channel, gpg, snapshot
from mirrorkit.bundleio import (
    CHUNK,
    CheckedReader,
    FrameCheck,
    HashAhead,
    JoinedReader,
    Part,
    PartsWriter,
    Pipe,
    TarMember,
    TarReader,
    TarWriter,
    parse_size,
    show_name,
)
from mirrorkit.errors import (
    BundleError,
    ConflictError,
    IntegrityError,
    MirrorkitError,
    NotFoundError,
    SignatureError,
    StorageError,
    UsageError,
)
from mirrorkit.models import IndexRef
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import (
    Store,
    canonical_json,
    check_name,
    fsync_dir,
    read_json,
    storage_error,
    syncfs,
    write_json,
)

FORMAT = "mirrorkit-bundle"
INDEX_FORMAT = "mirrorkit-bundle-index"
VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
SUMS = "SHA256SUMS"
SUMS_SIGNATURE = "SHA256SUMS.asc"
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
__all__ = ["export", "import_bundle", "parse_size", "show", "verify"]

_MAX_MANIFEST = 256 << 20  # ~1.5 million members; only a guard against a hostile header
_MAX_SIGNATURE = 64 << 10
_MAX_CHANNEL = 64 << 10
_MAX_INDEX = 1 << 20
_MAX_WINDOW = 1 << 25  # we write 2 MiB windows; a hostile frame must not make us allocate more
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OBJECT = re.compile(r"^(pool|meta)/([0-9a-f]{64})$")
_SNAPSHOT = re.compile(r"^snapshots/([^/]+)/snapshot\.json$")
_CHANNEL = re.compile(r"^channels/([^/]+)\.json$")

DAMAGED = (
    "the bundle was damaged or altered on the way; nothing was imported. Copy it again from "
    "the source, where 'mirrorkit bundle verify' can check it before it travels."
)
HOSTILE = (
    "this is not what 'mirrorkit bundle export' writes: the bundle was altered after it was "
    "signed; nothing was imported."
)
MALFORMED = (
    "the manifest does not describe a bundle 'mirrorkit bundle export' makes; nothing was "
    "imported. Ask the sender how the bundle was made."
)


# --- the manifest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class BundledSnapshot:
    """A snapshot a bundle carries, with its full provenance."""

    name: str
    digest: str
    created_at: str
    mirrorkit_version: str
    sources: tuple[dict[str, Any], ...]
    indexes: tuple[IndexRef, ...]

    @property
    def path(self) -> str:
        return f"snapshots/{self.name}/snapshot.json"

    @property
    def packages(self) -> int:
        return sum(i.packages for i in self.indexes)


@dataclass(frozen=True, slots=True)
class ChannelPin:
    """``channel`` should point at ``snapshot`` (whose digest is ``digest``)."""

    name: str
    snapshot: str
    digest: str

    @property
    def path(self) -> str:
        return f"channels/{self.name}.json"

    def record(self) -> bytes:
        body = {"channel": self.name, "snapshot": self.snapshot, "digest": self.digest}
        return canonical_json(body) + b"\n"


@dataclass(frozen=True, slots=True)
class Base:
    """The snapshot an incremental bundle was made against: the importer must have it."""

    name: str
    digest: str


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    mirrorkit_version: str
    snapshots: tuple[BundledSnapshot, ...]
    channels: tuple[ChannelPin, ...]
    since: Base | None
    members: tuple[Member, ...]  # in stream order, after manifest.json and its signature

    @property
    def pool(self) -> list[Member]:
        return [m for m in self.members if m.path.startswith("pool/")]

    @property
    def meta(self) -> list[Member]:
        return [m for m in self.members if m.path.startswith("meta/")]

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "mirrorkit_version": self.mirrorkit_version,
            "created_at": self.created_at,
            "snapshots": [
                {
                    "name": s.name,
                    "digest": s.digest,
                    "created_at": s.created_at,
                    "mirrorkit_version": s.mirrorkit_version,
                    "sources": list(s.sources),
                    "indexes": [
                        {
                            "component": i.component,
                            "architecture": i.architecture,
                            "sha256": i.sha256,
                            "packages": i.packages,
                        }
                        for i in s.indexes
                    ],
                    "packages": s.packages,
                    "path": s.path,
                }
                for s in self.snapshots
            ],
            "channels": [
                {"name": c.name, "snapshot": c.snapshot, "digest": c.digest, "path": c.path}
                for c in self.channels
            ],
            "since": None
            if self.since is None
            else {"name": self.since.name, "digest": self.since.digest},
            "members": [{"path": m.path, "size": m.size, "sha256": m.sha256} for m in self.members],
        }

    def render(self) -> bytes:
        return canonical_json(self.to_json()) + b"\n"


def render_sums(members: Sequence[Member]) -> bytes:
    """``SHA256SUMS`` in the format ``sha256sum -c`` reads: every data member (everything but
    the manifest, SHA256SUMS and their signatures)."""
    lines = (f"{m.sha256}  {m.path}\n" for m in members if m.path not in (SUMS, SUMS_SIGNATURE))
    return "".join(lines).encode()


class _Json:
    """Typed access to the untrusted-shaped JSON of a manifest or index (even signed, it is
    checked: a signer's bug must not become a path on our disk)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, detail: str) -> BundleError:
        return BundleError(f"{self.what}: {detail}", MALFORMED)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{where}: expected an object")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"{where}: expected a list")
        return value

    def text(self, d: dict[str, Any], key: str, where: str) -> str:
        value = d.get(key)
        if not isinstance(value, str):
            raise self.fail(f"{where}: {key}: expected a string")
        return value

    def number(self, d: dict[str, Any], key: str, where: str) -> int:
        value = d.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(f"{where}: {key}: expected a non-negative integer")
        return value

    def sha(self, d: dict[str, Any], key: str, where: str) -> str:
        value = self.text(d, key, where)
        if not _HEX64.match(value):
            raise self.fail(f"{where}: {key}: not a SHA256 hex digest")
        return value

    def name(self, d: dict[str, Any], key: str, where: str, kind: str) -> str:
        value = self.text(d, key, where)
        try:
            return check_name(value, kind)
        except UsageError as exc:
            raise self.fail(f"{where}: {exc.message}") from exc


def parse_manifest(data: bytes, what: str) -> Manifest:
    """Parse and check a manifest: every path one a bundle may hold, every reference resolved."""
    j = _Json(f"{what}: {MANIFEST}")
    try:
        top = j.obj(json.loads(data), "manifest")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise j.fail(f"not valid JSON ({exc})") from exc
    if top.get("format") != FORMAT:
        raise j.fail(f"not a {FORMAT} manifest (format {top.get('format')!r})")
    version = top.get("version")
    if version != VERSION:
        raise BundleError(
            f"{what}: bundle format version {version!r}; this mirrorkit reads version {VERSION}",
            "import it with the mirrorkit version that made it (see 'mirrorkit bundle show').",
        )
    snapshots: list[BundledSnapshot] = []
    for n, raw in enumerate(j.items(top.get("snapshots"), "snapshots")):
        where = f"snapshots[{n}]"
        s = j.obj(raw, where)
        indexes = []
        for k, iraw in enumerate(j.items(s.get("indexes"), f"{where}.indexes")):
            i = j.obj(iraw, f"{where}.indexes[{k}]")
            iw = f"{where}.indexes[{k}]"
            indexes.append(
                IndexRef(
                    j.name(i, "component", iw, "component"),
                    j.name(i, "architecture", iw, "architecture"),
                    j.sha(i, "sha256", iw),
                    j.number(i, "packages", iw),
                )
            )
        sources = tuple(j.obj(x, f"{where}.sources") for x in j.items(s.get("sources"), where))
        info = BundledSnapshot(
            name=j.name(s, "name", where, "snapshot"),
            digest=j.sha(s, "digest", where),
            created_at=j.text(s, "created_at", where),
            mirrorkit_version=j.text(s, "mirrorkit_version", where),
            sources=sources,
            indexes=tuple(indexes),
        )
        if s.get("path") != info.path:
            raise j.fail(f"{where}: path must be {info.path!r}")
        snapshots.append(info)
    if not snapshots:
        raise j.fail("no snapshots")
    since = None
    if top.get("since") is not None:
        b = j.obj(top["since"], "since")
        since = Base(j.name(b, "name", "since", "snapshot"), j.sha(b, "digest", "since"))
    digests = {s.name: s.digest for s in snapshots}
    if since is not None:
        if since.name in digests:
            raise j.fail(f"since: {since.name} is also one of the bundled snapshots")
        digests[since.name] = since.digest
    pins: list[ChannelPin] = []
    for n, raw in enumerate(j.items(top.get("channels"), "channels")):
        where = f"channels[{n}]"
        c = j.obj(raw, where)
        pin = ChannelPin(
            j.name(c, "name", where, "channel"),
            j.name(c, "snapshot", where, "snapshot"),
            j.sha(c, "digest", where),
        )
        if digests.get(pin.snapshot) != pin.digest:
            raise j.fail(f"{where}: {pin.snapshot} is neither bundled nor the base")
        if c.get("path") != pin.path:
            raise j.fail(f"{where}: path must be {pin.path!r}")
        pins.append(pin)
    members: list[Member] = []
    for n, raw in enumerate(j.items(top.get("members"), "members")):
        where = f"members[{n}]"
        m = j.obj(raw, where)
        member = Member(
            j.text(m, "path", where), j.number(m, "size", where), j.sha(m, "sha256", where)
        )
        obj = _OBJECT.match(member.path)
        if obj and obj.group(2) != member.sha256:
            raise j.fail(f"{where}: {member.path} is not named by its SHA256")
        members.append(member)
    created_at = j.text(top, "created_at", "manifest")
    if _when(created_at) is None:
        raise j.fail(f"created_at: not an ISO 8601 time with a UTC offset: {created_at!r}")
    manifest = Manifest(
        created_at=created_at,
        mirrorkit_version=j.text(top, "mirrorkit_version", "manifest"),
        snapshots=tuple(snapshots),
        channels=tuple(pins),
        since=since,
        members=tuple(members),
    )
    _check_member_set(manifest, j)
    return manifest


def _when(text: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (bundles are compared by when they were made)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _check_member_set(manifest: Manifest, j: _Json) -> None:
    """The members are exactly what the snapshots, pins and sums call for (plus pool objects)."""
    expected = {SUMS, SUMS_SIGNATURE}
    expected.update(s.path for s in manifest.snapshots)
    expected.update(c.path for c in manifest.channels)
    expected.update(f"meta/{i.sha256}" for s in manifest.snapshots for i in s.indexes)
    seen: set[str] = set()
    for m in manifest.members:
        if m.path in seen:
            raise j.fail(f"member {m.path} is listed twice")
        seen.add(m.path)
        if m.path not in expected and not m.path.startswith("pool/"):
            raise j.fail(f"member {show_name(m.path)} is not something a bundle holds")
        if m.path.startswith("pool/") and not _OBJECT.match(m.path):
            raise j.fail(f"member {show_name(m.path)} is not a pool object name")
    if missing := sorted(expected - seen):
        raise j.fail(f"members lack {', '.join(missing[:3])}")
    if len({s.name for s in manifest.snapshots}) != len(manifest.snapshots):
        raise j.fail("a snapshot is listed twice")
    if len({c.name for c in manifest.channels}) != len(manifest.channels):
        raise j.fail("a channel is listed twice")
    sums = next(m for m in manifest.members if m.path == SUMS)
    if hashlib.sha256(render_sums(manifest.members)).hexdigest() != sums.sha256:
        raise j.fail(f"{SUMS} does not match the member list")


# --- finding the files of a bundle ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleFiles:
    """The file(s) a bundle is in: one file, or parts named by an index."""

    what: str  # how messages name the bundle
    parts: tuple[Part, ...]
    index: Path | None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


_PART = re.compile(r"^(.+)\.(\d{3,})$")


def index_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.index.json")


def locate(path: Path, *, complete: bool = True) -> BundleFiles:
    """A bundle file, the first (or any) part of a split bundle, or its index. Parts are
    looked for next to the index; every part must be there, with the size the index gives,
    before anything is read (unless not ``complete``: ``show`` needs only the first part)."""
    index: Path | None = None
    if path.name.endswith(".index.json"):
        index = path
    elif m := _PART.match(path.name):
        index = path.with_name(f"{m.group(1)}.index.json")
        if not index.exists() and not complete:
            index = None  # the manifest is at the start of the first part
        elif not index.exists():
            raise BundleError(
                f"{index}: the index of split bundle {m.group(1)} is missing",
                f"copy {index.name} next to the parts; or join the parts yourself "
                f"(cat {m.group(1)}.[0-9][0-9][0-9] > {m.group(1)}) and use the joined file.",
            )
    elif not path.exists() and index_path(path).exists():
        index = index_path(path)
    if index is None:
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"{path}: no such bundle file") from exc
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        return BundleFiles(str(path), (Part(path, size, None),), None)
    return _read_index(index, complete)


def _read_index(index: Path, complete: bool = True) -> BundleFiles:
    j = _Json(str(index))
    try:
        raw = index.read_bytes()[: _MAX_INDEX + 1]
    except FileNotFoundError as exc:
        raise NotFoundError(f"{index}: no such bundle index") from exc
    except OSError as exc:
        raise StorageError(f"{index}: cannot read ({exc.strerror})") from exc
    if len(raw) > _MAX_INDEX:
        raise j.fail("too large for a bundle index")
    try:
        top = j.obj(json.loads(raw), "index")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise j.fail(f"not valid JSON ({exc})") from exc
    if top.get("format") != INDEX_FORMAT or top.get("version") != VERSION:
        raise j.fail(f"not a {INDEX_FORMAT} version {VERSION} file")
    bundle = j.text(top, "bundle", "index")
    if "/" in bundle or bundle in ("", ".", "..") or index.name != f"{bundle}.index.json":
        raise j.fail(f"bundle name {bundle!r} does not fit the index's file name")
    parts: list[Part] = []
    missing: list[str] = []
    for n, raw_part in enumerate(j.items(top.get("parts"), "parts"), 1):
        p = j.obj(raw_part, f"parts[{n - 1}]")
        name = j.text(p, "name", f"parts[{n - 1}]")
        if name != f"{bundle}.{n:03d}":
            raise j.fail(f"part {n} must be named {bundle}.{n:03d}, not {name!r}")
        part = Part(index.parent / name, j.number(p, "size", name), j.sha(p, "sha256", name))
        parts.append(part)
        if not complete:
            continue
        try:
            size = part.path.stat().st_size
        except FileNotFoundError:
            missing.append(name)
            continue
        if size != part.size:
            raise BundleError(
                f"{part.path}: part is damaged: {size} bytes, the index says {part.size}",
                "it was truncated or changed in transit; copy this part again.",
            )
    if not parts:
        raise j.fail("names no parts")
    if missing:
        raise BundleError(
            f"{index.parent}: part{'s' if len(missing) > 1 else ''} {', '.join(missing)} of "
            f"bundle {bundle} {'are' if len(missing) > 1 else 'is'} missing "
            f"({len(parts)} parts in all)",
            f"copy every part next to {index.name} and run the command again.",
        )
    if top.get("size") != sum(p.size for p in parts):
        raise j.fail("the parts' sizes do not add up to the bundle's size")
    return BundleFiles(str(index.parent / bundle), tuple(parts), index)


# --- reading a bundle -----------------------------------------------------------------------


class _Target(Protocol):
    def write(self, data: memoryview) -> None: ...
    def keep(self) -> None: ...
    def discard(self) -> None: ...


class _Sink(Protocol):
    def open(self, member: Member) -> _Target: ...


class _Discard:
    def write(self, data: memoryview) -> None:
        pass

    def keep(self) -> None:
        pass

    def discard(self) -> None:
        pass


class _Problems:
    """Verify collects every problem; import stops at the first."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.items: list[MirrorkitError] = []

    def add(self, exc: MirrorkitError) -> None:
        if not self.collect:
            raise exc
        self.items.append(exc)


class _DecompressedStream:
    """zstd's reader with its errors turned into ours."""

    def __init__(self, raw: CheckedReader) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        self._reader = dctx.stream_reader(
            cast(IO[bytes], raw), read_size=CHUNK, read_across_frames=False, closefd=False
        )

    def readinto(self, buffer: memoryview) -> int:
        try:
            return int(self._reader.readinto(buffer))
        except zstandard.ZstdError as exc:
            raise BundleError(f"corrupt compressed data ({exc})") from exc


class _Reading:
    """One pass over a bundle: parts -> zstd frame check -> decompression -> strict tar."""

    def __init__(self, files: BundleFiles, *, collect: bool = False) -> None:
        self.files = files
        self.what = files.what
        self.joined = JoinedReader(files.parts, collect=collect)
        self.frames = FrameCheck()
        self.raw = CheckedReader(self.joined, self.frames)
        self.tar = TarReader(_DecompressedStream(self.raw))
        self.manifest_bytes = b""

    def close(self) -> None:
        self.joined.close()

    def _wrap(self, exc: BundleError) -> BundleError:
        if exc.message.startswith(self.what):
            return exc  # names a part of the bundle already
        err = BundleError(f"{self.what}: {exc.message}", exc.hint or DAMAGED)
        err.__cause__ = exc
        return err

    @contextmanager
    def naming_parts(self) -> Iterator[None]:
        """A problem found in the middle of a damaged part becomes the error naming the part
        (the part is read to its end and checked first): that is what the user can act on."""
        try:
            yield
        except (BundleError, IntegrityError, SignatureError) as exc:
            damaged = self.joined.blame()
            if damaged is None:
                raise
            raise BundleError(f"{damaged.message} ({exc.message})", damaged.hint) from exc

    def next(self) -> TarMember | None:
        try:
            return self.tar.next()
        except BundleError as exc:
            raise self._wrap(exc) from exc

    def chunks(self, member: TarMember) -> Iterator[memoryview]:
        try:
            yield from self.tar.chunks(member)
        except BundleError as exc:
            raise self._wrap(exc) from exc

    def _read_small(self, member: TarMember, limit: int) -> bytes:
        if member.size > limit:
            raise BundleError(
                f"{self.what}: {show_name(member.name)}: {member.size} bytes, too large for it",
                HOSTILE,
            )
        return b"".join(bytes(c) for c in self.chunks(member))

    def _expect(self, name: str, limit: int) -> bytes:
        member = self.next()
        found = "nothing" if member is None else show_name(member.name)
        if member is None or member.name != name or not member.regular:
            kind = f" ({member.kind})" if member is not None and member.kind else ""
            raise BundleError(
                f"{self.what}: not a mirrorkit bundle: {name} expected, found {found}{kind}",
                "give the file 'mirrorkit bundle export' wrote (or the first part or index of "
                "a split bundle).",
            )
        return self._read_small(member, limit)

    def head(self, keyring: Path | None) -> tuple[Manifest, tuple[str, ...] | None]:
        """Read the manifest and its signature; with a keyring, verify the signature first and
        parse only the bytes gpg verified."""
        manifest = self._expect(MANIFEST, _MAX_MANIFEST)
        signature = self._expect(SIGNATURE, _MAX_SIGNATURE)
        self.manifest_bytes = manifest
        signers: tuple[str, ...] | None = None
        if keyring is not None:
            verified = _verify_signature(manifest, signature, keyring, f"{self.what}: {MANIFEST}")
            manifest, signers = verified.payload, verified.signers
        return parse_manifest(manifest, self.what), signers

    def members(
        self, manifest: Manifest, sink: _Sink, problems: _Problems, reporter: Reporter
    ) -> int:
        """Stream every member after the signature through ``sink``, checking each against
        the manifest. Returns how many members verified."""
        expected = {m.path: m for m in manifest.members}
        seen = {MANIFEST, SIGNATURE}
        good = 0
        while (member := self.next()) is not None:
            try:
                entry = self._check(member, expected, seen)
            except BundleError as exc:
                problems.add(exc)
                if member.name in expected:
                    seen.add(member.name)  # refused, not missing: one problem, not two
                continue  # next() skips its data
            seen.add(entry.path)
            target = sink.open(entry)
            hasher = hashlib.sha256()
            try:
                for chunk in self.chunks(member):
                    hasher.update(chunk)
                    target.write(chunk)
                    reporter.advance(0, len(chunk))
            except BaseException:
                with suppress(MirrorkitError):  # the writer's own error is on its way up
                    target.discard()
                raise
            got = hasher.hexdigest()
            if got != entry.sha256:
                target.discard()
                problems.add(
                    IntegrityError(f"{self.what}: {entry.path}", entry.sha256, got, hint=DAMAGED)
                )
            else:
                target.keep()
                good += 1
            reporter.advance(1, 0)
        missing = [m.path for m in manifest.members if m.path not in seen]
        if missing:
            listed = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            problems.add(
                BundleError(
                    f"{self.what}: {len(missing)} member(s) of the signed manifest are missing "
                    f"from the bundle: {listed}",
                    DAMAGED,
                )
            )
        return good

    def _check(self, member: TarMember, expected: dict[str, Member], seen: set[str]) -> Member:
        name = member.name
        shown = f"{self.what}: {show_name(name)}"
        if name.startswith("/"):
            raise BundleError(f"{shown}: refused: absolute path", HOSTILE)
        if ".." in name.split("/"):
            raise BundleError(f"{shown}: refused: the path contains '..'", HOSTILE)
        if not member.regular:
            raise BundleError(f"{shown}: refused: {member.kind}, not a regular file", HOSTILE)
        if name in seen:
            raise BundleError(f"{shown}: refused: the name appears twice in the bundle", HOSTILE)
        entry = expected.get(name)
        if entry is None:
            raise BundleError(f"{shown}: refused: not listed in the signed manifest", HOSTILE)
        if member.size != entry.size:
            raise BundleError(
                f"{shown}: size mismatch ({member.size} bytes in the bundle, {entry.size} in "
                "the signed manifest)",
                DAMAGED,
            )
        return entry

    def finish(self, problems: _Problems) -> None:
        """After the end-of-archive marker: zero padding only, then the end of the zstd frame
        and of the file(s), every part checked."""
        try:
            if not self.tar.rest_is_zeros():
                raise BundleError("data after the end of the tar archive", HOSTILE)
            while self.raw.read(CHUNK):  # what the decompressor did not need
                pass
            if not self.frames.done:
                raise BundleError("the compressed stream is incomplete: the bundle is truncated")
            if self.frames.trailing:
                raise BundleError(
                    f"{self.frames.trailing} bytes follow the end of the compressed stream",
                    HOSTILE,
                )
        except BundleError as exc:
            problems.add(self._wrap(exc))
        problems.items.extend(self.joined.problems)


def _verify_signature(data: bytes, signature: bytes, keyring: Path, what: str) -> gpg.Verified:
    if not keyring.is_file():
        raise UsageError(f"{keyring}: no such keyring file", "give the signer's public key.")
    try:
        return gpg.verify_detached(data, signature, keyring, what=what)
    except SignatureError as exc:
        raise SignatureError(
            exc.message,
            "the bundle was altered after it was signed, or --keyring does not hold the key "
            "that signed it; nothing was imported.",
        ) from exc


@contextmanager
def _reading(path: Path, *, collect: bool = False, complete: bool = True) -> Iterator[_Reading]:
    reading = _Reading(locate(path, complete=complete), collect=collect)
    try:
        yield reading
    finally:
        reading.close()


# --- show and verify ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleInfo:
    files: BundleFiles
    manifest: Manifest
    manifest_sha256: str
    signers: tuple[str, ...] | None  # None: the signature was not checked

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "bundle": self.files.what,
            "files": [{"path": str(p.path), "size": p.size} for p in self.files.parts],
            "index": None if self.files.index is None else str(self.files.index),
            "manifest_sha256": self.manifest_sha256,
            "signature": "not checked" if self.signers is None else "good",
            "signers": list(self.signers or ()),
            "manifest": m.to_json(),
            "counts": {
                "members": len(m.members) + 2,
                "pool_objects": len(m.pool),
                "pool_bytes": sum(p.size for p in m.pool),
                "metadata_objects": len(m.meta),
                "bytes": m.total_bytes,
                "compressed_bytes": self.files.size,
            },
        }


def show(path: Path, keyring: Path | None = None) -> BundleInfo:
    """What a bundle holds, from its manifest alone (the first member): nothing else is read.
    With ``keyring`` the manifest's signature is checked too."""
    with _reading(path, complete=False) as r:
        manifest, signers = r.head(keyring)
        return BundleInfo(r.files, manifest, hashlib.sha256(r.manifest_bytes).hexdigest(), signers)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    what: str
    manifest: Manifest | None
    signers: tuple[str, ...]
    problems: tuple[MirrorkitError, ...]
    members: int  # members that verified
    bytes: int  # compressed bytes read

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.what,
            "ok": self.ok,
            "signers": list(self.signers),
            "members_verified": self.members,
            "compressed_bytes": self.bytes,
            "problems": [p.message for p in self.problems],
        }


def verify(path: Path, keyring: Path, reporter: Reporter | None = None) -> VerifyReport:
    """Check the signature, then every member's size and SHA256 and that the members are
    exactly the manifest's; report every problem (the store is not involved)."""
    reporter = reporter or NullReporter()
    try:
        files = locate(path)
    except BundleError as exc:
        return VerifyReport(str(path), None, (), (exc,), 0, 0)
    reading = _Reading(files, collect=True)
    problems = _Problems(collect=True)
    manifest: Manifest | None = None
    signers: tuple[str, ...] = ()
    good = 0
    try:
        manifest, checked = reading.head(keyring)
        signers = checked or ()
        reporter.start("verify", len(manifest.members), manifest.total_bytes)
        try:
            good = reading.members(manifest, _DiscardSink(), problems, reporter)
            reading.finish(problems)
        finally:
            reporter.finish()
    except (BundleError, SignatureError) as exc:
        problems.items.append(exc)
        reading.joined.blame()  # a damaged part under it is recorded among the problems
        problems.items.extend(reading.joined.problems)
    finally:
        reading.close()
    unique = tuple(dict.fromkeys(problems.items))
    return VerifyReport(files.what, manifest, signers, unique, good, reading.raw.consumed)


class _DiscardSink:
    def open(self, member: Member) -> _Target:
        return _Discard()


# --- export ---------------------------------------------------------------------------------


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
    path = store.snapshots / info.name / "snapshot.json"
    try:
        raw = path.read_bytes()
        body = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise StorageError(f"{path}: cannot read the snapshot record ({exc})") from exc
    recorded = body.pop("digest", "")
    if snapshot._digest(body) != recorded or recorded != info.digest:
        raise IntegrityError(
            str(path),
            info.digest,
            snapshot._digest(body),
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
            label = f"{info.name}: {ref.component}/binary-{ref.architecture}"
            for p in archive.parse_packages(text, ref.component, label):
                size, _ = needs.setdefault(p.sha256, (p.size, p.ref))
                if size != p.size:
                    raise IntegrityError(
                        f"snapshot {info.name}: {p.ref}", str(size), str(p.size), kind="size"
                    )
    return needs


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
    for sha, size in sizes.items():
        planned.append(_Planned(Member(f"meta/{sha}", size, sha), meta=store.meta.path(sha)))
    for pin in pins:
        record = pin.record()
        planned.append(_Planned(Member(pin.path, len(record), _sha(record)), data=record))
    have = set(_pool_needs(store, [base])) if base is not None else set()
    for sha in sorted(needs.keys() - have):
        (expected, pkg), path = needs[sha], store.pool.path(sha)
        try:
            size = path.stat().st_size
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
    with store.locked():
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
        _write_index(index, output.name, split, parts)
    return ExportResult(tuple(parts), index, manifest, fingerprint, time.monotonic() - started)


def _bundled(info: snapshot.SnapshotInfo) -> BundledSnapshot:
    return BundledSnapshot(
        info.name, info.digest, info.created_at, info.mirrorkit_version, info.sources, info.indexes
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


def _write_index(index: Path, bundle: str, split: int, parts: Sequence[Part]) -> None:
    """The index of a split bundle. It is not signed and need not be: the signed manifest
    inside the stream vouches for every member. The index only says which files make up the
    stream, so that a missing or damaged part can be named."""
    body = {
        "format": INDEX_FORMAT,
        "version": VERSION,
        "bundle": bundle,
        "split": split,
        "size": sum(p.size for p in parts),
        "parts": [{"name": p.path.name, "size": p.size, "sha256": p.sha256} for p in parts],
    }
    write_json(index, body)


# --- import ---------------------------------------------------------------------------------


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
    pool: dict[str, Path] = field(default_factory=dict)
    pool_present: int = 0
    meta: dict[str, Path] = field(default_factory=dict)
    snapshots: dict[str, Path] = field(default_factory=dict)
    channels: dict[str, bytes] = field(default_factory=dict)

    def open(self, member: Member) -> _Target:
        path = member.path
        if m := _OBJECT.match(path):
            kind, sha = m.groups()
            if kind == "pool":
                if self._have(sha, member.size):
                    self.pool_present += 1
                    return _Discard()
                return _FileTarget(self.pipe, self.root / path, partial(self.pool.__setitem__, sha))
            if self.store.meta.has(sha):
                return _Discard()
            return _FileTarget(self.pipe, self.root / path, partial(self.meta.__setitem__, sha))
        if m := _SNAPSHOT.match(path):
            name = m.group(1)
            if name in self.skip_snapshots:
                return _Discard()
            on_keep = partial(self.snapshots.__setitem__, name)
            return _FileTarget(self.pipe, self.root / path, on_keep)
        if m := _CHANNEL.match(path):
            name = m.group(1)
            if member.size > _MAX_CHANNEL:
                raise BundleError(f"{path}: too large for a channel pin", HOSTILE)
            return _MemoryTarget(lambda data: self.channels.__setitem__(name, data))
        return _Discard()  # SHA256SUMS and its signature: checked against the manifest only

    def _have(self, sha: str, size: int) -> bool:
        """The store has this pool object already (with the right size: an object a crash
        left short is replaced, not trusted)."""
        if sha in self.pool:
            return True
        try:
            return self.store.pool.path(sha).stat().st_size == size
        except FileNotFoundError:
            return False


@dataclass(frozen=True, slots=True)
class ChannelMove:
    name: str
    old: str | None
    new: str
    applied: bool
    reason: str = ""


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


def _imported_log(store: Store) -> Path:
    return store.root / "bundles" / "imported.json"


def _precheck(store: Store, manifest: Manifest, what: str) -> frozenset[str]:
    """Everything that can be refused before a byte is written: a missing or different base,
    snapshots that exist with other contents, names taken by the other kind (snapshot and
    channel). Returns the
    snapshots already present (same digest)."""
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
        elif (store.channels / f"{s.name}.json").exists():
            raise ConflictError(
                f"{what}: snapshot {s.name} has the name of a channel in this store",
                "publish and bundle export take either; a name cannot be both. Rename or remove "
                "the channel, then import again.",
            )
    for pin in manifest.channels:
        if snapshot.exists(store, pin.name):
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
        for ref in s.indexes:
            staged = staging.meta.get(ref.sha256)
            text = staged.read_bytes() if staged is not None else store.meta.get(ref.sha256)
            label = f"{what}: {s.name}: {ref.component}/binary-{ref.architecture}"
            for p in archive.parse_packages(text, ref.component, label):
                member = f"pool/{p.sha256}"
                if member in sizes:
                    size = sizes[member]
                else:
                    try:
                        size = store.pool.path(p.sha256).stat().st_size
                    except FileNotFoundError:
                        raise BundleError(
                            f"{what}: snapshot {s.name} needs {p.ref} (pool object "
                            f"{p.sha256}), which is neither in the bundle nor in this store",
                            f"import the bundle that carries {manifest.since.name} first."
                            if manifest.since
                            else "the bundle is incomplete; export it again.",
                        ) from None
                if size != p.size:
                    raise BundleError(
                        f"{what}: snapshot {s.name}: {p.ref} is {p.size} bytes in its index, "
                        f"but pool object {p.sha256} has {size}",
                        HOSTILE,
                    )
    for pin in manifest.channels:
        if staging.channels.get(pin.name) != pin.record():
            raise BundleError(f"{what}: {pin.path}: does not match the signed manifest", HOSTILE)


def _record_fits(raw: bytes, s: BundledSnapshot) -> bool:
    """A snapshot record is the one the manifest describes, and its own digest holds."""
    try:
        data = json.loads(raw)
        recorded = data.pop("digest")
        indexes = tuple(IndexRef(**i) for i in data["indexes"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return (
        data.get("name") == s.name
        and recorded == s.digest
        and snapshot._digest(data) == s.digest
        and indexes == s.indexes
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
    added = []
    for name, path in staging.snapshots.items():
        os.chmod(path, 0o444)
        final = store.snapshots / name
        try:
            os.rename(path.parent, final)
        except OSError as exc:
            raise storage_error(final, exc) from exc
        added.append(name)
    if added:
        fsync_dir(store.snapshots)
    return added


def _apply_pins(
    store: Store, manifest: Manifest, manifest_sha: str, signers: Sequence[str]
) -> list[ChannelMove]:
    """Move channels as the bundle says, but never backwards: a pin from a bundle made before
    the one that last set the channel is not applied (an old bundle replayed must not roll
    prod back to an old snapshot)."""
    log = _read_log(store)
    made = _when(manifest.created_at)
    moves = []
    for pin in manifest.channels:
        exists = channel.exists(store, pin.name)
        current = channel.load(store, pin.name).snapshot if exists else None
        setters = [e for e in log if pin.name in e["channels"]]
        if current == pin.snapshot:
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, "already there"))
        elif any(e["manifest_sha256"] == manifest_sha for e in setters):
            reason = "this bundle set it before"
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, reason))
        elif newer := [e for e in setters if made is None or e["when"] >= made]:
            latest = max(newer, key=lambda e: e["when"])
            reason = f"a newer bundle (made {latest['created_at']}) set it"
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, reason))
        else:
            via = f"bundle made {manifest.created_at}, signed by {', '.join(signers)}"
            channel.set_channel(store, pin.name, pin.snapshot, via=via)
            moves.append(ChannelMove(pin.name, current, pin.snapshot, True))
    return moves


def _read_log(store: Store) -> list[dict[str, Any]]:
    path = _imported_log(store)
    if not path.exists():
        return []
    data = read_json(path)
    entries = data.get("bundles") if isinstance(data, dict) else None
    checked = []
    for e in entries if isinstance(entries, list) else [None]:
        when = _when(e["created_at"]) if isinstance(e, dict) and "created_at" in e else None
        if (
            when is None
            or not isinstance(e, dict)
            or not isinstance(e.get("channels"), dict)
            or not isinstance(e.get("manifest_sha256"), str)
        ):
            raise StorageError(
                f"{path}: not a valid bundle import log", "the store was modified by hand."
            )
        checked.append({**e, "when": when})
    return checked


def _log_import(
    store: Store, manifest: Manifest, manifest_sha: str, signers: tuple[str, ...]
) -> None:
    """Remember which bundles were imported, when, signed by whom: an audit trail, and what
    keeps channel pins from moving backwards."""
    log = [{k: v for k, v in e.items() if k != "when"} for e in _read_log(store)]
    log.append(
        {
            "manifest_sha256": manifest_sha,
            "created_at": manifest.created_at,
            "imported_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "signers": list(signers),
            "snapshots": [s.name for s in manifest.snapshots],
            "since": manifest.since.name if manifest.since else None,
            "channels": {c.name: c.snapshot for c in manifest.channels},
        }
    )
    path = _imported_log(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"bundles": log}, tmp_dir=store.tmp)


def import_bundle(
    store: Store, path: Path, keyring: Path, reporter: Reporter | None = None
) -> ImportResult:
    """Import a bundle (a file, or the first part or index of a split one) into ``store``.

    The signature is verified before anything is written; every member is verified while it
    streams into a staging directory; objects, snapshots and channel pins are committed only
    after the whole bundle verified. Importing a bundle again changes nothing."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    with _reading(path) as reading:
        with reading.naming_parts():
            manifest, signers = reading.head(keyring)
        assert signers is not None
        manifest_sha = hashlib.sha256(reading.manifest_bytes).hexdigest()
        _precheck(store, manifest, reading.what)  # refuse early, without creating a store
        with store.locked():
            present = _precheck(store, manifest, reading.what)
            # Left by an import that was killed (SIGKILL, power loss): no import runs without
            # the lock, so none of these is in use.
            for stale in store.tmp.glob("bundle-import-*"):
                shutil.rmtree(stale, ignore_errors=True)
            root = Path(tempfile.mkdtemp(dir=store.tmp, prefix="bundle-import-"))
            staging: _Staging | None = None
            try:
                staging = _Staging(store, root, present)
                problems = _Problems(collect=False)
                reporter.start("import", len(manifest.members), manifest.total_bytes)
                try:
                    with reading.naming_parts():
                        reading.members(manifest, staging, problems, reporter)
                        reading.finish(problems)
                finally:
                    reporter.finish()
                staging.pipe.drain()
                _complete(store, manifest, staging, reading.what)
                _commit_objects(store, staging)
                added = _commit_snapshots(store, staging)
                moves = _apply_pins(store, manifest, manifest_sha, signers)
                if added or any(m.applied for m in moves) or staging.pool or staging.meta:
                    _log_import(store, manifest, manifest_sha, signers)
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
