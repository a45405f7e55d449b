"""What this store published where (``STORE/published/*.json``): a directory or an S3 prefix,
with suite -> snapshot. ``gc`` keeps what published directories list.

Only the store is imported here: ``refs`` (gc roots) reads these records without loading any
publishing machinery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorkit.store import PUBLISHED, Store, read_record, write_record


def _record_identity(target: Path | str, endpoint_url: str | None) -> dict[str, Any]:
    if isinstance(target, Path):
        return {"dir": str(target.resolve())}
    return {"s3": target, "endpoint_url": endpoint_url}


def _digest(identity: dict[str, Any]) -> str:
    # A directory's record keeps the name it always had (the digest of the resolved path).
    name = identity["dir"] if "dir" in identity else f"{identity['s3']} {identity['endpoint_url']}"
    return hashlib.sha256(str(name).encode()).hexdigest()[:16]


def _record_path(store: Store, identity: dict[str, Any]) -> Path:
    return store.published / f"{_digest(identity)}.json"


def target_lock(target: Path | str, endpoint_url: str | None = None) -> str:
    """The store lock of a publish target (``publish/<digest>``, the digest its record is
    named by): held by whatever publishes into it or changes its record."""
    return f"publish/{_digest(_record_identity(target, endpoint_url))}"


def record_published(
    store: Store,
    target: Path | str,
    suite: str,
    snapshot_name: str,
    *,
    endpoint_url: str | None = None,
) -> None:
    """Remember where the store published what: a directory (``Path``) or an ``s3://`` URL
    (``str``, with the server's endpoint). ``gc`` keeps what published directories list."""
    identity = _record_identity(target, endpoint_url)
    path = _record_path(store, identity)
    data = read_record(path, PUBLISHED) if path.exists() else {**identity, "suites": {}}
    data["suites"][suite] = snapshot_name
    write_record(path, PUBLISHED, data, tmp_dir=store.tmp)


def forget_published(
    store: Store, target: Path | str, suite: str, *, endpoint_url: str | None = None
) -> None:
    """Forget that ``suite`` is published to ``target`` (it was dropped); a target left with no
    suite loses its record."""
    path = _record_path(store, _record_identity(target, endpoint_url))
    if not path.exists():
        return
    data = read_record(path, PUBLISHED)
    data.get("suites", {}).pop(suite, None)
    if data.get("suites"):
        write_record(path, PUBLISHED, data, tmp_dir=store.tmp)
    else:
        path.unlink()


def published_records(store: Store) -> list[dict[str, Any]]:
    """Every published target: ``{"dir": ...}`` or ``{"s3": ..., "endpoint_url": ...}``, with
    ``"suites"``: suite -> snapshot."""
    records = [read_record(p, PUBLISHED) for p in sorted(store.published.glob("*.json"))]
    return [{k: v for k, v in r.items() if k != "format"} for r in records]


def published_trees(store: Store) -> list[Path]:
    """The directories published from this store (for ``gc``).

    S3 targets are left out on purpose: reading a bucket's indices is slow and needs
    credentials, and a bucket holds its own copies of the pool objects, so removing them from
    the local pool cannot break it. Their records stay (what was published where)."""
    return [Path(r["dir"]) for r in published_records(store) if "dir" in r]


def serves(
    store: Store,
    target: Path | str,
    suite: str,
    snapshot_name: str,
    *,
    endpoint_url: str | None = None,
) -> bool:
    """Whether this store's last publish of ``suite`` to ``target`` was ``snapshot_name``."""
    path = _record_path(store, _record_identity(target, endpoint_url))
    if not path.exists():
        return False
    suites = read_record(path, PUBLISHED).get("suites", {})
    return isinstance(suites, dict) and suites.get(suite) == snapshot_name


@dataclass(frozen=True, slots=True)
class PublishedSuite:
    """One suite this store published: where (a directory, or an ``s3://`` URL with its
    endpoint), and the snapshot it holds."""

    target: str
    kind: str  # "fs" | "s3"
    suite: str
    snapshot: str
    endpoint_url: str | None = None


def published_suites(store: Store) -> list[PublishedSuite]:
    """Every suite of every target this store published, by target then suite."""
    out = []
    for r in published_records(store):
        kind, target = ("fs", r["dir"]) if "dir" in r else ("s3", r["s3"])
        for suite, snap in sorted(r.get("suites", {}).items()):
            out.append(PublishedSuite(target, kind, suite, snap, r.get("endpoint_url")))
    return out
