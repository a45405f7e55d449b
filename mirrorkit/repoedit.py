"""The changes to a local repo: add, remove, copy/move, prune, rollback. Each takes the repo's
lock, reads the head under it, and commits one new snapshot (``repo.commit``) or nothing.

Package files are read and checked (``debfile``) before the lock is taken: that is the slow
part, and it needs no state of the store. Their bytes enter the pool under the lock (gc, which
excludes every other command, cannot remove them before the head refers to them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from mirrorkit import repo, resolve, snapshot
from mirrorkit.debfile import PackageFile
from mirrorkit.errors import ConflictError, UsageError
from mirrorkit.models import Package
from mirrorkit.repo import Change, Retention
from mirrorkit.store import Store


def check_batch(files: Sequence[PackageFile]) -> list[PackageFile]:
    """The files of one add, each build once: the same file twice (a file and its directory)
    counts once; two different builds of one name, version and architecture are refused."""
    seen: dict[tuple[str, str, str], PackageFile] = {}
    out = []
    for f in files:
        k = repo.key(f.package)
        other = seen.get(k)
        if other is not None:
            if other.package.sha256 == f.package.sha256:
                continue
            raise ConflictError(
                f"{f.path} and {other.path}: two different builds of {f.package.ref} "
                f"(SHA256 {f.package.sha256} and {other.package.sha256})",
                "a suite holds one build per name, version and architecture: leave one out, "
                "or give the rebuild a new version.",
            )
        seen[k] = f
        out.append(f)
    return out


def add(
    store: Store,
    name: str,
    files: Sequence[PackageFile],
    *,
    force_replace: bool = False,
    action: str = "add",
    note: str = "",
    wait: float | None = repo.DEFAULT_WAIT,
) -> Change:
    """Add checked package files to repo ``name`` (then apply its retention setting)."""
    files = check_batch(files)
    where = {repo.key(f.package): str(f.path) for f in files}
    with repo.locked(store, [name], wait) as waited:
        r = repo.load(store, name)
        head = repo.packages(store, r)
        incoming = [replace(f.package, component=r.component) for f in files]
        pkgs, added, replaced, unchanged = repo.merge_in(
            head, incoming, force_replace=force_replace, where=where
        )
        if not added:
            return Change(r, None, unchanged=tuple(unchanged), waited=waited)
        for f in files:
            if not store.pool.has(f.package.sha256):
                store.pool.put_file(f.path, f.package.sha256)
        pruned = repo.to_prune(r, pkgs, r.retention) if r.retention else []
        # Retention never drops what this very change adds.
        new_keys = {repo.key(p) for p in added}
        pruned = [p for p in pruned if repo.key(p) not in new_keys]
        gone = {repo.key(p) for p in pruned}
        pkgs = [p for p in pkgs if repo.key(p) not in gone]
        r, info = repo.commit(
            store, r, action, pkgs, added=added, removed=[*replaced, *pruned], note=note
        )
    return Change(r, info, tuple(added), tuple([*replaced, *pruned]), tuple(unchanged), waited)


def remove(
    store: Store,
    name: str,
    query: str,
    *,
    allow_empty: bool = False,
    wait: float | None = repo.DEFAULT_WAIT,
) -> Change:
    """Remove the packages ``query`` matches from repo ``name``; a query matching nothing is
    an EmptyResultError unless ``allow_empty``."""
    with repo.locked(store, [name], wait) as waited:
        r = repo.load(store, name)
        head = repo.packages(store, r)
        matched = _search(head, query, allow_empty, f"--allow-empty ('repo remove {name}')")
        if not matched:
            return Change(r, None, waited=waited)
        gone = {repo.key(p) for p in matched}
        kept = [p for p in head if repo.key(p) not in gone]
        r, info = repo.commit(store, r, "remove", kept, added=[], removed=matched, note=query)
    return Change(r, info, (), tuple(matched), waited=waited)


def _search(pkgs: Sequence[Package], query: str, allow_empty: bool, override: str) -> list[Package]:
    universe = resolve.Universe(pkgs)
    matched = resolve.search(universe, query)
    if not matched and not allow_empty:
        raise resolve.empty_result(query, universe, override)
    return sorted(matched, key=repo.key)


def search(store: Store, name: str, query: str) -> list[Package]:
    """The packages of repo ``name``'s head that ``query`` matches (none: an empty list)."""
    r = repo.load(store, name)
    universe = resolve.Universe(repo.packages(store, r))
    return sorted(resolve.search(universe, query), key=lambda p: p.ref)


