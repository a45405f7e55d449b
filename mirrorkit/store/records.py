"""Every record the store keeps, read and written by one codec, each with its own version.

A record is one JSON object in one file (canonical JSON: sorted keys, one-space indent, UTF-8,
a newline at the end), written atomically, with a ``"format"`` key: the version of that kind
of record. ``docs/store-format.md`` describes every kind; the schemas below are its executable
form. Reading checks the version before anything else: a record of a newer version is refused
(its fields would be misread, or silently dropped on the next write), naming the file and the
version. A record that does not fit its schema (bad JSON, a missing key, a wrong type, a field
this version does not have) is refused as damaged, naming the file and what is wrong, so no
caller ever meets a ``KeyError``.

To change a record: a new optional field, or anything an older mirrorkit would misread or drop
on a rewrite, bumps that kind's ``version`` (and the reader keeps reading the older versions);
update ``docs/store-format.md`` with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from mirrorkit.errors import StorageError, StoreFormatError
from mirrorkit.store.files import atomic_write, canonical_json, storage_error


@dataclass(frozen=True, slots=True)
class Obj:
    """A JSON object: these keys and no others (unless ``free``: provenance varies by kind)."""

    required: Mapping[str, Spec]
    optional: Mapping[str, Spec] = field(default_factory=dict)
    free: bool = False


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Spec


@dataclass(frozen=True, slots=True)
class MapOf:
    """A JSON object from names to values (e.g. suite -> snapshot)."""

    value: Spec


@dataclass(frozen=True, slots=True)
class Maybe:
    """``null`` or the spec."""

    spec: Spec


Spec: TypeAlias = "type | Obj | ListOf | MapOf | Maybe"


@dataclass(frozen=True, slots=True)
class RecordKind:
    name: str  # as a user reads it: "mirror", "snapshot", ...
    version: int  # what this mirrorkit writes; it reads versions 1..version
    schema: Obj  # the body, "format" aside
    hint: str  # what a user can do about a damaged record of this kind
    # Records of this kind written before records carried versions have no "format": version 1.
    unversioned_is_1: bool = False
    check: Callable[[dict[str, Any]], str | None] | None = None  # rules a schema cannot say


_DAMAGED = "the store was modified by hand or damaged; restore the file from a backup"

# "kind" (mirror records version 4, snapshot records 3): udeb, source, installer; absent: deb.
_INDEX = Obj({"component": str, "architecture": str, "sha256": str, "packages": int}, {"kind": str})
# Translations and Contents beside the indices (version 2 of mirror and snapshot records).
_EXTRA = Obj({"component": str, "kind": str, "name": str, "sha256": str, "entries": int})

MIRROR = RecordKind(
    "mirror",
    # 2: languages, with_contents, extras; 3: the spec's proxy, ca_bundle, auth_files;
    # 4: index kinds, with_sources, with_udebs, with_installer, installer_files
    4,
    Obj(
        {
            "spec": Obj(
                {
                    "name": str,
                    "url": str,
                    "suite": str,
                    "components": ListOf(str),
                    "architectures": ListOf(str),
                    "keyring": str,
                    "fingerprints": ListOf(str),
                },
                {
                    "filter": str,
                    "with_deps": bool,
                    "with_recommends": bool,
                    "allow_empty": bool,
                    "languages": ListOf(str),
                    "with_contents": bool,
                    "proxy": str,
                    "ca_bundle": str,
                    "auth_files": ListOf(str),
                    # version 4: what kinds besides debs the mirror follows
                    "with_sources": bool,
                    "with_udebs": bool,
                    "with_installer": bool,
                    "installer_files": ListOf(str),
                },
            ),
            "created_at": str,
            "state": Maybe(
                Obj(
                    {
                        "inrelease_sha256": str,
                        "signer": str,
                        "release_date": str,
                        "valid_until": Maybe(str),
                        "fetched_at": str,
                        "spec_digest": str,
                        "indexes": ListOf(_INDEX),
                    },
                    {
                        "upstream": ListOf(_INDEX),
                        "selection": str,
                        "codename": str,
                        "extras": ListOf(_EXTRA),
                        "upstream_extras": ListOf(_EXTRA),
                    },
                )
            ),
        }
    ),
    f"{_DAMAGED}, or remove it and add the mirror again ('mirrorkit mirror add').",
)

SNAPSHOT = RecordKind(
    "snapshot",
    3,
    Obj(
        {
            "name": str,
            "created_at": str,
            "mirrorkit_version": str,
            # Provenance: a kind, and fields by kind; a reader keeps what it does not know.
            "sources": ListOf(Obj({"kind": str}, free=True)),
            "indexes": ListOf(_INDEX),
            "digest": str,
        },
        {"extras": ListOf(_EXTRA)},
    ),
    f"{_DAMAGED} (or remove the snapshot's directory if it is not needed).",
)

CHANNEL = RecordKind(
    "channel",
    1,
    Obj(
        {
            "name": str,
            "snapshot": str,
            "history": ListOf(
                Obj({"action": str, "snapshot": str, "at": str, "by": str}, {"digest": str})
            ),
        }
    ),
    f"{_DAMAGED}, or remove it and set the channel again ('mirrorkit channel set').",
    unversioned_is_1=True,
)


REPO = RecordKind(
    "repo",
    1,
    Obj(
        {
            "name": str,
            "component": str,
            "distribution": str,
            "comment": str,
            "created_at": str,
            # Oldest first; the head is the last entry's snapshot (none yet: an empty repo).
            "history": ListOf(
                Obj(
                    {
                        "n": int,
                        "action": str,
                        "snapshot": str,
                        "digest": str,
                        "at": str,
                        "by": str,
                        "added": ListOf(str),
                        "removed": ListOf(str),
                    },
                    {"note": str},
                )
            ),
        },
        {
            "retention": Obj({}, {"keep": int, "older_than": str}),
            # Suites that follow the repo: how each was published, to publish it again.
            "followers": ListOf(Obj({"target": str, "suite": str}, free=True)),
        },
    ),
    f"{_DAMAGED}; the repo's snapshots ('mirrorkit snapshot list', NAME+N) hold its history.",
)


def _one_target(body: dict[str, Any]) -> str | None:
    if ("dir" in body) == ("s3" in body):
        return "names neither or both of 'dir' and 's3'"
    if "dir" in body and "endpoint_url" in body:
        return "endpoint_url: only an 's3' target has one"
    return None


PUBLISHED = RecordKind(
    "published-tree",
    1,
    Obj({"suites": MapOf(str)}, {"dir": str, "s3": str, "endpoint_url": Maybe(str)}),
    f"{_DAMAGED}, or remove it and publish again (gc keeps what published directories list).",
    unversioned_is_1=True,
    check=_one_target,
)

IMPORTED_BUNDLES = RecordKind(
    "imported-bundles",
    1,
    Obj(
        {
            "bundles": ListOf(
                Obj(
                    {"manifest_sha256": str, "created_at": str, "channels": MapOf(str)},
                    {
                        "imported_at": str,
                        "signers": ListOf(str),
                        "snapshots": ListOf(str),
                        "since": Maybe(str),
                    },
                )
            )
        }
    ),
    f"{_DAMAGED}. Removing it forgets which bundles were imported: an older bundle's channel "
    "pins could then move channels back.",
    unversioned_is_1=True,
)

KINDS = (MIRROR, SNAPSHOT, CHANNEL, PUBLISHED, IMPORTED_BUNDLES, REPO)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    kind |= {list: "a list", dict: "an object"}
    return kind.get(type(value), type(value).__name__)


def _expected(spec: Spec) -> str:
    if isinstance(spec, Maybe):
        return f"{_expected(spec.spec)} or null"
    if isinstance(spec, Obj | MapOf):
        return "an object"
    if isinstance(spec, ListOf):
        return "a list"
    return {str: "a string", int: "an integer", bool: "true or false"}.get(spec, spec.__name__)


def problem(value: Any, spec: Spec, where: str) -> str | None:
    """What is wrong with ``value`` as ``spec`` (None: nothing), ``where`` naming the field."""
    if isinstance(spec, Maybe):
        return None if value is None else problem(value, spec.spec, where)
    if isinstance(spec, Obj):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {_describe(value)}"
        for key in spec.required:
            if key not in value:
                return f"{_at(where, key)}: missing"
        for key, item in value.items():
            sub = spec.required.get(key, spec.optional.get(key))
            if sub is None:
                if spec.free:
                    continue
                return f"{_at(where, key)}: unknown field"
            if found := problem(item, sub, _at(where, key)):
                return found
        return None
    if isinstance(spec, ListOf | MapOf):
        # A tuple is written as a list (a body being written holds dataclass fields).
        container = (list, tuple) if isinstance(spec, ListOf) else dict
        if not isinstance(value, container):
            return f"{where}: expected {_expected(spec)}, got {_describe(value)}"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = spec.item if isinstance(spec, ListOf) else spec.value
        for index, item in items:
            at = f"{where}[{index}]" if isinstance(index, int) else _at(where, index)
            if found := problem(item, inner, at):
                return found
        return None
    # bool is an int to Python, never to a record
    if not isinstance(value, spec) or (isinstance(value, bool) and spec is not bool):
        return f"{where}: expected {_expected(spec)}, got {_describe(value)}"
    return None


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def damaged(path: Path | str, what: str, reason: str, hint: str) -> StorageError:
    return StorageError(f"{path}: not a valid {what}: {reason}", hint)


def load_object(raw: bytes, path: Path | str, what: str, hint: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or an error naming ``path``."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"{path}: corrupt JSON ({exc})", hint) from exc
    if not isinstance(data, dict):
        raise damaged(path, what, f"expected a JSON object, got {_describe(data)}", hint)
    return data


def version_of(
    data: dict[str, Any], path: Path | str, what: str, hint: str, *, missing: int | None = None
) -> int:
    """The record's ``"format"``: a positive integer (``missing``: what its absence means)."""
    if "format" not in data and missing is not None:
        return missing
    found = data.get("format")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        got = "missing" if "format" not in data else f"{found!r}"
        raise damaged(path, what, f"format: expected a positive integer, got {got}", hint)
    return found


