"""What a publish publishes: one source (a snapshot, a channel or a repo), or one source per
component (``--component main=bookworm-20261204 --component internal=ourapps``), resolved to
the snapshot(s) they are now and put together as one suite.

A suite published from a channel or a repo follows it: publishing again resolves the name
anew (a repo's head, a channel's snapshot). The stages are imported when a publish runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mirrorkit.errors import NotFoundError, UsageError
from mirrorkit.store import Store, check_name

if TYPE_CHECKING:
    from mirrorkit.snapshot import SnapshotInfo


@dataclass(frozen=True, slots=True)
class Resolved:
    """The snapshot to publish (for several sources, one made up of theirs, never stored), the
    suite it defaults to, the name the publish record keeps, the repos the suite follows, and
    the sources as given: (component, name) pairs, or one pair ("", name)."""

    info: SnapshotInfo
    suite: str | None
    label: str
    repos: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]


def parse_components(items: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``["main=SNAP", "internal=REPO"]`` (or a mapping) -> component -> source name."""
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        if isinstance(items, str):
            items = [items]
        pairs = []
        for item in items:
            component, sep, source = item.partition("=")
            if not sep or not component or not source:
                raise UsageError(
                    f"--component {item!r}: expected COMPONENT=SOURCE",
                    "e.g. --component main=bookworm-20261204 --component internal=ourapps.",
                )
            pairs.append((component.strip(), source.strip()))
    out: dict[str, str] = {}
    for component, source in pairs:
        check_name(component, "component")
        if component in out:
            raise UsageError(f"--component {component} is given twice")
        out[component] = source
    return out


def resolve_one(store: Store, name: str) -> tuple[SnapshotInfo, str, str | None]:
    """A snapshot, a channel (the snapshot it points at) or a repo (its head): the snapshot,
    the suite it defaults to, and the repo's name if it is one."""
    from mirrorkit import channel, repo, snapshot

    channel_file = store.channel_record(name, "snapshot, channel or repo")
    if snapshot.exists(store, name):
        return snapshot.load(store, name), name, None
    if channel_file.exists():
        return channel.resolve(store, name)[1], name, None
    if repo.exists(store, name):
        r = repo.load(store, name)
        info = repo.head_info(store, r)
        if info is None:
            raise NotFoundError(
                f"repo {name} is empty: nothing to publish yet",
                f"add packages first: 'mirrorkit repo add {name} FILE...'.",
            )
        return info, r.suite, name
    raise NotFoundError(
        f"no snapshot, channel or repo named {name!r}",
        "see 'mirrorkit snapshot list', 'mirrorkit channel list' and 'mirrorkit repo list'.",
    )


def resolve(store: Store, source: str | None, components: Mapping[str, str]) -> Resolved:
    """What to publish: ``source``, or one source per component (``components``)."""
    from mirrorkit.snapshot import SnapshotInfo

    if source is not None and components:
        raise UsageError("give a SOURCE or --component COMPONENT=SOURCE options, not both")
    if source is not None:
        info, suite, repo_name = resolve_one(store, source)
        followed = (repo_name,) if repo_name else ()
        return Resolved(info, suite, info.name, followed, (("", source),))
    if not components:
        raise UsageError("publish needs a SOURCE, or --component COMPONENT=SOURCE options")
    indexes = []
    parts = []
    repos: list[str] = []
    for component, name in sorted(components.items()):
        info, _, repo_name = resolve_one(store, name)
        if repo_name:
            repos.append(repo_name)
        held = info.components
        if component in held:
            chosen = [i for i in info.indexes if i.component == component]
        elif len(held) == 1:
            chosen = [replace(i, component=component) for i in info.indexes]
        else:
            raise UsageError(
                f"--component {component}={name}: {info.name} has components "
                f"{', '.join(held)}, none of them {component}",
                f"name one of them (--component {held[0]}={name}), or filter the snapshot to "
                "one component first.",
            )
        indexes += chosen
        parts.append(f"{component}={info.name}")
    label = ",".join(parts)
    combined = SnapshotInfo(
        name=label,
        created_at="",
        mirrorkit_version="",
        sources=(),
        indexes=tuple(indexes),
        digest="",
    )
    return Resolved(combined, None, label, tuple(repos), tuple(sorted(components.items())))
