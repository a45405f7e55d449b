"""Publishing: one layout plan (layout.py), written by fs.py or by s3.py (object storage).

This module ties a snapshot to a plan and a signing key. s3.py (and boto3) is imported only
when publishing to S3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit import archive, channel, gpg, mirror, snapshot
from mirrorkit.errors import MirrorkitError, NotFoundError, UsageError
from mirrorkit.models import Package
from mirrorkit.progress import Reporter
from mirrorkit.publish.fs import PublishResult, publish_tree
from mirrorkit.publish.layout import SuitePlan, plan_suite
from mirrorkit.store import Store, check_name, read_json, write_json

if TYPE_CHECKING:
    from mirrorkit.publish.s3 import S3PublishResult

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(
            f"invalid duration {text!r}", "use a number with s, m, h, d or w, e.g. '7d'."
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def release_date(previous: datetime | None = None) -> datetime:
    """The Release ``Date``: SOURCE_DATE_EPOCH if set (reproducible builds), else now, never
    earlier than the suite's previous Release.

    apt silently keeps its current Release when a new one carries an older Date (its replay
    protection), so a rollback published with the old snapshot's date would never reach
    clients; an equal Date it accepts. Not "previous + 1 s": quick publishes would carry the
    Date into the future, and apt refuses a Release dated more than 10 s ahead. The indices
    themselves are byte-identical for the same snapshot."""
    if epoch := os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            when = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a valid timestamp") from exc
        if previous is not None and when < previous:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={epoch} ({archive.format_date(when)}) is older than the "
                f"Date of the Release this suite has now ({archive.format_date(previous)})",
                "apt would silently keep the suite it has; unset SOURCE_DATE_EPOCH or set it "
                f"to at least {int(previous.timestamp())}.",
            )
        return when
    now = datetime.now(UTC).replace(microsecond=0)
    return max(now, previous) if previous is not None else now


def previous_release_date(target: Path, suite: str) -> datetime | None:
    release = target / "dists" / suite / "Release"
    if not release.is_file():
        return None
    try:
        return archive.parse_release(release.read_bytes(), str(release)).date
    except MirrorkitError:
        return None  # an unreadable old Release is replaced, not trusted


def resolve_target(store: Store, name: str) -> tuple[snapshot.SnapshotInfo, str]:
    """A snapshot name, or a channel name (the snapshot it points at). Returns the snapshot
    and the default suite name (the name the user gave)."""
    channel_file = store.channels / f"{check_name(name, 'snapshot or channel')}.json"
    if not snapshot.exists(store, name) and channel_file.exists():
        return channel.resolve(store, name)[1], name
    if not snapshot.exists(store, name):
        raise NotFoundError(
            f"no snapshot or channel named {name!r}", "see 'mirrorkit snapshot list'."
        )
    return snapshot.load(store, name), name


def group_indexes(
    store: Store, info: snapshot.SnapshotInfo
) -> dict[tuple[str, str], list[Package]]:
    grouped: dict[tuple[str, str], list[Package]] = defaultdict(list)
    for ref in info.indexes:
        grouped[(ref.component, ref.architecture)].extend(mirror.packages(store, [ref]))
    return dict(grouped)


def plan_for(
    store: Store,
    info: snapshot.SnapshotInfo,
    *,
    suite: str,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    previous: datetime | None = None,
) -> SuitePlan:
    valid_until = None
    if valid_for:
        valid_until = datetime.now(UTC).replace(microsecond=0) + parse_duration(valid_for)
    return plan_suite(
        group_indexes(store, info),
        suite=suite,
        date=release_date(previous),
        origin=origin or "mirrorkit",
        label=label or "mirrorkit",
        description=f"mirrorkit snapshot {info.name}",
        valid_until=valid_until,
    )


def _record_identity(target: Path | str, endpoint_url: str | None) -> dict[str, Any]:
    if isinstance(target, Path):
        return {"dir": str(target.resolve())}
    return {"s3": target, "endpoint_url": endpoint_url}


def _record_path(store: Store, identity: dict[str, Any]) -> Path:
    # A directory's record keeps the name it always had (the digest of the resolved path).
    name = identity["dir"] if "dir" in identity else f"{identity['s3']} {identity['endpoint_url']}"
    digest = hashlib.sha256(str(name).encode()).hexdigest()[:16]
    return store.root / "published" / f"{digest}.json"


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
    data: dict[str, Any] = read_json(path) if path.exists() else {**identity, "suites": {}}
    data["suites"][suite] = snapshot_name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, tmp_dir=store.tmp)


def published_records(store: Store) -> list[dict[str, Any]]:
    """Every published target: ``{"dir": ...}`` or ``{"s3": ..., "endpoint_url": ...}``, with
    ``"suites"``: suite -> snapshot."""
    return [read_json(p) for p in sorted((store.root / "published").glob("*.json"))]


def published_trees(store: Store) -> list[Path]:
    """The directories published from this store (for ``gc``).

    S3 targets are left out on purpose: reading a bucket's indices is slow and needs
    credentials, and a bucket holds its own copies of the pool objects, so removing them from
    the local pool cannot break it. Their records stay (what was published where)."""
    return [Path(r["dir"]) for r in published_records(store) if "dir" in r]


@dataclass(frozen=True, slots=True)
class Published:
    result: PublishResult | S3PublishResult
    snapshot: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    fingerprint: str

    @property
    def location(self) -> str:
        """Where it was published: the directory, or the ``s3://`` URL."""
        r = self.result
        return str(r.root) if isinstance(r, PublishResult) else r.target.url

    @property
    def key_location(self) -> str:
        """The public key clients need: a file, or its URL in the bucket."""
        r = self.result
        return str(r.key_file) if isinstance(r, PublishResult) else r.key_url

    def client_stanza(self, uri: str | None = None, signed_by: str | None = None) -> str:
        r = self.result
        if isinstance(r, PublishResult):
            default_uri, default_key = r.root.resolve().as_uri(), str(r.key_file.resolve())
        else:
            # The client downloads the key from the bucket and keeps it in its keyrings dir.
            default_uri, default_key = r.http_url, f"/etc/apt/keyrings/{r.key_name}.gpg"
        lines = [
            "Types: deb",
            f"URIs: {uri or default_uri}",
            f"Suites: {r.suite}",
            f"Components: {' '.join(self.components)}",
            # None for a suite of Architecture: all packages only: any client may use it.
            f"Architectures: {' '.join(self.architectures)}" if self.architectures else "",
            f"Signed-By: {signed_by or default_key}",
        ]
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True, slots=True)
class SignedPlan:
    """A suite's plan with its signatures and the public key: what both writers need."""

    plan: SuitePlan
    inrelease: bytes
    release_gpg: bytes
    public_key: tuple[bytes, bytes]
    key_name: str


