"""Dependency closure, as apt would install it from an empty system; pure functions over an index.

- ``a | b | c``: the first alternative that can be satisfied, not all of them.
- Virtual packages: a real package of that name first; among providers, apt's order (Essential,
  same architecture, Priority field, then apt's cache ID: the order in which the index first
  mentions each name), never dict or set order.
- Versions compare as Debian versions (python-debian); versioned Provides satisfy versioned
  dependencies, unversioned Provides never do.
- Architectures: ``Architecture: all``, ``pkg:any`` (needs ``Multi-Arch: allowed``),
  ``pkg:native``, ``pkg:ARCH``, and ``Multi-Arch: foreign`` packages from another selected
  architecture.
- Across sources: the highest version that satisfies the dependency, wherever it comes from (so a
  security update wins over the release's version).
- What cannot be satisfied is reported (package, dependency, why), never silently dropped.

Conflicts and Breaks are weighed once everything is marked, as apt's problem resolver does:
where selected packages conflict, the nearest ``a | b`` choice above one of them changes to
another alternative that conflicts with nothing selected, kept only if nothing is left unmet
and fewer conflicts remain (else undone). A conflict no choice avoids is kept: the closure is
what must be *available*, not a proof that it installs together (the differential tests
against apt-get check the choices).

Merging several sources is mirrorkit.merge's (one rule for mirrors, snapshots and profiles).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, cmp_to_key
from typing import Any

from mirrorkit import query as q
from mirrorkit.archive import compare_versions, stanza_fields
from mirrorkit.errors import EmptyResultError, MirrorkitError
from mirrorkit.models import Package

_PRIORITY = {"required": 1, "important": 2, "standard": 3, "optional": 4, "extra": 5}
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
# The relation fields in the order apt's cache generator reads them (debListParser).
_APT_FIELD_ORDER = {
    name: n
    for n, name in enumerate(
        (b"Pre-Depends", b"Depends", b"Conflicts", b"Breaks", b"Suggests", b"Recommends",
         b"Enhances", b"Replaces", b"Provides")
    )
}  # fmt: skip
_RELATION_FIELD = re.compile(
    rb"^(" + b"|".join(_APT_FIELD_ORDER) + rb"):[ \t]*([^\n]*)", re.MULTILINE
)
_RELATION_NAME = re.compile(rb"(?:^|[,|])\s*([a-z0-9][a-z0-9+.-]*)")
_PROVIDES_ITEM = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)\s*(?:\(\s*=\s*([^\s)]+)\s*\))?\s*$")


@dataclass(frozen=True, slots=True)
class Alt:
    """One alternative of a dependency: ``name[:arch] [(op version)]``."""

    name: str
    archqual: str | None = None
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name + (f":{self.archqual}" if self.archqual else "")
        return text + (f" ({self.op} {self.version})" if self.op else "")


Group = tuple[Alt, ...]


def group_text(group: Group) -> str:
    return " | ".join(str(a) for a in group)


@dataclass(frozen=True, slots=True)
class Unmet:
    """A dependency nothing in the index satisfies."""

    package: Package
    dependency: str
    why: str

    def __str__(self) -> str:
        return f"{self.package.ref}: {self.dependency}: {self.why}"


class UnmetDependenciesError(MirrorkitError):
    def __init__(self, unmet: Sequence[Unmet]) -> None:
        lines = "\n".join(f"  {u}" for u in unmet[:50])
        more = f"\n  ... and {len(unmet) - 50} more" if len(unmet) > 50 else ""
        super().__init__(
            f"{len(unmet)} unmet {'dependency' if len(unmet) == 1 else 'dependencies'}:\n"
            f"{lines}{more}",
            "add the missing sources (e.g. a further upstream), or accept an incomplete set: "
            "'snapshot filter --allow-missing', or allow_missing = true in a profile's [filter].",
        )
        self.unmet = list(unmet)


@cache
def _pkg_relation() -> Any:
    # Imported on first use: python-debian's deb822 costs 25 ms at start-up of every command.
    from debian.deb822 import PkgRelation

    return PkgRelation


def parse_relations(text: str, what: str = "") -> list[Group]:
    groups: list[Group] = []
    for options in _pkg_relation().parse_relations(text):
        alts = []
        for rel in options:
            name = rel["name"]
            if not _NAME.match(name):
                raise MirrorkitError(f"{what}: cannot parse dependency {text!r}")
            version = rel.get("version")
            alts.append(Alt(name, rel.get("archqual"), *(version if version else (None, None))))
        if alts:
            groups.append(tuple(alts))
    return groups


def _version_cmp(a: Package, b: Package) -> int:
    return compare_versions(a.version, b.version)


class Universe:
    """Packages from one or more sources, with the lookups the resolver and queries need.

    Relation fields are parsed lazily: a closure touches a few hundred of 63,000 packages.
    """

    def __init__(self, packages: Iterable[Package], architectures: Sequence[str] = ()) -> None:
        seen: set[tuple[str, str, str]] = set()
        self.packages: list[Package] = []
        for p in packages:
            key = (p.name, p.version, p.architecture)
            if key not in seen:
                seen.add(key)
                self.packages.append(p)
        self.position = {id(p): n for n, p in enumerate(self.packages)}
        archs = list(architectures) or sorted({p.architecture for p in self.packages} - {"all"})
        self.native = archs[0] if archs else "amd64"
        self.architectures = frozenset(archs)
        by_name: dict[str, list[Package]] = {}
        for p in self.packages:
            by_name.setdefault(p.name, []).append(p)
        for versions in by_name.values():
            if len(versions) > 1:
                # Highest version first; the sort is stable, so equal versions keep index order.
                versions.sort(key=cmp_to_key(_version_cmp), reverse=True)
        self.by_name = by_name
        self._fields: dict[int, dict[str, str]] = {}
        self._relations: dict[tuple[int, str], list[Group]] = {}
        self._provides_index: dict[str, list[tuple[Package, str | None]]] | None = None
        self._cache_ids: dict[str, int] = {}
        self._cache_read = 0  # how many packages cache_id has read
        self._provides: dict[int, list[tuple[str, str | None]]] = {}

    # -- the Fields protocol of query.py ------------------------------------------------------

    def fields_of(self, pkg: Package) -> dict[str, str]:
        cached = self._fields.get(id(pkg))
        if cached is None:
            cached = self._fields[id(pkg)] = stanza_fields(pkg.stanza)
        return cached

    def field(self, pkg: Package, name: str) -> str | None:
        return self.fields_of(pkg).get(name)

    def provides(self, pkg: Package) -> list[tuple[str, str | None]]:
        if b"Provides:" not in pkg.stanza:
            return []
        cached = self._provides.get(id(pkg))
        if cached is None:
            cached = self._provides[id(pkg)] = self._quick_provides(pkg)
        return cached

    # -- lookups --------------------------------------------------------------------------------

    def relations(self, pkg: Package, name: str) -> list[Group]:
        key = (id(pkg), name)
        cached = self._relations.get(key)
        if cached is None:
            text = self.field(pkg, name)
            cached = parse_relations(text, f"{pkg.ref}: {name}") if text else []
            self._relations[key] = cached
        return cached

    def providers(self, name: str) -> list[tuple[Package, str | None]]:
        if self._provides_index is None:
            index: dict[str, list[tuple[Package, str | None]]] = {}
            for p in self.packages:
                if b"Provides:" not in p.stanza:
                    continue
                for provided, version in self.provides(p):
                    index.setdefault(provided, []).append((p, version))
            self._provides_index = index
        return self._provides_index.get(name, [])

    @staticmethod
    def _quick_provides(pkg: Package) -> list[tuple[str, str | None]]:
        """Provides without the general relation parser: 6,000 stanzas of bookworm have one,
        and building the index is on the path of every first virtual-package lookup. The
        test suite checks it against python-debian on the real index."""
        stanza = pkg.stanza
        start = stanza.find(b"\nProvides:") + 1
        if start == 0 and not stanza.startswith(b"Provides:"):
            return []  # "Provides:" appeared in some other field's text
        end = stanza.find(b"\n", start)
        value = stanza[start + 9 : end if end >= 0 else None]
        while end >= 0 and stanza[end + 1 : end + 2] in (b" ", b"\t"):  # continuation lines
            nxt = stanza.find(b"\n", end + 1)
            value += b" " + stanza[end + 1 : nxt if nxt >= 0 else None].strip()
            end = nxt
        text = value.decode()
        found = []
        for item in text.split(","):
            entry = _PROVIDES_ITEM.match(item)
            if entry is None:
                # Rare shapes: fall back to the full parser for this stanza.
                return [
                    (g[0].name, g[0].version if g[0].op == "=" else None)
                    for g in parse_relations(text, f"{pkg.ref}: Provides")
                ]
            found.append((entry.group(1), entry.group(2)))
        return found

    def cache_id(self, name: str) -> int:
        """The ID apt's cache would give package ``name``: the order of its first mention,
        as a package or in a relation field, reading the index as apt does.

        Read from the index only as far as needed (all of it costs about 0.5 s for bookworm):
        IDs never change once given, so reading on later, when a later name is asked for,
        gives the same answers as reading everything first."""
        ids = self._cache_ids
        while name not in ids and self._cache_read < len(self.packages):
            p = self.packages[self._cache_read]
            self._cache_read += 1
            ids.setdefault(p.name, len(ids))
            found = _RELATION_FIELD.findall(p.stanza)
            if len(found) > 1:
                found.sort(key=lambda f: _APT_FIELD_ORDER[f[0]])
            for _, value in found:
                for mentioned in _RELATION_NAME.findall(value):
                    ids.setdefault(mentioned.decode(), len(ids))
        return ids.get(name, -1)

    def multi_arch(self, pkg: Package) -> str:
        if b"Multi-Arch:" not in pkg.stanza:
            return "no"
        return self.field(pkg, "Multi-Arch") or "no"

    def essential(self, pkg: Package) -> bool:
        return b"Essential:" in pkg.stanza and self.field(pkg, "Essential") == "yes"

    def priority(self, pkg: Package) -> int:
        return _PRIORITY.get(self.field(pkg, "Priority") or "", 6)

    def is_candidate(self, pkg: Package) -> bool:
        """apt only ever installs the candidate: the highest version of a name+arch."""
        for other in self.by_name[pkg.name]:
            if other.architecture == pkg.architecture:
                return other is pkg
        return False

    def arch_of(self, pkg: Package) -> str:
        return self.native if pkg.architecture == "all" else pkg.architecture

    def arch_ok(self, dependent: Package, alt: Alt, target: Package, provided: bool) -> bool:
        """Can ``target`` (a real package, or a provider) satisfy ``alt`` for ``dependent``?"""
        arch = target.architecture
        if alt.archqual == "any":
            return self.multi_arch(target) == "allowed" or arch == "all"
        if alt.archqual == "native":
            return arch in (self.native, "all")
        if alt.archqual:
            return arch in (alt.archqual, "all")
        if arch == "all" or arch == self.arch_of(dependent):
            return True
        return self.multi_arch(target) == "foreign" and arch in self.architectures


@dataclass
class Closure:
    """The result: selected packages (in the order apt would mark them), what is unmet, and for
    each selected package the package and dependency that pulled it in (None for a seed)."""

    packages: list[Package] = field(default_factory=list)
    unmet: list[Unmet] = field(default_factory=list)
    reason: dict[int, tuple[Package | None, str]] = field(default_factory=dict)

    def why(self, pkg: Package) -> list[tuple[Package, str]]:
        """The chain from a seed to ``pkg``: [(seed, ""), (next, "dep that pulled it"), ...]."""
        chain: list[tuple[Package, str]] = []
        current: Package | None = pkg
        while current is not None:
            parent, dep = self.reason[id(current)]
            chain.append((current, dep))
            current = parent
        return list(reversed(chain))


class _Resolver:
    def __init__(self, universe: Universe, fields: Sequence[str]) -> None:
        self.u = universe
        self.fields = fields
        self.result = Closure()
        self.selected: dict[tuple[str, str], Package] = {}
        self.selected_by_name: dict[str, list[Package]] = {}
        self.selected_provides: dict[str, list[tuple[Package, str | None]]] = {}
        # id(package) -> the packages one of whose dependencies it satisfied when they were
        # expanded (the one apt found then): what keeps it when a choice is undone.
        self.used_by: dict[int, list[Package]] = {}

    def use(self, pkg: Package, user: Package) -> None:
        self.used_by.setdefault(id(pkg), []).append(user)

    def select(self, pkg: Package, parent: Package | None, dep: str) -> bool:
        key = (pkg.name, pkg.architecture)
        if key in self.selected:
            return False
        self.selected[key] = pkg
        self.selected_by_name.setdefault(pkg.name, []).append(pkg)
        for name, version in self.u.provides(pkg):
            self.selected_provides.setdefault(name, []).append((pkg, version))
        self.result.packages.append(pkg)
        self.result.reason[id(pkg)] = (parent, dep)
        return True

    def satisfied(self, dependent: Package, group: Group) -> bool:
        return next(self._satisfiers(dependent, group), None) is not None

    def satisfiers(self, dependent: Package, group: Group) -> list[Package]:
        return list(self._satisfiers(dependent, group))

    def _satisfiers(self, dependent: Package, group: Group) -> Iterator[Package]:
        for alt in group:
            for pkg in self.selected_by_name.get(alt.name, []):
                if q.version_matches(pkg.version, alt.op, alt.version) and self.u.arch_ok(
                    dependent, alt, pkg, False
                ):
                    yield pkg
            for provider, version in self.selected_provides.get(alt.name, []):
                if self._provide_ok(alt, version) and self.u.arch_ok(
                    dependent, alt, provider, True
                ):
                    yield provider

    @staticmethod
    def _provide_ok(alt: Alt, provided: str | None) -> bool:
        if alt.op is None:
            return True
        return provided is not None and q.version_matches(provided, alt.op, alt.version)

    def candidates(self, dependent: Package, alt: Alt) -> list[Package]:
        """Who could satisfy ``alt``, best first; a real package of that name first."""
        real = [
            p
            for p in self.u.by_name.get(alt.name, [])
            if q.version_matches(p.version, alt.op, alt.version)
            and self.u.arch_ok(dependent, alt, p, False)
            and self._installable(p)
        ]
        if real:
            want = self.u.arch_of(dependent)
            # Highest version (by_name order); the dependent's own architecture first.
            real.sort(key=lambda p: p.architecture not in (want, "all"))
            return real[:1]
        providers = [
            p
            for p, version in self.u.providers(alt.name)
            if self._provide_ok(alt, version)
            and self.u.arch_ok(dependent, alt, p, True)
            and self.u.is_candidate(p)
            and self._installable(p)
        ]
        want = self.u.arch_of(dependent)
        ranks = {
            id(p): (
                not self.u.essential(p),
                p.architecture not in (want, "all"),
                self.u.priority(p),
            )
            for p in providers
        }
        providers.sort(key=lambda p: ranks[id(p)])
        # apt's last resort is the package's cache ID, highest first (e.g. php8.2-phpdbg for
        # phpapi-20220829, xemacs21-mule-canna-wnn for www-browser). Asked only where ranks
        # tie: finding a cache ID may read much of the index.
        start = 0
        while start < len(providers):
            end = start + 1
            while end < len(providers) and ranks[id(providers[end])] == ranks[id(providers[start])]:
                end += 1
            if end - start > 1:
                providers[start:end] = sorted(
                    providers[start:end], key=lambda p: -self.u.cache_id(p.name)
                )
            start = end
        return providers

    def _installable(self, pkg: Package) -> bool:
        """Not when another version of the same name+arch is already selected."""
        other = self.selected.get((pkg.name, pkg.architecture))
        return other is None or other is pkg

    def why_unmet(self, dependent: Package, group: Group) -> str:
        reasons = []
        for alt in group:
            named = self.u.by_name.get(alt.name, [])
            chosen = self.selected_by_name.get(alt.name, [])
            if chosen and not any(
                q.version_matches(p.version, alt.op, alt.version) for p in chosen
            ):
                reasons.append(f"{alt.name} {chosen[0].version} is already selected")
            elif named:
                versions = sorted({f"{p.version} ({p.architecture})" for p in named})
                reasons.append(f"{alt.name} has only {', '.join(versions)}")
            elif self.u.providers(alt.name):
                reasons.append(f"no provider of {alt.name} fits")
            else:
                reasons.append(f"no package {alt.name}")
        return "; ".join(reasons)

    def run(self, seeds: Sequence[Package]) -> Closure:
        # apt-get marks every package the user named before it installs any dependency: an
        # "a | b" below one seed is satisfied by another seed b, whatever the order.
        marked = [seed for seed in seeds if self.select(seed, None, "")]
        for seed in marked:
            self.expand(seed)
        self.drop_conflicting_choices()
        return self.result

    def expand(self, pkg: Package) -> None:
        """Mark what ``pkg`` needs: its dependencies in order, depth first, as apt's
        MarkInstall does. The order decides what "already satisfied" means for an ``a | b``
        further down, and so which alternative is taken."""
        for group in self._groups(pkg):
            if (there := next(self._satisfiers(pkg, group), None)) is not None:
                self.use(there, pkg)
                continue
            chosen = next((c[0] for alt in group if (c := self.candidates(pkg, alt))), None)
            if chosen is None:
                self.result.unmet.append(Unmet(pkg, group_text(group), self.why_unmet(pkg, group)))
                continue
            self.use(chosen, pkg)
            if self.select(chosen, pkg, group_text(group)):
                self.expand(chosen)

    def drop_conflicting_choices(self) -> None:
        """Alternatives taken early can conflict with packages marked later (e.g.
        libreoffice-core-nogui, taken for ``nogui | core``, against libreoffice-core, which
        libreoffice-writer needs; or libqt5gui5, needed by libqt5quick5, taken for
        ``libqt5quick5 | libqt5quick5-gles``, against libqt5gui5-gles). apt's problem resolver
        then changes the nearest choice above a conflicting package to another alternative;
        so do we, keeping a change only if it leaves every dependency met and fewer
        conflicts."""
        tried: set[tuple[int, int]] = set()  # (parent, alternative) pairs never taken again
        while conflicting := self._conflicting():
            if not any(self._change_a_choice_above(pkg, tried) for pkg in conflicting):
                return  # apt's resolver would go further (or fail); the conflict is kept

    def _change_a_choice_above(self, pkg: Package, tried: set[tuple[int, int]]) -> bool:
        node: Package | None = pkg
        while node is not None:
            parent, dep = self.result.reason[id(node)]
            if parent is None:
                return False
            if " | " in dep and (id(parent), id(node)) not in tried:
                tried.add((id(parent), id(node)))
                if self._switch_alternative(node, parent, dep, tried):
                    return True
            node = parent
        return False

    def _is_selected(self, pkg: Package) -> bool:
        return self.selected.get((pkg.name, pkg.architecture)) is pkg

    def _switch_alternative(
        self, pkg: Package, parent: Package, dep: str, tried: set[tuple[int, int]]
    ) -> bool:
        """Undo ``pkg`` (taken for ``dep``, an ``a | b`` of ``parent``) and what only it
        pulled in, then satisfy ``dep`` otherwise: already, or with another alternative that
        conflicts with nothing selected. Kept only if no dependency is left unmet and there
        are fewer conflicts; else everything is put back."""
        group = next((g for g in self._groups(parent) if group_text(g) == dep), None)
        if group is None:
            return False
        saved = self._save()
        conflicts, unmet = len(self._conflicting()), self._unsatisfied()
        self._unselect(pkg)
        self._drop_orphans()
        if (there := next(self._satisfiers(parent, group), None)) is not None:
            self.use(there, parent)
        else:
            other = next(
                (
                    c
                    for alt in group
                    for c in self.candidates(parent, alt)
                    if c is not pkg
                    and (id(parent), id(c)) not in tried
                    and not self._conflicts_with_selected(c)
                ),
                None,
            )
            if other is not None:
                tried.add((id(parent), id(other)))
                self.use(other, parent)
                if self.select(other, parent, dep):
                    self.expand(other)
        if self._unsatisfied() <= unmet and len(self._conflicting()) < conflicts:
            return True
        self._restore(saved)
        return False

    def _save(self) -> tuple[Any, ...]:
        return (
            {k: list(v) for k, v in self.used_by.items()},
            dict(self.selected),
            {k: list(v) for k, v in self.selected_by_name.items()},
            {k: list(v) for k, v in self.selected_provides.items()},
            list(self.result.packages),
            dict(self.result.reason),
            list(self.result.unmet),
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (
            self.used_by,
            self.selected,
            self.selected_by_name,
            self.selected_provides,
            self.result.packages,
            self.result.reason,
            self.result.unmet,
        ) = saved

    def _drop_orphans(self) -> None:
        """Packages only undone choices used: apt would not install them. One that a selected
        package used when it was expanded stays, even where another alternative would do
        too (apt keeps what it marked)."""
        changed = True
        while changed:
            changed = False
            for pkg in list(self.result.packages):
                parent, _ = self.result.reason[id(pkg)]
                if parent is None or any(
                    self._is_selected(user) for user in self.used_by.get(id(pkg), ())
                ):
                    continue
                self._unselect(pkg)
                changed = True

    def _conflict_groups(self, pkg: Package) -> Iterator[Group]:
        """``pkg``'s Conflicts and Breaks (most packages have neither: a byte search says so
        without parsing)."""
        for name in (b"Conflicts", b"Breaks"):
            if pkg.stanza.startswith(name + b":") or b"\n" + name + b":" in pkg.stanza:
                yield from self.u.relations(pkg, name.decode())

    def _conflicts_with_selected(self, pkg: Package) -> bool:
        """Would ``pkg`` conflict with (or break) a selected package, either way round?"""
        if self._conflicting_pairs_of(pkg):
            return True
        return any(
            self._hits(alt, pkg)
            for other in self.result.packages
            if other is not pkg
            for group in self._conflict_groups(other)
            for alt in group
        )

    def _conflicting_pairs_of(self, pkg: Package) -> list[Package]:
        """The selected packages ``pkg``'s Conflicts/Breaks name (not ``pkg`` itself)."""
        return [
            b
            for group in self._conflict_groups(pkg)
            for alt in group
            for b in self._named_by(alt)
            if b is not pkg
        ]

    def _named_by(self, alt: Alt) -> list[Package]:
        """Selected packages a Conflicts/Breaks ``alt`` applies to."""
        found = [b for b in self.selected_by_name.get(alt.name, []) if self._hits(alt, b)]
        found += [b for b, _ in self.selected_provides.get(alt.name, []) if self._hits(alt, b)]
        return found

    def _conflicting(self) -> list[Package]:
        """Every selected package in a conflict, in selection order."""
        involved: set[int] = set()
        for pkg in self.result.packages:
            if others := self._conflicting_pairs_of(pkg):
                involved.add(id(pkg))
                involved.update(id(b) for b in others)
        return [p for p in self.result.packages if id(p) in involved]

    def _hits(self, alt: Alt, pkg: Package) -> bool:
        """Does Conflicts/Breaks ``alt`` name ``pkg``: by its name (and architecture, for
        ``app:i386``), or through a name it Provides (Debian policy 7.6.2)?"""
        if alt.archqual not in (None, "any", "native") and alt.archqual != pkg.architecture:
            return False
        if alt.name == pkg.name:
            return q.version_matches(pkg.version, alt.op, alt.version)
        return any(
            name == alt.name and self._provide_ok(alt, version)
            for name, version in self.u.provides(pkg)
        )

    def _unsatisfied(self) -> set[tuple[int, Group]]:
        return {
            (id(other), group)
            for other in self.result.packages
            for group in self._groups(other)
            if not self.satisfied(other, group)
        }

    def _unselect(self, pkg: Package) -> None:
        del self.selected[(pkg.name, pkg.architecture)]
        self.selected_by_name[pkg.name].remove(pkg)
        for name, _ in self.u.provides(pkg):
            self.selected_provides[name] = [
                x for x in self.selected_provides[name] if x[0] is not pkg
            ]
        self.result.packages.remove(pkg)

    def _groups(self, pkg: Package) -> list[Group]:
        return [g for name in self.fields for g in self.u.relations(pkg, name)]


