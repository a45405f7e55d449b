"""Snapshots and channels: snapshot create/list/show/rm/search/diff/verify/filter/why/merge,
channel set/list/history/rollback."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.api._support import (
    StrPath,
    boundary,
    open_store,
)
from mirrorkit.errors import MirrorkitError, UsageError
from mirrorkit.models import (
    FilterResult,
    MergeResult,
    Package,
    Removed,
    SnapshotDetails,
    SnapshotDiff,
    SnapshotList,
    VerifyResult,
    WhyStep,
)

if TYPE_CHECKING:
    from mirrorkit.channel import Channel, Event
    from mirrorkit.snapshot import SnapshotInfo


# --- snapshots -----------------------------------------------------------------------------------


@boundary
def snapshot_create(
    name: str | None = None,
    *,
    from_mirror: str | None = None,
    from_debs: Sequence[StrPath] = (),
    from_repo: str | None = None,
    component: str | None = None,
    wait: float | None = None,
    store: StrPath | None = None,
) -> SnapshotInfo:
    """Freeze a mirror's current state (``name`` defaults to MIRROR-YYYYMMDD), your own
    .deb files (``from_debs``: files or directories), or a repo's head (``from_repo``) into
    an immutable snapshot."""
    from mirrorkit import mirror, refs, snapshot

    if isinstance(from_debs, str | os.PathLike):
        from_debs = [from_debs]
    if from_repo is not None:
        if from_debs or from_mirror or component is not None:
            raise UsageError("--from-repo takes no --from-mirror, --from-debs or --component")
        if not name:
            raise UsageError("snapshot create --from-repo needs a NAME")
        from mirrorkit import repo

        st = open_store(store)
        with refs.creating_snapshot(st, name):
            return repo.freeze(st, from_repo, name)
    if from_debs and from_mirror:
        raise UsageError("snapshot create takes --from-mirror or --from-debs, not both")
    if not from_debs and not from_mirror:
        raise UsageError(
            "snapshot create needs --from-mirror MIRROR, --from-debs PATH or --from-repo REPO"
        )
    if name is not None and not name:
        raise UsageError("the snapshot name is empty", "leave it out for the default name.")
    st = open_store(store)
    if from_debs:
        if not name:
            raise UsageError("snapshot create --from-debs needs a NAME")
        paths = [Path(p) for p in from_debs]
        with refs.creating_snapshot(st, name):
            return snapshot.create_from_debs(st, name, paths, component or "main")
    assert from_mirror is not None
    if component is not None:
        raise UsageError("--component is for --from-debs; a mirror's snapshot keeps its components")
    mirror.load(st, from_mirror)  # named before the snapshot's name
    if name:
        with refs.creating_snapshot(st, name, f"mirror/{from_mirror}"):
            return snapshot.create_from_mirror(st, from_mirror, name)
    stem = refs.default_stem(from_mirror)
    with st.locked(f"mirror/{from_mirror}"), refs.creating_unique_snapshot(st, stem) as name:
        return snapshot.create_from_mirror(st, from_mirror, name)


@boundary
def snapshot_list(*, store: StrPath | None = None) -> SnapshotList:
    """Every snapshot that can be read, and an error for each that cannot."""
    from mirrorkit import snapshot

    damaged: list[MirrorkitError] = []
    infos = snapshot.list_all(open_store(store), damaged)
    return SnapshotList(tuple(infos), tuple(damaged))


@boundary
def snapshot_show(
    name: str, *, packages: bool = False, store: StrPath | None = None
) -> SnapshotDetails:
    """A snapshot's record and whether it is intact on disk; with ``packages``, its packages."""
    from mirrorkit import snapshot

    st = open_store(store)
    info = snapshot.load(st, name)
    problems = snapshot.check(st, info)
    pkgs = snapshot.packages(st, info) if packages else []
    ordered = sorted(pkgs, key=lambda p: (p.name, p.version, p.architecture))
    return SnapshotDetails(info, tuple(problems), tuple(ordered))


@boundary
def snapshot_rm(
    name: str, *, force: bool = False, wait: float | None = None, store: StrPath | None = None
) -> Removed:
    """Remove a snapshot (refused while a channel or snapshot needs it, unless ``force``)."""
    from mirrorkit import refs

    refs.remove_snapshot(open_store(store), name, force=force)
    return Removed("snapshot", name)


@boundary
def snapshot_search(
    name: str, query: str, *, with_deps: bool = False, store: StrPath | None = None
) -> tuple[Package, ...]:
    """The packages of snapshot ``name`` that ``query`` (aptly's language) matches, sorted by
    ``name_version_arch``; empty if none does (the CLI then exits 1, as grep). With
    ``with_deps``, also what they depend on, as far as the snapshot satisfies it."""
    from mirrorkit import resolve, snapshot

    st = open_store(store)
    if not with_deps:
        return tuple(snapshot.search(st, name, query))
    selection = resolve.Selection(query, with_deps=True, allow_missing=True, allow_empty=True)
    picked = resolve.apply(snapshot.universe(st, [snapshot.load(st, name)]), selection)
    return tuple(sorted(picked.packages, key=lambda p: p.ref))


