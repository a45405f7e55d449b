"""The upload directories of ``/api/files``: each CI job uploads into a directory of its own
(``POST /api/files/DIR``), then adds that directory to a repo.

Everything is checked before anything is stored: a file name must be a plain name (no ``/``,
``..``, leading dot or control characters) of a package (``.deb``, ``.udeb``, ``.dsc``,
``.changes``, ``.buildinfo``) or a source package's file (tarballs, ``.diff.gz``, ``.asc``),
its first bytes must be what that kind of file starts with, and the request must stay under the
size limit. A request is received into a staging directory beside the upload directories and
moved into place only when all of its files passed: a refused request leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mirrorkit.server.tasks import HTTPError

BINARY = (".deb", ".udeb", ".ddeb")
CONTROL = (".dsc", ".changes", ".buildinfo")
SOURCE_PARTS = (".tar.gz", ".tar.xz", ".tar.bz2", ".tar.lzma", ".tar.zst", ".tar", ".diff.gz")
SIGNATURES = (".asc",)
ALLOWED = BINARY + CONTROL + SOURCE_PARTS + SIGNATURES

_MAGIC = {
    ".tar.gz": (b"\x1f\x8b",),
    ".diff.gz": (b"\x1f\x8b",),
    ".tar.xz": (b"\xfd7zXZ\x00",),
    ".tar.bz2": (b"BZh",),
    ".tar.lzma": (b"\x5d\x00",),
    ".tar.zst": (b"\x28\xb5\x2f\xfd",),
    ".asc": (b"-----BEGIN PGP SIGNATURE-----",),
}
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,254}$")
_HEAD = 512


def check_dir(name: str) -> str:
    """An upload directory's name: one plain path segment."""
    if not _PLAIN.match(name) or ".." in name:
        raise HTTPError(400, "wrong dir", "an upload directory is one plain name: no '/' or '..'")
    return name


def check_file_name(name: str) -> str:
    """A plain name of a file a repo can take; refuses paths, ``..`` and other kinds."""
    if "/" in name or "\\" in name or not _PLAIN.match(name) or ".." in name:
        raise HTTPError(
            400,
            f"refusing file name {name!r}",
            "upload plain file names (no directories, '..' or absolute paths); nothing was stored",
        )
    if not name.endswith(ALLOWED):
        raise HTTPError(
            400,
            f"refusing {name!r}: not a Debian package or source package file",
            "uploads take " + ", ".join(ALLOWED) + "; nothing was stored",
        )
    return name


def check_content(name: str, head: bytes) -> None:
    """The first bytes of ``name`` are those of its kind of file."""
    ok = True
    if name.endswith(BINARY):
        ok = head.startswith(b"!<arch>\n") and b"debian-binary" in head[:80]
    elif name.endswith(CONTROL):
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            # A multi-byte character may be cut at the end of the head: only that is allowed.
            text = head[:-4].decode("utf-8", "strict") if len(head) >= _HEAD else ""
        first = text.lstrip().split("\n", 1)[0]
        ok = first.startswith("-----BEGIN PGP SIGNED MESSAGE-----") or bool(
            re.match(r"^[A-Za-z][A-Za-z0-9-]*:", first)
        )
    elif name.endswith(".tar"):
        ok = len(head) >= 262 and head[257:262] == b"ustar"
    else:
        magic = next((m for suffix, m in _MAGIC.items() if name.endswith(suffix)), ())
        ok = any(head.startswith(m) for m in magic)
    if not ok:
        raise HTTPError(
            400,
            f"refusing {name!r}: its contents are not what a {name.rsplit('.', 1)[-1]} file holds",
            "nothing was stored",
        )