def resolve_closure(
    universe: Universe,
    seeds: Sequence[Package],
    *,
    recommends: bool = False,
    suggests: bool = False,
) -> Closure:
    """The dependency closure of ``seeds`` over ``universe`` (see the module docstring)."""
    fields = ["Pre-Depends", "Depends"]
    if recommends:
        fields.append("Recommends")
    if suggests:
        fields.append("Suggests")
    return _Resolver(universe, fields).run(seeds)


def unmet_dependencies(universe: Universe, packages: Sequence[Package]) -> list[Unmet]:
    """Dependencies (Pre-Depends, Depends) of ``packages`` that nothing in ``universe`` can
    satisfy, each with the reason."""
    resolver = _Resolver(universe, ["Pre-Depends", "Depends"])
    unmet = []
    for pkg in packages:
        for group in resolver._groups(pkg):
            if not any(resolver.candidates(pkg, alt) for alt in group):
                unmet.append(Unmet(pkg, group_text(group), resolver.why_unmet(pkg, group)))
    return unmet


def essential_set(universe: Universe) -> list[Package]:
    """``Essential: yes`` and ``Priority: required`` candidates of the native architecture."""
    return [
        p
        for p in universe.packages
        if p.architecture in (universe.native, "all")
        and universe.is_candidate(p)
        and (universe.essential(p) or universe.field(p, "Priority") == "required")
    ]


