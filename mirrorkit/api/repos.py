"""Local repos: repo create/add/include/remove/copy/move/prune/list/show/search/history/
rollback/rm. Every change writes a new snapshot and moves the repo's head (``repo.py``);
writers of one repo queue on its lock for up to ``wait`` seconds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.api._support import StrPath, boundary, gnupghome_arg, open_store
from mirrorkit.errors import MirrorkitError, NotFoundError, UsageError
from mirrorkit.models import Package, Removed

if TYPE_CHECKING:
    from mirrorkit.repo import Change, Entry, Repo
    from mirrorkit.snapshot import SnapshotInfo
    from mirrorkit.store import Store

WAIT = 300.0  # mirrorkit.repo.DEFAULT_WAIT, without importing the stage here
_SUFFIXES = (".deb", ".udeb")


@dataclass(frozen=True, slots=True)
class RepoDetails:
    """``repo_show``: the repo, its head snapshot (None: empty), and its packages when they
    were asked for (sorted by name, version, architecture)."""

    repo: Repo
    head: SnapshotInfo | None
    packages: tuple[Package, ...] = ()


@dataclass(frozen=True, slots=True)
class RepoMove:
    """``repo_move``: the change to the destination and to the source."""

    dest: Change
    source: Change


def _paths(files: Sequence[StrPath] | StrPath) -> list[Path]:
    """The package files given: files as they are, directories searched for .deb/.udeb."""
    if isinstance(files, str | os.PathLike):
        files = [files]
    out: list[Path] = []
    for item in files:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        elif path.exists():
            out.append(path)
        else:
            raise NotFoundError(f"{path}: no such file or directory")
    if not out:
        raise UsageError("no package files (.deb, .udeb) found in the given paths")
    return out


def _republish(
    st: Store, change: Change, publish: bool, gnupghome: StrPath | None, wait: float | None
) -> Change:
    """With ``publish``: publish every suite that follows the repo again (after the change;
    the lock is released, so other writers go on meanwhile)."""
    from mirrorkit import repopublish

    if not publish:
        return change
    name = change.repo.name
    try:
        done = repopublish.republish(st, name, gnupghome=gnupghome_arg(gnupghome), wait=wait)
    except MirrorkitError as exc:
        head = change.repo.head or "empty"
        exc.message = f"repo {name} is changed (head {head}), but publishing failed: {exc.message}"
        exc.hint = exc.hint or f"publish again: 'mirrorkit repo add {name}' changes nothing now."
        raise
    return replace(change, published=tuple(done))


@boundary
def repo_create(
    name: str,
    *,
    component: str = "main",
    distribution: str | None = None,
    comment: str | None = None,
    keep: int | None = None,
    older_than: str | None = None,
    store: StrPath | None = None,
) -> Repo:
    """A new, empty repo for your own packages. ``keep``/``older_than``: a retention setting
    applied after each add (as ``repo prune``)."""
    from mirrorkit import refs, repo

    st = open_store(store)
    retention = repo.Retention(keep, older_than)
    repo.check_retention(retention)
    with st.locked():
        refs.check_free(st, name, "repo")
        return repo.create(
            st,
            name,
            component=component,
            distribution=distribution or "",
            comment=comment or "",
            retention=retention,
        )


@boundary
def repo_add(
    name: str,
    files: Sequence[StrPath] | StrPath,
    *,
    force_replace: bool = False,
    publish: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
) -> Change:
    """Add .deb/.udeb files (directories are searched) to repo ``name``: a new head snapshot,
    or none if every file is there already with the same bytes. Another build under the same
    name, version and architecture is refused unless ``force_replace``. ``publish``: then
    publish every suite that follows the repo. Each file is checked first; a bad one is
    refused and nothing is written."""
    from mirrorkit import debfile, repo, repoedit

    st = open_store(store)
    component = repo.load(st, name).component  # fixed at create: safe to read unlocked
    checked = [debfile.read_package(p, component) for p in _paths(files)]
    change = repoedit.add(st, name, checked, force_replace=force_replace, wait=wait)
    return _republish(st, change, publish, gnupghome, wait)


@boundary
def repo_remove(
    name: str,
    query: str,
    *,
    allow_empty: bool = False,
    publish: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
) -> Change:
    """Remove the packages ``query`` (aptly's language) matches from repo ``name``; matching
    nothing raises EmptyResultError unless ``allow_empty``."""
    from mirrorkit import repoedit

    st = open_store(store)
    change = repoedit.remove(st, name, query, allow_empty=allow_empty, wait=wait)
    return _republish(st, change, publish, gnupghome, wait)


@boundary
def repo_copy(
    source: str,
    dest: str,
    query: str,
    *,
    with_deps: bool = False,
    force_replace: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
) -> Change:
    """Copy the packages ``query`` matches in ``source`` (a repo, a snapshot or a channel)
    into repo ``dest`` (``with_deps``: and their dependencies found in ``source``)."""
    from mirrorkit import repoedit

    change, _ = repoedit.copy(
        open_store(store),
        source,
        dest,
        query,
        with_deps=with_deps,
        force_replace=force_replace,
        wait=wait,
    )
    return change


@boundary
def repo_move(
    source: str,
    dest: str,
    query: str,
    *,
    with_deps: bool = False,
    force_replace: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
) -> RepoMove:
    """Move the packages ``query`` matches from repo ``source`` to repo ``dest`` (one new
    snapshot in each)."""
    from mirrorkit import repoedit

    dest_change, source_change = repoedit.copy(
        open_store(store),
        source,
        dest,
        query,
        with_deps=with_deps,
        move=True,
        force_replace=force_replace,
        wait=wait,
    )
    assert source_change is not None
    return RepoMove(dest_change, source_change)


@boundary
def repo_prune(
    name: str,
    *,
    keep: int | None = None,
    older_than: str | None = None,
    dry_run: bool = False,
    publish: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
) -> Change:
    """Keep the ``keep`` newest versions of each package (Debian order) and drop versions
    added more than ``older_than`` ago (e.g. ``30d``; the newest version always stays);
    neither given: the repo's own retention setting. ``dry_run``: ``removed`` lists what
    would go, nothing changes."""
    from mirrorkit import repo, repoedit

    st = open_store(store)
    retention = repo.Retention(keep, older_than)
    change = repoedit.prune(st, name, retention, dry_run=dry_run, wait=wait)
    return _republish(st, change, publish and not dry_run, gnupghome, wait)


@boundary
def repo_rollback(
    name: str,
    *,
    to: int | None = None,
    publish: bool = False,
    wait: float | None = WAIT,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
) -> Change:
    """Undo the last change of repo ``name`` (``to``: go back to the head as it was after
    history entry ``to``). The head moves; no snapshot is removed."""
    from mirrorkit import repoedit

    st = open_store(store)
    change = repoedit.rollback(st, name, to, wait=wait)
    return _republish(st, change, publish, gnupghome, wait)


@boundary
def repo_list(*, store: StrPath | None = None) -> tuple[Repo, ...]:
    """Every repo."""
    from mirrorkit import repo

    return tuple(repo.list_all(open_store(store)))


@boundary
def repo_show(name: str, *, packages: bool = False, store: StrPath | None = None) -> RepoDetails:
    """A repo's settings, history length and head; with ``packages``, its packages."""
    from mirrorkit import repo

    st = open_store(store)
    r = repo.load(st, name)
    head = repo.head_info(st, r)
    pkgs = tuple(repo.packages(st, r)) if packages else ()
    return RepoDetails(r, head, pkgs)


@boundary
def repo_search(name: str, query: str, *, store: StrPath | None = None) -> tuple[Package, ...]:
    """The packages of repo ``name``'s head that ``query`` matches, sorted by
    ``name_version_arch``; empty if none does (the CLI then exits 1, as grep)."""
    from mirrorkit import repoedit

    return tuple(repoedit.search(open_store(store), name, query))


@boundary
def repo_history(name: str, *, store: StrPath | None = None) -> tuple[Entry, ...]:
    """Every change of repo ``name``, oldest first: the snapshot it made, who, when, what."""
    from mirrorkit import repo

    return repo.load(open_store(store), name).history


@boundary
def repo_rm(name: str, *, store: StrPath | None = None) -> Removed:
    """Remove repo ``name`` and the snapshots of its history that nothing else needs (a
    channel, a snapshot made from one); what is still needed stays as a plain snapshot."""
    from mirrorkit import refs, repo, snapshot

    st = open_store(store)
    with st.locked():
        r = repo.load(st, name)
        repo.remove_record(st, name)
        for snap in dict.fromkeys(e.snapshot for e in r.history):
            if snapshot.exists(st, snap) and not refs.users(st, snap):
                snapshot.remove(st, snap)
    return Removed("repo", name)
