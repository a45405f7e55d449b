"""The layout plan of a published suite: every byte of ``dists/SUITE`` and every pool link.

No I/O here: the executor (executor.py) writes the same plan to a directory or to S3. The plan
is deterministic: the same snapshot and options give byte-identical indices and Release, and
the Release ``Date`` follows release_date's rules. Importing this module loads no stage
(mirror, snapshot, channel, gpg, resolve): tools that only lay out a suite stay cheap.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from mirrorkit import archive
from mirrorkit.errors import PublishError, UsageError
from mirrorkit.models import Package

T = TypeVar("T")

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(
            f"invalid duration {text!r}", "use a number with s, m, h, d or w, e.g. '7d'."
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def release_date(previous: datetime | None = None) -> datetime:
    """The Release ``Date``: SOURCE_DATE_EPOCH if set (reproducible builds), else now, never
    earlier than the suite's previous Release.

    apt silently keeps its current Release when a new one carries an older Date (its replay
    protection), so a rollback published with the old snapshot's date would never reach
    clients; an equal Date it accepts. Not "previous + 1 s": quick publishes would carry the
    Date into the future, and apt refuses a Release dated more than 10 s ahead. The indices
    themselves are byte-identical for the same snapshot."""
    if epoch := os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            when = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a valid timestamp") from exc
        if previous is not None and when < previous:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={epoch} ({archive.format_date(when)}) is older than the "
                f"Date of the Release this suite has now ({archive.format_date(previous)})",
                "apt would silently keep the suite it has; unset SOURCE_DATE_EPOCH or set it "
                f"to at least {int(previous.timestamp())}.",
            )
        return when
    now = datetime.now(UTC).replace(microsecond=0)
    return max(now, previous) if previous is not None else now


@dataclass(frozen=True, slots=True)
class PoolLink:
    path: str  # relative to the tree root: pool/main/h/hello/hello_1.0_amd64.deb
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class SuitePlan:
    suite: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    release: bytes
    # Paths relative to dists/SUITE/: indices, their by-hash copies, Release (unsigned).
    files: dict[str, bytes] = field(default_factory=dict)
    pool: tuple[PoolLink, ...] = ()
    kinds: tuple[str, ...] = ("deb",)  # what the suite holds (models.INDEX_KINDS)

    @property
    def by_hash(self) -> dict[str, bytes]:
        return {p: d for p, d in self.files.items() if "/by-hash/" in p}


# Debian policy 5.6.1 allows [a-z0-9][a-z0-9+.-]+; upper case and "_~" are tolerated here
# because older and third-party archives use them, and they are harmless in a path.
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.~_-]*\Z")


def pool_path(p: Package) -> str:
    """``pool/<component>/<prefix>/<source>/<file>``, the layout dak and reprepro use."""
    source = p.source or p.name
    if not _SOURCE_NAME.match(source):
        raise PublishError(
            f"{p.ref}: malformed source name {source!r} (its Source or Package field)",
            "the upstream index is broken; filter this package out of the snapshot.",
        )
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[:1]
    basename = posixpath.basename(p.filename)
    return archive.safe_relpath(
        f"pool/{p.component}/{prefix}/{source}/{basename}", f"{p.ref}: pool path"
    )


def _fold_arch_all(
    indexes: Mapping[tuple[str, str], Sequence[Package]],
    components: Sequence[str],
    architectures: Sequence[str],
) -> dict[tuple[str, str], Sequence[Package]]:
    """Every (component, architecture) index, with the component's ``all`` index (your own
    packages, say, merged into a mirror's snapshot) folded in: clients read ``all`` packages
    from binary-ARCH only (the Release says No-Support-for-Architecture-all), and apt
    expects an index for every component and architecture the Release lists."""
    folded: dict[tuple[str, str], Sequence[Package]] = dict(indexes)
    for component in components:
        extra = indexes.get((component, "all"), ())
        for arch in architectures:
            folded[(component, arch)] = with_arch_all(indexes.get((component, arch), ()), extra)
    return folded


def with_arch_all(own: Sequence[Package], extra: Sequence[Package]) -> Sequence[Package]:
    """An architecture's packages and those of the component's ``all`` index it lacks."""
    if not extra:
        return own
    have = {(p.name, p.version, p.architecture) for p in own}
    return [*own, *(p for p in extra if (p.name, p.version, p.architecture) not in have)]


@dataclass(frozen=True, slots=True)
class RenderedIndex:
    """One ``COMPONENT/binary-ARCH/Packages`` index as published: its bytes plain, gz and xz,
    and the pool files it names. What publishing one snapshot again reuses (render.py)."""

    plain: bytes
    gz: bytes
    xz: bytes
    links: tuple[PoolLink, ...]

    def files(self) -> tuple[tuple[str, bytes], ...]:
        """(suffix, bytes): ``Packages``, ``Packages.gz``, ``Packages.xz``."""
        return (("", self.plain), (".gz", self.gz), (".xz", self.xz))


def _check_links(links: dict[str, PoolLink], new: Sequence[PoolLink]) -> None:
    for link in new:
        other = links.setdefault(link.path, link)
        if other.sha256 != link.sha256:
            raise PublishError(
                f"{link.path}: two different files would be published under this name "
                f"({other.sha256[:12]}… and {link.sha256[:12]}…)",
                "the snapshot holds two builds of the same package version; filter one out.",
            )


def render_index(pkgs: Sequence[Package]) -> RenderedIndex:
    """The published form of one index: stanzas sorted, each Filename its pool path."""
    ordered = sorted(pkgs, key=lambda p: (p.name, p.version, p.architecture, p.sha256))
    links: dict[str, PoolLink] = {}
    stanzas = []
    for p in ordered:
        path = pool_path(p)
        _check_links(links, [PoolLink(path, p.sha256, p.size)])
        stanzas.append(archive.rewrite_filename(p.stanza, path))
    plain = archive.join_stanzas(stanzas)
    del stanzas
    # gz beside xz's blocks: zlib and lzma release the GIL.
    with ThreadPoolExecutor(1, "compress-gz") as pool:
        gz = pool.submit(archive.compress_gz, plain)
        xz = archive.compress_xz(plain)
        return RenderedIndex(
            plain, gz.result(), xz, tuple(sorted(links.values(), key=lambda li: li.path))
        )


def fold_arch_all(indexes: Mapping[tuple[str, str], Sequence[T]]) -> dict[tuple[str, str], list[T]]:
    """Which sources make each published index: (component, architecture) -> its own and
    the component's ``all`` ones (as _fold_arch_all folds packages)."""
    components = sorted({c for c, _ in indexes})
    architectures = sorted({a for _, a in indexes if a != "all"})
    folded = {key: list(value) for key, value in indexes.items()}
    for component in components:
        for arch in architectures:
            folded[(component, arch)] = [
                *indexes.get((component, arch), ()),
                *indexes.get((component, "all"), ()),
            ]
    return folded


