"""Build real, tiny ``.deb`` files with ``dpkg-deb`` for tests.

The packages are genuine Debian binary packages (ar archive, control.tar.gz, data.tar.gz) so that
mirrorkit, apt-ftparchive and apt-get all see exactly what they would see from a real archive.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import TypedDict

__all__ = ["FIXED_MTIME", "DebOptions", "build_deb", "deb_filename"]

# A fixed timestamp for every file and for dpkg-deb's SOURCE_DATE_EPOCH, so that building the same
# package twice gives (nearly) the same bytes and golden-file tests stay stable.
FIXED_MTIME = 1_700_000_000

MAINTAINER = "Mirrorkit Tests <tests@example.org>"


def deb_filename(name: str, version: str, arch: str) -> str:
    """Debian's canonical file name: the epoch is not part of it (``1:2.0`` -> ``2.0``)."""
    upstream = version.split(":", 1)[1] if ":" in version else version
    return f"{name}_{upstream}_{arch}.deb"


class DebOptions(TypedDict, total=False):
    """build_deb's keyword arguments, for tables of packages passed on with ``**``."""

    depends: str | None
    pre_depends: str | None
    provides: str | None
    recommends: str | None
    section: str
    priority: str
    source: str | None
    multi_arch: str | None
    essential: bool
    payload_size: int
    extra_fields: dict[str, str] | None


def _blob(name: str, version: str, size: int) -> bytes:
    # Seeded from name+version (sha256, not hash(), which is salted per process) so a rebuild gives
    # the same payload; random bytes do not compress, so the .deb really is about `size` bytes.
    seed = int.from_bytes(hashlib.sha256(f"{name}\0{version}".encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(size)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def build_deb(
    outdir: Path,
    name: str,
    version: str = "1.0",
    arch: str = "all",
    *,
    depends: str | None = None,
    pre_depends: str | None = None,
    provides: str | None = None,
    recommends: str | None = None,
    section: str = "misc",
    priority: str = "optional",
    source: str | None = None,
    multi_arch: str | None = None,
    essential: bool = False,
    payload_size: int = 0,
    extra_fields: dict[str, str] | None = None,
) -> Path:
    """Build ``<outdir>/<name>_<version-without-epoch>_<arch>.deb`` and return its path.

    The package holds ``/usr/share/doc/<name>/hello`` and, when ``payload_size > 0``,
    ``/usr/share/<name>/blob`` with that many deterministic, incompressible bytes.
    ``extra_fields`` are appended to the control file (and override a standard field of the same
    name).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / deb_filename(name, version, arch)

    with tempfile.TemporaryDirectory(prefix="mk-deb-") as tmp:
        tree = Path(tmp) / "root"
        hello = f"hello from {name} {version}\n".encode()
        _write(tree / "usr/share/doc" / name / "hello", hello)
        total = len(hello)
        if payload_size > 0:
            _write(tree / "usr/share" / name / "blob", _blob(name, version, payload_size))
            total += payload_size

        fields: dict[str, str] = {
            "Package": name,
            "Version": version,
            "Architecture": arch,
            "Maintainer": MAINTAINER,
            "Installed-Size": str(max(1, -(-total // 1024))),
        }
        if source is not None:
            fields["Source"] = source
        if essential:
            fields["Essential"] = "yes"
        if multi_arch is not None:
            fields["Multi-Arch"] = multi_arch
        if pre_depends is not None:
            fields["Pre-Depends"] = pre_depends
        if depends is not None:
            fields["Depends"] = depends
        if recommends is not None:
            fields["Recommends"] = recommends
        if provides is not None:
            fields["Provides"] = provides
        fields["Section"] = section
        fields["Priority"] = priority
        fields["Description"] = f"test package {name}\n Built by mirrorkit's test helpers."
        fields.update(extra_fields or {})
        control = "".join(f"{k}: {v}\n" for k, v in fields.items())
        _write(tree / "DEBIAN/control", control.encode())

        # dpkg-deb refuses a DEBIAN dir that is not 0755-ish, and mkdtemp makes 0700 dirs.
        for dirpath, _dirs, files in os.walk(tree):
            os.chmod(dirpath, 0o755)
            os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))
            for f in files:
                os.utime(os.path.join(dirpath, f), (FIXED_MTIME, FIXED_MTIME))

        env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_MTIME)}
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(out)],
            check=True,
            capture_output=True,
            env=env,
        )
    return out
