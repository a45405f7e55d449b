"""Frozen dataclasses passed between the stages of the data flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mirrorkit.errors import MirrorkitError, UsageError

if TYPE_CHECKING:  # the stages' own frozen records, carried by the api's results below
    from mirrorkit.mirror import Mirror
    from mirrorkit.resolve import Unmet
    from mirrorkit.snapshot import Change, SnapshotInfo


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file an index promises: path relative to the archive root, size and SHA256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Package:
    """One binary package stanza from a Packages index.

    ``stanza`` keeps the upstream text exactly (without the trailing blank line), so that a
    published index says what upstream said, apart from the ``Filename`` that publish rewrites.
    """

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    source: str
    component: str
    stanza: bytes
    # A source package (architecture "source"; ``filename`` etc. name its .dsc): the other
    # files its .dsc lists (.orig.tar.*, .debian.tar.*, signatures), each verified like it.
    files: tuple[FileRef, ...] = ()

    @property
    def ref(self) -> str:
        """aptly's package reference form, ``name_version_arch``."""
        return f"{self.name}_{self.version}_{self.architecture}"

    @property
    def pool_files(self) -> tuple[FileRef, ...]:
        """Every pool object the package needs: its file, and a source package's others."""
        return (FileRef(self.filename, self.size, self.sha256), *self.files)


@dataclass(frozen=True, slots=True)
class MirrorSpec:
    """What a mirror follows. ``suite`` ending in ``/`` is a flat repository."""

    name: str
    url: str
    suite: str
    components: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    keyring: str = ""
    fingerprints: tuple[str, ...] = ()
    filter: str = ""  # a package query; empty: the whole suite
    with_deps: bool = False
    with_recommends: bool = False
    allow_empty: bool = False  # a filter that matches nothing is not an error
    languages: tuple[str, ...] = ()  # i18n/Translation-LANG to mirror (mirror add: "en")
    with_contents: bool = False  # Contents-ARCH, for apt-file
    # How this mirror is reached, as 'mirror add/edit' gave it ("", (): the environment's and
    # apt's); the options of 'mirror update' override each. Never credentials (mirrors.add).
    proxy: str = ""
    ca_bundle: str = ""
    auth_files: tuple[str, ...] = ()
    with_sources: bool = False  # the Sources indices and the source packages they list
    with_udebs: bool = False  # debian-installer/binary-ARCH/Packages and the .udeb files
    with_installer: bool = False  # installer-ARCH/<version>/images/ (SHA256SUMS-verified)
    installer_files: tuple[str, ...] = ()  # globs relative to images/; empty: every file

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")


@dataclass(frozen=True, slots=True)
class IndexRef:
    """An index held in the store: its (user-facing) component, architecture, the SHA256 of
    its uncompressed text, and its kind (INDEX_KINDS): a Packages index of debs (``deb``), of
    udebs (``udeb``), a Sources index (``source``, architecture ``source``), or the verified
    list of an installer's image files (``installer``)."""

    component: str
    architecture: str
    sha256: str
    packages: int
    kind: str = "deb"


# The kinds of index a mirror or snapshot holds, in the order they are listed.
INDEX_KINDS = ("deb", "udeb", "source", "installer")


def index_label(ref: IndexRef) -> str:
    """How an index is named in messages: ``main/binary-amd64``, ``main/source``, ..."""
    if ref.kind == "source":
        return f"{ref.component}/source"
    if ref.kind == "udeb":
        return f"{ref.component}/debian-installer/binary-{ref.architecture}"
    if ref.kind == "installer":
        return f"{ref.component}/installer-{ref.architecture}"
    return f"{ref.component}/binary-{ref.architecture}"


_KIND_NAMES = {"deb": "debs", "udeb": "udebs", "source": "sources", "installer": "installer"}


def kinds_text(kinds: Sequence[str]) -> str:
    """What a mirror or snapshot holds, as ``show`` commands say it: ``debs udebs sources``."""
    return " ".join(_KIND_NAMES.get(k, k) for k in kinds) or "nothing"


