"""Build tiny package universes from stanza text, for query and resolver tests."""

from __future__ import annotations

import hashlib

from mirrorkit import archive
from mirrorkit.models import Package
from mirrorkit.resolve import Universe


def stanza(name: str, version: str = "1.0", arch: str = "amd64", **fields: str) -> str:
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    for key, value in fields.items():
        lines.append(f"{key.replace('_', '-')}: {value}")
    sha = hashlib.sha256(f"{name} {version} {arch}".encode()).hexdigest()
    lines += [f"Filename: pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb", "Size: 100",
              f"SHA256: {sha}"]  # fmt: skip
    return "\n".join(lines)


def packages(*stanzas: str, component: str = "main") -> list[Package]:
    return archive.parse_packages("\n\n".join(stanzas).encode(), component)


def universe(*stanzas: str, archs: tuple[str, ...] = ("amd64",)) -> Universe:
    return Universe(packages(*stanzas), archs)
