"""The bundle container's pieces on their own (mirrorkit.bundle.container, .parts, .workers):
sizes, the zstd frame walker, the strict tar reader and writer, split parts written and read
back, and the hashing and writing threads."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from mirrorkit.bundle.container import CHUNK, CheckedReader, FrameCheck, TarReader, TarWriter
from mirrorkit.bundle.parts import JoinedReader, Part, PartsWriter, parse_size
from mirrorkit.bundle.workers import HashAhead, Pipe
from mirrorkit.errors import BundleError, UsageError


@pytest.mark.parametrize(
    ("text", "size"),
    [("4G", 4_000_000_000), ("700M", 700_000_000), ("25G", 25_000_000_000), ("1000", 1000),
     ("4GiB", 4 << 30), ("700MiB", 700 << 20), ("64k", 64_000), ("2gb", 2_000_000_000)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size("4G") < 4 * 1024**3 - 1  # fits FAT32


@pytest.mark.parametrize("text", ["0", "-1", "4X", "iB", "", "G", "1.5G", "4 GiBs"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_size(text)


def _frame(data: bytes, **kw: object) -> bytes:
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=3, threads=-1, write_checksum=True, **kw)  # type: ignore[arg-type]
    with cctx.stream_writer(out, closefd=False) as w:
        w.write(data)
    return out.getvalue()


DATA = os.urandom(300_000) + bytes(600_000) + b"tail" * 1000


def test_frame_check_follows_whole_frames_only() -> None:
    frame = _frame(DATA)
    check = FrameCheck()
    assert check.feed(frame) == len(frame) and check.done and check.trailing == 0
    for cut in [1, 4, 5, 12, len(frame) // 2, len(frame) - 5, len(frame) - 4, len(frame) - 1]:
        check = FrameCheck()
        check.feed(frame[:cut])
        assert not check.done, cut
    check = FrameCheck()
    for i in range(0, len(frame), 7):  # fed in tiny pieces
        check.feed(frame[i : i + 7])
    assert check.done
    check = FrameCheck()
    assert check.feed(frame + b"extra") == len(frame) and check.trailing == 5
    for other in (zstandard.ZstdCompressor().compress(DATA), _frame(b"")):  # single segment
        check = FrameCheck()
        check.feed(other)
        assert check.done
    with pytest.raises(BundleError, match="not zstd-compressed"):
        FrameCheck().feed(b"PK\x03\x04 a zip file")


def test_decompressor_alone_misses_a_cut_off_checksum_but_frame_check_does_not() -> None:
    frame = _frame(DATA)
    cut = frame[:-3]
    out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(cut)).read()
    assert out == DATA  # zstandard says nothing: the reason FrameCheck exists
    check = FrameCheck()
    reader = CheckedReader(io.BytesIO(cut), check)
    # A file-like with read(), which is all stream_reader uses; its stubs ask for IO[bytes].
    assert zstandard.ZstdDecompressor().stream_reader(reader).read() == DATA  # type: ignore[arg-type]
    assert not check.done


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    tar = TarWriter(out, 1_700_000_000)
    for name, data in members:
        tar.begin(name, len(data))
        for i in range(0, len(data), 1000):
            tar.write(data[i : i + 1000])
    tar.close()
    return out.getvalue()


def test_tar_round_trip_and_interoperability() -> None:
    long_name = "channels/" + "c" * 128 + ".json"
    members = [(f"m{n}", os.urandom(n)) for n in (0, 1, 511, 512, 513, CHUNK + 1)]
    members.append((long_name, b"{}"))
    raw = _tar(members)
    assert len(raw) % (20 * 512) == 0
    reader = TarReader(io.BytesIO(raw))
    got = []
    while (m := reader.next()) is not None:
        got.append((m.name, b"".join(bytes(c) for c in reader.chunks(m))))
    assert got == members and reader.rest_is_zeros()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:  # what other tar readers see
        assert [(i.name, i.size, i.isreg()) for i in tar] == [(n, len(d), True) for n, d in members]


def _one(raw: bytes) -> None:
    reader = TarReader(io.BytesIO(raw))
    while (m := reader.next()) is not None:
        reader.skip(m)


def test_tar_reader_is_strict() -> None:
    info = tarfile.TarInfo("pool/x")
    info.size = 3
    gnu = info.tobuf(tarfile.GNU_FORMAT) + b"abc".ljust(512, b"\0") + bytes(1024)
    with pytest.raises(BundleError, match="not POSIX ustar"):
        _one(gnu)
    good = bytearray(_tar([("a", b"abc")]))
    good[10] ^= 1
    with pytest.raises(BundleError, match="damaged tar header at byte 0"):
        _one(bytes(good))
    info = tarfile.TarInfo("a")
    info.pax_headers = {"linkpath": "/etc/passwd"}
    with pytest.raises(BundleError, match="carries 'linkpath'"):
        _one(info.tobuf(tarfile.PAX_FORMAT) + bytes(1024))
    lone = _tar([("a", b"abc")])[:1536] + b"\x01" * 512
    with pytest.raises(BundleError, match="lone zero block"):
        _one(lone)
    with pytest.raises(BundleError, match="in the middle of member a"):
        _one(_tar([("a", b"x" * 2000)])[:1500])
    reader = TarReader(io.BytesIO(_tar([("a", b"")]) + b"junk"))
    while (m := reader.next()) is not None:
        reader.skip(m)
    assert not reader.rest_is_zeros()


def test_split_parts_and_reading_them_back(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    w = PartsWriter(tmp_path / "b", 2500)
    for i in range(0, len(data), 999):
        w.write(data[i : i + 999])
    parts = w.commit()
    assert [p.path.name for p in parts] == ["b.001", "b.002", "b.003", "b.004"]  # no empty 5th
    assert [p.size for p in parts] == [2500] * 4
    assert b"".join(p.path.read_bytes() for p in parts) == data
    assert [p.sha256 for p in parts] == [
        hashlib.sha256(data[i : i + 2500]).hexdigest() for i in range(0, 10_000, 2500)
    ]
    assert not list(tmp_path.glob(".*partial"))
    with JoinedReader(parts) as r:
        assert r.drain() == len(data)

    (tmp_path / "b.003").write_bytes(b"\0" + (tmp_path / "b.003").read_bytes()[1:])
    with JoinedReader(parts) as r, pytest.raises(BundleError, match=r"b\.003: part is damaged"):
        r.drain()
    with JoinedReader(parts, collect=True) as r:
        assert r.drain() == len(data) and len(r.problems) == 1
    (tmp_path / "b.002").write_bytes((tmp_path / "b.002").read_bytes() + b"more")
    with (
        JoinedReader(parts) as r,
        pytest.raises(BundleError, match=r"b\.002: part is damaged: 2504"),
    ):
        r.drain()

    w = PartsWriter(tmp_path / "c", None)
    w.write(b"abc")
    w.abort()
    assert not list(tmp_path.glob("*c*"))
    missing = JoinedReader([Part(tmp_path / "gone", 1, "0" * 64)]).blame()
    assert missing is not None and "gone: part is missing" in missing.message


def test_pipe_runs_in_order_and_reports_the_first_error() -> None:
    pipe = Pipe(depth=2)
    seen: list[int] = []
    for n in range(10):
        pipe.submit(seen.append, n)
    pipe.drain()
    assert seen == list(range(10))

    def boom() -> None:
        raise OSError(28, "No space left on device")

    pipe.submit(boom)
    pipe.submit(seen.append, 99)  # may or may not raise already: the error is not lost
    with pytest.raises(OSError, match="No space left"):
        for n in range(100):
            pipe.submit(seen.append, n)
    with pytest.raises(OSError, match="No space left"):
        pipe.drain()  # and it does not hang
    pipe.close()
    pipe.close()
    assert 99 not in seen


def test_hash_ahead_matches_hashlib_and_reports_the_first_failure() -> None:
    data = os.urandom(5 * 1000 + 17)
    hashing = HashAhead(1000, buffers=2)  # fewer buffers than chunks: they must come back
    digests: list[str] = []
    hashers = [hashlib.sha256(), hashlib.sha256()]
    for hasher in hashers:
        stream = io.BytesIO(data)
        while True:
            buffer = hashing.take()
            n = stream.readinto(buffer)
            if not n:
                hashing.give_back(buffer)
                break
            hashing.update(hasher, buffer, n)
        hashing.check(hasher, digests.append)
    hashing.finish()
    assert digests == [hashlib.sha256(data).hexdigest()] * 2

    def refuse(digest: str) -> None:
        raise BundleError(f"object: SHA256 mismatch ({digest[:8]})")

    hashing = HashAhead(1000, buffers=2)
    hashing.check(hashlib.sha256(b"x"), refuse)
    with pytest.raises(BundleError, match="SHA256 mismatch"):
        for _ in range(100):  # buffers keep coming back after the failure: no hang
            hashing.update(hashlib.sha256(), hashing.take(), 1000)
    with pytest.raises(BundleError, match="SHA256 mismatch"):
        hashing.finish()
    hashing.close()
