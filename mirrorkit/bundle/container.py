"""The bundle container: one zstd frame holding a tar stream. This is where untrusted bytes are
parsed, so it is kept small and strict, apart from what a bundle *means* (``manifest``), which
files it is in (``parts``) and what is done with its members (``reader``, ``importer``):

* ``TarWriter`` writes POSIX (pax) tar headers with :mod:`tarfile` and streams member data.
* ``TarReader`` accepts only what ``TarWriter`` makes: ustar headers with the POSIX magic and a
  valid checksum, pax records limited to a few harmless keys (no global headers, no GNU sparse
  or long-name extensions). It reports every other member type instead of interpreting it, and
  reads member data in bounded chunks.
* ``FrameCheck`` follows the zstd frame structure over the compressed bytes. The decompressor
  alone returns what it can from a stream cut short (even one missing its final checksum) and
  says nothing; this notices that, and any byte after the frame.
* ``DecompressedStream`` is zstd's reader with a bounded window and our errors.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol, cast

import zstandard

from mirrorkit.errors import BundleError

BLOCK = 512
RECORD = 20 * BLOCK  # tar's default blocking factor; the end of the archive is padded to it
CHUNK = 1 << 20  # member data moves in chunks of this size: memory never grows with a file
_ZEROS = bytes(RECORD)
_POSIX_MAGIC = b"ustar\x0000"

# pax keys a bundle may carry. Anything else (GNU.sparse.*, linkpath, hdrcharset, ...) would
# make some tar implementation read the member differently from us, so it is refused.
_PAX_KEYS = frozenset({"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"})
_MAX_PAX = 64 << 10

_TYPE_NAMES = {
    tarfile.LNKTYPE: "a hard link",
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.DIRTYPE: "a directory",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name record",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link record",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header",
}
# Types after which, like GNU tar and Python's tarfile, no data blocks follow.
_NO_DATA_TYPES = frozenset(
    {
        tarfile.LNKTYPE,
        tarfile.SYMTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.DIRTYPE,
        tarfile.FIFOTYPE,
    }
)

_MAX_WINDOW = 1 << 25  # we write 2 MiB windows; a hostile frame must not make us allocate more


def show_name(name: str) -> str:
    """A member name fit for a message: control characters and odd bytes escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if text.isprintable() and text.strip() == text and text else repr(text)


# --- writing --------------------------------------------------------------------------------


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


