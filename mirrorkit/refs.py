"""Names and what they name, who uses a snapshot, and what gc must keep.

The rules here span several kinds of record, so they live above them: snapshots know nothing
of channels, channels build on snapshots, and this module on both (imports point one way:
cli/api -> refs -> channel -> snapshot -> stages).

- Snapshots, channels and repos share one namespace: publish takes any of them, so a name
  that is two would be ambiguous. Whatever creates a snapshot or a repo or sets a channel
  checks its name here (``check_free``, ``unique_snapshot_name``, ``set_channel``); a repo's
  history snapshots are named ``REPO+N``, a name no other snapshot may take.
- A snapshot is needed by the channels that point at it or could roll back to it, by the
  repos whose history holds it, and by the snapshots made from it (merge, filter):
  ``remove_snapshot`` refuses while one does. A tree published from it does not need it:
  the tree holds its own copies of the pool files, and gc keeps the ones it hard-links
  (``gc_roots``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from mirrorkit import channel, keylist, mirror, repo, snapshot
from mirrorkit.errors import ConflictError, FormatError, StoreLockedError
from mirrorkit.models import IndexRef
from mirrorkit.store import Store, check_name

Kind = Literal["snapshot", "channel", "repo"]


def kind_of(store: Store, name: str, what: str = "snapshot or channel") -> Kind | None:
    """What ``name`` names in this store, if anything (``what`` words a bad-name error)."""
    check_name(name, what)
    if snapshot.exists(store, name):
        return "snapshot"
    if channel.exists(store, name):
        return "channel"
    if repo.exists(store, name):
        return "repo"
    return None


def check_free(store: Store, name: str, kind: Kind) -> None:
    """Refuse ``name`` for a new ``kind`` when another kind holds it. (A snapshot of that
    name already existing is the snapshot writer's refusal: snapshots never change.)"""
    other = kind_of(store, name, kind)
    if other is not None and other != kind:
        raise ConflictError(
            f"{name!r} is a {other} name; a {kind} cannot share it",
            "pick another name: publish takes a snapshot, a channel or a repo by its name.",
        )
    if kind == "snapshot" and (owner := repo.history_owner(store, name)) is not None:
        raise ConflictError(
            f"{name!r} is a name of repo {owner}'s history (REPO+N)",
            "pick another name; to freeze the repo: 'mirrorkit snapshot create NAME "
            f"--from-repo {owner}'.",
        )


# Whatever creates a snapshot NAME holds both locks of the name, so that no channel NAME
# appears meanwhile (and the reverse: a channel's writers hold ``channel/NAME``).
name_locks = snapshot.new_name_locks


@contextmanager
def creating_snapshot(store: Store, name: str, *sources: str) -> Iterator[None]:
    """Hold the locks of snapshot ``name`` and of what it is made from (``sources``: lock
    resources, e.g. ``mirror/web``) while it is made, refusing a name a channel holds.
    Checked before the lock too, so that a refused name does not create a store."""
    check_free(store, name, "snapshot")
    with store.locked(*name_locks(name), *sources):
        check_free(store, name, "snapshot")
        yield


@contextmanager
def creating_unique_snapshot(store: Store, stem: str) -> Iterator[str]:
    """The first of ``stem``, ``stem-2``, ``stem-3``... that neither kind holds, locked (see
    :func:`name_locks`) while the caller makes the snapshot. A name another command holds the
    lock of right now (it may be making that very name) is passed over, without waiting."""
    name, n = stem, 1
    while True:
        with ExitStack() as held:
            try:
                held.enter_context(store.locked(*name_locks(name), wait=0))
            except StoreLockedError as exc:
                if exc.resource not in name_locks(name):
                    raise  # the store itself (gc runs)
            else:
                if kind_of(store, name, "snapshot") is None:
                    yield name
                    return
        n += 1
        name = f"{stem}-{n}"


def default_stem(base: str, today: date | None = None) -> str:
    """``BASE-YYYYMMDD``, the default snapshot name (then ``-2``, ``-3``... if taken)."""
    day = today or datetime.now(UTC).date()
    return f"{base}-{day.strftime('%Y%m%d')}"


def users(store: Store, snapshot_name: str) -> list[str]:
    """What needs snapshot ``snapshot_name``: channels pointing at it (or able to roll back to
    it), and snapshots made from it, as ``"channel prod"``, ``"snapshot web"``."""
    needed = [
        f"channel {c.name}"
        for c in channel.list_all(store)
        if c.snapshot == snapshot_name or snapshot_name in c.stack()
    ]
    needed += [f"repo {name}" for name in repo.holders(store, snapshot_name)]
    for other in snapshot.list_all(store):
        if any(s.snapshot == snapshot_name for s in other.sources):
            needed.append(f"snapshot {other.name}")
    return needed


def remove_snapshot(store: Store, name: str, *, force: bool = False) -> None:
    """Remove snapshot ``name``, refused while something needs it (see :func:`users`) unless
    ``force``. Whatever adds a user of a snapshot holds the snapshot's lock meanwhile."""
    with store.locked(f"snapshot/{name}"):
        snapshot.load(store, name)
        needed = users(store, name)
        if needed and not force:
            raise ConflictError(
                f"snapshot {name} is needed by: {', '.join(needed)}",
                "repoint or remove those first, or pass --force.",
            )
        snapshot.remove(store, name)


def rename_snapshot(store: Store, name: str, new_name: str) -> snapshot.SnapshotInfo:
    """Rename snapshot ``name`` to ``new_name``, refused while something names it (see
    :func:`users`): a channel's history and a snapshot's provenance keep the old name."""
    check_name(name, "snapshot")
    check_name(new_name, "snapshot")
    with store.locked(f"snapshot/{name}", *name_locks(new_name)):
        info = snapshot.load(store, name)
        needed = users(store, name)
        if needed:
            raise ConflictError(
                f"unable to rename: snapshot {name} is named by: {', '.join(needed)}",
                "they record the name; create a new snapshot instead (merge it alone).",
            )
        check_free(store, new_name, "snapshot")
        if snapshot.exists(store, new_name):
            raise ConflictError(f"unable to rename: snapshot {new_name} already exists")
        renamed = snapshot.write_renamed(store, info, new_name)
        snapshot.remove(store, name)
        return renamed


def set_channel(store: Store, name: str, snapshot_name: str, *, via: str = "") -> channel.Channel:
    """Point channel ``name`` at ``snapshot_name`` (see :func:`channel.set_channel`), refused
    when a snapshot has the name."""
    check_name(name, "channel")  # a bad channel name is named as such, before other checks
    check_name(snapshot_name, "snapshot")
    # The snapshot's lock: 'snapshot rm' must see this channel, or this must see it gone.
    with store.locked(f"channel/{name}", f"snapshot/{snapshot_name}"):
        check_free(store, name, "channel")
        return channel.set_channel(store, name, snapshot_name, via=via)


@dataclass(frozen=True, slots=True)
class Roots:
    """What gc keeps: pool objects and metadata objects, by SHA256."""

    pool: frozenset[str]
    meta: frozenset[str]


def gc_roots(store: Store) -> Roots:
    """Every object still referenced: a mirror's committed state (its InRelease, upstream
    indices and Packages indices, and their packages), every snapshot's indices and packages,
    and the pool files a directory published from this store lists.

    A bucket published to S3 holds its own copies of the pool objects (and reading it needs
    credentials), so it is no root; its record stays. Call under the store lock: what is not
    a root may be removed."""
    # Imported here: 'channel set' and 'snapshot rm' need none of publishing's modules.
    from mirrorkit.publish.fs import published_files
    from mirrorkit.publish.records import published_trees

    pool: set[str] = set()
    meta: set[str] = set()
    indexed: set[str] = set()

    def index(refs: tuple[IndexRef, ...]) -> None:
        # Each index once (30 daily snapshots of an unchanged mirror share it), read from
        # its key list (keylist.py) instead of parsed: memory stays that of one index.
        for ref in refs:
            meta.add(ref.sha256)
            if ref.sha256 in indexed:
                continue
            indexed.add(ref.sha256)
            keys = keylist.keys(store, ref)
            if keys is not None:  # a binary index: one pool object per stanza
                pool.update(k.sha256 for k in keys)
            else:
                pool.update(f.sha256 for p in mirror.packages(store, [ref]) for f in p.pool_files)

    for m in mirror.list_all(store):
        if m.state is not None:
            meta.add(m.state.inrelease_sha256)
            meta.update(ref.sha256 for ref in m.state.upstream)
            meta.update(e.sha256 for e in (*m.state.extras, *m.state.upstream_extras))
            index(m.state.indexes)
    for info in snapshot.list_all(store):
        index(info.indexes)
        meta.update(e.sha256 for e in info.extras)
    for tree in published_trees(store):
        try:
            pool.update(published_files(tree).values())
        except FormatError as exc:
            # Not knowing what a tree needs, gc could delete what it hard-links: stop.
            raise FormatError(
                f"gc stopped: published tree {tree}: {exc.message}",
                "gc keeps what published trees list and cannot read this one; publish into it "
                "again (or remove it if it is not used), then run gc again. Nothing was removed.",
            ) from exc
    return Roots(frozenset(pool), frozenset(meta))
