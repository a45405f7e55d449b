"""What a bundle means: its manifest (schema, rendering, parsing and the checks that every
path and reference in it is one a bundle may hold), the ``SHA256SUMS`` it carries, and the
member names. docs/bundle-format.md describes the same for a third party.

A manifest is the first member of a bundle; its detached signature the second. Everything else
in the bundle is listed in it by path, size and SHA256, in stream order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from mirrorkit.bundle.container import show_name
from mirrorkit.errors import BundleError, UsageError
from mirrorkit.models import INDEX_KINDS, ExtraRef, IndexRef, Provenance, index_json
from mirrorkit.store import canonical_json, check_name

FORMAT = "mirrorkit-bundle"
# Version 2: an index may carry a "kind" (udeb, source, installer); version 1 bundles (debs
# only) are read as they were.
VERSION = 2
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
SUMS = "SHA256SUMS"
SUMS_SIGNATURE = "SHA256SUMS.asc"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# A pool object or an (uncompressed) metadata object, named by its SHA256.
OBJECT = re.compile(r"^(pool|meta)/([0-9a-f]{64})$")

# The hints of errors about a bundle's contents.
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
    sources: tuple[Provenance, ...]
    indexes: tuple[IndexRef, ...]
    extras: tuple[ExtraRef, ...] = ()  # Translations and Contents, carried as meta objects

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
                    "sources": [p.to_json() for p in s.sources],
                    "indexes": [index_json(i) for i in s.indexes],
                    "packages": s.packages,
                    "path": s.path,
                    # Only when there are some: a manifest without them reads as before.
                    **({"extras": [_extra_json(e) for e in s.extras]} if s.extras else {}),
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


class JsonShape:
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


def _extra_json(e: ExtraRef) -> dict[str, Any]:
    return {
        "component": e.component,
        "kind": e.kind,
        "name": e.name,
        "sha256": e.sha256,
        "entries": e.entries,
    }


def _parse_extras(j: JsonShape, s: dict[str, Any], where: str) -> tuple[ExtraRef, ...]:
    if "extras" not in s:
        return ()
    out = []
    for k, raw in enumerate(j.items(s.get("extras"), f"{where}.extras")):
        ew = f"{where}.extras[{k}]"
        e = j.obj(raw, ew)
        out.append(
            ExtraRef(
                j.name(e, "component", ew, "component"),
                j.text(e, "kind", ew),
                j.name(e, "name", ew, "name"),
                j.sha(e, "sha256", ew),
                j.number(e, "entries", ew),
            )
        )
    return tuple(out)


def parse_manifest(data: bytes, what: str) -> Manifest:
    """Parse and check a manifest: every path one a bundle may hold, every reference resolved."""
    j = JsonShape(f"{what}: {MANIFEST}")
    try:
        top = j.obj(json.loads(data), "manifest")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise j.fail(f"not valid JSON ({exc})") from exc
    if top.get("format") != FORMAT:
        raise j.fail(f"not a {FORMAT} manifest (format {top.get('format')!r})")
    version = top.get("version")
    if type(version) is not int or not 1 <= version <= VERSION:
        raise BundleError(
            f"{what}: bundle format version {version!r}; this mirrorkit reads versions 1 to "
            f"{VERSION}",
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
            kind = i.get("kind", "deb")
            if kind not in INDEX_KINDS:
                raise j.fail(f"{iw}.kind: unknown kind of index {kind!r}")
            indexes.append(
                IndexRef(
                    j.name(i, "component", iw, "component"),
                    j.name(i, "architecture", iw, "architecture"),
                    j.sha(i, "sha256", iw),
                    j.number(i, "packages", iw),
                    kind,
                )
            )
        sources = []
        for x in j.items(s.get("sources"), where):
            try:
                sources.append(Provenance.from_json(j.obj(x, f"{where}.sources")))
            except TypeError as exc:
                raise j.fail(f"{where}.sources: {exc}") from exc
        info = BundledSnapshot(
            name=j.name(s, "name", where, "snapshot"),
            digest=j.sha(s, "digest", where),
            created_at=j.text(s, "created_at", where),
            mirrorkit_version=j.text(s, "mirrorkit_version", where),
            sources=tuple(sources),
            indexes=tuple(indexes),
            extras=_parse_extras(j, s, where),
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
        obj = OBJECT.match(member.path)
        if obj and obj.group(2) != member.sha256:
            raise j.fail(f"{where}: {member.path} is not named by its SHA256")
        members.append(member)
    created_at = j.text(top, "created_at", "manifest")
    if parse_time(created_at) is None:
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


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time with its UTC offset (bundles are compared by when they were made)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _check_member_set(manifest: Manifest, j: JsonShape) -> None:
    """The members are exactly what the snapshots, pins and sums call for (plus pool objects)."""
    expected = {SUMS, SUMS_SIGNATURE}
    expected.update(s.path for s in manifest.snapshots)
    expected.update(c.path for c in manifest.channels)
    expected.update(f"meta/{i.sha256}" for s in manifest.snapshots for i in s.indexes)
    expected.update(f"meta/{e.sha256}" for s in manifest.snapshots for e in s.extras)
    seen: set[str] = set()
    for m in manifest.members:
        if m.path in seen:
            raise j.fail(f"member {m.path} is listed twice")
        seen.add(m.path)
        if m.path not in expected and not m.path.startswith("pool/"):
            raise j.fail(f"member {show_name(m.path)} is not something a bundle holds")
        if m.path.startswith("pool/") and not OBJECT.match(m.path):
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
    _check_member_order(manifest, j)


# The fixed order of the members after the signed head (docs/bundle-format.md): a reader can
# then check the sums before any data, and every snapshot's record before what it names.
_ORDER: Final = (SUMS, SUMS_SIGNATURE, "snapshots/", "meta/", "channels/", "pool/")


def _rank(path: str) -> int:
    return next(i for i, kind in enumerate(_ORDER) if path == kind or path.startswith(kind))


def _check_member_order(manifest: Manifest, j: JsonShape) -> None:
    previous: Member | None = None
    for m in manifest.members:
        if previous is not None and _rank(m.path) < _rank(previous.path):
            raise j.fail(
                f"member {show_name(m.path)} is listed after {show_name(previous.path)}: the "
                f"member order is fixed ({', '.join(_ORDER)})"
            )
        previous = m
