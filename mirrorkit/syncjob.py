"""The main job: update a profile's mirrors, snapshot them into one snapshot, publish it.

(Not ``sync.py``: ``mirrorkit.sync`` is the public API function, and importing a submodule of
that name would replace it on the package.)
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirrorkit import gpg, mirror, publish, query, refs, snapshot
from mirrorkit.errors import MirrorkitError, UsageError
from mirrorkit.models import UpdateResult
from mirrorkit.net.config import network_config
from mirrorkit.net.redact import redact_url
from mirrorkit.profile import Profile, check_keyrings, load_profile, snapshot_name
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.resolve import Selection
from mirrorkit.store import Store, check_name


@dataclass(frozen=True, slots=True)
class SyncResult:
    profile: Profile
    updates: tuple[UpdateResult, ...]
    snapshot: snapshot.SnapshotInfo | None  # None: a dry run (``updates`` say what it would fetch)
    published: publish.Published | None
    dry_run: bool = False
    unchanged: bool = False  # no upstream changed: ``snapshot`` is the one an earlier sync made


def _check_supported(profile: Profile, no_publish: bool, gnupghome: str | None) -> None:
    """Refuse, before downloading anything, what cannot work: a query with a typo, a publish
    without a key, an S3 bucket that cannot be reached with these credentials."""
    check_keyrings(profile)
    if profile.filter is not None:
        try:
            query.parse(profile.filter.query)  # a typo fails now, not after the downloads
        except MirrorkitError as exc:
            exc.message = f"{profile.path}: filter.query: {exc.message}"
            raise
    pub = profile.publish
    if pub is None or no_publish:
        return
    try:  # the key is looked up now, not after the downloads
        gpg.resolve_signing_key(pub.key, gnupghome)
    except UsageError as exc:
        exc.message = f"{profile.path}: publish.key: {exc.message}"
        exc.hint = f"{exc.hint} Or run with --no-publish."
        raise
    if pub.s3 is not None:
        from mirrorkit.publish import s3  # boto3 only when a profile publishes to S3

        target = s3.S3Target.parse(pub.s3, endpoint_url=pub.endpoint_url)
        try:
            s3.connect(target).check()
        except MirrorkitError as exc:
            exc.message = f"{profile.path}: publish.s3: {exc.message}"
            exc.hint = f"{exc.hint or ''} Nothing was downloaded.".strip()
            raise


def sync(
    store: Store,
    profile_path: str | Path,
    *,
    options: mirror.UpdateOptions | None = None,
    no_publish: bool = False,
    force_snapshot: bool = False,
    gnupghome: str | None = None,
    reporter: Reporter | None = None,
) -> SyncResult:
    reporter = reporter or NullReporter()
    profile, selection = _load(profile_path, no_publish, gnupghome)
    with store.locked(*_locks(profile, no_publish)):
        updates = asyncio.run(_update(store, profile, selection, options, reporter))
        if options is not None and options.dry_run:
            return SyncResult(profile, tuple(updates), None, None, dry_run=True)
        info, published, unchanged = _snapshot_and_publish(
            store, profile, selection, options, no_publish, gnupghome, reporter,
            None if force_snapshot else updates,
        )  # fmt: skip
    return SyncResult(profile, tuple(updates), info, published, unchanged=unchanged)


async def sync_async(
    store: Store,
    profile_path: str | Path,
    *,
    options: mirror.UpdateOptions | None = None,
    no_publish: bool = False,
    force_snapshot: bool = False,
    gnupghome: str | None = None,
    reporter: Reporter | None = None,
) -> SyncResult:
    """:func:`sync` as a coroutine: the downloads run on the caller's event loop; what blocks
    (the checks, which may reach S3, then snapshot and publish) on a worker thread.

    (:func:`sync` runs those on its own thread instead: Ctrl-C stops them there at once.)"""
    reporter = reporter or NullReporter()
    profile, selection = await asyncio.to_thread(_load, profile_path, no_publish, gnupghome)
    with store.locked(*_locks(profile, no_publish)):
        updates = await _update(store, profile, selection, options, reporter)
        if options is not None and options.dry_run:
            return SyncResult(profile, tuple(updates), None, None, dry_run=True)
        info, published, unchanged = await asyncio.to_thread(
            _snapshot_and_publish, store, profile, selection, options, no_publish, gnupghome,
            reporter, None if force_snapshot else updates,
        )  # fmt: skip
    return SyncResult(profile, tuple(updates), info, published, unchanged=unchanged)


def _locks(profile: Profile, no_publish: bool) -> list[str]:
    """Everything a sync changes, locked for its whole run (taken in order at the start, so a
    sync never fails after hours of downloading because a lock was taken meanwhile): its
    mirrors, the store's auth file if their URLs carry credentials, its publish target and its
    channel. Its new snapshot's name is chosen, and locked, when it is made."""
    from mirrorkit.mirrors import add_locks

    locks = add_locks(profile.upstreams)
    pub = profile.publish
    if pub is not None and not no_publish:
        if pub.fs is not None:
            locks.append(publish.target_lock(Path(pub.fs)))
        elif pub.s3 is not None:
            from mirrorkit.publish import s3

            target = s3.S3Target.parse(pub.s3, endpoint_url=pub.endpoint_url)
            locks.append(publish.target_lock(target.url, target.endpoint_url))
    if pub is not None and pub.channel is not None:
        locks.append(f"channel/{check_name(pub.channel, 'channel')}")
    return locks