@dataclass(frozen=True, slots=True)
class Selection:
    """A filter: the packages a query matches, with their dependency closure if asked."""

    query: str
    with_deps: bool = False
    with_recommends: bool = False
    with_essential: bool = False
    allow_missing: bool = False
    # Not in the repr, so not in the digest: it decides whether nothing is an error, not what
    # is chosen (a mirror's committed selection stays valid).
    allow_empty: bool = field(default=False, repr=False)

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()


@dataclass
class Selected:
    packages: list[Package]
    matched: list[Package]
    closure: Closure | None


def search(universe: Universe, text: str) -> list[Package]:
    """Every package ``text`` matches, in index order."""
    parsed = q.parse(text)
    pool = _narrow(parsed, universe)
    if pool is None:
        pool = universe.packages
    else:
        position = universe.position
        pool = sorted(pool, key=lambda p: position[id(p)])
    return [p for p in pool if parsed.matches(p, universe)]


def _narrow(query: q.Query, universe: Universe) -> list[Package] | None:
    """A superset of what ``query`` can match, found through the name and Provides indices,
    or None when only a scan of every package will do (field terms, negation).

    Filters are mostly names ("nginx | curl | openssh-server"): checking those against 63,000
    packages one by one cost 0.3 s; looking them up costs nothing."""
    if isinstance(query, q.Dependency):
        found = list(universe.by_name.get(query.name, []))
        found += [p for p, _ in universe.providers(query.name)]
        return found
    if isinstance(query, q.PackageRef):
        return list(universe.by_name.get(query.name, []))
    if isinstance(query, q.Or):
        left, right = _narrow(query.left, universe), _narrow(query.right, universe)
        if left is None or right is None:
            return None
        return list({id(p): p for p in left + right}.values())
    if isinstance(query, q.And):
        left, right = _narrow(query.left, universe), _narrow(query.right, universe)
        if left is None:
            return right
        if right is None:
            return left
        keep = {id(p) for p in right}
        return [p for p in left if id(p) in keep]
    return None


