"""What leaves the store: publish fs/s3, bundle export/show/verify/import; gc and store verify."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit.api._support import (
    StrPath,
    boundary,
    boundary_async,
    gnupghome_arg,
    open_store,
    reporter_or_null,
)
from mirrorkit.models import GcReport
from mirrorkit.progress import Reporter

if TYPE_CHECKING:
    from mirrorkit.bundle import BundleInfo, ExportResult, ImportResult, VerifyReport
    from mirrorkit.integrity import StoreVerifyReport
    from mirrorkit.publish import Published
    from mirrorkit.publish.drop import Dropped
    from mirrorkit.publish.executor import Target
    from mirrorkit.publish.records import PublishedSuite
    from mirrorkit.store import Store


# --- publish -------------------------------------------------------------------------------------


def _follow(
    st: Store,
    pub: Published,
    source: str | None,
    components: Mapping[str, str],
    *,
    kind: str,
    options: dict[str, Any],
) -> None:
    """A suite published from a repo follows it: remember how, for ``--publish``."""
    if not pub.follows:
        return
    from mirrorkit import repopublish

    sources = [("", source)] if source is not None else sorted(components.items())
    spec = repopublish.spec_of(pub, sources, kind=kind, options=options)
    repopublish.follow(st, pub.follows, spec, wait=300.0)


@boundary
def publish_fs(
    source: str | None,
    directory: StrPath,
    *,
    suite: str | None = None,
    key: str | None = None,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    component: Sequence[str] | Mapping[str, str] = (),
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
) -> Published:
    """Publish a snapshot, channel or repo as a signed APT tree in ``directory`` (the suite
    is switched atomically); or one source per component: ``source`` None and ``component``
    ``["main=SNAPSHOT", "internal=REPO"]`` (or a mapping), with ``suite``. A suite published
    from a channel or repo follows it. ``key``: the signing key; default: the only secret
    key."""
    from mirrorkit import publish
    from mirrorkit.publish.sources import parse_components

    components = parse_components(component)
    st = open_store(store)
    pub = publish.publish_fs(
        st,
        source,
        Path(directory),
        key=key,
        suite=suite,
        gnupghome=gnupghome_arg(gnupghome),
        origin=origin,
        label=label,
        valid_for=valid_for,
        components=components,
    )
    options = {"origin": origin, "label": label, "valid_for": valid_for}
    _follow(st, pub, source, components, kind="fs", options=options)
    return pub


@boundary
def publish_s3(
    source: str | None,
    url: str,
    *,
    suite: str | None = None,
    key: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    jobs: int = 8,
    prune: bool = False,
    break_lock: bool = False,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    component: Sequence[str] | Mapping[str, str] = (),
    client_url: str = "http",
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    reporter: Reporter | None = None,
) -> Published:
    """Publish a snapshot, channel or repo (or one source per ``component``, as
    :func:`publish_fs`) as a signed APT tree to ``s3://BUCKET/PREFIX`` (InRelease last: a
    client never sees half a suite). Credentials: the standard AWS chain. ``client_url``:
    the client stanza's URIs, ``http`` or ``s3`` (Debian's apt-transport-s3)."""
    from mirrorkit import publish
    from mirrorkit.publish.sources import parse_components

    components = parse_components(component)
    st = open_store(store)
    pub = publish.publish_s3(
        st,
        source,
        url,
        key=key,
        suite=suite,
        gnupghome=gnupghome_arg(gnupghome),
        origin=origin,
        label=label,
        valid_for=valid_for,
        endpoint_url=endpoint_url,
        region=region,
        jobs=jobs,
        prune=prune,
        break_lock=break_lock,
        reporter=reporter_or_null(reporter),
        components=components,
        client_url=client_url,
    )
    options = {
        "origin": origin,
        "label": label,
        "valid_for": valid_for,
        "endpoint_url": endpoint_url,
        "region": region,
        "prune": prune,
        "client_url": client_url,
    }
    _follow(st, pub, source, components, kind="s3", options=options)
    return pub


@boundary_async
async def publish_s3_async(
    source: str | None,
    url: str,
    *,
    suite: str | None = None,
    key: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    jobs: int = 8,
    prune: bool = False,
    break_lock: bool = False,
    origin: str | None = None,
    label: str | None = None,
    valid_for: str | None = None,
    component: Sequence[str] | Mapping[str, str] = (),
    client_url: str = "http",
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    reporter: Reporter | None = None,
) -> Published:
    """:func:`publish_s3` as a coroutine (the uploads run on a worker thread: boto3 blocks)."""
    import asyncio

    return await asyncio.to_thread(
        functools.partial(
            publish_s3,
            source,
            url,
            suite=suite,
            key=key,
            endpoint_url=endpoint_url,
            region=region,
            jobs=jobs,
            prune=prune,
            break_lock=break_lock,
            origin=origin,
            label=label,
            valid_for=valid_for,
            component=component,
            client_url=client_url,
            store=store,
            gnupghome=gnupghome,
            reporter=reporter,
        )
    )


@boundary
def publish_list(*, store: StrPath | None = None) -> tuple[PublishedSuite, ...]:
    """Every suite this store published: the directory or ``s3://`` URL, suite, snapshot."""
    from mirrorkit.publish.records import published_suites

    return tuple(published_suites(open_store(store)))