def _load(
    profile_path: str | Path, no_publish: bool, gnupghome: str | None
) -> tuple[Profile, Selection | None]:
    profile = load_profile(profile_path)
    _check_supported(profile, no_publish, gnupghome)
    selection = None
    if profile.filter is not None:
        selection = Selection(
            profile.filter.query,
            with_deps=profile.filter.with_deps,
            with_recommends=profile.filter.with_recommends,
            allow_missing=profile.filter.allow_missing,
            allow_empty=profile.filter.allow_empty,
        )
    return profile, selection


async def _update(
    store: Store,
    profile: Profile,
    selection: Selection | None,
    options: mirror.UpdateOptions | None,
    reporter: Reporter,
) -> list[UpdateResult]:
    dry_run = options is not None and options.dry_run
    if not dry_run:  # a dry run changes nothing: it plans with the profile's specs as they are
        for spec in profile.upstreams:
            mirror.add(store, spec, replace=True)
    for spec in profile.upstreams:
        reporter.info(f"updating {spec.name} ({redact_url(spec.url)} {spec.suite})")
    # The profile's [network] table, under what the command line gave.
    options = options or mirror.UpdateOptions()
    given = options.network
    options = replace(
        options,
        network=network_config(
            given.proxy, given.ca_bundle, given.auth_files, base=profile.network
        ),
    )
    names = [spec.name for spec in profile.upstreams]
    return await mirror.update_group_async(
        store, names, options, reporter, selection, profile.snapshot.merge,
        planned=profile.upstreams if dry_run else None,
    )  # fmt: skip