def apply(universe: Universe, selection: Selection) -> Selected:
    """The packages ``selection`` keeps from ``universe``; raises on unmet dependencies unless
    ``allow_missing``."""
    matched = search(universe, selection.query)
    if not matched and not selection.allow_empty:
        raise empty_result(
            selection.query,
            universe,
            "--allow-empty (snapshot filter, mirror add), or allow_empty = true in a profile's "
            "[filter]",
        )
    if not selection.with_deps:
        return Selected(matched, matched, None)
    seeds = list(matched)
    if selection.with_essential:
        seeds += essential_set(universe)
    closure = resolve_closure(universe, seeds, recommends=selection.with_recommends)
    if closure.unmet and not selection.allow_missing:
        raise UnmetDependenciesError(closure.unmet)
    # A seed that another version's seed displaced is still wanted (e.g. two matched versions).
    keep = {id(p) for p in closure.packages} | {id(p) for p in matched}
    return Selected([p for p in universe.packages if id(p) in keep], matched, closure)


def empty_result(text: str, universe: Universe, override: str | None) -> EmptyResultError:
    """The error for query ``text`` matching nothing: it names the query and suggests the
    package names closest to the names it mentions (a typo is the usual cause)."""
    names = sorted(universe.by_name)
    wanted = _names_in(q.parse(text)) or [text]
    close = list(dict.fromkeys(c for w in wanted for c in difflib.get_close_matches(w, names, n=5)))
    hint = f"did you mean: {', '.join(close)}?" if close else "no package name is close to it."
    if override:
        hint += f" To accept an empty result: {override}."
    return EmptyResultError(f"query {text!r} matches no package (of {len(names)} names)", hint)


def _names_in(query: q.Query) -> list[str]:
    """The package names a query asks for (``nginx``, ``nginx_1.0_amd64``, ``a | b``, ``a, b``;
    not what ``!a`` excludes)."""
    if isinstance(query, q.Dependency | q.PackageRef):
        return [query.name]
    if isinstance(query, q.Or | q.And):
        return _names_in(query.left) + _names_in(query.right)
    return []
