"""Package files on the way in (mirrorkit.debfile): real .deb files built by dpkg-deb are read
as dpkg reads them; broken, hostile and policy-violating ones are refused naming the file."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from mirrorkit import debfile
from mirrorkit.errors import FormatError
from tests.helpers.debs import build_deb


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTROL = b"Package: hello\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("debs")
    return build_deb(out, "hello", "1:2.0-1", "amd64", depends="libc6", source="hello-src (2.0-1)")


def test_a_real_deb_gives_its_stanza_with_filename_size_and_sha256(good: Path) -> None:
    pkg = debfile.read_package(good, "main").package
    assert (pkg.name, pkg.version, pkg.architecture, pkg.source) == (
        "hello", "1:2.0-1", "amd64", "hello-src")  # fmt: skip
    assert pkg.filename == "hello_2.0-1_amd64.deb" and pkg.size == good.stat().st_size
    assert b"Depends: libc6\n" in pkg.stanza and f"SHA256: {pkg.sha256}".encode() in pkg.stanza


def test_zstd_and_xz_compressed_members_are_read(tmp_path: Path) -> None:
    for z in ("zstd", "xz", "none"):
        root = tmp_path / z / "root"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN/control").write_bytes(CONTROL.replace(b"hello", f"hello-{z}".encode()))
        out = tmp_path / z / "p.deb"
        subprocess.run(["dpkg-deb", f"-Z{z}", "--build", str(root), str(out)], check=True,
                       capture_output=True)  # fmt: skip
        assert debfile.read_package(out, "main").package.name == f"hello-{z}"


def _refused(path: Path, data: bytes, *words: str) -> None:
    path.write_bytes(data)
    with pytest.raises(FormatError) as exc:
        debfile.read_package(path, "main")
    assert str(path) in exc.value.message
    for word in words:
        assert word in exc.value.message


def test_broken_files_are_refused_naming_the_file(good: Path, tmp_path: Path) -> None:
    data = good.read_bytes()
    _refused(tmp_path / "empty.deb", b"", "empty")
    _refused(tmp_path / "random.deb", os.urandom(4096), "ar archive")
    _refused(tmp_path / "half.deb", data[: len(data) // 2], "truncated")
    _refused(tmp_path / "short.deb", data[:-5], "truncated")
    binary = ("debian-binary", b"2.0\n")
    payload = ("data.tar.gz", _tar({"./usr/x": b"x"}))
    _refused(tmp_path / "nocontrol.deb", _ar([binary, payload]), "no control member")
    no_file = ("control.tar.gz", _tar({"./md5sums": b""}))
    _refused(tmp_path / "nofile.deb", _ar([binary, no_file, payload]), "holds no control file")
    control = ("control.tar.gz", _tar({"./control": CONTROL}))
    _refused(tmp_path / "nodata.deb", _ar([binary, control]), "no data member")
    _refused(tmp_path / "garbage-data.deb", _ar([binary, control, ("data.tar.gz", b"x" * 99)]),
             "corrupt gz")  # fmt: skip
    _refused(tmp_path / "format.deb", _ar([("debian-binary", b"3.0\n"), control, payload]), "2.x")


def test_hostile_sizes_are_refused_before_they_are_read(tmp_path: Path) -> None:
    binary = ("debian-binary", b"2.0\n")
    payload = ("data.tar.gz", _tar({"./usr/x": b"x"}))
    big = ("control.tar.gz", _tar({"./control": CONTROL + b"X-Pad: " + b"a" * (2 << 20) + b"\n"}))
    _refused(tmp_path / "bigcontrol.deb", _ar([binary, big, payload]), "control file", "1 MiB")
    # A control member that says it is larger than the file: truncated, nothing allocated.
    header = f"{'control.tar.gz':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{10**12:<10}`\n".encode()
    _refused(tmp_path / "liar.deb", b"!<arch>\n" + _ar([binary])[8:] + header, "truncated")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("Package", "Hello_World", "package name"),
        ("Package", "x", "package name"),
        ("Version", "one.0", "upstream version"),
        ("Version", "1.0-", "revision"),
        ("Version", "a:1.0", "epoch"),
        ("Architecture", "any", "architecture"),
        ("Architecture", "AMD64", "architecture"),
    ],
)
def test_names_versions_and_architectures_follow_debian_policy(
    tmp_path: Path, field: str, value: str, words: str
) -> None:
    control = CONTROL.replace(
        {"Package": b"hello", "Version": b"1.0", "Architecture": b"amd64"}[field].join(
            [f"{field}: ".encode(), b"\n"]
        ),
        f"{field}: {value}\n".encode(),
    )
    member = ("control.tar.gz", _tar({"./control": control}))
    data = _ar([("debian-binary", b"2.0\n"), member, ("data.tar.gz", _tar({"./x": b""}))])
    _refused(tmp_path / "p.deb", data, words)
