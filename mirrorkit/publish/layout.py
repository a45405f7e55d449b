"""The layout plan of a published suite: every byte of ``dists/SUITE`` and every pool link.

No I/O here: the fs writer (and the S3 writer) execute the same plan. The plan is
deterministic: the same snapshot and options give byte-identical indices and Release.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mirrorkit import archive
from mirrorkit.errors import PublishError
from mirrorkit.models import Package

# Where a tree or a bucket prefix records every pool file mirrorkit placed there, with its
# SHA256 (the sha256sum format): pruning removes only those.
POOL_RECORD = ".mirrorkit/pool.sha256"


def parse_pool_record(text: str) -> dict[str, str]:
    """Pool path -> SHA256 from a POOL_RECORD; malformed lines are skipped."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        sha, sep, path = line.partition("  ")
        if sep and len(sha) == 64:
            record[path] = sha
    return record


def render_pool_record(record: Mapping[str, str]) -> bytes:
    return "".join(f"{sha}  {path}\n" for path, sha in sorted(record.items())).encode()


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
            own = indexes.get((component, arch), ())
            if extra:
                have = {(p.name, p.version, p.architecture) for p in own}
                own = [*own, *(p for p in extra if (p.name, p.version, p.architecture) not in have)]
            folded[(component, arch)] = own
    return folded


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
) -> SuitePlan:
    """Plan ``dists/SUITE`` for ``indexes``: (component, architecture) -> packages."""
    files: dict[str, bytes] = {}
    checksums: dict[str, tuple[int, str, str]] = {}
    links: dict[str, PoolLink] = {}
    components = tuple(sorted({c for c, _ in indexes}))
    architectures = tuple(sorted({a for _, a in indexes if a != "all"}))
    if architectures:
        indexes = _fold_arch_all(indexes, components, architectures)
    for (component, arch), pkgs in sorted(indexes.items()):
        ordered = sorted(pkgs, key=lambda p: (p.name, p.version, p.architecture, p.sha256))
        stanzas = []
        for p in ordered:
            path = pool_path(p)
            link = PoolLink(path, p.sha256, p.size)
            other = links.setdefault(path, link)
            if other.sha256 != p.sha256:
                raise PublishError(
                    f"{path}: two different files would be published under this name "
                    f"({other.sha256[:12]}… and {p.sha256[:12]}…)",
                    "the snapshot holds two builds of the same package version; filter one out.",
                )
            stanzas.append(archive.rewrite_filename(p.stanza, path))
        plain = archive.join_stanzas(stanzas)
        base = f"{component}/binary-{arch}/Packages"
        for name, data in (
            (base, plain),
            (f"{base}.gz", archive.compress_gz(plain)),
            (f"{base}.xz", archive.compress_xz(plain)),
        ):
            sha = hashlib.sha256(data).hexdigest()
            checksums[name] = (len(data), hashlib.md5(data).hexdigest(), sha)
            files[name] = data
            files[archive.by_hash_path(name, sha)] = data
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
    )
