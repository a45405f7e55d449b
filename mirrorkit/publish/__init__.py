"""Publishing: a snapshot's layout plan (plan.py, no I/O), signed, then written by one
executor (executor.py: order, pool record, pruning, lock) to a target that only knows how to
put, list, delete and lock: a directory (fs.py) or an S3 prefix (s3.py).

This module is the stage's entry points. It stays cheap to import: the stages it draws on
(mirror, snapshot, channel, gpg) are imported when a publish runs, and s3.py (boto3) only when
publishing to S3. What was published where is records.py's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.errors import UsageError
from mirrorkit.progress import Reporter
from mirrorkit.publish import executor, sources
from mirrorkit.publish.executor import SignedPlan
from mirrorkit.publish.fs import PublishResult
from mirrorkit.publish.plan import (
    SuitePlan,
    parse_duration,
    plan_rendered,
    release_date,
    render_index,
    render_sources,
)
from mirrorkit.publish.records import (
    published_records,
    published_trees,
    record_published,
    target_lock,
)
from mirrorkit.store import Store, check_name

if TYPE_CHECKING:
    from mirrorkit.models import Package
    from mirrorkit.publish.s3 import S3PublishResult
    from mirrorkit.snapshot import SnapshotInfo

__all__ = [
    "PublishResult",
    "Published",
    "SignedPlan",
    "parse_duration",
    "plan_for",
    "publish_fs",
    "publish_s3",
    "published_records",
    "published_trees",
    "record_published",
    "release_date",
    "resolve_target",
    "source_locks",
    "target_lock",
]


def source_locks(name: str | None, components: Mapping[str, str] | None = None) -> list[str]:
    """What publishing ``name`` (or one source per component) locks besides its target: each
    source's name (a snapshot is not removed, a channel not moved, while it is published). A
    repo's own lock is not taken: its writers republish after they release it, and a repo's
    head is read once (the next republish follows it)."""
    names = [name] if name is not None else list((components or {}).values())
    locks = []
    for n in names:
        check_name(n, "snapshot, channel or repo")
        locks += [f"snapshot/{n}", f"channel/{n}"]
    return locks


def resolve_target(store: Store, name: str) -> tuple[SnapshotInfo, str]:
    """A snapshot name, a channel name (the snapshot it points at) or a repo name (its head).
    Returns the snapshot and the default suite name (the name the user gave; a repo's
    distribution if it has one)."""
    info, suite, _ = sources.resolve_one(store, name)
    return info, suite


def group_indexes(
    store: Store, info: SnapshotInfo, kind: str = "deb"
) -> dict[tuple[str, str], list[Package]]:
    """The snapshot's packages of one ``kind`` by (component, architecture)."""
    from mirrorkit import mirror

    grouped: dict[tuple[str, str], list[Package]] = defaultdict(list)
    for ref in info.indexes:
        if ref.kind == kind:
            grouped[(ref.component, ref.architecture)].extend(mirror.packages(store, [ref]))
    return dict(grouped)


def extra_files(store: Store, info: SnapshotInfo) -> dict[str, bytes]:
    """The snapshot's Translations and Contents: path under dists/SUITE -> text."""
    from mirrorkit import extras

    return {extras.published_path(e): store.meta.get(e.sha256) for e in info.extras}


