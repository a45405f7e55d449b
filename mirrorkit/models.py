"""Frozen dataclasses passed between the stages of the data flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mirrorkit.errors import UsageError


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

    @property
    def ref(self) -> str:
        """aptly's package reference form, ``name_version_arch``."""
        return f"{self.name}_{self.version}_{self.architecture}"


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

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")


@dataclass(frozen=True, slots=True)
class IndexRef:
    """A Packages index held in the store: its (user-facing) component, architecture, and the
    SHA256 of its uncompressed text."""

    component: str
    architecture: str
    sha256: str
    packages: int


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
    """Where a mirror state (and so a snapshot) came from, as verified."""

    url: str
    suite: str
    inrelease_sha256: str
    signer: str
    date: str
    fetched_at: str


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
class UpdateResult:
    mirror: str
    changed: bool
    packages: int
    release_date: str
    summary: FetchSummary = field(default_factory=FetchSummary)
