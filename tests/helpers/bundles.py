"""Taking bundles apart and putting (tampered, hostile) ones together, independently of
mirrorkit's own reader and writer: Python's tarfile and zstandard, used directly."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

__all__ = ["Entry", "read_entries", "tree_digest", "write_entries"]


@dataclass
class Entry:
    """One tar member: a regular file unless ``type`` says otherwise."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def read_entries(bundle: Path | bytes) -> list[Entry]:
    raw = bundle if isinstance(bundle, bytes) else bundle.read_bytes()
    stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
    entries = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            fh = tar.extractfile(info)
            entries.append(Entry(info.name, fh.read() if fh else b"", info.type, info.linkname))
    return entries


def tar_bytes(entries: list[Entry]) -> bytes:
    """A pax tar of ``entries``, written without any of mirrorkit's checks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.linkname = e.linkname
            info.mode = 0o644
            info.mtime = 1_700_000_000
            info.pax_headers = dict(e.pax)
            if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def write_entries(path: Path, entries: list[Entry]) -> Path:
    path.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(
        tar_bytes(entries)))  # fmt: skip
    return path


def tree_digest(root: Path) -> str:
    """A digest of everything under ``root`` (names, types, modes, contents), except the lock
    files (``lock`` and ``locks/``: the pid of whoever held each last, and which resources were
    ever locked). A missing root digests as such."""
    if not root.exists():
        return "absent"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != "locks"]
        h.update(f"d {rel}\n".encode())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if rel == "." and name == "lock":
                continue
            st = path.lstat()
            h.update(f"f {rel}/{name} {st.st_mode:o} {st.st_size}\n".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