def prune(
    store: Store,
    name: str,
    retention: Retention,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    wait: float | None = repo.DEFAULT_WAIT,
) -> Change:
    """Drop what ``retention`` (else the repo's own setting) says; ``dry_run``: only say what
    would go (the Change then has no snapshot)."""
    repo.check_retention(retention)
    with repo.locked(store, [name], wait) as waited:
        r = repo.load(store, name)
        rule = retention if retention else r.retention
        if not rule:
            raise UsageError(
                f"repo {name} has no retention setting: say what to keep",
                f"e.g. 'mirrorkit repo prune {name} --keep 3' or '--older-than 30d'.",
            )
        head = repo.packages(store, r)
        drop = repo.to_prune(r, head, rule, now)
        if dry_run or not drop:
            return Change(r, None, (), tuple(drop), waited=waited)
        gone = {repo.key(p) for p in drop}
        kept = [p for p in head if repo.key(p) not in gone]
        note = " ".join(
            f"{k}={v}" for k, v in (("keep", rule.keep), ("older_than", rule.older_than)) if v
        )
        r, info = repo.commit(store, r, "prune", kept, added=[], removed=drop, note=note)
    return Change(r, info, (), tuple(drop), waited=waited)


def rollback(
    store: Store, name: str, to: int | None, *, wait: float | None = repo.DEFAULT_WAIT
) -> Change:
    """Move repo ``name``'s head back (see :func:`repo.rollback`)."""
    with repo.locked(store, [name], wait) as waited:
        r = repo.load(store, name)
        before = {repo.describe(p): p for p in repo.packages(store, r)}
        r, entry = repo.rollback(store, r, to)
        info = snapshot.load(store, entry.snapshot)
        after = {repo.describe(p): p for p in snapshot.packages(store, info)}
    return Change(
        r,
        info,
        tuple(after[d] for d in sorted(after.keys() - before.keys())),
        tuple(before[d] for d in sorted(before.keys() - after.keys())),
        waited=waited,
    )


def copy(
    store: Store,
    source: str,
    dest: str,
    query: str,
    *,
    with_deps: bool = False,
    move: bool = False,
    force_replace: bool = False,
    wait: float | None = repo.DEFAULT_WAIT,
) -> tuple[Change, Change | None]:
    """Copy (``move``: and remove from ``source``, a repo) the packages ``query`` matches in
    ``source`` (a repo's head, a snapshot or a channel) into repo ``dest``; ``with_deps``: and
    what they need from ``source``. Returns the change to ``dest`` and, moving, to ``source``."""
    from mirrorkit.publish.sources import resolve_one

    if source == dest:
        raise UsageError("copy and move need two different repos")
    source_is_repo = repo.exists(store, source)
    if move and not source_is_repo:
        raise UsageError(f"{source} is no repo: 'repo move' takes packages out of a repo")
    names = [dest, source] if source_is_repo else [dest]
    with repo.locked(store, names, wait) as waited:
        if source_is_repo:
            src = repo.load(store, source)
            pool = repo.packages(store, src)
            label = f"repo {source}"
        else:
            info, _, _ = resolve_one(store, source)
            pool = snapshot.packages(store, info)
            label = f"snapshot {info.name}"
        universe = resolve.Universe(pool)
        selection = resolve.Selection(query, with_deps=with_deps, allow_missing=True)
        picked = sorted(resolve.apply(universe, selection).packages, key=repo.key)
        r = repo.load(store, dest)
        head = repo.packages(store, r)
        incoming = [replace(p, component=r.component) for p in picked]
        pkgs, added, replaced, unchanged = repo.merge_in(
            head, incoming, force_replace=force_replace
        )
        dest_change = Change(r, None, unchanged=tuple(unchanged), waited=waited)
        verb = "move" if move else "copy"
        if added:
            r, info = repo.commit(
                store, r, verb, pkgs, added=added, removed=replaced, note=f"from {label}"
            )
            dest_change = Change(r, info, tuple(added), tuple(replaced), tuple(unchanged), waited)
        source_change = None
        if move:
            src = repo.load(store, source)
            gone = {repo.key(p) for p in picked}
            kept = [p for p in pool if repo.key(p) not in gone]
            src, sinfo = repo.commit(
                store, src, "move", kept, added=[], removed=picked, note=f"to repo {dest}"
            )
            source_change = Change(src, sinfo, (), tuple(picked), waited=waited)
    return dest_change, source_change