def sign_plan(
    store: Store,
    info: snapshot.SnapshotInfo,
    *,
    suite: str,
    fingerprint: str,
    gnupghome: str | None,
    origin: str | None,
    label: str | None,
    valid_for: str | None,
    previous: datetime | None,
) -> SignedPlan:
    plan = plan_for(
        store, info, suite=suite, origin=origin, label=label, valid_for=valid_for, previous=previous
    )
    inrelease, release_gpg = gpg.sign_release(plan.release, fingerprint, gnupghome)
    return SignedPlan(
        plan,
        inrelease,
        release_gpg,
        gpg.export_public_key(fingerprint, gnupghome),
        key_name=f"mirrorkit-archive-{fingerprint[-16:].lower()}",
    )


def publish_fs(
    store: Store,
    name: str,
    target: Path,
    *,
    key: str | None,
    suite: str | None = None,
    gnupghome: str | None = None,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
) -> Published:
    """Publish snapshot (or channel) ``name`` into directory ``target`` as suite ``suite``."""
    with store.locked():
        info, default_suite = resolve_target(store, name)
        suite = check_name(suite or default_suite, "suite")
        fingerprint = gpg.resolve_signing_key(key, gnupghome)
        signed = sign_plan(
            store,
            info,
            suite=suite,
            fingerprint=fingerprint,
            gnupghome=gnupghome,
            origin=origin,
            label=label,
            valid_for=valid_for,
            previous=previous_release_date(target, suite),
        )
        result = publish_tree(
            target,
            signed.plan,
            store.pool,
            signed.inrelease,
            signed.release_gpg,
            signed.public_key,
            key_name=signed.key_name,
        )
        record_published(store, target, suite, info.name)
    return Published(
        result=result,
        snapshot=info.name,
        components=signed.plan.components,
        architectures=signed.plan.architectures,
        fingerprint=fingerprint,
    )


def publish_s3(
    store: Store,
    name: str,
    url: str,
    *,
    key: str | None,
    suite: str | None = None,
    gnupghome: str | None = None,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    jobs: int = 8,
    prune: bool = False,
    break_lock: bool = False,
    reporter: Reporter | None = None,
    fail_after: int | None = None,
) -> Published:
    """Publish snapshot (or channel) ``name`` to ``s3://BUCKET/PREFIX`` as suite ``suite``:
    the same plan as :func:`publish_fs`, written in an order that keeps the suite consistent
    (see ``s3.py``). ``fail_after`` is the fault tests' hook."""
    from mirrorkit.publish import s3

    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    target = s3.S3Target.parse(url, endpoint_url=endpoint_url, region=region)
    with store.locked():
        info, default_suite = resolve_target(store, name)
        suite = check_name(suite or default_suite, "suite")
        fingerprint = gpg.resolve_signing_key(key, gnupghome)
        bucket = s3.connect(target, jobs=jobs)
        bucket.check()
        with s3.publish_lock(bucket, suite=suite, break_lock=break_lock) as broken:
            # Read under the lock: the Date must be later than the Release now in the bucket.
            previous = s3.suite_state(bucket, suite)
            signed = sign_plan(
                store,
                info,
                suite=suite,
                fingerprint=fingerprint,
                gnupghome=gnupghome,
                origin=origin,
                label=label,
                valid_for=valid_for,
                previous=previous.date,
            )
            result = s3.publish_tree(
                bucket,
                signed.plan,
                store.pool,
                signed.inrelease,
                signed.release_gpg,
                signed.public_key,
                key_name=signed.key_name,
                previous=previous,
                prune=prune,
                reporter=reporter,
                fail_after=fail_after,
            )
        record_published(store, target.url, suite, info.name, endpoint_url=target.endpoint_url)
    if broken is not None:
        result = dataclasses.replace(result, broken_lock=broken)
    return Published(
        result=result,
        snapshot=info.name,
        components=signed.plan.components,
        architectures=signed.plan.architectures,
        fingerprint=fingerprint,
    )
