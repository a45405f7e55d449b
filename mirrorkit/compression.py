"""Decompression of archive indices: bounded, streamed, and parallel where xz allows it.

The hash in a signed Release proves who made a file, not that it is sane, so every index is
decompressed in bounded pieces and refused past MAX_INDEX_SIZE. A multi-block xz file (as
``xz -T0`` writes, and Debian's archive serves) is decoded one block per thread, the later ones
at low priority; the pieces come out in order, so parsing can start before decoding ends.
Bytes in, bytes out: nothing here fetches, stores or parses stanzas (archive.py does).
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import queue
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import zstandard

from mirrorkit.errors import FormatError

MAX_INDEX_SIZE: Final = 256 << 20
"""The most an index may decompress to: about five times Debian's largest Packages index
(bookworm main amd64: 48 MiB; Ubuntu's universe is smaller). The hash in a signed Release
proves who made a file, not that it is sane: a compromised or careless upstream can sign an
index of a few MB that decompresses to gigabytes. Decompression streams in bounded pieces and
stops at this size with a FormatError; the update then stores nothing."""

_OUT_STEP: Final = 4 << 20  # the most one decompressor call may return


def _too_large(what: str, limit: int) -> FormatError:
    return FormatError(
        f"{what}: decompresses to more than {limit >> 20} MiB, the limit for an index: refused",
        "no real archive has an index that large; the upstream is broken or hostile. Nothing "
        "was stored.",
    )


def decompress(data: bytes, compression: str, what: str, limit: int = MAX_INDEX_SIZE) -> bytes:
    """The whole decompressed text, at most ``limit`` bytes (see :data:`MAX_INDEX_SIZE`)."""
    if compression == "":
        if len(data) > limit:
            raise _too_large(what, limit)
        return data
    return b"".join(iter_decompressed(data, compression, what, limit))


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's cpuset, taskset), not the machine's:
    what deciding how many threads to start should count."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


_XZ_MAGIC = b"\xfd7zXZ\x00"


def _xz_varint(data: bytes, pos: int) -> tuple[int, int]:
    """An xz multibyte integer at ``pos``: (value, position after it)."""
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise ValueError("index cut short")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("integer too long")


def _xz_put_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class XzBlock:
    """One block of a one-stream xz file, to be decoded as an xz stream of its own: the
    file's stream header, ``data[offset : offset + size]``, then ``trailer`` (an index of this
    block alone and a stream footer)."""

    offset: int
    size: int
    trailer: bytes
    uncompressed: int  # what the file's index says the block decodes to

    def stream(self, data: bytes) -> bytes:
        return data[:12] + data[self.offset : self.offset + self.size] + self.trailer


def xz_blocks(data: bytes) -> list[XzBlock] | None:
    """The blocks of a one-stream xz file, so that they can be decompressed at once on
    several cores; None when there is nothing to split (one block) or the file is not that
    simple (several streams, stream padding), which the serial decoder then handles.

    Debian's Packages.xz is written by a multi-threaded xz: bookworm's has 2 blocks of 24 MiB.
    Each block is decoded behind the original stream header and before an index of one
    record taken from the original index, so liblzma checks every block's sizes and check
    value as the serial decoder would. The original index and footer are checked here
    (their CRC32s, sizes and padding): a file this accepts decodes to the same bytes."""
    if len(data) < 32 or not data.startswith(_XZ_MAGIC) or data[-2:] != b"YZ":
        return None
    flags = data[6:8]
    footer = data[-12:]
    if footer[8:10] != flags or zlib.crc32(footer[4:10]) != int.from_bytes(footer[:4], "little"):
        return None
    index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
    index_at = len(data) - 12 - index_size
    if index_at < 12:
        return None
    index = data[index_at : len(data) - 12]
    if index[0] != 0 or zlib.crc32(index[:-4]) != int.from_bytes(index[-4:], "little"):
        return None
    try:
        count, pos = _xz_varint(index, 1)
        records = []
        for _ in range(count):
            unpadded, pos = _xz_varint(index, pos)
            uncompressed, pos = _xz_varint(index, pos)
            records.append((unpadded, uncompressed))
    except ValueError:
        return None
    if count < 2 or index[pos:-4] != bytes(-pos % 4):  # the padding: zeros, to a multiple of 4
        return None
    blocks = []
    offset = 12
    for unpadded, uncompressed in records:
        size = unpadded + -unpadded % 4
        body = b"\x00\x01" + _xz_put_varint(unpadded) + _xz_put_varint(uncompressed)
        body += bytes(-len(body) % 4)
        one_index = body + zlib.crc32(body).to_bytes(4, "little")
        tail = (len(one_index) // 4 - 1).to_bytes(4, "little") + flags
        one_footer = zlib.crc32(tail).to_bytes(4, "little") + tail + b"YZ"
        blocks.append(XzBlock(offset, size, one_index + one_footer, uncompressed))
        offset += size
    if offset != index_at:  # blocks and index must tile the file exactly
        return None
    return blocks


def _iter_xz_blocks(data: bytes, blocks: list[XzBlock], what: str) -> Iterator[bytes]:
    """Decompress the :func:`xz_blocks` of ``data`` on threads at once (lzma releases the
    GIL), yielding their output in order as it comes. Memory: what is decompressed ahead
    waits in queues, which the caller keeps anyway (the whole index text).

    Input goes in as 512 kB views (no copies), so each call returns ~3 MB: lzma takes the GIL
    back each time its output buffer grows (from 32 kB), and many small calls make the
    decoder and the parser trade the GIL thousands of times (bookworm's index, parsed as it
    decodes: 256 kB input pieces 0.62 s, 512 kB 0.51 s)."""
    outputs: list[queue.SimpleQueue[bytes | BaseException | None]]
    outputs = [queue.SimpleQueue() for _ in blocks]
    jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
    for n in range(len(blocks)):
        jobs.put(n)
    view = memoryview(data)
    step = 1 << 19

    def decode(n: int, out: queue.SimpleQueue[bytes | BaseException | None]) -> None:
        block = blocks[n]
        engine = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        end = block.offset + block.size
        body = [view[i : min(i + step, end)] for i in range(block.offset, end, step)]
        pieces: list[bytes | memoryview] = [view[:12], *body, block.trailer]
        produced = 0
        for piece in pieces:
            while not engine.eof:
                # Bounded calls: liblzma checks a block against its index record only at the
                # block's end, and a hostile block could decode to gigabytes before that.
                if output := engine.decompress(piece, _OUT_STEP):
                    produced += len(output)
                    if produced > block.uncompressed:
                        raise FormatError(
                            f"{what}: corrupt xz data (block {n + 1} decodes to more than the "
                            f"{block.uncompressed} bytes the index says)"
                        )
                    out.put(output)
                piece = b""
                if engine.needs_input:
                    break
        if not engine.eof or engine.unused_data:
            raise FormatError(f"{what}: truncated xz data (block {n + 1})")

    def work() -> None:
        # Blocks are taken in order, so the first one (the one the parser waits for) starts
        # first; a thread that finishes early takes the next one.
        while True:
            try:
                n = jobs.get_nowait()
            except queue.Empty:
                return
            out = outputs[n]
            if n and sys.platform == "linux":
                # The parser needs block 1 first, and it is the pace: later blocks are decoded
                # with what CPU it leaves (on 2 cores, bookworm's index: 0.555 -> 0.51 s).
                # Linux sets the nice value of one thread by its id; this thread ends after.
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            try:
                decode(n, out)
                out.put(None)
            except (lzma.LZMAError, EOFError) as exc:
                out.put(FormatError(f"{what}: corrupt xz data (block {n + 1}: {exc})"))
            except BaseException as exc:
                out.put(exc)

    workers = min(len(blocks), usable_cpus())
    for _ in range(workers):
        threading.Thread(target=work, name="decompress-xz", daemon=True).start()
    for out in outputs:
        while (piece := out.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece
            yield piece


def iter_decompressed(
    data: bytes, compression: str, what: str, limit: int = MAX_INDEX_SIZE
) -> Iterator[bytes]:
    """Decompress in pieces, so that parsing can start before decompression ends; every piece
    is bounded, and past ``limit`` bytes in all a FormatError ends it (see MAX_INDEX_SIZE)."""
    total = 0
    for piece in _iter_pieces(data, compression, what, limit):
        total += len(piece)
        if total > limit:
            raise _too_large(what, limit)
        yield piece


def _iter_pieces(data: bytes, compression: str, what: str, limit: int) -> Iterator[bytes]:
    """The pieces of :func:`iter_decompressed`, each at most a few MB; the caller counts."""
    # Input pieces of 1 MB: fewer, bigger calls trade the GIL with the parser less often
    # (see _iter_xz_blocks; one-block xz, bookworm: 0.57 s with 256 kB pieces, 0.55 s).
    step = 1 << 20
    if compression == "xz" and usable_cpus() > 1 and (blocks := xz_blocks(data)):
        # The xz index lists each block's size, and liblzma holds every block to it: a file
        # whose index promises more than the limit is refused before anything is decoded.
        if sum(b.uncompressed for b in blocks) > limit:
            raise _too_large(what, limit)
        yield from _iter_xz_blocks(data, blocks, what)
        return
    try:
        if compression in ("xz", "bz2"):
            engine: Any = lzma.LZMADecompressor() if compression == "xz" else bz2.BZ2Decompressor()
            for start in range(0, len(data), step):
                chunk = data[start : start + step]
                while not engine.eof:
                    if out := engine.decompress(chunk, _OUT_STEP):
                        yield out
                    chunk = b""
                    if engine.needs_input:
                        break
                if engine.eof:
                    break
            if not engine.eof:
                raise FormatError(f"{what}: truncated {compression} data")
            return
        if compression == "gz":
            # wbits=47 auto-detects the gzip header; zlib is several times faster than gzip.open.
            gz = zlib.decompressobj(47)
            for start in range(0, len(data), step):
                chunk = data[start : start + step]
                while True:
                    out = gz.decompress(chunk, _OUT_STEP)
                    if out:
                        yield out
                    chunk = gz.unconsumed_tail
                    if not chunk and len(out) < _OUT_STEP:
                        break
                if gz.eof:
                    break
            if tail := gz.flush(_OUT_STEP):
                yield tail
            if not gz.eof:
                raise FormatError(f"{what}: truncated gz data")
            return
        if compression == "zst":
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
            while out := reader.read(_OUT_STEP):
                yield out
            return
        if compression == "":
            yield data
            return
    except (lzma.LZMAError, zlib.error, OSError, EOFError, zstandard.ZstdError) as exc:
        raise FormatError(f"{what}: corrupt {compression} data ({exc})") from exc
    raise FormatError(f"{what}: unsupported compression {compression!r}")


# --- compression: xz in independent blocks, on every core ----------------------------------

XZ_PRESET: Final = 6
"""xz's level for published indices (what Debian uses): the smallest download for every
client; the CPU it costs is paid once per snapshot (publish caches what it renders)."""

XZ_BLOCK: Final = 8 << 20
"""Uncompressed bytes per xz block: the dictionary size of preset 6, so a block loses little
against one long stream (bookworm's index: 0.6% larger), and Debian's 50 MB index makes six
blocks to spread over the cores. Fixed, never derived from the CPU count: the same input gives
the same bytes on every machine."""


def _one_block(stream: bytes) -> tuple[bytes, int, int]:
    """The block of a one-block xz stream (lzma.compress's output): (padded block bytes,
    unpadded size, uncompressed size), read from the stream's index."""
    index_size = (int.from_bytes(stream[-8:-4], "little") + 1) * 4
    index = stream[len(stream) - 12 - index_size : len(stream) - 12]
    count, pos = _xz_varint(index, 1)
    if index[0] != 0 or count != 1:
        raise AssertionError("liblzma wrote an xz stream of other than one block")
    unpadded, pos = _xz_varint(index, pos)
    uncompressed, _ = _xz_varint(index, pos)
    size = unpadded + -unpadded % 4
    return stream[12 : 12 + size], unpadded, uncompressed


def compress_xz(data: bytes, *, preset: int = XZ_PRESET, block: int = XZ_BLOCK) -> bytes:
    """``data`` as one xz stream (CRC64 checks) of independent blocks of ``block`` bytes, the
    format ``xz -T0`` writes and apt, xz and liblzma read; the blocks are compressed on
    threads at once (lzma releases the GIL). Deterministic: the bytes depend only on ``data``,
    ``preset`` and ``block``."""
    view = memoryview(data)  # slices of a view: no copy of the text
    pieces = [view[i : i + block] for i in range(0, len(data), block)] or [view]

    def one(piece: memoryview) -> bytes:
        return lzma.compress(piece, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)

    if len(pieces) == 1:
        return one(pieces[0])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(pieces), usable_cpus()), "compress-xz") as pool:
        streams = list(pool.map(one, pieces))
    header = streams[0][:12]  # magic, flags (CRC64), CRC32: the same for every stream
    blocks = [_one_block(s) for s in streams]
    body = b"\x00" + _xz_put_varint(len(blocks))
    for _, unpadded, uncompressed in blocks:
        body += _xz_put_varint(unpadded) + _xz_put_varint(uncompressed)
    body += bytes(-len(body) % 4)
    index = body + zlib.crc32(body).to_bytes(4, "little")
    tail = (len(index) // 4 - 1).to_bytes(4, "little") + header[6:8]
    footer = zlib.crc32(tail).to_bytes(4, "little") + tail + b"YZ"
    return b"".join([header, *(b for b, _, _ in blocks), index, footer])