def plan_for(
    store: Store,
    info: SnapshotInfo,
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
    from mirrorkit.publish.render import rendered_indexes

    debs = [i for i in info.indexes if i.kind == "deb"]
    udebs = group_indexes(store, info, "udeb")
    sources = {c: pkgs for (c, _), pkgs in group_indexes(store, info, "source").items()}
    return plan_rendered(
        rendered_indexes(store, debs),
        extras=extra_files(store, info),
        udebs={key: render_index(pkgs) for key, pkgs in sorted(udebs.items())},
        sources={c: render_sources(pkgs) for c, pkgs in sorted(sources.items())},
        suite=suite,
        date=release_date(previous),
        origin=origin or "mirrorkit",
        label=label or "mirrorkit",
        description=f"mirrorkit snapshot {info.name}",
        valid_until=valid_until,
    )


@dataclass(frozen=True, slots=True)
class Published:
    result: PublishResult | S3PublishResult
    snapshot: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    fingerprint: str
    client_url: str = "http"  # S3: the client stanza's URIs: "http", or "s3" (apt-transport-s3)
    follows: tuple[str, ...] = ()  # the repos the suite follows (--publish republishes it)
    kinds: tuple[str, ...] = ("deb",)  # what the suite holds (debs, udebs, sources, ...)

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
            if self.client_url == "s3":  # apt-transport-s3 reads the bucket with credentials
                default_uri = r.target.url.rstrip("/") + "/"
        lines = [
            "Types: deb deb-src" if "source" in self.kinds else "Types: deb",
            f"URIs: {uri or default_uri}",
            f"Suites: {r.suite}",
            f"Components: {' '.join(self.components)}",
            # None for a suite of Architecture: all packages only: any client may use it.
            f"Architectures: {' '.join(self.architectures)}" if self.architectures else "",
            f"Signed-By: {signed_by or default_key}",
        ]
        return "\n".join(line for line in lines if line)


def sign_plan(
    store: Store,
    info: SnapshotInfo,
    *,
    suite: str,
    fingerprint: str,
    gnupghome: str | None,
    origin: str | None,
    label: str | None,
    valid_for: str | None,
    previous: datetime | None,
) -> SignedPlan:
    from mirrorkit import gpg

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


def _signer(
    store: Store,
    info: SnapshotInfo,
    suite: str,
    fingerprint: str,
    gnupghome: str | None,
    origin: str | None,
    label: str | None,
    valid_for: str | None,
) -> Callable[[datetime | None], SignedPlan]:
    """What the executor calls under the target's lock, with the Date of the Release that
    target publishes now (the new Date must not be earlier)."""

    def sign(previous: datetime | None) -> SignedPlan:
        return sign_plan(
            store,
            info,
            suite=suite,
            fingerprint=fingerprint,
            gnupghome=gnupghome,
            origin=origin,
            label=label,
            valid_for=valid_for,
            previous=previous,
        )

    return sign


def _suite(resolved: sources.Resolved, suite: str | None) -> str:
    chosen = suite or resolved.suite
    if not chosen:
        raise UsageError("a suite of several sources needs --suite SUITE")
    return check_name(chosen, "suite")


def publish_fs(
    store: Store,
    name: str | None,
    target: Path,
    *,
    key: str | None,
    suite: str | None = None,
    gnupghome: str | None = None,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    components: Mapping[str, str] | None = None,
) -> Published:
    """Publish snapshot, channel or repo ``name`` (or one source per component,
    ``components``) into directory ``target`` as suite ``suite``: pool files hard-linked, the
    suite staged and switched with one rename (see ``fs.py``)."""
    from mirrorkit import gpg
    from mirrorkit.publish.fs import DirectoryTarget

    with store.locked(target_lock(target), *source_locks(name, components)):
        resolved = sources.resolve(store, name, components or {})
        info = resolved.info
        suite = _suite(resolved, suite)
        fingerprint = gpg.resolve_signing_key(key, gnupghome)
        tree = DirectoryTarget(target)

        # A directory is always pruned: nothing else removes what its old suites needed.
        sign = _signer(store, info, suite, fingerprint, gnupghome, origin, label, valid_for)
        done = executor.publish(tree, suite, store.pool, sign, prune=True)
        record_published(store, target, suite, resolved.label)
    plan = done.signed.plan
    return Published(
        result=PublishResult(
            root=target,
            suite=suite,
            generation=tree.generation,
            linked=done.pool_written,
            reused=len(plan.pool) - done.pool_written,
            key_file=target / f"{done.signed.key_name}.gpg",
            removed=sum(1 for rel in done.removed if rel.startswith("pool/")),
        ),
        snapshot=info.name,
        components=plan.components,
        architectures=plan.architectures,
        fingerprint=fingerprint,
        follows=resolved.repos,
        kinds=plan.kinds,
    )


def publish_s3(
    store: Store,
    name: str | None,
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
    components: Mapping[str, str] | None = None,
    client_url: str = "http",
) -> Published:
    """Publish snapshot, channel or repo ``name`` (or one source per component) to
    ``s3://BUCKET/PREFIX`` as suite ``suite``: the same plan as :func:`publish_fs`, written in
    the executor's order (InRelease last). ``client_url``: the client stanza's URIs, ``http``
    or ``s3`` (Debian's apt-transport-s3)."""
    from mirrorkit import gpg
    from mirrorkit.publish import s3

    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if client_url not in ("http", "s3"):
        raise UsageError(f"--client-url {client_url!r}: use http or s3")
    target = s3.S3Target.parse(url, endpoint_url=endpoint_url, region=region)
    with store.locked(
        target_lock(target.url, target.endpoint_url), *source_locks(name, components)
    ):
        resolved = sources.resolve(store, name, components or {})
        info = resolved.info
        suite = _suite(resolved, suite)
        fingerprint = gpg.resolve_signing_key(key, gnupghome)
        bucket = s3.connect(target, jobs=jobs)
        bucket.check()  # wrong credentials, no such bucket: before anything is written
        dest = s3.BucketTarget(bucket, break_lock=break_lock)

        sign = _signer(store, info, suite, fingerprint, gnupghome, origin, label, valid_for)
        done = executor.publish(dest, suite, store.pool, sign, prune=prune, reporter=reporter)
        record_published(store, target.url, suite, resolved.label, endpoint_url=target.endpoint_url)
    plan = done.signed.plan
    return Published(
        result=s3.S3PublishResult(
            target=target,
            suite=suite,
            uploaded=done.written,
            reused=done.reused,
            removed=done.removed,
            http_url=target.http_url(bucket.region),
            key_name=done.signed.key_name,
            broken_lock=dest.broken,
        ),
        snapshot=info.name,
        components=plan.components,
        architectures=plan.architectures,
        fingerprint=fingerprint,
        client_url=client_url,
        follows=resolved.repos,
        kinds=plan.kinds,
    )