def index_json(ref: IndexRef) -> dict[str, Any]:
    """An IndexRef as records write it: ``kind`` only when it is not ``deb``, so a record of
    debs only reads (and hashes) as it did before there were kinds."""
    out: dict[str, Any] = {
        "component": ref.component,
        "architecture": ref.architecture,
        "sha256": ref.sha256,
        "packages": ref.packages,
    }
    if ref.kind != "deb":
        out["kind"] = ref.kind
    return out


@dataclass(frozen=True, slots=True)
class ExtraRef:
    """A per-component file beside the Packages indices, held uncompressed in the meta store:
    ``kind`` "translation" (``name``: the language, ``i18n/Translation-en``) or "contents"
    (``name``: the architecture, ``Contents-amd64``); ``entries``: its stanzas or lines."""

    component: str
    kind: str
    name: str
    sha256: str
    entries: int


class MergePolicy(StrEnum):
    """How merged sources combine (mirrorkit.merge says exactly): ``later`` (the later source
    wins), ``latest`` (the highest version wins) or ``all-versions`` (every version stays)."""

    LATER = "later"
    LATEST = "latest"
    ALL_VERSIONS = "all-versions"

    @classmethod
    def parse(cls, text: str) -> MergePolicy:
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise UsageError(f"unknown merge policy {text!r}", f"use one of {choices}.") from None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a snapshot's packages came from: one entry of a snapshot record's ``sources``.

    ``kind`` says which fields apply: ``mirror`` (a mirror's committed state, as verified:
    ``mirror``, ``url``, ``suite``, ``inrelease_sha256``, ``signer``, ``release_date``,
    ``fetched_at``), ``snapshot`` (merged from ``snapshot`` with ``digest`` under
    ``policy``), ``filter`` (filtered from ``snapshot`` with ``digest``), ``debs`` (your
    own ``files``, each "name_version_arch SHA256") or ``repo`` (one change to local repo
    ``repo``: its ``action``, ``by`` whom, the ``parent`` snapshot it changed, and in
    ``files`` what changed, each "+ name_version_arch SHA256" or "- ..."). The selection
    fields (``filter``, ``with_deps``, ...) say how packages were chosen; ``policy`` how
    several sources merged.

    A field left None is absent from the record. Keys this version does not know, and known
    keys with a value of another type, are kept verbatim in ``extra``: a record written by
    another version serialises back to exactly what was read (its digest covers it).
    """

    kind: str
    mirror: str | None = None
    url: str | None = None
    suite: str | None = None
    inrelease_sha256: str | None = None
    signer: str | None = None
    release_date: str | None = None
    fetched_at: str | None = None
    snapshot: str | None = None
    digest: str | None = None
    policy: str | None = None
    filter: str | None = None
    with_deps: bool | None = None
    with_recommends: bool | None = None
    with_essential: bool | None = None
    files: tuple[str, ...] | None = None
    repo: str | None = None
    parent: str | None = None
    action: str | None = None
    by: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _PROVENANCE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Provenance:
        """Raises TypeError if ``data`` is not a JSON object with a string ``kind``."""
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise TypeError(f"a source must be an object with a 'kind', not {data!r}")
        known: dict[str, Any] = {}
        extra = []
        for key, value in data.items():
            expected = _PROVENANCE_FIELDS.get(key)
            if expected in (bool, str) and type(value) is expected:
                known[key] = value
            elif (
                expected is tuple
                and isinstance(value, list)
                and all(isinstance(v, str) for v in value)
            ):
                known[key] = tuple(value)
            else:
                extra.append((key, value))
        return cls(**known, extra=tuple(sorted(extra, key=lambda kv: kv[0])))


# The JSON type of each field of a Provenance (tuple: a list of strings).
_PROVENANCE_FIELDS: dict[str, type] = {
    **dict.fromkeys(
        ("kind", "mirror", "url", "suite", "inrelease_sha256", "signer", "release_date",
         "fetched_at", "snapshot", "digest", "policy", "filter", "repo", "parent", "action",
         "by"),
        str,
    ),
    **dict.fromkeys(("with_deps", "with_recommends", "with_essential"), bool),
    "files": tuple,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FetchSummary:
    """What one ``fetch_all`` did: files fetched and reused, bytes moved, wall time."""

    fetched: int = 0
    reused: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """What an update downloads (or, dry run, would): files the pool lacks and their bytes
    (less what partial downloads hold), and files the pool has already."""

    files: int = 0
    bytes: int = 0
    reused: int = 0


@dataclass(frozen=True, slots=True)
class UpdateResult:
    mirror: str
    changed: bool
    packages: int
    release_date: str
    summary: FetchSummary = field(default_factory=FetchSummary)
    plan: DownloadPlan = field(default_factory=DownloadPlan)  # planned before any download
    dry_run: bool = False  # True: verified up to the indices, nothing downloaded or committed


# --- results of the public API (mirrorkit.api) that no stage returns as such ------------------


@dataclass(frozen=True, slots=True)
class MirrorsAdded:
    """``mirror_add``: the mirrors recorded (several with ``profile=``), as stored; and, for
    each upstream that could not be asked (unreachable, say), why (\"NAME: reason\")."""

    mirrors: tuple[Mirror, ...]
    unchecked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MirrorEdited:
    """``mirror_edit``: the mirror as stored now; ``unchecked``: why the upstream could not
    be asked (None: it was, or ``no_check``)."""

    mirror: Mirror
    unchecked: str | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """``mirror_rm``, ``snapshot_rm``: what is gone."""

    kind: str  # "mirror" | "snapshot"
    name: str


@dataclass(frozen=True, slots=True)
class SnapshotList:
    """``snapshot_list``: the snapshots that could be read, and an error for each that could
    not (a damaged record does not hide the others)."""

    snapshots: tuple[SnapshotInfo, ...]
    damaged: tuple[MirrorkitError, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotDetails:
    """``snapshot_show``: the record, what is wrong with it on disk (empty: intact), and its
    packages when they were asked for (sorted by name, version, architecture)."""

    snapshot: SnapshotInfo
    problems: tuple[str, ...]
    packages: tuple[Package, ...] = ()

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    """``snapshot_diff``: what changed from snapshot ``a`` to ``b``."""

    a: str
    b: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class FilterResult:
    """``snapshot_filter``: the new snapshot, what the query matched, every package kept (with
    the dependency closure), and dependencies left unmet (only with ``allow_missing``)."""

    snapshot: SnapshotInfo
    matched: tuple[Package, ...]
    packages: tuple[Package, ...]
    unmet: tuple[Unmet, ...] = ()


@dataclass(frozen=True, slots=True)
class MergeResult:
    """``snapshot_merge``: the new snapshot and the policy that chose between versions."""

    snapshot: SnapshotInfo
    policy: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``snapshot_verify``: the dependencies nothing in the snapshot satisfies."""

    snapshot: str
    unmet: tuple[Unmet, ...]

    @property
    def ok(self) -> bool:
        return not self.unmet


@dataclass(frozen=True, slots=True)
class WhyStep:
    """One link of ``snapshot_why``'s chain: a package, and the dependency that pulled it in
    ("" for the package the query matched)."""

    package: Package
    dependency: str


@dataclass(frozen=True, slots=True)
class GcReport:
    """``gc``: what was (or, with ``dry_run``, would be) removed."""

    dry_run: bool
    pool_files: int
    meta_files: int
    temp_files: int
    bytes: int
    removed: tuple[str, ...] = ()
    partial_files: int = 0  # partial downloads of abandoned updates
    tree_files: int = 0  # in published directories: unlisted pool files, killed publishes' debris