@dataclass
class _Incoming:
    """One request's files, received into a staging directory."""

    staging: Path
    limit: int
    files: list[tuple[str, Path]] = field(default_factory=list)
    received: int = 0

    def add(self, name: str) -> tuple[Path, IO[bytes]]:
        check_file_name(name)
        if any(n == name for n, _ in self.files):
            raise HTTPError(400, f"{name!r} given twice in one upload", "nothing was stored")
        path = self.staging / f"{len(self.files)}"
        self.files.append((name, path))
        return path, path.open("wb")

    def count(self, n: int) -> None:
        self.received += n
        if self.received > self.limit:
            raise HTTPError(
                413,
                f"upload larger than the limit of {self.limit} bytes",
                "nothing was stored; the server's --max-upload sets the limit",
            )


@dataclass
class _Part:
    """The multipart part being received."""

    header: bytes = b""
    value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    out: IO[bytes] | None = None


class Uploads:
    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit

    def path(self, directory: str) -> Path:
        return self.root / check_dir(directory)

    def _staging(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))

    async def receive_multipart(
        self, directory: str, content_type: str, body: AsyncIterator[bytes]
    ) -> list[str]:
        """Store the files of a multipart body (any field name) in ``directory``."""
        from python_multipart.multipart import MultipartParser, parse_options_header

        check_dir(directory)
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise HTTPError(400, "request Content-Type isn't multipart/form-data")
        incoming = _Incoming(self._staging(), self.limit)
        part = _Part()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            part.header += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            part.value += data[start:end]

        def on_header_end() -> None:
            part.headers[part.header.lower()] = part.value
            part.header, part.value = b"", b""

        def on_headers_finished() -> None:
            _, disp = parse_options_header(part.headers.get(b"content-disposition", b""))
            filename = disp.get(b"filename")
            if filename is not None:  # a plain form field is not a file: ignored (as aptly)
                _, part.out = incoming.add(filename.decode("utf-8", "replace"))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if part.out is not None:
                incoming.count(end - start)
                part.out.write(data[start:end])

        def on_part_end() -> None:
            if part.out is not None:
                part.out.flush()
                os.fsync(part.out.fileno())
                part.out.close()
            part.out, part.headers = None, {}

        parser = MultipartParser(
            boundary,
            {
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
            },
        )
        try:
            async for chunk in body:
                parser.write(chunk)
            parser.finalize()
            if not incoming.files:
                raise HTTPError(400, "no files in the upload", "send files as multipart parts")
            return self._commit(directory, incoming)
        except ValueError as exc:  # python-multipart's malformed-body errors
            raise HTTPError(400, f"malformed multipart body: {exc}") from exc
        finally:
            if part.out is not None:
                part.out.close()
            shutil.rmtree(incoming.staging, ignore_errors=True)

    async def receive_one(self, directory: str, name: str, body: AsyncIterator[bytes]) -> list[str]:
        """``PUT /api/files/DIR/FILE``: the body is the file."""
        check_dir(directory)
        incoming = _Incoming(self._staging(), self.limit)
        try:
            _, out = incoming.add(name)
            with out:
                async for chunk in body:
                    incoming.count(len(chunk))
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(directory, incoming)
        finally:
            shutil.rmtree(incoming.staging, ignore_errors=True)

    def _commit(self, directory: str, incoming: _Incoming) -> list[str]:
        for name, path in incoming.files:
            with path.open("rb") as fh:
                check_content(name, fh.read(_HEAD))
        final = self.path(directory)
        final.mkdir(parents=True, exist_ok=True)
        for name, path in incoming.files:
            os.replace(path, final / name)
        fd = os.open(final, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return [f"{directory}/{name}" for name, _ in incoming.files]

    def list_dirs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")

    def list_files(self, directory: str) -> list[str]:
        path = self.path(directory)
        if not path.is_dir():
            raise HTTPError(404, f"upload directory {directory} not found")
        return sorted(p.name for p in path.iterdir())

    def delete_dir(self, directory: str) -> None:
        shutil.rmtree(self.path(directory), ignore_errors=True)

    def delete_file(self, directory: str, name: str) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise HTTPError(400, "wrong file")
        (self.path(directory) / name).unlink(missing_ok=True)