class TarWriter:
    """Writes a tar stream of regular files, one member at a time, to ``out``."""

    def __init__(self, out: Writable, mtime: int) -> None:
        self._out = out
        self._mtime = mtime
        self._left = 0
        self._size = 0
        self.offset = 0

    def _emit(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.offset += len(data)

    def _header(self, name: str, size: int) -> bytes:
        if fast := _ustar_header(name, size, self._mtime):
            return fast
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = self._mtime
        info.mode = 0o644
        info.type = tarfile.REGTYPE
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")

    def begin(self, name: str, size: int) -> None:
        if self._left:
            raise RuntimeError("previous member not finished")
        self._emit(self._header(name, size))
        self._left = self._size = size
        if size == 0:
            self._end()

    def add_whole(self, name: str, data: bytes) -> None:
        """A whole member in one write: header, data and padding (a pool of 63,000 small
        .debs is 63,000 writes into zstd instead of 189,000)."""
        if self._left:
            raise RuntimeError("previous member not finished")
        self._emit(b"".join((self._header(name, len(data)), data, _ZEROS[: -len(data) % BLOCK])))

    def write(self, data: bytes | memoryview) -> None:
        if len(data) > self._left:
            raise RuntimeError("member data longer than its header says")
        self._emit(data)
        self._left -= len(data)
        if self._left == 0:
            self._end()

    def _end(self) -> None:
        if pad := -self._size % BLOCK:
            self._emit(_ZEROS[:pad])

    def add(self, name: str, data: bytes) -> None:
        if len(data) <= CHUNK:
            self.add_whole(name, data)
            return
        self.begin(name, len(data))
        if data:
            self.write(data)

    def close(self) -> None:
        if self._left:
            raise RuntimeError("last member not finished")
        self._emit(_ZEROS[: 2 * BLOCK])
        if pad := -self.offset % RECORD:
            self._emit(_ZEROS[:pad])


_USTAR_TAIL = b"0" + bytes(100) + _POSIX_MAGIC + bytes(64 + 16 + 167)


def _ustar_header(name: str, size: int, mtime: int) -> bytes | None:
    """The header tarfile's pax writer makes for a plain regular file (mode 0644, uid and gid
    0, no user names) whose name is short ASCII, built directly (tarfile's costs ~60 us a
    member); None for anything else, which tarfile then writes (pax records and all)."""
    if len(name) > 100 or not name.isascii() or not name.isprintable():
        return None
    if not 0 <= size < 8**11 or not 0 <= mtime < 8**11:
        return None
    head = name.encode().ljust(100, b"\x00") + b"0000644\x000000000\x000000000\x00"
    head += b"%011o\x00%011o\x00" % (size, mtime)
    checksum = sum(head) + 8 * 32 + sum(_USTAR_TAIL)
    return head + b"%06o\x00 " % checksum + _USTAR_TAIL


# --- reading --------------------------------------------------------------------------------


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class FrameCheck:
    """Follows one zstd frame (RFC 8878, section 3.1.1) over the compressed bytes: header,
    blocks, optional checksum. ``done`` says the frame is complete; bytes after it count as
    ``trailing``. Only headers are parsed; block contents are skipped."""

    _MAGIC = b"\x28\xb5\x2f\xfd"

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._buf = bytearray()
        self._skip = 0
        self._last = False
        self._checksum = False
        self.done = False
        self.trailing = 0

    def feed(self, data: bytes | memoryview) -> int:
        """Follow ``data``; returns how many of its bytes belong to the frame."""
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self.done:
                self.trailing += n - i
                return i
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                if not self._skip:
                    self._after_block()
                continue
            k = min(self._need - len(self._buf), n - i)
            self._buf += view[i : i + k]
            i += k
            if len(self._buf) == self._need:
                field = bytes(self._buf)
                self._buf.clear()
                self._step(field)
        return n

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need

    def _step(self, field: bytes) -> None:
        if self._state == "magic":
            if field != self._MAGIC:
                raise BundleError("not zstd-compressed data (no zstd frame header)")
            self._expect("descriptor", 1)
        elif self._state == "descriptor":
            fhd = field[0]
            if fhd & 0x08:
                raise BundleError("corrupt zstd frame header (reserved bit set)")
            single = bool(fhd & 0x20)
            self._checksum = bool(fhd & 0x04)
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 0x03] + fcs
            if rest:
                self._expect("header", rest)
            else:
                self._expect("block", 3)
        elif self._state == "header":
            self._expect("block", 3)
        elif self._state == "block":
            header = int.from_bytes(field, "little")
            self._last = bool(header & 1)
            kind, size = (header >> 1) & 3, header >> 3
            if kind == 3:
                raise BundleError("corrupt zstd data (reserved block type)")
            self._skip = 1 if kind == 1 else size
            if not self._skip:
                self._after_block()
        elif self._state == "checksum":
            self.done = True

    def _after_block(self) -> None:
        if not self._last:
            self._expect("block", 3)
        elif self._checksum:
            self._expect("checksum", 4)
        else:
            self.done = True


class CheckedReader:
    """What the decompressor reads through: feeds every compressed byte to a
    :class:`FrameCheck`, counts them, and hands the decompressor nothing past the end of the
    frame (what follows is counted in ``frames.trailing``, to be reported as such)."""

    def __init__(self, source: Readable, frames: FrameCheck) -> None:
        self._source = source
        self.frames = frames
        self.consumed = 0

    def read(self, size: int = -1, /) -> bytes:
        while True:
            data = self._source.read(size)
            self.consumed += len(data)
            if not data:
                return data
            inside = self.frames.feed(data)
            if inside:
                return data[:inside] if inside < len(data) else data


@dataclass(frozen=True, slots=True)
class TarMember:
    name: str
    size: int  # bytes of data that follow the header
    type: bytes
    linkname: str
    offset: int  # of the header, in the uncompressed stream

    @property
    def regular(self) -> bool:
        return self.type in (tarfile.REGTYPE, tarfile.AREGTYPE)

    @property
    def kind(self) -> str:
        """What the member is, for a message; empty for a regular file."""
        if self.regular:
            return ""
        what = _TYPE_NAMES.get(self.type, f"an unsupported member type {self.type!r}")
        if self.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            what += f" (to {show_name(self.linkname)})"
        return what


class ReadsInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class TarReader:
    """A strict, sequential reader of the tar stream :class:`TarWriter` writes."""

    def __init__(self, stream: ReadsInto) -> None:
        self._stream = stream
        self.offset = 0
        self._buf = bytearray(CHUNK)
        self._pending: TarMember | None = None  # whose data has not been read yet

    def _fill(self, view: memoryview) -> int:
        got = 0
        while got < len(view):
            n = self._stream.readinto(view[got:])
            if not n:
                break
            got += n
        self.offset += got
        return got

    def _exact(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        if self._fill(memoryview(buf)) != n:
            raise BundleError(f"the bundle ends in the middle of {what}: it is truncated")
        return bytes(buf)

    def next(self) -> TarMember | None:
        """The next member's header, or None at the end of the archive. Skips the data of a
        member the caller did not read."""
        if self._pending is not None:
            self.skip(self._pending)
        pax: dict[str, str] | None = None
        while True:
            offset = self.offset
            block = self._exact(BLOCK, "a tar header")
            if block == _ZEROS[:BLOCK]:
                if pax is not None:
                    raise BundleError(f"a pax header at byte {offset} is not followed by a member")
                if self._exact(BLOCK, "the end-of-archive marker") != _ZEROS[:BLOCK]:
                    raise BundleError(f"a lone zero block at byte {offset} in the tar stream")
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise BundleError(f"damaged tar header at byte {offset} ({exc})") from exc
            if block[257:265] != _POSIX_MAGIC:
                raise BundleError(
                    f"tar header at byte {offset} ({show_name(info.name)}) is not POSIX ustar"
                )
            if info.type == tarfile.XHDTYPE:
                if pax is not None:
                    raise BundleError(f"two pax headers in a row at byte {offset}")
                if info.size > _MAX_PAX:
                    raise BundleError(f"pax header at byte {offset} is too large")
                raw = self._exact(info.size + (-info.size % BLOCK), "a pax header")
                pax = _parse_pax(raw[: info.size], offset)
                continue
            name = pax.get("path", info.name) if pax else info.name
            size = info.size
            if pax and "size" in pax:
                size = int(pax["size"])
            member = TarMember(name, size, info.type, info.linkname, offset)
            if member.type in _NO_DATA_TYPES:
                member = TarMember(name, 0, info.type, info.linkname, offset)
            self._pending = member if member.size else None
            return member

    def chunks(self, member: TarMember) -> Iterator[memoryview]:
        """The member's data in chunks (views of one reused buffer: use each before the next)."""
        self._pending = None
        left = member.size
        view = memoryview(self._buf)
        while left:
            n = self._fill(view[: min(left, len(view))])
            if not n:
                raise BundleError(
                    f"the bundle ends in the middle of member {show_name(member.name)}: "
                    "it is truncated"
                )
            left -= n
            yield view[:n]
        if pad := -member.size % BLOCK:
            self._exact(pad, f"the padding of member {show_name(member.name)}")

    def skip(self, member: TarMember) -> None:
        for _ in self.chunks(member):
            pass

    def rest_is_zeros(self) -> bool:
        """After the end-of-archive marker only zero padding may follow."""
        view = memoryview(self._buf)
        while n := self._fill(view):
            if view[:n] != _ZEROS_CHUNK[:n]:
                return False
        return True


_ZEROS_CHUNK = bytes(CHUNK)


def _parse_pax(raw: bytes, offset: int) -> dict[str, str]:
    """pax extended header records: ``"%d %s=%s\\n" % (length, key, value)``."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos)
        try:
            length = int(raw[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = raw[pos : pos + length]
        if length <= 0 or pos + length > len(raw) or not record.endswith(b"\n"):
            raise BundleError(f"malformed pax header at byte {offset}")
        key, sep, value = record[space - pos + 1 : -1].partition(b"=")
        try:
            k, v = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(f"malformed pax header at byte {offset} ({exc})") from exc
        if not sep or k in records:
            raise BundleError(f"malformed pax header at byte {offset} (record {k!r})")
        if k not in _PAX_KEYS:
            raise BundleError(
                f"pax header at byte {offset} carries {k!r}, which a bundle never uses "
                "(tar programs would read the member differently)"
            )
        if k == "size" and not v.isdigit():
            raise BundleError(f"pax header at byte {offset}: invalid size {v!r}")
        if k == "path" and "\x00" in v:
            raise BundleError(f"pax header at byte {offset}: NUL in path")
        records[k] = v
        pos += length
    return records


class DecompressedStream:
    """zstd's reader with its errors turned into ours."""

    def __init__(self, raw: CheckedReader) -> None:
        dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        self._reader = dctx.stream_reader(
            cast(IO[bytes], raw), read_size=CHUNK, read_across_frames=False, closefd=False
        )
        # Small reads (a tar header, a small member, its padding) are served from a buffer
        # filled a CHUNK at a time: a call into zstd per read cost more than the data.
        self._buf = memoryview(bytearray(CHUNK))
        self._pos = self._end = 0

    def _read(self, buffer: memoryview) -> int:
        try:
            return int(self._reader.readinto(buffer))
        except zstandard.ZstdError as exc:
            raise BundleError(f"corrupt compressed data ({exc})") from exc

    def readinto(self, buffer: memoryview) -> int:
        if self._pos == self._end:
            if len(buffer) >= CHUNK:
                return self._read(buffer)
            self._pos, self._end = 0, self._read(self._buf)
        n = min(len(buffer), self._end - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n