@boundary
def snapshot_rename(
    name: str, new_name: str, *, wait: float | None = None, store: StrPath | None = None
) -> SnapshotInfo:
    """Give snapshot ``name`` the name ``new_name``: the same packages and provenance under a
    new record (its digest covers the name); refused while a channel or a snapshot made from
    it names it."""
    from mirrorkit import refs

    return refs.rename_snapshot(open_store(store), name, new_name)


@boundary
def snapshot_diff(a: str, b: str, *, store: StrPath | None = None) -> SnapshotDiff:
    """Packages added, removed, upgraded, downgraded and changed from snapshot A to B."""
    from mirrorkit import snapshot

    return SnapshotDiff(a, b, tuple(snapshot.diff(open_store(store), a, b)))


@boundary
def snapshot_verify(
    name: str, *, with_: Sequence[str] = (), store: StrPath | None = None
) -> VerifyResult:
    """Dependencies of ``name``'s packages nothing in it (or in the ``with_`` snapshots)
    satisfies; ``.ok`` is False if there are any."""
    from mirrorkit import snapshot

    if isinstance(with_, str):
        with_ = [with_]
    return VerifyResult(name, tuple(snapshot.verify(open_store(store), name, with_)))


@boundary
def snapshot_filter(
    source: str,
    dest: str,
    query: str,
    *,
    with_deps: bool = False,
    with_recommends: bool = False,
    with_essential: bool = False,
    allow_missing: bool = False,
    allow_empty: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
) -> FilterResult:
    """A new snapshot ``dest``: the packages of ``source`` that ``query`` matches (with
    ``with_deps``, and everything they need). A query that matches nothing raises
    EmptyResultError (naming close package names) unless ``allow_empty``."""
    from mirrorkit import refs, resolve, snapshot

    if with_recommends and not with_deps:
        raise UsageError("--with-recommends needs --with-deps (it widens the closure)")
    selection = resolve.Selection(
        query, with_deps, with_recommends, with_essential, allow_missing, allow_empty
    )
    st = open_store(store)
    with refs.creating_snapshot(st, dest, f"snapshot/{source}"):
        info, picked = snapshot.filter_snapshot(st, source, dest, selection)
    unmet = tuple(picked.closure.unmet) if picked.closure is not None else ()
    return FilterResult(info, tuple(picked.matched), tuple(picked.packages), unmet)


@boundary
def snapshot_why(
    name: str, package: str, *, from_: str | None = None, store: StrPath | None = None
) -> tuple[WhyStep, ...]:
    """The dependency chain that pulled ``package`` into snapshot ``name``, from the package
    the filter (or ``from_``, a query) matched down to it."""
    from mirrorkit import snapshot

    return tuple(
        WhyStep(p, dep) for p, dep in snapshot.why(open_store(store), name, package, from_)
    )


@boundary
def snapshot_merge(
    dest: str,
    sources: Sequence[str],
    *,
    latest: bool = False,
    all_versions: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
) -> MergeResult:
    """Merge snapshots into a new one ``dest``: by default, for each package the later of
    ``sources`` wins; ``latest``: the highest version; ``all_versions``: keep every version."""
    from mirrorkit import refs, snapshot

    if isinstance(sources, str):
        sources = [sources]
    if latest and all_versions:
        raise UsageError("--latest and --all-versions exclude each other")
    policy = "latest" if latest else "all-versions" if all_versions else "later"
    st = open_store(store)
    with refs.creating_snapshot(st, dest, *(f"snapshot/{s}" for s in sources)):
        info = snapshot.merge(st, dest, sources, policy)
    return MergeResult(info, policy)


# --- channels ------------------------------------------------------------------------------------


@boundary
def channel_set(
    channel: str, snapshot: str, *, wait: float | None = None, store: StrPath | None = None
) -> Channel:
    """Point ``channel`` (e.g. prod) at ``snapshot``; publish the channel to make it live."""
    from mirrorkit import refs

    return refs.set_channel(open_store(store), channel, snapshot)


@boundary
def channel_list(*, store: StrPath | None = None) -> tuple[Channel, ...]:
    """Every channel and the snapshot it points at."""
    from mirrorkit import channel as channels

    return tuple(channels.list_all(open_store(store)))


@boundary
def channel_history(channel: str, *, store: StrPath | None = None) -> tuple[Event, ...]:
    """Who moved ``channel``, when, and to what (oldest first)."""
    from mirrorkit import channel as channels

    return channels.load(open_store(store), channel).history


@boundary
def channel_rollback(
    channel: str, *, wait: float | None = None, store: StrPath | None = None
) -> Channel:
    """Point ``channel`` back at the snapshot it had before."""
    from mirrorkit import channel as channels

    return channels.rollback(open_store(store), channel)