@boundary
def publish_drop(
    target: StrPath,
    suite: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    break_lock: bool = False,
    store: StrPath | None = None,
) -> Dropped:
    """Drop ``suite`` from a published directory or ``s3://BUCKET/PREFIX``: its indices and
    signed files, then the pool files mirrorkit placed there that no other suite lists."""
    from mirrorkit.publish import drop, s3
    from mirrorkit.publish.fs import DirectoryTarget

    st = open_store(store)
    text = os.fspath(target)
    if text.startswith("s3://"):
        parsed = s3.S3Target.parse(text, endpoint_url=endpoint_url, region=region)
        bucket = s3.connect(parsed)
        bucket.check()
        where: Path | str = parsed.url
        dest: Target = s3.BucketTarget(bucket, break_lock=break_lock)
        endpoint_url = parsed.endpoint_url
    else:
        where = Path(text).resolve()
        dest = DirectoryTarget(where)
    return drop.drop(st, dest, where, suite, endpoint_url)


# --- bundles -------------------------------------------------------------------------------------


@boundary
def bundle_export(
    snapshots: Sequence[str],
    *,
    output: StrPath,
    key: str | None = None,
    channels: Sequence[str] = (),
    since: str | None = None,
    split: str | int | None = None,
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    reporter: Reporter | None = None,
) -> ExportResult:
    """Write ``snapshots`` and the packages they need as one signed bundle ``output``
    (``split``: volumes of at most this size, bytes or e.g. ``"700M"``, ``"4GiB"``)."""
    from mirrorkit import bundle

    if isinstance(snapshots, str):
        snapshots = [snapshots]
    if isinstance(channels, str):
        channels = [channels]
    size = bundle.parse_size(split) if isinstance(split, str) else split
    return bundle.export(
        open_store(store),
        snapshots,
        Path(output),
        key=key,
        gnupghome=gnupghome_arg(gnupghome),
        channels=channels,
        since=since,
        split=size,
        reporter=reporter_or_null(reporter),
    )


@boundary
def bundle_show(file: StrPath, *, keyring: StrPath | None = None) -> BundleInfo:
    """What a bundle holds, from its manifest alone; with ``keyring``, its signature checked."""
    from mirrorkit import bundle

    return bundle.show(Path(file), None if keyring is None else Path(keyring))


@boundary
def bundle_verify(
    file: StrPath, *, keyring: StrPath, reporter: Reporter | None = None
) -> VerifyReport:
    """Check the signature, then every member's size and SHA256. Problems are reported in the
    result (``.ok``, ``.problems``), not raised: the caller wants all of them."""
    from mirrorkit import bundle

    return bundle.verify(Path(file), Path(keyring), reporter_or_null(reporter))


@boundary
def bundle_import(
    file: StrPath,
    *,
    keyring: StrPath,
    wait: float | None = None,
    store: StrPath | None = None,
    reporter: Reporter | None = None,
) -> ImportResult:
    """Verify a bundle (signature first) and add its snapshots and channel pins to the store.
    The store is created only once the signature checked out."""
    from mirrorkit import bundle

    # The import takes the lock (and so creates the store) only once the signature checked.
    return bundle.import_bundle(
        open_store(store), Path(file), Path(keyring), reporter_or_null(reporter)
    )


# --- gc and sync ---------------------------------------------------------------------------------


@boundary
def gc(
    *, dry_run: bool = False, wait: float | None = None, store: StrPath | None = None
) -> GcReport:
    """Remove pool objects no mirror, snapshot or published suite references, temporary
    files, and partial downloads of abandoned updates (gc excludes every other command, so
    no running update owns them); in directories published from the store, pool files no
    suite lists and what killed publishes left."""
    from mirrorkit import garbage

    r = garbage.collect(open_store(store), dry_run=dry_run)
    return GcReport(
        dry_run,
        r.pool_files,
        r.meta_files,
        r.temp_files,
        r.bytes,
        tuple(r.removed),
        partial_files=r.partial_files,
        tree_files=r.tree_files,
    )


@boundary
def store_verify(
    *,
    wait: float | None = None,
    store: StrPath | None = None,
    reporter: Reporter | None = None,
) -> StoreVerifyReport:
    """Check the store the hard way: every pool and metadata object re-hashed against its
    name, every record read, every snapshot and mirror state intact, and every directory
    published from the store consistent with its suites and records. Problems are reported
    in the result (``.ok``, ``.problems``), not raised."""
    from mirrorkit import integrity

    return integrity.verify(open_store(store), reporter_or_null(reporter))