def decode_record(raw: bytes, kind: RecordKind, path: Path | str) -> dict[str, Any]:
    """The body of a ``kind`` record read from ``path``, checked (``"format"`` included)."""
    what = f"{kind.name} record"
    data = load_object(raw, path, what, kind.hint)
    missing = 1 if kind.unversioned_is_1 else None
    found = version_of(data, path, what, kind.hint, missing=missing)
    if found > kind.version:
        from mirrorkit._version import __version__

        writer = data.get("mirrorkit_version")
        by = f"mirrorkit {writer}" if isinstance(writer, str) else "a newer mirrorkit"
        raise StoreFormatError(
            f"{path}: {kind.name} record format {found}, but this mirrorkit ({__version__}) "
            f"reads {kind.name} records up to format {kind.version}",
            f"it was written by {by}: upgrade mirrorkit to use this store. Nothing was changed.",
        )
    body = {k: v for k, v in data.items() if k != "format"}
    if (found_problem := problem(body, kind.schema, "")) or (
        kind.check is not None and (found_problem := kind.check(body))
    ):
        raise damaged(path, what, found_problem, kind.hint)
    return data


def encode_record(kind: RecordKind, body: Mapping[str, Any]) -> bytes:
    """The bytes of a ``kind`` record (the current version) holding ``body``. A body that does
    not fit the schema is a bug in mirrorkit, caught here before it reaches the disk. A
    ``"format"`` in ``body`` (a record read, changed and written back) is replaced."""
    body = {k: v for k, v in body.items() if k != "format"}
    if (found := problem(body, kind.schema, "")) or (
        kind.check is not None and (found := kind.check(body))
    ):
        raise ValueError(f"a {kind.name} record being written does not fit its schema: {found}")
    return canonical_json({**body, "format": kind.version}) + b"\n"


def read_record(path: Path, kind: RecordKind) -> dict[str, Any]:
    """The ``kind`` record in ``path``, checked; raises if it is newer or damaged."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decode_record(raw, kind, path)


def write_record(path: Path, kind: RecordKind, body: Mapping[str, Any], *, tmp_dir: Path) -> None:
    """Replace ``path`` atomically with a ``kind`` record holding ``body`` (``"format"`` is
    set here)."""
    data = encode_record(kind, body)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(path, exc) from exc
    atomic_write(path, data, tmp_dir=tmp_dir)