def _plan_extra(
    path: str,
    plain: bytes,
    files: dict[str, bytes],
    checksums: dict[str, tuple[int, str, str]],
) -> None:
    """A Translation (shipped plain, .xz and .gz, as Packages) or a Contents file (.gz only, as
    Debian ships it: the plain text is large). The Release lists the plain name either way:
    apt looks a Translation or Contents target up by it before it picks a compression."""
    contents = "/Contents-" in f"/{path}"
    variants = [(path, plain)] if not contents else []
    variants.append((f"{path}.gz", archive.compress_gz(plain)))
    if not contents:
        variants.append((f"{path}.xz", archive.compress_xz(plain)))
    for name, data in variants:
        sha = hashlib.sha256(data).hexdigest()
        checksums[name] = (len(data), hashlib.md5(data).hexdigest(), sha)
        files[name] = data
        files[archive.by_hash_path(name, sha)] = data
    if contents:
        md5, sha = hashlib.md5(plain).hexdigest(), hashlib.sha256(plain).hexdigest()
        checksums[path] = (len(plain), md5, sha)


def render_sources(pkgs: Sequence[Package]) -> RenderedIndex:
    """The published form of a Sources index: stanzas sorted, each Directory the pool
    directory of its source package, where the .dsc and every file it lists are linked."""
    links: dict[str, PoolLink] = {}
    stanzas = []
    for p in sorted(pkgs, key=lambda p: (p.name, p.version, p.sha256)):
        directory = pool_path(p).rpartition("/")[0]
        placed = [PoolLink(f"{directory}/{posixpath.basename(f.path)}", f.sha256, f.size)
                  for f in p.pool_files]  # fmt: skip
        _check_links(links, placed)
        stanzas.append(_rewrite_directory(p.stanza, directory))
    plain = archive.join_stanzas(stanzas)
    return RenderedIndex(
        plain,
        archive.compress_gz(plain),
        archive.compress_xz(plain),
        tuple(sorted(links.values(), key=lambda li: li.path)),
    )


def _rewrite_directory(stanza: bytes, directory: str) -> bytes:
    return re.sub(
        rb"^Directory:[^\n]*$", b"Directory: " + directory.encode(), stanza, count=1, flags=re.M
    )


def index_files(text: bytes, name: str, what: str) -> dict[str, str]:
    """Pool path -> SHA256 of every file a published index lists: a ``Packages`` index (debs
    or udebs), or a ``Sources`` index (each source package's .dsc and the files it lists)."""
    if name == "Sources":
        from mirrorkit.sourcepkg import parse_sources

        return {f.path: f.sha256 for p in parse_sources(text, "", what) for f in p.pool_files}
    return {p.filename: p.sha256 for p in archive.parse_packages(text, "", what)}


