"""``bundle show`` and ``bundle verify``: what a bundle holds and whether every byte of it is
what its signed manifest says, without a store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorkit.bundle.manifest import Manifest, Member
from mirrorkit.bundle.parts import BundleFiles, locate
from mirrorkit.bundle.reader import Discard, Problems, Reading, Target, open_reading
from mirrorkit.errors import BundleError, MirrorkitError, SignatureError
from mirrorkit.progress import NullReporter, Reporter


@dataclass(frozen=True, slots=True)
class BundleInfo:
    files: BundleFiles
    manifest: Manifest
    manifest_sha256: str
    signers: tuple[str, ...] | None  # None: the signature was not checked

    @property
    def members(self) -> int:
        """The members the manifest lists: every member after the manifest and its signature
        (docs/bundle-format.md's ``members``). ``verify`` counts the same ones, so that a good
        bundle's ``show`` and ``verify`` give one number."""
        return len(self.manifest.members)

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "bundle": self.files.what,
            "files": [{"path": str(p.path), "size": p.size} for p in self.files.parts],
            "index": None if self.files.index is None else str(self.files.index),
            "manifest_sha256": self.manifest_sha256,
            "signature": "not checked" if self.signers is None else "good",
            "signers": list(self.signers or ()),
            "manifest": m.to_json(),
            "counts": {
                "members": self.members,
                "pool_objects": len(m.pool),
                "pool_bytes": sum(p.size for p in m.pool),
                "metadata_objects": len(m.meta),
                "bytes": m.total_bytes,
                "compressed_bytes": self.files.size,
            },
        }


def show(path: Path, keyring: Path | None = None) -> BundleInfo:
    """What a bundle holds, from its manifest alone (the first member): nothing else is read.
    With ``keyring`` the manifest's signature is checked too."""
    with open_reading(path, complete=False) as r:
        manifest, signers = r.head(keyring)
        return BundleInfo(r.files, manifest, hashlib.sha256(r.manifest_bytes).hexdigest(), signers)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    what: str
    manifest: Manifest | None
    signers: tuple[str, ...]
    problems: tuple[MirrorkitError, ...]
    members: int  # of the members the manifest lists (as BundleInfo.members), those verified
    bytes: int  # compressed bytes read

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.what,
            "ok": self.ok,
            "signers": list(self.signers),
            "members_verified": self.members,
            "compressed_bytes": self.bytes,
            "problems": [p.message for p in self.problems],
        }


def verify(path: Path, keyring: Path, reporter: Reporter | None = None) -> VerifyReport:
    """Check the signature, then every member's size and SHA256 and that the members are
    exactly the manifest's; report every problem (the store is not involved)."""
    reporter = reporter or NullReporter()
    try:
        files = locate(path)
    except BundleError as exc:
        return VerifyReport(str(path), None, (), (exc,), 0, 0)
    reading = Reading(files, collect=True)
    problems = Problems(collect=True)
    manifest: Manifest | None = None
    signers: tuple[str, ...] = ()
    good = 0
    try:
        manifest, checked = reading.head(keyring)
        signers = checked or ()
        reporter.start("verify", len(manifest.members), manifest.total_bytes)
        try:
            good = reading.members(manifest, _DiscardSink(), problems, reporter)
            reading.finish(problems)
        finally:
            reporter.finish()
    except (BundleError, SignatureError) as exc:
        problems.items.append(exc)
        reading.joined.blame()  # a damaged part under it is recorded among the problems
        problems.items.extend(reading.joined.problems)
    finally:
        reading.close()
    unique = tuple(dict.fromkeys(problems.items))
    return VerifyReport(files.what, manifest, signers, unique, good, reading.raw.consumed)


class _DiscardSink:
    def open(self, member: Member) -> Target:
        return Discard()
