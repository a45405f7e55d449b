"""Air-gap bundles: carry snapshots across the gap and be sure every byte is what was sent.

A bundle is one zstd-compressed tar stream whose first member is a manifest listing every other
member's path, size and SHA256, the second an OpenPGP signature of the manifest's exact bytes.
Then come ``SHA256SUMS`` and its signature (so that ``sha256sum -c`` can check the members
without a JSON tool), the snapshot records, their Packages indices (uncompressed), channel pins,
and the pool objects the snapshots need, named by SHA256. docs/bundle-format.md describes it
for a third party.

One module per concern:

* ``manifest``: what a bundle means (schema, parsing and its checks, SHA256SUMS, names).
* ``container``: the strict tar + zstd stream (untrusted bytes are parsed only here).
* ``parts``: the file(s) a bundle is in (split parts, their index, finding them).
* ``workers``: threads that overlap disk I/O with hashing, with bounded memory.
* ``reader``: one verifying pass over a bundle, shared by show, verify and import.
* ``inspection``: ``show`` and ``verify``.
* ``exporter``: ``export``.
* ``importer``: ``import_bundle`` (staging, verification while streaming, commit).
* ``pins``: the import log, and channel pins that never move backwards.
"""

from mirrorkit.bundle.container import show_name
from mirrorkit.bundle.exporter import ExportResult, export
from mirrorkit.bundle.importer import ImportResult, import_bundle
from mirrorkit.bundle.inspection import BundleInfo, VerifyReport, show, verify
from mirrorkit.bundle.manifest import (
    DAMAGED,
    HOSTILE,
    MALFORMED,
    BundledSnapshot,
    ChannelPin,
    Manifest,
    Member,
    parse_manifest,
)
from mirrorkit.bundle.parts import BundleFiles, Part, parse_size
from mirrorkit.bundle.pins import ChannelMove

__all__ = [
    "DAMAGED",
    "HOSTILE",
    "MALFORMED",
    "BundleFiles",
    "BundleInfo",
    "BundledSnapshot",
    "ChannelMove",
    "ChannelPin",
    "ExportResult",
    "ImportResult",
    "Manifest",
    "Member",
    "Part",
    "VerifyReport",
    "export",
    "import_bundle",
    "parse_manifest",
    "parse_size",
    "show",
    "show_name",
    "verify",
]
