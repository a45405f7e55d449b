"""The acid test: real apt-get, with signature checking on, installs from what mirrorkit made."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


def _mirror_snapshot_publish(
    store: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey, out: Path
) -> str:
    r = run_cli(
        store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(archive.key.public_keyring),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 0, r.output
    assert "fetched 7 files" in r.stdout
    r = run_cli(store, "snapshot", "create", "snap1", "--from-mirror", "up")
    assert r.exit_code == 0, r.output
    r = run_cli(
        store, "publish", "fs", "snap1", str(out), "--suite", "prod",
        "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Suites: prod" in r.stdout and "Signed-By: " in r.stdout
    return r.stdout


def test_apt_installs_from_published_tree(
    tmp_path: Path,
    upstream: FaultServer,
    archive: Archive,
    publish_key: TestKey,
    apt_client: AptClient,
) -> None:
    out = tmp_path / "published"
    stanza = _mirror_snapshot_publish(tmp_path / "store", upstream, archive, publish_key, out)
    signed_by = Path(next(x for x in stanza.splitlines() if x.startswith("Signed-By:")).split()[1])
    assert signed_by.is_file()

    with FaultServer(out) as srv:
        apt_client.add_source(srv.url, "prod", ["main"], signed_by)
        upd = apt_client.update()
        assert upd.returncode == 0, upd.stdout
        # apt used by-hash, as the Release advertises.
        assert srv.count("*/by-hash/SHA256/*") >= 1
        inst = apt_client.install_download_only("hello", "tool")
        assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
                                       "tool_2.0_amd64.deb"]  # fmt: skip


def test_apt_refuses_tree_with_one_byte_changed(
    tmp_path: Path,
    upstream: FaultServer,
    archive: Archive,
    publish_key: TestKey,
    apt_client: AptClient,
) -> None:
    out = tmp_path / "published"
    _mirror_snapshot_publish(tmp_path / "store", upstream, archive, publish_key, out)
    suite = out / "dists" / "prod"
    for name in ("InRelease", "Release"):
        path = suite / name
        data = path.read_bytes()
        path.write_bytes(data.replace(b"Label: mirrorkit", b"Label: mirrorkiT", 1))
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    apt_client.add_source(out.as_uri(), "prod", ["main"], key)
    upd = apt_client.update()
    assert upd.returncode != 0, upd.stdout
    assert "signature" in upd.stdout.lower() or "NO_PUBKEY" in upd.stdout or "BADSIG" in upd.stdout


def test_apt_installs_own_architecture_all_packages_merged_into_a_mirror(
    tmp_path: Path,
    upstream: FaultServer,
    archive: Archive,
    publish_key: TestKey,
    apt_client: AptClient,
) -> None:
    # Your own Architecture: all packages beside a frozen upstream, and a suite of only such
    # packages: apt must find them (it reads all packages from binary-ARCH) without a warning.
    store = tmp_path / "store"
    out = tmp_path / "published"
    _mirror_snapshot_publish(store, upstream, archive, publish_key, out)
    own = tmp_path / "own"
    build_deb(own, "site-config", "1.0", "all", depends="hello")
    build_deb(own, "site-motd", "1.0", "all")
    r = run_cli(store, "snapshot", "create", "local", "--from-debs", str(own))
    assert r.exit_code == 0, r.output
    assert run_cli(store, "snapshot", "merge", "both", "snap1", "local").exit_code == 0
    for name in ("both", "local"):
        r = run_cli(store, "publish", "fs", name, str(out), "--key", publish_key.fingerprint,
                    gnupghome=publish_key.gnupghome)  # fmt: skip
        assert r.exit_code == 0, r.output
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    only_all = AptClient(tmp_path / "aptroot-local")
    with FaultServer(out) as srv:
        for client, suite, package in (
            (apt_client, "both", "site-config"),
            (only_all, "local", "site-motd"),
        ):
            client.add_source(srv.url, suite, ["main"], key)
            upd = client.update()
            assert upd.returncode == 0, upd.stdout
            problems = [line for line in upd.stdout.splitlines() if line.startswith(("W:", "E:"))]
            assert not problems, upd.stdout
            inst = client.install_download_only(package)
            assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
                                       "site-config_1.0_all.deb"]  # fmt: skip
    assert only_all.downloaded() == ["site-motd_1.0_all.deb"]
