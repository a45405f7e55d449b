"""aptly's wire forms: package keys (with FilesHash computed exactly as aptly does), the JSON
of snapshots, mirrors, packages, diffs and published repos, and aptly's publish prefixes.

Pure functions of mirrorkit's records (plus a hash of pool files a stanza does not carry):
the routes call the API, then render here.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit import archive
from mirrorkit.errors import UsageError

if TYPE_CHECKING:
    from mirrorkit.mirrors import Mirror
    from mirrorkit.models import Package, Provenance
    from mirrorkit.snapshot import SnapshotInfo

# --- package keys --------------------------------------------------------------------------------

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


def fnv1a64(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return h


def files_hash(files: Iterable[tuple[str, int, str, str, str]]) -> int:
    """aptly's ``PackageFiles.Hash()`` (deb/package_files.go): FNV-1a 64 over the files sorted
    by name, each as its base name, its size as a big-endian int64, then the MD5, SHA1 and
    SHA256 hex strings as the index gave them ("" when absent)."""
    h = _FNV_OFFSET
    for name, size, md5, sha1, sha256 in sorted(files, key=lambda f: f[0]):
        h = fnv1a64(name.encode(), h)
        h = fnv1a64(struct.pack(">q", size), h)
        h = fnv1a64(md5.encode(), h)
        h = fnv1a64(sha1.encode(), h)
        h = fnv1a64(sha256.encode(), h)
    return h


class Checksums:
    """MD5 and SHA1 of pool files, for stanzas that carry only SHA256 (your own packages:
    aptly hashes an added file with every algorithm, so its key includes them). Pool objects
    never change, so what is computed once stays true."""

    def __init__(self, pool_path: Callable[[str], Path]) -> None:
        self._path = pool_path
        self._known: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def md5_sha1(self, sha256: str) -> tuple[str, str]:
        with self._lock:
            hit = self._known.get(sha256)
        if hit is not None:
            return hit
        md5, sha1 = hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False)
        try:
            with self._path(sha256).open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    md5.update(chunk)
                    sha1.update(chunk)
        except OSError:
            return "", ""  # not in the pool (a mirror's package not downloaded): as aptly, ""
        result = md5.hexdigest(), sha1.hexdigest()
        with self._lock:
            self._known[sha256] = result
        return result


def package_fields(p: Package) -> dict[str, str]:
    return archive.stanza_fields(p.stanza)


def package_key(p: Package, checksums: Checksums, fields: dict[str, str] | None = None) -> str:
    """``P<arch> <name> <version> <FilesHash>``: aptly's key of the package. A stanza with
    MD5sum is hashed with the checksums it carries (a mirror's package, as aptly reads the
    index); one without (a .deb added to the store) with those of its pool file."""
    f = fields if fields is not None else package_fields(p)
    md5 = (f.get("MD5sum") or f.get("MD5Sum") or "").strip()
    sha1 = (f.get("SHA1") or "").strip()
    if not md5 and not sha1:
        md5, sha1 = checksums.md5_sha1(p.sha256)
    name = p.filename.rsplit("/", 1)[-1]
    h = files_hash([(name, p.size, md5, sha1, p.sha256)])
    return f"P{p.architecture} {p.name} {p.version} {h:08x}"


def short_key(p: Package) -> str:
    return f"P{p.architecture} {p.name} {p.version}"


def package_json(p: Package, checksums: Checksums) -> dict[str, str]:
    """aptly's ``format=details`` form: the stanza's fields, plus Key, ShortKey, FilesHash."""
    fields = package_fields(p)
    key = package_key(p, checksums, fields)
    return {**fields, "FilesHash": key.rsplit(" ", 1)[1], "Key": key, "ShortKey": short_key(p)}


# --- records -------------------------------------------------------------------------------------


def go_time(iso: str) -> str:
    """An ISO 8601 time as Go's encoding/json writes a time.Time (``...Z`` for UTC)."""
    return iso.replace("+00:00", "Z") if iso else "0001-01-01T00:00:00Z"


