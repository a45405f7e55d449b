"""Indices decompress in bounded pieces up to a documented limit (issue 14, item 4)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import zstandard

from mirrorkit import archive
from mirrorkit.errors import FormatError

LIMIT = 1 << 20  # small, so that the test is fast; the product's is archive.MAX_INDEX_SIZE


def _xz_blocks(data: bytes) -> bytes:
    """A multi-block xz file, as Debian's multi-threaded xz writes Packages.xz."""
    out = subprocess.run(["xz", "-T2", "--block-size=262144", "-c"], input=data,
                         capture_output=True, check=True).stdout  # fmt: skip
    assert archive.xz_blocks(out) is not None
    return out


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "xz": lambda d: lzma.compress(d),
    "xz-blocks": _xz_blocks,
    "gz": lambda d: gzip.compress(d, compresslevel=1),
    "bz2": lambda d: bz2.compress(d),
    "zst": lambda d: zstandard.ZstdCompressor().compress(d),
    "": lambda d: d,
}


@pytest.mark.parametrize("kind", list(COMPRESS))
def test_past_the_limit_is_refused_by_name(kind: str) -> None:
    packed = COMPRESS[kind](b"\0" * (LIMIT + 1))
    compression = kind.split("-")[0]
    with pytest.raises(FormatError) as info:
        archive.decompress(packed, compression, "dists/x/main/binary-amd64/Packages", LIMIT)
    assert info.value.message.startswith("dists/x/main/binary-amd64/Packages: decompresses to ")
    assert "the limit for an index" in info.value.message
    assert info.value.hint and "Nothing was stored" in info.value.hint


@pytest.mark.parametrize("kind", list(COMPRESS))
def test_up_to_the_limit_decompresses_whole(kind: str) -> None:
    data = b"Package: a\nVersion: 1\n\n" * (LIMIT // 24)
    assert len(data) <= LIMIT
    packed = COMPRESS[kind](data)
    assert archive.decompress(packed, kind.split("-")[0], "P", LIMIT) == data
    assert b"".join(archive.iter_decompressed(packed, kind.split("-")[0], "P", LIMIT)) == data


@pytest.mark.parametrize("kind", ["xz", "gz", "bz2", "zst"])
def test_a_bomb_is_stopped_in_bounded_pieces(kind: str) -> None:
    """Zeros past the product's limit (a download of a few hundred kB): stopped at the limit,
    every piece the decompressor hands out at most a few MB."""
    c: Any
    if kind == "xz":
        c = lzma.LZMACompressor(preset=0)
    elif kind == "gz":
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
    elif kind == "bz2":
        c = bz2.BZ2Compressor(1)
    else:
        c = zstandard.ZstdCompressor(level=1).compressobj()
    chunk = b"\0" * (8 << 20)
    count = archive.MAX_INDEX_SIZE // len(chunk) + 2
    packed = b"".join(c.compress(chunk) for _ in range(count)) + c.flush()
    biggest = total = 0
    with pytest.raises(FormatError, match="the limit for an index"):
        for piece in archive.iter_decompressed(packed, kind, "P"):
            biggest = max(biggest, len(piece))
            total += len(piece)
    assert total <= archive.MAX_INDEX_SIZE
    assert biggest <= 8 << 20