def _add_rendered(
    files: dict[str, bytes],
    checksums: dict[str, tuple[int, str, str]],
    base: str,
    index: RenderedIndex,
) -> None:
    """An index (plain, gz, xz) and its by-hash copies, listed in the Release."""
    for suffix, data in index.files():
        name = base + suffix
        sha = hashlib.sha256(data).hexdigest()
        checksums[name] = (len(data), hashlib.md5(data).hexdigest(), sha)
        files[name] = data
        files[archive.by_hash_path(name, sha)] = data


def plan_suite(
    indexes: Mapping[tuple[str, str], Sequence[Package]],
    *,
    suite: str,
    date: datetime,
    origin: str = "mirrorkit",
    label: str = "mirrorkit",
    codename: str | None = None,
    description: str | None = None,
    valid_until: datetime | None = None,
    extras: Mapping[str, bytes] | None = None,
    udebs: Mapping[tuple[str, str], Sequence[Package]] | None = None,
    sources: Mapping[str, Sequence[Package]] | None = None,
) -> SuitePlan:
    """Plan ``dists/SUITE`` for ``indexes``: (component, architecture) -> packages;
    ``extras``: Translations and Contents, path under ``dists/SUITE`` -> uncompressed text;
    ``udebs`` (as ``indexes``, for ``debian-installer/binary-ARCH``) and ``sources``
    (component -> source packages)."""
    architectures = tuple(sorted({a for _, a in indexes if a != "all"}))
    if architectures:
        components = tuple(sorted({c for c, _ in indexes}))
        indexes = _fold_arch_all(indexes, components, architectures)
    return plan_rendered(
        {key: render_index(pkgs) for key, pkgs in sorted(indexes.items())},
        suite=suite,
        date=date,
        origin=origin,
        label=label,
        codename=codename,
        description=description,
        valid_until=valid_until,
        extras=extras,
        udebs={key: render_index(pkgs) for key, pkgs in sorted((udebs or {}).items())},
        sources={c: render_sources(pkgs) for c, pkgs in sorted((sources or {}).items())},
    )


def plan_rendered(
    rendered: Mapping[tuple[str, str], RenderedIndex],
    *,
    suite: str,
    date: datetime,
    origin: str = "mirrorkit",
    label: str = "mirrorkit",
    codename: str | None = None,
    description: str | None = None,
    valid_until: datetime | None = None,
    extras: Mapping[str, bytes] | None = None,
    udebs: Mapping[tuple[str, str], RenderedIndex] | None = None,
    sources: Mapping[str, RenderedIndex] | None = None,
) -> SuitePlan:
    """Plan ``dists/SUITE`` around indices already rendered: (component, architecture) ->
    index (``all`` folded into the others already, when there are others), and ``extras``,
    ``udebs`` and ``sources`` (component -> rendered Sources) as :func:`plan_suite` takes
    them."""
    files: dict[str, bytes] = {}
    checksums: dict[str, tuple[int, str, str]] = {}
    links: dict[str, PoolLink] = {}
    udebs, sources = udebs or {}, sources or {}
    components = tuple(sorted({c for c, _ in rendered} | {c for c, _ in udebs} | set(sources)))
    architectures = tuple(sorted({a for _, a in rendered if a != "all"}))
    for (component, arch), index in sorted(rendered.items()):
        _check_links(links, index.links)
        base = f"{component}/binary-{arch}/Packages"
        for suffix, data in index.files():
            name = base + suffix
            sha = hashlib.sha256(data).hexdigest()
            checksums[name] = (len(data), hashlib.md5(data).hexdigest(), sha)
            files[name] = data
            files[archive.by_hash_path(name, sha)] = data
    for (component, arch), index in sorted(udebs.items()):
        _check_links(links, index.links)
        _add_rendered(
            files, checksums, f"{component}/debian-installer/binary-{arch}/Packages", index
        )
    for component, index in sorted(sources.items()):
        _check_links(links, index.links)
        _add_rendered(files, checksums, f"{component}/source/Sources", index)
    for path, plain in sorted((extras or {}).items()):
        _plan_extra(path, plain, files, checksums)
    fields = [
        ("Origin", origin),
        ("Label", label),
        ("Suite", suite),
        ("Codename", codename or suite),
        ("Date", archive.format_date(date)),
    ]
    if valid_until is not None:
        fields.append(("Valid-Until", archive.format_date(valid_until)))
    fields += [
        ("Architectures", " ".join(architectures or ("all",))),
        ("Components", " ".join(components)),
        ("Acquire-By-Hash", "yes"),
    ]
    if architectures:
        # Architecture-all packages are listed in every binary-ARCH index, as Debian does.
        fields.append(("No-Support-for-Architecture-all", "Packages"))
    if description:
        fields.append(("Description", description))
    release = archive.render_release(fields, checksums)
    return SuitePlan(
        suite=suite,
        components=components,
        architectures=architectures,
        release=release,
        files=files,
        pool=tuple(sorted(links.values(), key=lambda link: link.path)),
        kinds=("deb",) + (("udeb",) if udebs else ()) + (("source",) if sources else ()),
    )
