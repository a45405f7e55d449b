"""Your own package files, checked on the way in: a ``.deb`` (or ``.udeb``) read as dpkg reads
it, its control data parsed by python-debian, its name, version and architecture held to
Debian policy.

A package a user hands in is untrusted input: it may be random bytes, empty, truncated, a
``.deb`` without a control file, or one built to exhaust memory. Nothing here trusts a size
the file declares beyond the bounds below, and every refusal is a FormatError naming the file;
the caller then writes nothing.

Bounds (documented in README's "Your own packages"):

- the control member (``control.tar``, ``.gz``, ``.xz`` or ``.zst``) at most
  :data:`MAX_CONTROL_MEMBER` bytes as stored and again as decompressed (Debian's largest,
  with the md5sums of tens of thousands of files, is a few MB);
- the ``control`` file inside it at most :data:`MAX_CONTROL_FILE` bytes.

The data member is not unpacked (it may be gigabytes): it must be there, inside the file, and
its first tar header must decompress and check out, which catches garbage and truncation
without reading the payload.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import zstandard

from mirrorkit import archive, compression
from mirrorkit.errors import FormatError
from mirrorkit.models import Package

MAX_CONTROL_MEMBER: Final = 64 << 20
"""The most a .deb's control member may hold, compressed and decompressed."""

MAX_CONTROL_FILE: Final = 1 << 20
"""The most the ``control`` file inside the control member may hold."""

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
_COMPRESSIONS = {"": "", ".gz": "gz", ".xz": "xz", ".zst": "zst", ".bz2": "bz2", ".lzma": "xz"}
_HINT = "rebuild it (dpkg-deb --build) or leave it out; nothing was added."

# Debian policy 5.6.1 (Package), 5.6.12 (Version), 5.6.8 (Architecture).
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")
_UPSTREAM = re.compile(r"[0-9][A-Za-z0-9.+~-]*\Z")
_REVISION = re.compile(r"[A-Za-z0-9+.~]+\Z")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_MAX_VERSION = 256


@dataclass(frozen=True, slots=True)
class PackageFile:
    """A checked package file: its Packages stanza (as a Package) and where it is."""

    package: Package
    path: Path


def _bad(path: Path, why: str) -> FormatError:
    return FormatError(f"{path}: not a valid Debian package ({why})", _HINT)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def check_name(name: str, what: str = "package name") -> str | None:
    """Why ``name`` is no valid Debian package name (None: it is)."""
    if not _NAME.match(name):
        return (
            f"{what} {name!r}: Debian policy allows lower-case letters, digits and + . - "
            "(at least two characters, starting with a letter or digit)"
        )
    return None


def check_version(version: str) -> str | None:
    """Why ``version`` is no valid Debian version (None: it is)."""
    why = f"version {version!r}: "
    if len(version) > _MAX_VERSION:
        return why + f"longer than {_MAX_VERSION} characters"
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "", version
    elif not epoch.isdigit() or not epoch.isascii():
        return why + "the epoch (before ':') must be a number"
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    elif not _REVISION.match(revision):
        return why + "the Debian revision (after the last '-') allows letters, digits and + . ~"
    if not _UPSTREAM.match(upstream) or (not dash and "-" in upstream):
        return (
            why + "the upstream version must start with a digit and use letters, digits and . + ~ -"
        )
    return None


def check_architecture(arch: str) -> str | None:
    if arch == "any" or not _ARCH.match(arch):
        return f"architecture {arch!r}: a single Debian architecture (amd64, arm64, all, ...)"
    return None


def read_package(path: Path, component: str, *, udeb: bool | None = None) -> PackageFile:
    """Check the package file ``path`` (see the module's doc) and make its Packages stanza
    (``Filename`` the canonical basename, ``Size`` and ``SHA256`` of the file). ``udeb``:
    whether it is a .udeb (default: by its name)."""
    if udeb is None:
        udeb = path.suffix == ".udeb"
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            control = _control_text(fh, size, path)
            fh.seek(0)
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except IsADirectoryError as exc:
        raise FormatError(f"{path}: a directory, not a package file") from exc
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    fields = _parse_control(control, path)
    name, version, arch = fields["Package"], fields["Version"], fields["Architecture"]
    problems = [check_name(name), check_version(version), check_architecture(arch)]
    if source := fields.get("Source"):
        src_name, _, src_version = source.partition(" ")
        problems.append(check_name(src_name, "source name"))
        src_version = src_version.strip()
        if src_version:
            if not (src_version.startswith("(") and src_version.endswith(")")):
                problems.append(f"Source {source!r}: expected 'NAME' or 'NAME (VERSION)'")
            else:
                problems.append(check_version(src_version[1:-1].strip()))
    if found := [p for p in problems if p]:
        raise FormatError(
            f"{path}: {'; '.join(found)}",
            "fix the control file and rebuild the package; nothing was added.",
        )
    for skip in ("Filename", "Size", "SHA256", "MD5sum", "SHA1", "SHA512", "Description-md5"):
        fields.pop(skip, None)
    text = fields.dump().rstrip("\n")
    suffix = "udeb" if udeb else "deb"
    basename = f"{name}_{version.split(':', 1)[-1]}_{arch}.{suffix}"
    text += f"\nFilename: {basename}\nSize: {size}\nSHA256: {digest}"
    (pkg,) = archive.parse_packages(text.encode(), component, str(path))
    return PackageFile(pkg, path)


