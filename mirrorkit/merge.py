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

from mirrorkit.archive import compare_versions
from mirrorkit.models import MergePolicy, Package


class Winners:
    """Which packages of ``sources`` (each a sequence of packages, earlier first) the merge
    keeps: ask :meth:`keeps` with a package and the index of its source."""

    def __init__(self, sources: Sequence[Sequence[Package]], policy: MergePolicy | str) -> None:
        self.policy = MergePolicy.parse(policy)
        # key -> (rank of the winning source, version -> the SHA256 of its build that stays)
        self._won: dict[tuple[str, ...], tuple[int, dict[str, str]]] = {}
        if self.policy is MergePolicy.LATEST:
            self._latest(sources)
        else:
            self._later(sources)

    def _key(self, p: Package) -> tuple[str, ...]:
        if self.policy is MergePolicy.ALL_VERSIONS:
            return (p.name, p.architecture, p.version)
        return (p.name, p.architecture)

    def _later(self, sources: Sequence[Sequence[Package]]) -> None:
        won = self._won
        key = self._key
        for rank, packages in enumerate(sources):
            for p in packages:
                k = key(p)
                old = won.get(k)
                if old is None or old[0] < rank:
                    won[k] = (rank, {p.version: p.sha256})
                else:  # the same source (ranks only grow): one more version of it
                    old[1].setdefault(p.version, p.sha256)

    def _latest(self, sources: Sequence[Sequence[Package]]) -> None:
        best: dict[tuple[str, ...], tuple[int, str, str]] = {}
        key = self._key
        for rank, packages in enumerate(sources):
            for p in packages:
                k = key(p)
                old = best.get(k)
                if old is None:
                    best[k] = (rank, p.version, p.sha256)
                    continue
                newer = compare_versions(p.version, old[1])
                if newer > 0 or (newer == 0 and rank > old[0]):
                    best[k] = (rank, p.version, p.sha256)
        self._won = {k: (rank, {v: sha}) for k, (rank, v, sha) in best.items()}

    def keeps(self, rank: int, p: Package) -> bool:
        won = self._won.get(self._key(p))
        return won is not None and won[0] == rank and won[1].get(p.version) == p.sha256


def merge_packages(
    sources: Sequence[Sequence[Package]], policy: MergePolicy | str = MergePolicy.LATER
) -> list[Package]:
    """The packages the merge keeps, one per name, architecture and version, sorted by
    component, name, architecture and version."""
    winners = Winners(sources, policy)
    kept: dict[tuple[str, str, str], Package] = {}
    for rank, packages in enumerate(sources):
        for p in packages:
            if winners.keeps(rank, p):
                kept.setdefault((p.name, p.architecture, p.version), p)
    return sorted(kept.values(), key=lambda p: (p.component, p.name, p.architecture, p.version))


def merge_indexes(
    sources: Sequence[Sequence[tuple[str, str, Sequence[Package]]]],
    policy: MergePolicy | str = MergePolicy.LATER,
) -> dict[tuple[str, str], list[Package]]:
    """The merge of sources given as indices, ``(component, architecture, packages)``: the
    packages each (component, architecture) index of the result holds, sorted by name,
    architecture and version. An ``Architecture: all`` package kept is listed in every index
    of its component, as every architecture installs it."""
    flat = [[p for _, _, packages in indexes for p in packages] for indexes in sources]
    winners = Winners(flat, policy)
    chosen: dict[tuple[str, str], dict[tuple[str, str, str], Package]] = {}
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
