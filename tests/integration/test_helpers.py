"""Self-test of the shared test helpers: if these fail, every other test is suspect."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.apt import AptClient, signature_problems
from tests.helpers.archive import (
    Archive,
    build_archive,
    build_flat_archive,
    build_index_archive,
    resign,
)
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer, _Handler, path_matches

# -- debs and archive --------------------------------------------------------------------------


def test_build_deb_fields_and_payload(tmp_path: Path) -> None:
    deb = build_deb(
        tmp_path,
        "blobby",
        "2:1.5-1",
        "amd64",
        pre_depends="dpkg",
        multi_arch="same",
        essential=True,
        payload_size=50_000,
        extra_fields={"Homepage": "https://example.org"},
    )
    assert deb.name == "blobby_1.5-1_amd64.deb"
    # Random payload does not compress: the .deb is at least as big as the payload.
    assert deb.stat().st_size > 50_000
    info = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
    ).stdout
    for line in (
        "Package: blobby",
        "Version: 2:1.5-1",
        "Architecture: amd64",
        "Pre-Depends: dpkg",
        "Multi-Arch: same",
        "Essential: yes",
        "Homepage: https://example.org",
        "Installed-Size: 49",
    ):
        assert line in info
    again = build_deb(tmp_path / "again", "blobby", "2:1.5-1", "amd64", payload_size=50_000)
    first = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True).stdout
    second = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(again)], capture_output=True).stdout
    assert first == second  # deterministic payload and mtimes


def test_archive_signatures_verify_with_gpgv(archive: Archive, test_key: TestKey) -> None:
    keyring = str(test_key.public_keyring)
    subprocess.run(
        ["gpgv", "--keyring", keyring, str(archive.inrelease)], check=True, capture_output=True
    )
    subprocess.run(
        ["gpgv", "--keyring", keyring, str(archive.release_gpg), str(archive.release)],
        check=True,
        capture_output=True,
    )


def test_archive_release_matches_files(archive: Archive) -> None:
    release = archive.release.read_text()
    sha_section = release.split("SHA256:\n", 1)[1]
    entries = {}
    for line in sha_section.splitlines():
        digest, size, name = line.split()
        entries[name] = (digest, int(size))
    bindir = archive.dists / "main/binary-amd64"
    assert not (bindir / "Packages").exists()  # only compressed files are shipped ...
    assert "main/binary-amd64/Packages" in entries  # ... but the plain one is listed
    plain = lzma.decompress((bindir / "Packages.xz").read_bytes())
    assert gzip.decompress((bindir / "Packages.gz").read_bytes()) == plain
    assert entries["main/binary-amd64/Packages"] == (hashlib.sha256(plain).hexdigest(), len(plain))
    for name in ("Packages.xz", "Packages.gz"):
        data = (bindir / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert entries[f"main/binary-amd64/{name}"] == (digest, len(data))
        assert (bindir / "by-hash/SHA256" / digest).read_bytes() == data
    assert "Acquire-By-Hash: yes" in release
    assert "Codename: stable" in release
    # Filename fields are relative to the root and point at the pool copies.
    text = plain.decode()
    assert "Filename: pool/main/h/hello/hello_1.0_amd64.deb" in text
    assert "Package: greet-data" in text
    assert set(archive.debs) >= {"pool/main/h/hello/hello_1.0_amd64.deb"}
    assert all(p.is_file() for p in archive.debs.values())


def _sha256_entries(release: str) -> dict[str, tuple[str, int]]:
    entries = {}
    for line in release.split("SHA256:\n", 1)[1].splitlines():
        digest, size, name = line.split()
        entries[name] = (digest, int(size))
    return entries


def test_index_archive_from_an_existing_packages_file(
    tmp_path: Path, archive: Archive, test_key: TestKey
) -> None:
    plain = tmp_path / "Packages"
    plain.write_bytes(
        lzma.decompress((archive.dists / "main/binary-amd64/Packages.xz").read_bytes())
    )
    data = plain.read_bytes()
    built = build_index_archive(tmp_path / "idx", test_key, plain, suite="bench")
    subprocess.run(
        ["gpgv", "--keyring", str(test_key.public_keyring), str(built.inrelease)],
        check=True,
        capture_output=True,
    )
    release = built.release.read_text()
    assert "Suite: bench" in release and "Acquire-By-Hash: yes" in release
    entries = _sha256_entries(release)
    bindir = built.dists / "main/binary-amd64"
    assert not (bindir / "Packages").exists()  # listed, not shipped, as build_archive does
    assert entries["main/binary-amd64/Packages"] == (hashlib.sha256(data).hexdigest(), len(data))
    assert lzma.decompress((bindir / "Packages.xz").read_bytes()) == data
    assert gzip.decompress((bindir / "Packages.gz").read_bytes()) == data
    for name in ("Packages.xz", "Packages.gz"):
        packed = (bindir / name).read_bytes()
        digest = hashlib.sha256(packed).hexdigest()
        assert entries[f"main/binary-amd64/{name}"] == (digest, len(packed))
        assert (bindir / "by-hash/SHA256" / digest).read_bytes() == packed

    only = build_index_archive(tmp_path / "plain", test_key, plain, compressions=("plain",))
    assert (only.dists / "main/binary-amd64/Packages").read_bytes() == data
    assert list(_sha256_entries(only.release.read_text())) == ["main/binary-amd64/Packages"]


def test_arch_split(tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]) -> None:
    arm = build_deb(tmp_path / "debs", "armonly", "1.0", "arm64")
    arch = build_archive(
        tmp_path / "multi",
        test_key,
        {"main": [debs_dir["hello"], debs_dir["greet-data"], arm]},
        architectures=["amd64", "arm64"],
        compressions=("plain", "gz"),
        by_hash=False,
    )
    amd64 = (arch.dists / "main/binary-amd64/Packages").read_text()
    arm64 = (arch.dists / "main/binary-arm64/Packages").read_text()
    assert "Package: hello" in amd64 and "Package: hello" not in arm64
    assert "Package: armonly" in arm64 and "Package: armonly" not in amd64
    assert "Package: greet-data" in amd64 and "Package: greet-data" in arm64
    assert not (arch.dists / "main/binary-amd64/by-hash").exists()
    assert "Acquire-By-Hash" not in arch.release.read_text()


def test_rebuild_lists_only_current_packages(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]
) -> None:
    root = tmp_path / "up"
    build_archive(root, test_key, {"main": [debs_dir["hello"], debs_dir["libgreet"]]})
    newer = build_deb(tmp_path / "debs", "hello", "1.1", "amd64")
    again = build_archive(root, test_key, {"main": [newer]}, compressions=("plain",))
    text = (again.dists / "main/binary-amd64/Packages").read_text()
    assert "Version: 1.1" in text and "Version: 1.0" not in text
    assert not (again.dists / "main/binary-amd64/Packages.xz").exists()
    assert "Packages.xz" not in again.release.read_text()
    assert (root / "pool/main/h/hello/hello_1.0_amd64.deb").exists()  # pools keep old files


# -- real apt against the helpers ---------------------------------------------------------------


def test_apt_update_and_download(
    archive: Archive, upstream: FaultServer, apt_client: AptClient, test_key: TestKey
) -> None:
    apt_client.add_source(upstream.url, "stable", ["main"], test_key.public_keyring)
    upd = apt_client.update()
    assert upd.returncode == 0, upd.stdout
    assert "W:" not in upd.stdout and "E:" not in upd.stdout, upd.stdout

    got = apt_client.install_download_only("hello")
    assert got.returncode == 0, got.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb"]
    assert upstream.count("*.deb") == 2

    sim = apt_client.simulate_install("virt-user", "tool")
    assert sim.returncode == 0, sim.stdout
    assert "Inst mta-one" in sim.stdout  # virtual package satisfied through Provides
    assert "Inst libgreet" in sim.stdout  # first alternative of "libgreet | libalt"
    assert "1.0 500" in apt_client.policy("hello").stdout


def test_apt_rejects_bad_signature_and_resign_fixes_it(
    archive: Archive, upstream: FaultServer, apt_client: AptClient, test_key: TestKey
) -> None:
    # Change one byte of the signed text in both Release and InRelease (signature stays old).
    for path in (archive.release, archive.inrelease):
        text = path.read_text()
        assert "Label: Mirrorkit Test\n" in text
        path.write_text(text.replace("Label: Mirrorkit Test\n", "Label: Mirrorkit Tesu\n"))
    apt_client.add_source(upstream.url, "stable", ["main"], test_key.public_keyring)
    bad = apt_client.update()
    assert bad.returncode != 0, bad.stdout
    assert any("BADSIG" in line or "not signed" in line for line in signature_problems(bad.stdout))

    resign(archive)
    good = apt_client.update()
    assert good.returncode == 0, good.stdout

    # Transient failures count too (apt alone would exit 0 here; Error-Mode=any makes it 100).
    upstream.add_fault("*/InRelease", "status", code=503)
    transient = apt_client.update()
    assert transient.returncode != 0, transient.stdout
    assert "503" in transient.stdout


def test_apt_rejects_unknown_key(
    archive: Archive, upstream: FaultServer, apt_client: AptClient, tmp_path: Path
) -> None:
    from tests.helpers.gpgkeys import kill_agents, make_key

    other = make_key(tmp_path / "other-key")
    try:
        apt_client.add_source(upstream.url, "stable", ["main"], other.public_keyring)
        proc = apt_client.update()
        assert proc.returncode != 0, proc.stdout
        assert "NO_PUBKEY" in proc.stdout
    finally:
        kill_agents(other)


def test_apt_flat_repository(
    tmp_path: Path,
    test_key: TestKey,
    debs_dir: dict[str, Path],
    apt_client: AptClient,
    make_server: Callable[[Path], FaultServer],
) -> None:
    root = tmp_path / "flatroot"
    flat = build_flat_archive(root, test_key, [debs_dir["hello"], debs_dir["libgreet"]])
    assert "Filename: flat/hello_1.0_amd64.deb" in (flat / "Packages").read_text()
    srv = make_server(root)
    apt_client.add_source(srv.url, "flat/", [], test_key.public_keyring, flat=True)
    upd = apt_client.update()
    assert upd.returncode == 0 and "W:" not in upd.stdout, upd.stdout
    got = apt_client.install_download_only("hello")
    assert got.returncode == 0, got.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb"]


def test_apt_security_style_components(
    tmp_path: Path,
    test_key: TestKey,
    debs_dir: dict[str, Path],
    apt_client: AptClient,
    make_server: Callable[[Path], FaultServer],
) -> None:
    sec = build_archive(
        tmp_path / "security",
        test_key,
        {"main": [debs_dir["hello"], debs_dir["libgreet"]]},
        suite="stable-security",
        release_components={"main": "updates/main"},
        md5sum=False,
    )
    release = sec.release.read_text()
    assert "Components: updates/main" in release and "MD5Sum:" not in release
    assert (sec.component_dir("main") / "binary-amd64/Packages.xz").is_file()
    assert "pool/updates/main/h/hello/hello_1.0_amd64.deb" in sec.debs
    srv = make_server(sec.root)
    # Users write "main"; apt maps it onto the "updates/main" the Release file lists.
    apt_client.add_source(srv.url, "stable-security", ["main"], test_key.public_keyring)
    upd = apt_client.update()
    assert upd.returncode == 0, upd.stdout
    assert srv.count("/dists/stable-security/main/binary-amd64/*") == 1
    got = apt_client.install_download_only("hello")
    assert got.returncode == 0, got.stdout


# -- fault server --------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "dir").mkdir(parents=True)
    (root / "dir/data.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    (root / "dir/InRelease").write_text("signed\n")
    return root


DATA = bytes(range(256)) * 40


def test_path_matching() -> None:
    assert path_matches("*.deb", "/pool/main/h/hello/hello_1.0_all.deb")
    assert path_matches("*/InRelease", "/dists/stable/InRelease")
    assert path_matches("InRelease", "/dists/stable/InRelease")
    assert not path_matches("InRelease", "/dists/stable/xInRelease")
    assert path_matches("dists/*/InRelease", "/debian/dists/stable/InRelease")
    assert not path_matches("Packages", "/dists/stable/main/binary-amd64/Packages.xz")


def test_server_basics_range_and_conditionals(files: Path) -> None:
    with FaultServer(files) as srv, httpx.Client(base_url=srv.url) as c:
        r = c.get("/dir/data.bin")
        assert r.status_code == 200 and r.content == DATA
        assert r.headers["content-length"] == str(len(DATA))
        etag, lm = r.headers["etag"], r.headers["last-modified"]

        r = c.get("/dir/data.bin", headers={"Range": "bytes=10000-"})
        assert r.status_code == 206 and r.content == DATA[10000:]
        assert r.headers["content-range"] == f"bytes 10000-{len(DATA) - 1}/{len(DATA)}"
        r = c.get("/dir/data.bin", headers={"Range": "bytes=5-9"})
        assert r.status_code == 206 and r.content == DATA[5:10]
        r = c.get("/dir/data.bin", headers={"Range": "bytes=5-9", "If-Range": etag})
        assert r.status_code == 206
        r = c.get("/dir/data.bin", headers={"Range": "bytes=5-9", "If-Range": lm})
        assert r.status_code == 206
        r = c.get("/dir/data.bin", headers={"Range": "bytes=5-9", "If-Range": '"stale"'})
        assert r.status_code == 200 and r.content == DATA
        r = c.get("/dir/data.bin", headers={"Range": f"bytes={len(DATA)}-"})
        assert r.status_code == 416

        assert c.get("/dir/data.bin", headers={"If-None-Match": etag}).status_code == 304
        assert c.get("/dir/data.bin", headers={"If-Modified-Since": lm}).status_code == 304
        h = c.head("/dir/data.bin")
        assert h.status_code == 200 and h.headers["content-length"] == str(len(DATA))
        assert c.get("/nope").status_code == 404
        assert c.get("/dir").status_code == 404
        assert c.get("/../etc/passwd").status_code == 404

        assert srv.count("*/data.bin") == 9  # HEAD is not counted
        method, path, headers = srv.requests[1]
        assert (method, path) == ("GET", "/dir/data.bin")
        assert headers["Range"] == headers["range"] == "bytes=10000-"
        srv.clear_log()
        assert srv.requests == []


def test_fault_status_then_recover(files: Path) -> None:
    with FaultServer(files) as srv, httpx.Client(base_url=srv.url) as c:
        srv.add_fault("*/InRelease", "status", times=2, code=503, retry_after="7")
        r = c.get("/dir/InRelease")
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert c.get("/dir/InRelease").status_code == 503
        assert c.get("/dir/InRelease").text == "signed\n"
        assert srv.count("InRelease") == 3
        srv.add_fault("data.bin", "not_found", times=-1)
        for _ in range(3):
            assert c.get("/dir/data.bin").status_code == 404
        assert srv.pending_faults() == [("data.bin", "not_found", -1)]


def test_fault_drop(files: Path) -> None:
    with FaultServer(files) as srv:
        srv.add_fault("*.bin", "drop", after_bytes=100)
        with httpx.Client(base_url=srv.url) as c, pytest.raises(httpx.RemoteProtocolError):
            c.get("/dir/data.bin")
        with httpx.Client(base_url=srv.url) as c:
            # Resuming after the drop with a Range request works.
            r = c.get("/dir/data.bin", headers={"Range": "bytes=100-"})
            assert r.status_code == 206 and r.content == DATA[100:]


def test_fault_corrupt_truncate_ignore_range_slow(files: Path) -> None:
    with FaultServer(files) as srv, httpx.Client(base_url=srv.url) as c:
        srv.add_fault("*.bin", "corrupt")
        r = c.get("/dir/data.bin")
        assert r.status_code == 200 and len(r.content) == len(DATA)
        assert sum(a != b for a, b in zip(r.content, DATA, strict=True)) == 1

        srv.add_fault("*.bin", "truncate", after_bytes=10)
        r = c.get("/dir/data.bin")
        assert r.content == DATA[:10] and r.headers["content-length"] == "10"

        srv.add_fault("*.bin", "ignore_range")
        # The fault waits for a Range request; a plain GET does not use it up.
        assert c.get("/dir/data.bin").status_code == 200
        r = c.get("/dir/data.bin", headers={"Range": "bytes=100-"})
        assert r.status_code == 200 and r.content == DATA
        assert c.get("/dir/data.bin", headers={"Range": "bytes=100-"}).status_code == 206

        # Held back: a client that waits 0.2 s for the answer gives up long before the 30 s
        # are over (stop() ends the wait); then a short hold still delivers the whole file.
        srv.add_fault("*.bin", "slow", delay=30)
        with pytest.raises(httpx.ReadTimeout):
            c.get("/dir/data.bin", timeout=httpx.Timeout(10, read=0.2))
        srv.add_fault("*.bin", "slow", delay=0.3)
        assert c.get("/dir/data.bin").content == DATA
        assert srv.pending_faults() == []


def test_server_stops_with_idle_keepalive_connection(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the idle timeout, a handler waiting for the next keep-alive request ends only
    # when stop() closes its connection: stop() returning at all shows that it did not wait
    # for the client (which keeps the connection open until after stop()).
    monkeypatch.setattr(_Handler, "timeout", None)
    srv = FaultServer(files)
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/dir/InRelease").status_code == 200
        assert srv.connections == 1
        srv.stop()  # must not wait for the client's idle keep-alive connection
    srv.stop()  # idempotent


# -- network guard ----------------------------------------------------------------------------


def test_network_guard_blocks_non_loopback() -> None:
    with pytest.raises(RuntimeError, match="non-loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(RuntimeError, match="non-loopback"):
            s.connect(("198.51.100.7", 80))
        with pytest.raises(RuntimeError, match="non-loopback"):
            s.connect_ex(("example.org", 80))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("deb.debian.org", 80)
    with pytest.raises(RuntimeError, match="non-loopback"):
        httpx.get("http://deb.debian.org/debian/")
    assert socket.getaddrinfo("127.0.0.1", 80)
