"""The repository format: parsing checked against python-debian (the oracle), path safety,
component mapping, index choice and rendering."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from debian import deb822

from mirrorkit import archive
from mirrorkit.errors import FormatError

REAL_INDEX = Path(
    "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
)

SAMPLE = b"""Package: hello
Version: 1:2.10-3
Architecture: amd64
Maintainer: Someone <s@example.org>
Installed-Size: 280
Depends: libc6 (>= 2.34)
Filename: pool/main/h/hello/hello_2.10-3_amd64.deb
Size: 53132
SHA256: 2b8bb8d4e1a1e9a0f6f1b48a3b5c8a1c3e1c5f6a7b8c9d0e1f2a3b4c5d6e7f80
Description: example package
 with a continuation line
 Package: not-a-field
Description-md5: 0123

Package: libfoo1
Source: foo (1.2-1)
Version: 1.2-1+b1
Architecture: all
Filename: ./pool/main/f/foo/libfoo1_1.2-1+b1_all.deb
Size: 10
SHA256: ab8bb8d4e1a1e9a0f6f1b48a3b5c8a1c3e1c5f6a7b8c9d0e1f2a3b4c5d6e7f80
"""


def _oracle(text: bytes) -> list[dict[str, str]]:
    """python-debian's view of the same index: the reference the fast parser must match."""
    paragraphs = deb822.Packages.iter_paragraphs(io.BytesIO(text), use_apt_pkg=False)
    return [
        {
            "name": p["Package"],
            "version": p["Version"],
            "architecture": p["Architecture"],
            "filename": p["Filename"].removeprefix("./"),
            "size": p["Size"],
            "sha256": p["SHA256"],
            "source": p.get("Source", p["Package"]).split()[0],
        }
        for p in paragraphs
    ]


def _ours(text: bytes) -> list[dict[str, str]]:
    return [
        {
            "name": p.name,
            "version": p.version,
            "architecture": p.architecture,
            "filename": p.filename,
            "size": str(p.size),
            "sha256": p.sha256,
            "source": p.source,
        }
        for p in archive.parse_packages(text, "main")
    ]


def test_parser_matches_python_debian_on_sample() -> None:
    assert _ours(SAMPLE) == _oracle(SAMPLE)
    pkgs = archive.parse_packages(SAMPLE, "main")
    assert pkgs[0].ref == "hello_1:2.10-3_amd64"
    # The stanza is kept verbatim (continuation lines included) for publishing.
    assert pkgs[0].stanza.endswith(b"Description-md5: 0123")
    assert b" Package: not-a-field" in pkgs[0].stanza


