"""The one merge rule: which packages of several sources a merged set keeps.

Used wherever sources are merged: at mirror time (several upstreams resolved together, see
mirror.update_group), by ``snapshot merge`` and by sync's snapshot of a profile's mirrors, so
that what a filter resolves over is what the snapshot then holds.

For each name and architecture (``all-versions``: each name, architecture and version):

- ``later``: the later source that has it wins, with every version it holds (a suite may list
  two versions of one package: bookworm has two ``linux-doc``; both stay);
- ``latest``: the highest version wins, from the later source on a tie (as aptly's
  ``-latest``, one version);
- ``all-versions``: every version stays, each from the later source that has it.

Packages compete across components (as in aptly). Within a source, one build stands for each
version: the first seen. Versions are compared (Debian's order, archive.compare_versions)
only where ``latest`` needs it.

``MergePolicy`` itself lives in models.py, so that profiles can check a policy without loading
this module's dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from mirrorkit.archive import compare_versions
from mirrorkit.models import MergePolicy


class Keyed(Protocol):
    """What the merge reads of a package: models.Package, or a key list's keylist.Key."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def component(self) -> str: ...


P = TypeVar("P", bound=Keyed)


class Winners(Generic[P]):
    """What the merge of ``sources`` (each a sequence of packages, earlier first) keeps: for
    each name and architecture (``all-versions``: and version) the source that wins, and the
    builds of it that stay (one per version: the first seen).

    One pass of plain dict operations, storing packages and ranks in separate dicts: a tuple
    per package would wake the cyclic GC over the whole parsed index (0.12 s for bookworm's
    63,000 packages; the merge itself costs about that)."""

    def __init__(self, sources: Sequence[Sequence[P]], policy: MergePolicy | str) -> None:
        self.policy = MergePolicy.parse(policy)
        self._with_version = self.policy is MergePolicy.ALL_VERSIONS
        self._rank: dict[tuple[str, ...], int] = {}
        self._build: dict[tuple[str, ...], P] = {}
        # Further versions of a name+architecture in the winning source (``later``; rare).
        self._more: dict[tuple[str, ...], list[P]] = {}
        if self.policy is MergePolicy.LATEST:
            self._latest(sources)
        elif self._with_version:
            self._every_version(sources)
        else:
            self._later(sources)

    def _every_version(self, sources: Sequence[Sequence[P]]) -> None:
        rank_of, build = self._rank, self._build
        for rank, packages in enumerate(sources):
            for p in packages:
                key = (p.name, p.architecture, p.version)
                if rank_of.get(key, -1) < rank:  # a later source; in one, the first build
                    rank_of[key] = rank
                    build[key] = p

    def _later(self, sources: Sequence[Sequence[P]]) -> None:
        rank_of, build, more = self._rank, self._build, self._more
        for rank, packages in enumerate(sources):
            for p in packages:
                key = (p.name, p.architecture)
                if rank_of.get(key, -1) < rank:
                    rank_of[key] = rank
                    build[key] = p
                    if more:
                        more.pop(key, None)
                elif build[key].version != p.version:
                    others = more.setdefault(key, [])
                    if all(o.version != p.version for o in others):
                        others.append(p)

    def _latest(self, sources: Sequence[Sequence[P]]) -> None:
        rank_of, build = self._rank, self._build
        for rank, packages in enumerate(sources):
            for p in packages:
                key = (p.name, p.architecture)
                old = build.get(key)
                if old is None:
                    rank_of[key] = rank
                    build[key] = p
                    continue
                newer = 0 if p.version == old.version else compare_versions(p.version, old.version)
                if newer > 0 or (newer == 0 and rank > rank_of[key]):
                    rank_of[key] = rank
                    build[key] = p

    def packages(self) -> list[P]:
        """Every build that stays, once."""
        return [*self._build.values(), *(p for others in self._more.values() for p in others)]

    def keeps(self, rank: int, p: P) -> bool:
        """Does the merge keep ``p`` of source ``rank`` (this build, or the same bytes listed
        again, say in another architecture's index)?"""
        key = (
            (p.name, p.architecture, p.version) if self._with_version else (p.name, p.architecture)
        )
        if self._rank.get(key) != rank:
            return False
        won = self._build[key]
        if won.version != p.version:
            won = next((o for o in self._more.get(key, ()) if o.version == p.version), won)
        return won.version == p.version and won.sha256 == p.sha256


def merge_packages(
    sources: Sequence[Sequence[P]], policy: MergePolicy | str = MergePolicy.LATER
) -> list[P]:
    """The packages the merge keeps, one per name, architecture and version, sorted by
    component, name, architecture and version."""
    kept = Winners(sources, policy).packages()
    return sorted(kept, key=lambda p: (p.component, p.name, p.architecture, p.version))


def merge_indexes(
    sources: Sequence[Sequence[tuple[str, str, Sequence[P]]]],
    policy: MergePolicy | str = MergePolicy.LATER,
) -> dict[tuple[str, str], list[P]]:
    """The merge of sources given as indices, ``(component, architecture, packages)``: the
    packages each (component, architecture) index of the result holds, sorted by name,
    architecture and version. An ``Architecture: all`` package kept is listed in every index
    of its component, as every architecture installs it."""
    flat = [[p for _, _, packages in indexes for p in packages] for indexes in sources]
    winners = Winners(flat, policy)
    chosen: dict[tuple[str, str], dict[tuple[str, str, str], P]] = {}
    for indexes in sources:
        for component, arch, _ in indexes:
            chosen.setdefault((component, arch), {})
    for rank, indexes in enumerate(sources):
        for component, arch, packages in indexes:
            for p in packages:
                if not winners.keeps(rank, p):
                    continue
                targets = [arch]
                if p.architecture == "all":
                    targets = [a for c, a in chosen if c == component]
                for target in targets:
                    chosen[(component, target)].setdefault((p.name, p.architecture, p.version), p)
    return {
        where: sorted(pkgs.values(), key=lambda p: (p.name, p.architecture, p.version))
        for where, pkgs in sorted(chosen.items())
    }