def _parse_control(text: bytes, path: Path) -> Any:
    # Imported here: deb822 pulls in charset_normalizer (16 ms of every other command).
    from debian.deb822 import Deb822

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"its control file is not UTF-8: {exc}") from exc
    paragraphs = list(Deb822.iter_paragraphs(decoded.splitlines(keepends=True), use_apt_pkg=False))
    if len(paragraphs) != 1:
        raise _bad(path, f"its control file holds {len(paragraphs)} paragraphs, not 1")
    fields = paragraphs[0]
    missing = [f for f in ("Package", "Version", "Architecture") if not fields.get(f)]
    if missing:
        raise FormatError(f"{path}: control data lacks {', '.join(missing)}", _HINT)
    for key in ("Package", "Version", "Architecture"):
        fields[key] = fields[key].strip()
    return fields


def _members(fh: BinaryIO, size: int, path: Path) -> list[tuple[str, int, int]]:
    """The ar archive's members: (name, offset of the data, size), each inside the file."""
    if size == 0:
        raise _bad(path, "the file is empty")
    if fh.read(len(_AR_MAGIC)) != _AR_MAGIC:
        raise _bad(path, "no ar archive signature")
    members = []
    pos = len(_AR_MAGIC)
    while pos < size:
        fh.seek(pos)
        header = fh.read(_AR_HEADER)
        if len(header) < _AR_HEADER or header[58:60] != b"`\n":
            raise _bad(path, f"truncated or corrupt ar member header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().removesuffix("/")
        try:
            length = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise _bad(path, f"ar member {name!r} has no valid size") from exc
        start = pos + _AR_HEADER
        if length < 0 or start + length > size:
            raise _bad(path, f"ar member {name!r} runs past the end of the file (truncated)")
        members.append((name, start, length))
        pos = start + length + (length & 1)
    return members


def _control_text(fh: BinaryIO, size: int, path: Path) -> bytes:
    members = _members(fh, size, path)
    names = [m[0] for m in members]
    if not names or names[0] != "debian-binary":
        raise _bad(path, "the first member is not debian-binary")
    fh.seek(members[0][1])
    if not fh.read(members[0][2]).startswith(b"2."):
        raise _bad(path, "debian-binary does not say format 2.x")
    control = next((m for m in members if m[0].startswith("control.tar")), None)
    data = next((m for m in members if m[0].startswith("data.tar")), None)
    if control is None:
        raise _bad(path, "no control member (control.tar.*)")
    if data is None:
        raise _bad(path, "no data member (data.tar.*)")
    name, start, length = control
    kind = _compression(name, path)
    if length > MAX_CONTROL_MEMBER:
        raise _bad(path, f"its control member is {length} bytes, over {_mib(MAX_CONTROL_MEMBER)}")
    fh.seek(start)
    what = f"{path}: {name}"
    try:
        tar_bytes = compression.decompress(fh.read(length), kind, what, MAX_CONTROL_MEMBER)
    except FormatError as exc:
        why = exc.message.removeprefix(f"{what}: ")
        if "decompresses to more than" in why:  # compression words it for an index
            why = f"decompresses to more than {_mib(MAX_CONTROL_MEMBER)}"
        raise _bad(path, f"{name}: {why}") from exc
    _check_data_start(fh, data, path)
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                if info.name.lstrip("./") != "control" or not info.isfile():
                    continue
                if info.size > MAX_CONTROL_FILE:
                    raise _bad(
                        path,
                        f"its control file is {info.size} bytes, over {_mib(MAX_CONTROL_FILE)}",
                    )
                member = tar.extractfile(info)
                if member is None:
                    break
                return member.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad(path, f"{name}: {exc}") from exc
    raise _bad(path, f"{name} holds no control file")


def _compression(name: str, path: Path) -> str:
    ext = name.removeprefix("control.tar").removeprefix("data.tar")
    if ext not in _COMPRESSIONS:
        raise _bad(path, f"member {name!r}: unknown compression")
    return _COMPRESSIONS[ext]


def _check_data_start(fh: BinaryIO, data: tuple[str, int, int], path: Path) -> None:
    """The data member's first tar header decompresses and its checksum holds."""
    name, start, length = data
    kind = _compression(name, path)
    fh.seek(start)
    head = fh.read(min(length, 64 << 10))
    try:
        if kind == "gz":
            block = zlib.decompressobj(47).decompress(head, 512)
        elif kind == "xz":
            block = lzma.LZMADecompressor().decompress(head, 512)
        elif kind == "bz2":
            block = bz2.BZ2Decompressor().decompress(head, 512)
        elif kind == "zst":
            block = zstandard.ZstdDecompressor().stream_reader(head).read(512)
        else:
            block = head[:512]
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (zlib.error, lzma.LZMAError, OSError, EOFError, zstandard.ZstdError) as exc:
        raise _bad(path, f"{name}: corrupt {kind} data ({exc})") from exc
    except tarfile.TarError as exc:
        raise _bad(path, f"{name}: no tar archive inside ({exc})") from exc