@pytest.mark.skipif(not REAL_INDEX.exists(), reason="bookworm index not in apt's lists")
def test_parser_matches_python_debian_on_real_bookworm_index(tmp_path: Path) -> None:
    text = subprocess.run(
        ["lz4", "-dc", str(REAL_INDEX)], check=True, stdout=subprocess.PIPE
    ).stdout
    ours = _ours(text)
    assert len(ours) > 60000
    assert ours == _oracle(text)


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda s: s.replace(b"Filename: pool/main/h/hello/hello_2.10-3_amd64.deb\n", b""),
         r"missing field\(s\) Filename"),
        (lambda s: s.replace(b"Size: 53132", b"Size: lots"), "malformed field"),
        (lambda s: s.replace(b"SHA256: 2b8", b"SHA256: zz8"), "malformed SHA256"),
        (lambda s: s.replace(b"pool/main/h/hello/hello_2", b"../../../etc/hello_2"), "unsafe path"),
        (lambda s: s.replace(b"Filename: pool/main/h", b"Filename: /etc/h"), "unsafe path"),
    ],
)  # fmt: skip
def test_malformed_packages_are_refused(mutation: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        archive.parse_packages(mutation(SAMPLE), "main", "up/Packages")


@pytest.mark.parametrize(
    "path",
    ["../x.deb", "/etc/passwd", "pool/../../x", "a\\b.deb", "a\nb", "", ".", "./", "a\x00b",
     "a\x1fb", "a\x7fb", "pool/a\tb.deb"],
)  # fmt: skip
def test_unsafe_paths_refused(path: str) -> None:
    with pytest.raises(FormatError, match="unsafe path"):
        archive.safe_relpath(path, "test")


def test_safe_paths_normalized() -> None:
    assert archive.safe_relpath("./pool//main/./x.deb", "t") == "pool/main/x.deb"


def test_component_mapping_for_security_archive() -> None:
    assert archive.map_component("main", ["updates/main", "updates/contrib"]) == "updates/main"
    assert archive.map_component("main", ["main", "contrib"]) == "main"
    assert archive.map_component("updates/main", ["updates/main"]) == "updates/main"


def _release(files: dict[str, bytes], extra: str = "") -> bytes:
    lines = ["Suite: stable", "Codename: bookworm", "Date: Sat, 11 Jul 2026 10:16:37 UTC", extra,
             "Components: main", "Architectures: amd64", "SHA256:"]  # fmt: skip
    for name, data in files.items():
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return ("\n".join(x for x in lines if x) + "\n").encode()


def test_release_parsing_and_index_choice() -> None:
    plain = SAMPLE
    files = {
        "main/binary-amd64/Packages": plain,
        "main/binary-amd64/Packages.gz": gzip.compress(plain),
        "main/binary-amd64/Packages.xz": lzma.compress(plain),
    }
    rel = archive.parse_release(_release(files, "Acquire-By-Hash: yes"))
    assert rel.codename == "bookworm" and rel.by_hash
    assert rel.date is not None and rel.date.year == 2026
    comp, ref = archive.pick_index(rel, "main/binary-amd64/Packages") or ("", None)
    assert comp == "xz" and ref is not None
    assert ref.size == len(files["main/binary-amd64/Packages.xz"])
    assert archive.decompress(files["main/binary-amd64/Packages.xz"], "xz", "t") == plain
    assert archive.decompress(files["main/binary-amd64/Packages.gz"], "gz", "t") == plain
    assert archive.by_hash_path(ref.path, "ab") == "main/binary-amd64/by-hash/SHA256/ab"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"Suite: stable\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n", "no SHA256 field"),
        (b"Suite: x\nSHA256:\n nothex 12 main/binary-amd64/Packages\n", "malformed SHA256"),
        (b"Suite: x\nDate: yesterday\nSHA256:\n", "not an RFC 2822 date"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_release_refused(text: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        archive.parse_release(text)


def test_corrupt_compressed_index_refused() -> None:
    with pytest.raises(FormatError, match="corrupt xz"):
        archive.decompress(b"not xz at all", "xz", "Packages.xz")


def test_rendered_compression_is_deterministic() -> None:
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    assert archive.compress_gz(SAMPLE) == archive.compress_gz(SAMPLE)
    assert archive.compress_xz(SAMPLE) == archive.compress_xz(SAMPLE)
    assert gzip.decompress(archive.compress_gz(SAMPLE)) == SAMPLE


def _big_index(n: int) -> bytes:
    return b"".join(
        SAMPLE.replace(b"Package: hello", b"Package: hello%d" % i)
        .replace(b"Package: libfoo1", b"Package: libfoo%d" % i)
        .rstrip(b"\n")
        + b"\n\n"
        for i in range(n)
    )


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", "zst", ""])
def test_pipelined_parse_equals_plain_parse(compression: str) -> None:
    import bz2

    import zstandard

    text = _big_index(3000)  # several decompressed pieces, cut at stanza boundaries
    packers: dict[str, Callable[[bytes], bytes]] = {
        "xz": lambda d: lzma.compress(d),
        "gz": lambda d: gzip.compress(d),
        "bz2": bz2.compress,
        "zst": lambda d: zstandard.ZstdCompressor().compress(d),
        "": lambda d: d,
    }
    packed = packers[compression](text)
    got_text, got = archive.parse_compressed(packed, compression, "main")
    assert got_text == text
    assert got == archive.parse_packages(text, "main")


def test_pipelined_parse_reports_the_right_stanza_and_truncation() -> None:
    text = _big_index(3000)
    bad = text[: text.rfind(b"SHA256: ")] + b"SHA256: nothex\n\n"  # the last stanza's
    with pytest.raises(FormatError, match=r"stanza 6000 \(libfoo2999\)"):
        archive.parse_compressed(lzma.compress(bad), "xz", "main")
    with pytest.raises(FormatError, match="truncated xz"):
        archive.parse_compressed(lzma.compress(text)[:5000], "xz", "main")


def _xz_blocks(text: bytes, block: str) -> bytes:
    """What a multi-threaded xz writes (Debian's Packages.xz has 2 blocks): several blocks."""
    cmd = ["xz", "-T1", f"--block-size={block}", "-c"]
    return subprocess.run(cmd, input=text, capture_output=True, check=True).stdout


def test_multi_block_xz_is_decoded_block_by_block_to_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _big_index(3000)
    packed = _xz_blocks(text, "300KiB")
    with monkeypatch.context() as m:  # one CPU: the serial decoder reads every block
        m.setattr(archive, "usable_cpus", lambda: 1)
        assert archive.parse_compressed(packed, "xz", "main")[0] == text
    blocks = archive.xz_blocks(packed)
    assert blocks is not None and len(blocks) == -(-len(text) // (300 << 10))
    assert b"".join(lzma.decompress(b.stream(packed)) for b in blocks) == text  # each valid
    assert b"".join(archive.iter_decompressed(packed, "xz", "Packages")) == text
    got_text, got = archive.parse_compressed(packed, "xz", "main")
    assert got_text == text and got == archive.parse_packages(text, "main")
    # Nothing to split, or not simple enough: the serial decoder takes it.
    assert archive.xz_blocks(lzma.compress(text)) is None
    assert archive.xz_blocks(packed + bytes(4)) is None  # stream padding
    assert archive.xz_blocks(packed + packed) is None  # two streams
    assert archive.xz_blocks(packed[:-1]) is None


def test_multi_block_xz_damage_is_refused_with_its_block() -> None:
    text = _big_index(3000)
    packed = bytearray(_xz_blocks(text, "300KiB"))
    blocks = archive.xz_blocks(bytes(packed))
    assert blocks is not None
    packed[blocks[1].offset + 50] ^= 0xFF
    with pytest.raises(FormatError, match=r"corrupt xz data \(block 2"):
        archive.parse_compressed(bytes(packed), "xz", "main")
    # A damaged index is not trusted for splitting; the serial decoder reports it.
    packed = bytearray(_xz_blocks(text, "300KiB"))
    packed[-20] ^= 0xFF
    assert archive.xz_blocks(bytes(packed)) is None
    with pytest.raises(FormatError, match="corrupt xz data"):
        archive.parse_compressed(bytes(packed), "xz", "main")


def test_the_field_reader_matches_python_debian_and_ignores_case() -> None:
    stanza = next(archive.iter_stanzas(SAMPLE))
    oracle = deb822.Deb822(stanza.decode())
    fields = archive.stanza_fields(stanza.replace(b"Depends:", b"depends:"))
    assert fields["Depends"] == oracle["Depends"] == "libc6 (>= 2.34)"
    assert fields["Description"].split("\n") == [
        line.strip() for line in oracle["Description"].split("\n")
    ]
    assert "Package: not-a-field" in fields["Description"] and fields["Package"] == "hello"
    assert archive.field(stanza.replace(b"Architecture:", b"ARCHITECTURE:"), "Architecture") == (
        "amd64"
    )
    assert archive.field(stanza, "Pre-Depends") is None
