"""Which index files of a suite a mirror fetches, and how each is read: its Packages
indices (per component and architecture, with a separate ``binary-all`` where the suite has
one), and, as the mirror's spec asks, the debian-installer Packages and the Sources indices,
each as the signed Release lists them (the best compression offered). No I/O: the Release in,
the targets out; verified bytes in, parsed indices out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirrorkit import archive
from mirrorkit.errors import FormatError, ReleaseError
from mirrorkit.mirrors import parse_index
from mirrorkit.models import FileRef, IndexRef, MirrorSpec, Package


@dataclass(frozen=True, slots=True)
class Target:
    """An index to fetch: its kind, component, architecture, and [(compression, ref), ...]
    (usually one; two when a suite keeps architecture ``all`` in a ``binary-all`` index)."""

    kind: str
    component: str
    architecture: str
    found: list[tuple[str, FileRef]]


def index_targets(spec: MirrorSpec, release: archive.Release, where: str) -> list[Target]:
    """Every index to fetch: the Packages indices, then (if the mirror follows them) the
    debian-installer Packages indices and the Sources indices."""
    targets: list[Target] = []
    if spec.flat:
        picked = archive.pick_index(release, "Packages")
        if picked is None:
            raise FormatError(
                f"{where}: the Release lists no Packages index",
                "check the mirror's URL and suite; the upstream may be incomplete.",
            )
        for arch in spec.architectures:
            targets.append(Target("deb", "main", arch, [picked]))
        if spec.with_sources:
            targets.append(
                Target("source", "main", "source", [required(release, "Sources", where)])
            )
        return targets
    for component in spec.components:
        rcomp = archive.map_component(component, release.components)
        if release.components and rcomp not in release.components:
            raise ReleaseError(
                f"{where}: component {component!r} is not in this suite "
                f"(it has: {', '.join(release.components)})",
                "fix the mirror's components.",
            )
        for arch in spec.architectures:
            if release.architectures and arch not in release.architectures:
                raise ReleaseError(
                    f"{where}: architecture {arch!r} is not in this suite "
                    f"(it has: {', '.join(release.architectures)})",
                    "fix the mirror's architectures.",
                )
            # Debian's security archive lists "updates/main" in Components but keeps its
            # indices under "main/", as apt requests them: look under both names (and under
            # "main" for a user who wrote "updates/main", as that Release suggests).
            last = component.rpartition("/")[2]
            prefixes = dict.fromkeys([component, rcomp, last])
            picked = next(
                (
                    hit
                    for prefix in prefixes
                    if (hit := archive.pick_index(release, f"{prefix}/binary-{arch}/Packages"))
                ),
                None,
            )
            if picked is None:
                raise FormatError(
                    f"{where}: the Release lists no {component}/binary-{arch}/Packages index",
                    "the upstream may be incomplete or mid-sync; try again later.",
                )
            found = [picked]
            prefix = picked[1].path.split("/binary-", 1)[0]
            if prefix == last and component != last:
                component = last  # what clients write, and what the snapshot publishes
            if (
                arch != "all"
                and "all" in release.architectures
                and not release.no_arch_all_packages
            ):
                extra = archive.pick_index(release, f"{prefix}/binary-all/Packages")
                if extra is not None:
                    found.append(extra)
            targets.append(Target("deb", component, arch, found))
            if spec.with_udebs:
                udebs = required(
                    release, f"{prefix}/debian-installer/binary-{arch}/Packages", where
                )
                targets.append(Target("udeb", component, arch, [udebs]))
        if spec.with_sources:
            prefix = next(
                (
                    p
                    for p in dict.fromkeys([component, rcomp, last])
                    if archive.pick_index(release, f"{p}/source/Sources")
                ),
                component,
            )
            sources = required(release, f"{prefix}/source/Sources", where)
            targets.append(Target("source", component, "source", [sources]))
    return targets


def required(release: archive.Release, base: str, where: str) -> tuple[str, FileRef]:
    """The best listed variant of index ``base``; FormatError if the Release lists none."""
    picked = archive.pick_index(release, base)
    if picked is None:
        what = "--with-sources" if base.endswith("/Sources") else "--with-udebs"
        raise FormatError(
            f"{where}: the Release lists no {base} index",
            f"the upstream does not publish it; edit the mirror without {what} "
            "(or try again later if the upstream is mid-sync).",
        )
    return picked


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    """An index verified and parsed (for the store: its text as it will be kept)."""

    component: str
    architecture: str
    text: bytes
    packages: list[Package]
    kind: str = "deb"

    @property
    def ref(self) -> IndexRef:
        """An IndexRef that names it (without a SHA256: for labels and parsers)."""
        return IndexRef(self.component, self.architecture, "", 0, self.kind)


def load_index(spec: MirrorSpec, target: Target, blobs: dict[str, bytes], base: str) -> LoadedIndex:
    """Decompress and parse the verified index file(s) of one target."""
    component, arch, found = target.component, target.architecture, target.found
    what = f"{base}/{found[0][1].path}"
    if target.kind != "deb":
        compression, ref = found[0]
        text = archive.decompress(blobs[ref.sha256], compression, what)
        index = IndexRef(component, arch, "", 0, target.kind)
        return LoadedIndex(component, arch, text, parse_index(text, index, what), target.kind)
    if len(found) == 1 and not spec.flat:
        compression, ref = found[0]
        text, pkgs = archive.parse_compressed(blobs[ref.sha256], compression, component, what)
        return LoadedIndex(component, arch, text, pkgs)
    text = b"".join(
        archive.decompress(blobs[ref.sha256], compression, what).rstrip(b"\n") + b"\n\n"
        for compression, ref in found
    )
    if spec.flat:
        text = _filter_arch(text, arch)
    return LoadedIndex(component, arch, text, archive.parse_packages(text, component, what))


def _filter_arch(text: bytes, arch: str) -> bytes:
    """For flat repositories: one Packages file holds every architecture."""
    keep = [
        s for s in archive.iter_stanzas(text) if archive.field(s, "Architecture") in (arch, "all")
    ]
    return archive.join_stanzas(keep)