def _snapshot_and_publish(
    store: Store,
    profile: Profile,
    selection: Selection | None,
    options: mirror.UpdateOptions | None,
    no_publish: bool,
    gnupghome: str | None,
    reporter: Reporter,
    updates: list[UpdateResult] | None = None,
) -> tuple[snapshot.SnapshotInfo, publish.Published | None, bool]:
    """The profile's snapshot of the updated mirrors, published and its channel moved; and
    whether it is an earlier one (``updates`` given, none changed: see :func:`_unchanged`)."""
    names = [spec.name for spec in profile.upstreams]
    with store.locked(*_locks(profile, no_publish)), ExitStack() as new_name:
        info = _unchanged(store, profile, selection, updates)
        unchanged = info is not None
        if info is None:
            stem = snapshot_name(profile.snapshot, profile.name, datetime.now(UTC).date())
            # The new name stays locked until its channel points at it.
            name = new_name.enter_context(refs.creating_unique_snapshot(store, stem))
            info = snapshot.create_from_mirrors(
                store, name, names, profile.snapshot.merge, selection
            )
        elif _served(store, profile, info.name):
            return info, None, True
        published = None
        pub = profile.publish
        suite = None if pub is None else pub.suite or pub.channel or profile.name
        try:
            if pub is not None and not no_publish:
                how: dict[str, Any] = {
                    "key": pub.key,
                    "suite": suite,
                    "gnupghome": gnupghome,
                    "origin": pub.origin,
                    "label": pub.label,
                    "valid_for": pub.valid_for,
                }
                if pub.fs is not None:
                    published = publish.publish_fs(store, info.name, pub.fs, **how)
                elif pub.s3 is not None:
                    published = publish.publish_s3(
                        store,
                        info.name,
                        pub.s3,
                        endpoint_url=pub.endpoint_url,
                        region=pub.region,
                        prune=pub.prune,
                        jobs=options.jobs if options is not None else 8,
                        reporter=reporter,
                        **how,
                    )
        except MirrorkitError as exc:
            assert pub is not None
            earlier = " (by an earlier sync: no upstream changed)" if unchanged else ""
            where = pub.fs or pub.s3
            moved = f" channel {pub.channel} was not moved;" if pub.channel else ""
            if exc.hint and "--break-lock" in exc.hint:
                exc.hint = exc.hint.replace(
                    "--break-lock", "'mirrorkit publish s3 ... --break-lock'"
                )
            exc.hint = (
                f"{exc.hint or 'fix the cause.'} Snapshot {info.name}{earlier} was created, "
                f"not published to {where};{moved} run this sync again, or 'mirrorkit publish' it."
            )
            raise
        # Only now: a channel never points at a snapshot its suite does not serve.
        if pub is not None and pub.channel is not None and not _points(store, pub.channel, info):
            refs.set_channel(store, pub.channel, info.name)
    return info, published, unchanged


def _unchanged(
    store: Store,
    profile: Profile,
    selection: Selection | None,
    updates: list[UpdateResult] | None,
) -> snapshot.SnapshotInfo | None:
    """The snapshot an earlier sync of this profile made, when no upstream changed since.

    No update changed its mirror (each verified InRelease is the one committed before, under
    the same spec and filter), and a snapshot exists whose provenance is exactly what a new one
    would record: the same mirrors in order, each with the same InRelease SHA256, signer,
    Release date and fetch time, and the same filter and merge policy. The newest such snapshot
    is the one; if it was removed, a new one is made."""
    if updates is None or any(u.changed for u in updates):
        return None
    names = [spec.name for spec in profile.upstreams]
    return snapshot.made_from_mirrors(store, names, profile.snapshot.merge, selection)


def _served(store: Store, profile: Profile, name: str) -> bool:
    """Whether the profile's publish target serves snapshot ``name`` already (so an unchanged
    sync has nothing to publish). A suite with ``valid_for`` is re-signed every time: its
    Release expires. A channel left elsewhere is moved (after publishing, as always)."""
    from mirrorkit.publish.records import serves

    pub = profile.publish
    if pub is None:
        return True
    if pub.valid_for or (pub.channel is not None and not _points(store, pub.channel, name)):
        return False
    suite = pub.suite or pub.channel or profile.name
    if pub.fs is not None:
        return serves(store, Path(pub.fs), suite, name)
    if pub.s3 is not None:
        from mirrorkit.publish import s3

        target = s3.S3Target.parse(pub.s3, endpoint_url=pub.endpoint_url)
        return serves(store, target.url, suite, name, endpoint_url=target.endpoint_url)
    return True


def _points(store: Store, channel_name: str, target: snapshot.SnapshotInfo | str) -> bool:
    from mirrorkit import channel

    name = target if isinstance(target, str) else target.name
    return (
        channel.exists(store, channel_name) and channel.load(store, channel_name).snapshot == name
    )
