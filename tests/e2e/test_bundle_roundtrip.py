"""Across the air gap and back to apt: mirror, bundle, import where there is no upstream,
publish, and real apt-get (signature checking on) installs; then an incremental, split bundle
moves prod to the next snapshot."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey, kill_agents, make_key
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def transfer_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    """The key the connected side signs bundles with (neither upstream's nor the publisher's)."""
    key = make_key(tmp_path_factory.mktemp("transfer-key"), uid="Transfer <xfer@example.org>")
    yield key
    kill_agents(key)


def _ok(store: Path, *args: str, **kw: Path) -> str:
    r = run_cli(store, *args, **kw)
    assert r.exit_code == 0, r.output
    return r.stdout + r.stderr


def _candidate(apt: AptClient, pkg: str) -> str:
    m = re.search(r"Candidate: (\S+)", apt.policy(pkg).stdout)
    assert m
    return m.group(1)


def test_bundle_carries_snapshots_across_the_gap_to_apt(
    tmp_path: Path,
    upstream: FaultServer,
    archive: Archive,
    debs_dir: dict[str, Path],
    transfer_key: TestKey,
    publish_key: TestKey,
    make_server: Callable[[Path], FaultServer],
) -> None:
    connected, airgapped = tmp_path / "connected", tmp_path / "airgapped"
    carry = tmp_path / "usb-disk"

    def export(*args: str) -> str:
        return _ok(connected, "bundle", "export", *args, "--key", transfer_key.fingerprint,
                   gnupghome=transfer_key.gnupghome)  # fmt: skip

    # The connected side: mirror, snapshot, pin prod, bundle.
    _ok(connected, "mirror", "add", "up", upstream.url, "stable", "--keyring",
        str(archive.key.public_keyring))  # fmt: skip
    _ok(connected, "mirror", "update", "up")
    _ok(connected, "snapshot", "create", "v1", "--from-mirror", "up")
    _ok(connected, "channel", "set", "prod", "v1")
    export("v1", "--channel", "prod", "-o", str(carry / "v1.bundle"))

    # Upstream moves on; the next bundle carries only what changed, in parts.
    newer = build_deb(tmp_path / "debs", "hello", "1.1", "amd64", depends="libgreet (>= 1.0)")
    debs = [p for n, p in debs_dir.items() if n != "hello"] + [newer]
    build_archive(archive.root, archive.key, {"main": debs}, suite="stable", codename="stable",
                  date="Sat, 01 Jan 2050 00:00:00 UTC")  # fmt: skip
    _ok(connected, "mirror", "update", "up")
    _ok(connected, "snapshot", "create", "v2", "--from-mirror", "up")
    _ok(connected, "channel", "set", "prod", "v2")
    export("v2", "--since", "v1", "--channel", "prod", "--split", "2000",
           "-o", str(carry / "v2.bundle"))  # fmt: skip
    parts = sorted(carry.glob("v2.bundle.0*"))
    assert len(parts) > 1 and all(p.stat().st_size <= 2000 for p in parts)
    upstream.stop()  # from here on there is no network to speak of

    # The air-gapped side: verify, import, publish, install.
    keyring = str(transfer_key.public_keyring)
    assert "OK" in _ok(airgapped, "bundle", "verify", str(carry / "v1.bundle"), "--keyring",
                       keyring)  # fmt: skip
    text = _ok(airgapped, "bundle", "import", str(carry / "v1.bundle"), "--keyring", keyring)
    assert "imported snapshot v1" in text and "channel prod -> v1" in text
    out = tmp_path / "published"

    def publish() -> None:
        _ok(airgapped, "publish", "fs", "prod", str(out), "--key", publish_key.fingerprint,
            gnupghome=publish_key.gnupghome)  # fmt: skip

    publish()
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    srv = make_server(out)
    apt = AptClient(tmp_path / "client")
    apt.add_source(srv.url, "prod", ["main"], key)
    upd = apt.update()
    assert upd.returncode == 0, upd.stdout
    inst = apt.install_download_only("hello", "tool")
    assert inst.returncode == 0, inst.stdout
    assert apt.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
                                "tool_2.0_amd64.deb"]  # fmt: skip

    text = _ok(airgapped, "bundle", "import", str(parts[0]), "--keyring", keyring)
    assert "imported snapshot v2" in text and "channel prod -> v2" in text
    assert "1 pool object added" in text  # only hello 1.1 crossed the gap
    publish()
    assert apt.update().returncode == 0
    assert _candidate(apt, "hello") == "1.1"
    inst = apt.install_download_only("hello")
    assert inst.returncode == 0, inst.stdout
    assert "hello_1.1_amd64.deb" in apt.downloaded()
    assert run_cli(airgapped, "snapshot", "show", "v2").exit_code == 0  # intact
