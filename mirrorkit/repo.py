"""Local repos: your own packages, a named head over a chain of immutable snapshots.

A repo is one record, ``repos/NAME.json``: its settings (component, distribution, comment,
retention), its history (oldest first; the head is the last entry's snapshot) and the suites
that follow it (see :mod:`mirrorkit.repopublish`). Every change (add, remove, include, copy,
move, prune) writes a new snapshot ``NAME+N`` (N: the history entry's number) whose provenance
says the repo, the action, who, the parent snapshot and what changed, then rewrites the record
atomically: the head moves in one rename. A change that changes nothing (the same bytes again)
writes nothing. ``rollback`` moves the head back to a snapshot of the history (an entry of its
own, no new snapshot).

Writers of one repo serialise on its lock (``repo/NAME``) and read the head only once they
hold it, so no update is lost; they wait for the lock up to a bound, never fail at once.

The history snapshots are ordinary snapshots: publish, diff, merge, filter, bundles and gc
treat them like any other, and the history is a gc root while the repo keeps it (``refs``).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit import archive, snapshot
from mirrorkit.errors import ConflictError, NotFoundError, StorageError, UsageError
from mirrorkit.models import IndexRef, Package, Provenance
from mirrorkit.store import REPO, Store, check_name, read_record, write_record

if TYPE_CHECKING:
    from mirrorkit.publish import Published

DEFAULT_WAIT = 300.0
"""How long a repo command waits for another writer of the same repo (seconds)."""

_MAX_NAME = 100  # leaves room for the history snapshots' "+N"
_HISTORY_NAME = re.compile(r"(.+)\+(\d+)\Z")


@dataclass(frozen=True, slots=True)
class Retention:
    """What ``prune`` (and, set on the repo, every add) drops: all but the ``keep`` newest
    versions of each package, and versions added more than ``older_than`` ago (never the
    newest version of a package: removing a package is ``repo remove``'s job)."""

    keep: int | None = None
    older_than: str | None = None

    def __bool__(self) -> bool:
        return self.keep is not None or self.older_than is not None


@dataclass(frozen=True, slots=True)
class Entry:
    """One change of a repo: entry ``n``, what was done, the head after it (``snapshot``, with
    its ``digest``), when, by whom, and the packages added and removed
    ("name_version_arch SHA256")."""

    n: int
    action: str
    snapshot: str
    digest: str
    at: str
    by: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class Repo:
    name: str
    component: str
    distribution: str
    comment: str
    created_at: str
    history: tuple[Entry, ...] = ()
    retention: Retention = field(default_factory=Retention)
    followers: tuple[dict[str, Any], ...] = ()

    @property
    def head(self) -> str | None:
        """The snapshot the repo is now (None: nothing was ever added)."""
        return self.history[-1].snapshot if self.history else None

    @property
    def suite(self) -> str:
        """The suite a publish of the repo defaults to."""
        return self.distribution or self.name


@dataclass(frozen=True, slots=True)
class Change:
    """What one change did: the repo after it, the new head (None: unchanged), the packages
    added, removed (retention included) and left as they were (the same bytes again), how
    long the command waited for another writer, and the suites published again after it
    (``--publish``)."""

    repo: Repo
    snapshot: snapshot.SnapshotInfo | None
    added: tuple[Package, ...] = ()
    removed: tuple[Package, ...] = ()
    unchanged: tuple[Package, ...] = ()
    waited: float = 0.0
    published: tuple[Published, ...] = ()

    @property
    def changed(self) -> bool:
        return self.snapshot is not None


# --- the record ------------------------------------------------------------------------------


def _path(store: Store, name: str) -> Path:
    return store.root / "repos" / f"{check_name(name, 'repo')}.json"


def exists(store: Store, name: str) -> bool:
    return _path(store, name).exists()


def _entry_json(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": e.n,
        "action": e.action,
        "snapshot": e.snapshot,
        "digest": e.digest,
        "at": e.at,
        "by": e.by,
        "added": list(e.added),
        "removed": list(e.removed),
    }
    if e.note:
        out["note"] = e.note
    return out


def _save(store: Store, repo: Repo) -> None:
    body: dict[str, Any] = {
        "name": repo.name,
        "component": repo.component,
        "distribution": repo.distribution,
        "comment": repo.comment,
        "created_at": repo.created_at,
        "history": [_entry_json(e) for e in repo.history],
    }
    if repo.retention:
        body["retention"] = {
            k: v
            for k, v in (("keep", repo.retention.keep), ("older_than", repo.retention.older_than))
            if v is not None
        }
    if repo.followers:
        body["followers"] = list(repo.followers)
    write_record(_path(store, repo.name), REPO, body, tmp_dir=store.tmp)


def load(store: Store, name: str) -> Repo:
    path = _path(store, name)
    if not path.exists():
        raise NotFoundError(f"no repo named {name!r}", "see 'mirrorkit repo list'.")
    data = read_record(path, REPO)
    if data["name"] != name:
        raise StorageError(
            f"{path}: the record is not repo {name}'s (it names {data['name']!r})",
            "the store was modified by hand; restore the record from a backup.",
        )
    retention = data.get("retention", {})
    return Repo(
        name=data["name"],
        component=data["component"],
        distribution=data["distribution"],
        comment=data["comment"],
        created_at=data["created_at"],
        history=tuple(
            Entry(**{**e, "added": tuple(e["added"]), "removed": tuple(e["removed"])})
            for e in data["history"]
        ),
        retention=Retention(retention.get("keep"), retention.get("older_than")),
        followers=tuple(data.get("followers", ())),
    )


def list_all(store: Store) -> list[Repo]:
    directory = store.root / "repos"
    if not directory.is_dir():
        return []
    return [load(store, p.stem) for p in sorted(directory.glob("*.json"))]


def history_owner(store: Store, snapshot_name: str) -> str | None:
    """The repo whose history snapshot ``snapshot_name`` is (by its name, ``REPO+N``)."""
    m = _HISTORY_NAME.match(snapshot_name)
    if m and exists(store, m.group(1)):
        return m.group(1)
    return None


def holders(store: Store, snapshot_name: str) -> list[str]:
    """The repos whose history holds snapshot ``snapshot_name``."""
    return [r.name for r in list_all(store) if any(e.snapshot == snapshot_name for e in r.history)]


# --- locking and the head ----------------------------------------------------------------------


@contextmanager
def locked(store: Store, names: Sequence[str], wait: float | None) -> Iterator[float]:
    """Hold the locks of repos ``names`` (waiting up to ``wait`` seconds for another writer);
    yields how long it waited."""
    start = time.monotonic()
    resources = sorted({f"repo/{check_name(n, 'repo')}" for n in names})
    with store.locked(*resources, wait=wait):
        yield time.monotonic() - start


def head_info(store: Store, repo: Repo) -> snapshot.SnapshotInfo | None:
    """The head snapshot, which must be the one the history recorded."""
    if not repo.history:
        return None
    entry = repo.history[-1]
    if not snapshot.exists(store, entry.snapshot):
        raise NotFoundError(
            f"repo {repo.name}'s head, snapshot {entry.snapshot}, was removed",
            f"roll the repo back to an existing snapshot: 'mirrorkit repo history {repo.name}', "
            f"then 'mirrorkit repo rollback {repo.name} --to N'.",
        )
    info = snapshot.load(store, entry.snapshot)
    if info.digest != entry.digest:
        raise ConflictError(
            f"repo {repo.name}'s head, snapshot {entry.snapshot}, has other contents than the "
            f"history recorded (digest {info.digest[:12]}…, not {entry.digest[:12]}…)",
            "it was removed and created again by hand; roll the repo back to another entry.",
        )
    return info


def packages(store: Store, repo: Repo) -> list[Package]:
    """The packages of the repo's head, sorted by name, version and architecture."""
    info = head_info(store, repo)
    if info is None:
        return []
    return sorted(snapshot.packages(store, info), key=_order)


def _order(p: Package) -> tuple[str, str, str]:
    return (p.name, p.version, p.architecture)


def key(p: Package) -> tuple[str, str, str]:
    return (p.name, p.version, p.architecture)


def describe(p: Package) -> str:
    """A package as the history lists it: ``name_version_arch SHA256``."""
    return f"{p.ref} {p.sha256}"


# --- create, remove ------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _who() -> str:
    from mirrorkit.channel import _who as who  # the same "user@host" as a channel's history

    return who()


def create(
    store: Store,
    name: str,
    *,
    component: str = "main",
    distribution: str = "",
    comment: str = "",
    retention: Retention | None = None,
) -> Repo:
    """A new, empty repo. Its name may not be a snapshot's or a channel's (publish takes all
    three); the caller checks that (``refs``)."""
    check_name(name, "repo")
    if len(name) > _MAX_NAME:
        raise UsageError(f"repo name {name[:20]}… is longer than {_MAX_NAME} characters")
    check_name(component, "component")
    if distribution:
        check_name(distribution, "distribution")
    check_retention(retention)
    if exists(store, name):
        raise ConflictError(f"repo {name} exists already", "see 'mirrorkit repo show'.")
    repo = Repo(name, component, distribution, comment, _now(), retention=retention or Retention())
    _save(store, repo)
    return repo


def check_retention(retention: Retention | None) -> None:
    if retention is None:
        return
    if retention.keep is not None and retention.keep < 1:
        raise UsageError("--keep must be at least 1", "to drop a package, use 'repo remove'.")
    if retention.older_than is not None:
        from mirrorkit.publish.plan import parse_duration

        parse_duration(retention.older_than)


def remove_record(store: Store, name: str) -> None:
    """Forget the repo (its history snapshots stay until removed: ``api.repo_rm`` does)."""
    path = _path(store, name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise NotFoundError(f"no repo named {name!r}", "see 'mirrorkit repo list'.") from None


# --- changes -----------------------------------------------------------------------------------


def _indexes(store: Store, component: str, pkgs: Iterable[Package]) -> list[IndexRef]:
    """One Packages index per architecture (``all`` apart: publish folds it into each)."""
    by_arch: dict[str, list[Package]] = {}
    for p in pkgs:
        by_arch.setdefault(p.architecture, []).append(p)
    if not by_arch:
        by_arch["all"] = []  # an empty repo is still a suite with its component
    out = []
    for arch, group in sorted(by_arch.items()):
        group.sort(key=_order)
        text = archive.render_packages(group)
        out.append(IndexRef(component, arch, store.meta.put(text), len(group)))
    return out


def _next_snapshot_name(store: Store, repo: Repo, n: int) -> str:
    """``NAME+N``, or a later number if a killed change left a snapshot under that name."""
    while snapshot.exists(store, f"{repo.name}+{n}"):
        n += 1
    return f"{repo.name}+{n}"


def commit(
    store: Store,
    repo: Repo,
    action: str,
    pkgs: Iterable[Package],
    *,
    added: Sequence[Package],
    removed: Sequence[Package],
    note: str = "",
) -> tuple[Repo, snapshot.SnapshotInfo]:
    """Write the head ``pkgs`` as the repo's next snapshot and move the head to it. Call under
    the repo's lock, with ``repo`` read under it."""
    n = (repo.history[-1].n if repo.history else 0) + 1
    name = _next_snapshot_name(store, repo, n)
    who = _who()
    changes = (*(f"+ {describe(p)}" for p in added), *(f"- {describe(p)}" for p in removed))
    source = Provenance(
        "repo",
        repo=repo.name,
        parent=repo.head,
        action=action,
        by=who,
        files=tuple(changes),
    )
    relabelled = [p if p.component == repo.component else replace(p, component=repo.component)
                  for p in pkgs]  # fmt: skip
    info = snapshot.write(store, name, [source], _indexes(store, repo.component, relabelled))
    entry = Entry(
        n,
        action,
        name,
        info.digest,
        info.created_at,
        who,
        tuple(describe(p) for p in added),
        tuple(describe(p) for p in removed),
        note,
    )
    new = replace(repo, history=(*repo.history, entry))
    try:
        _save(store, new)
    except BaseException:
        # The head did not move: the snapshot is nobody's, remove it again.
        shutil.rmtree(store.snapshot_dir(name), ignore_errors=True)
        raise
    return new, info


def merge_in(
    head: Sequence[Package],
    incoming: Sequence[Package],
    *,
    force_replace: bool,
    where: dict[tuple[str, str, str], str] | None = None,
) -> tuple[list[Package], list[Package], list[Package], list[Package]]:
    """``head`` with ``incoming`` added: (new head, added, replaced old builds, unchanged).

    The same name, version and architecture with other bytes is refused, naming both
    digests, unless ``force_replace``; the same bytes again change nothing. ``where``: a
    file per package key, for the error."""
    by_key = {key(p): p for p in head}
    added: list[Package] = []
    replaced: list[Package] = []
    unchanged: list[Package] = []
    for p in incoming:
        old = by_key.get(key(p))
        if old is not None and old.sha256 == p.sha256:
            unchanged.append(p)
            continue
        if old is not None and not force_replace:
            origin = (where or {}).get(key(p))
            raise ConflictError(
                f"{origin + ': ' if origin else ''}{p.ref} is in the repo already with other "
                f"bytes (SHA256 {old.sha256} in the repo, {p.sha256} given)",
                "a suite holds one build per name, version and architecture: give the rebuild "
                "a new version, or replace the old build with --force-replace.",
            )
        if old is not None:
            replaced.append(old)
        by_key[key(p)] = p
        added.append(p)
    return sorted(by_key.values(), key=_order), added, replaced, unchanged


# --- retention --------------------------------------------------------------------------------


def added_at(repo: Repo) -> dict[str, str]:
    """SHA256 -> when it last entered the repo (the history's "+" lines)."""
    when: dict[str, str] = {}
    for entry in repo.history:
        for line in entry.added:
            when[line.rsplit(" ", 1)[-1]] = entry.at
    return when


def to_prune(
    repo: Repo, pkgs: Sequence[Package], retention: Retention, now: datetime | None = None
) -> list[Package]:
    """The packages ``retention`` drops from ``pkgs`` (see :class:`Retention`); versions in
    Debian order, per name and architecture."""
    from functools import cmp_to_key

    if not retention:
        return []
    cutoff = None
    if retention.older_than is not None:
        from mirrorkit.publish.plan import parse_duration

        cutoff = (now or datetime.now(UTC)) - parse_duration(retention.older_than)
    when = added_at(repo)
    groups: dict[tuple[str, str], list[Package]] = {}
    for p in pkgs:
        groups.setdefault((p.name, p.architecture), []).append(p)
    drop = []

    def newer(a: Package, b: Package) -> int:
        return archive.compare_versions(b.version, a.version)

    newest_first = cmp_to_key(newer)
    for group in groups.values():
        group.sort(key=newest_first)
        for rank, p in enumerate(group):
            beyond_keep = retention.keep is not None and rank >= retention.keep
            # The newest version stays whatever its age: removing a package is 'repo remove'.
            too_old = (
                cutoff is not None
                and rank > 0
                and p.sha256 in when
                and datetime.fromisoformat(when[p.sha256]) < cutoff
            )
            if beyond_keep or too_old:
                drop.append(p)
    return sorted(drop, key=_order)


# --- rollback -----------------------------------------------------------------------------------


def stack(repo: Repo) -> list[Entry]:
    """The states ``rollback`` without ``--to`` walks back through, oldest first: every change
    pushes its entry, a rollback returns to an earlier one."""
    out: list[Entry] = []
    for entry in repo.history:
        if entry.action == "rollback":
            target = next((i for i, e in enumerate(out) if e.snapshot == entry.snapshot), None)
            if target is not None:
                del out[target + 1 :]
                continue
        out.append(entry)
    return out


def rollback(store: Store, repo: Repo, to: int | None) -> tuple[Repo, Entry]:
    """Move the head back: to the state before the last change (``to`` None), or to the head
    as it was after history entry ``to``. Call under the repo's lock."""
    if to is None:
        states = stack(repo)
        if len(states) < 2:
            raise ConflictError(
                f"repo {repo.name} has no earlier state to roll back to",
                f"see 'mirrorkit repo history {repo.name}'.",
            )
        target = states[-2]
    else:
        found = next((e for e in repo.history if e.n == to), None)
        if found is None:
            raise NotFoundError(
                f"repo {repo.name} has no history entry {to}",
                f"see 'mirrorkit repo history {repo.name}'.",
            )
        target = found
    if target.snapshot == repo.head:
        raise ConflictError(f"repo {repo.name} is at entry {target.n}'s state already")
    if not snapshot.exists(store, target.snapshot):
        raise NotFoundError(
            f"repo {repo.name} would roll back to snapshot {target.snapshot}, which was removed"
        )
    info = snapshot.load(store, target.snapshot)
    current = packages(store, repo)
    before = {describe(p) for p in current}
    after = {describe(p) for p in snapshot.packages(store, info)}
    entry = Entry(
        repo.history[-1].n + 1,
        "rollback",
        target.snapshot,
        info.digest,
        _now(),
        _who(),
        tuple(sorted(after - before)),
        tuple(sorted(before - after)),
        f"to {target.n}",
    )
    new = replace(repo, history=(*repo.history, entry))
    _save(store, new)
    return new, entry


def set_followers(store: Store, repo: Repo, followers: Sequence[dict[str, Any]]) -> Repo:
    """Rewrite the suites that follow the repo. Call under the repo's lock."""
    new = replace(repo, followers=tuple(followers))
    _save(store, new)
    return new


def freeze(store: Store, name: str, snapshot_name: str) -> snapshot.SnapshotInfo:
    """A snapshot ``snapshot_name`` of repo ``name``'s head: the same packages under a name of
    your own, which stays when the repo moves on or is removed."""
    r = load(store, name)
    info = head_info(store, r)
    if info is None:
        raise NotFoundError(
            f"repo {name} is empty: nothing to freeze yet",
            f"add packages first: 'mirrorkit repo add {name} FILE...'.",
        )
    source = Provenance("repo", repo=name, parent=info.name, action="snapshot", by=_who())
    return snapshot.write(store, snapshot_name, [source], info.indexes)
