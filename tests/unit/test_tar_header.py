"""TarWriter's own header for plain members is byte for byte the one tarfile's pax writer
makes (tarfile still writes every other one)."""

from __future__ import annotations

import io
import tarfile

from mirrorkit.bundle.container import TarWriter, _ustar_header


def _tarfile_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def test_the_fast_header_is_tarfiles() -> None:
    names = ["pool/" + "ab" * 32, "meta/x", "snapshots/a-b_c+1/snapshot.json", "x" * 100]
    for name in names:
        for size in (0, 1, 511, 512, 1234, 10**9, 8**11 - 1):
            for mtime in (0, 1_700_000_000):
                assert _ustar_header(name, size, mtime) == _tarfile_header(name, size, mtime)
    for odd in ("x" * 101, "pool/é", "bad\nname"):
        assert _ustar_header(odd, 1, 0) is None
    assert _ustar_header("big", 8**11, 0) is None


def test_members_written_whole_read_back() -> None:
    out = io.BytesIO()
    tar = TarWriter(out, 1_700_000_000)
    tar.add_whole("pool/a", b"x" * 700)
    tar.add("snapshots/s/snapshot.json", b"{}")
    tar.add_whole("p/" + "é" * 60, b"")  # a pax header, through tarfile
    tar.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        got = {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]
    assert got == {"pool/a": b"x" * 700, "snapshots/s/snapshot.json": b"{}", "p/" + "é" * 60: b""}