def _source_kind(sources: tuple[Provenance, ...]) -> str:
    kinds = {s.kind for s in sources}
    if kinds <= {"mirror"} and kinds:
        return "repo"  # aptly's name for a mirror source
    if kinds & {"debs", "repo"}:
        return "local"
    return "snapshot"


def _description(info: SnapshotInfo) -> str:
    """aptly stores a free-text description; mirrorkit records provenance, and says it in
    aptly's words."""
    parts = []
    for s in info.sources:
        if s.kind == "mirror":
            parts.append(f"Snapshot from mirror [{s.mirror}]: {s.url} {s.suite}")
        elif s.kind == "snapshot":
            parts.append(f"'{s.snapshot}'")
        elif s.kind == "filter":
            parts.append(f"Filtered '{s.snapshot}', query was: '{s.filter}'")
        elif s.kind == "repo":
            parts.append("Snapshot from local repo")
        else:
            parts.append("Snapshot from your own packages")
    if info.sources and all(s.kind == "snapshot" for s in info.sources):
        return "Merged from sources: " + ", ".join(parts)
    return "; ".join(parts)


def is_repo_history(info: SnapshotInfo) -> bool:
    """A snapshot a local repo made of one of its changes (``NAME+N``): aptly has no such
    snapshots (a repo's history is mirrorkit's), so its snapshot list leaves them out."""
    return any(s.kind == "repo" and s.action != "snapshot" for s in info.sources)


def snapshot_json(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "Name": info.name,
        "CreatedAt": go_time(info.created_at),
        "SourceKind": _source_kind(info.sources),
        "Description": _description(info),
        "Origin": "",
        "NotAutomatic": "",
        "ButAutomaticUpgrades": "",
    }


def mirror_json(m: Mirror) -> dict[str, Any]:
    spec = m.spec
    state = m.state
    flat = spec.flat
    return {
        "UUID": hashlib.sha256(f"{spec.name} {m.created_at}".encode()).hexdigest()[:32],
        "Name": spec.name,
        "ArchiveRoot": spec.url if spec.url.endswith("/") else spec.url + "/",
        "Distribution": spec.suite,
        "Components": [] if flat else list(spec.components),
        "Architectures": list(spec.architectures),
        "Meta": {"Codename": state.codename} if state is not None and state.codename else {},
        "LastDownloadDate": go_time(state.fetched_at if state is not None else ""),
        "Filter": spec.filter,
        "Status": 0,
        "WorkerPID": 0,
        "FilterWithDeps": spec.with_deps,
        "SkipComponentCheck": False,
        "SkipArchitectureCheck": False,
        "DownloadSources": spec.with_sources,
        "DownloadUdebs": spec.with_udebs,
        "DownloadInstaller": False,
    }


# --- publish prefixes ----------------------------------------------------------------------------


def slash_unescape(segment: str) -> str:
    """aptly's escaping of a prefix in a URL path segment: ``_`` is ``/``, ``__`` is ``_``
    (api/publish.go slashEscape); the segment was URL-decoded already."""
    out = segment.replace("__", "\0").replace("_", "/").replace("\0", "_")
    parts = [p for p in out.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"invalid prefix {segment!r}: '..' is not allowed")
    return "/".join(parts) or "."


def parse_prefix(param: str) -> tuple[str, str]:
    """``[storage:]prefix`` -> (storage, prefix), the storage split at the last ``:`` as aptly
    does (``s3:name:a/b``: storage ``s3:name``); an empty prefix and ``:.`` are the root."""
    storage, sep, prefix = param.rpartition(":")
    if not sep:
        storage, prefix = "", param
    prefix = prefix.strip("/") or "."
    parts = [p for p in prefix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"invalid prefix {param!r}: '..' is not allowed")
    return storage, "/".join(parts) or "."


def decode_segment(segment: str) -> str:
    return urllib.parse.unquote(segment)
