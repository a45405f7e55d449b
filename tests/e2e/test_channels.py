"""Channels end to end: staging and prod in one tree, promote, roll back — real apt each time."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


def _ok(store: Path, *args: str, **kw: Path) -> str:
    r = run_cli(store, *args, **kw)
    assert r.exit_code == 0, r.output
    return r.stdout + r.stderr


def _candidate(apt: AptClient, pkg: str) -> str:
    out = apt.policy(pkg).stdout
    m = re.search(r"Candidate: (\S+)", out)
    assert m, out
    return m.group(1)


def test_promote_and_roll_back_prod(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path],
    publish_key: TestKey, make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    store, out = tmp_path / "store", tmp_path / "out"
    _ok(store, "mirror", "add", "up", upstream.url, "stable", "--keyring",
        str(archive.key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", "v1", "--from-mirror", "up")
    newer = build_deb(tmp_path / "debs", "hello", "1.1", "amd64", depends="libgreet (>= 1.0)")
    debs = [p for n, p in debs_dir.items() if n != "hello"] + [newer]
    build_archive(archive.root, archive.key, {"main": debs}, suite="stable", codename="stable",
                  date="Sat, 01 Jan 2050 00:00:00 UTC")  # fmt: skip
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", "v2", "--from-mirror", "up")

    def publish(channel: str) -> str:
        return _ok(store, "publish", "fs", channel, str(out), "--key", publish_key.fingerprint,
                   gnupghome=publish_key.gnupghome)  # fmt: skip

    _ok(store, "channel", "set", "prod", "v1")
    _ok(store, "channel", "set", "staging", "v2")
    publish("prod")
    publish("staging")
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    srv = make_server(out)
    prod, staging = AptClient(tmp_path / "prod-client"), AptClient(tmp_path / "staging-client")
    prod.add_source(srv.url, "prod", ["main"], key)
    staging.add_source(srv.url, "staging", ["main"], key)
    for client in (prod, staging):
        assert client.update().returncode == 0
    assert _candidate(prod, "hello") == "1.0"
    assert _candidate(staging, "hello") == "1.1"
    assert sorted(p.name for p in (out / "pool/main/h/hello").iterdir()) == [
        "hello_1.0_amd64.deb", "hello_1.1_amd64.deb"]  # fmt: skip

    # Promote: prod follows staging; clients never change their sources.
    _ok(store, "channel", "set", "prod", "v2")
    text = publish("prod")
    assert "removed 1 pool file no suite needs any more" in text  # hello 1.0
    assert prod.update().returncode == 0
    assert _candidate(prod, "hello") == "1.1"
    inst = prod.install_download_only("hello")
    assert inst.returncode == 0 and "hello_1.1_amd64.deb" in prod.downloaded()

    # Roll back: one command, one publish, apt sees the old version again.
    assert "prod -> v1" in _ok(store, "channel", "rollback", "prod")
    publish("prod")
    assert prod.update().returncode == 0
    assert _candidate(prod, "hello") == "1.0"
    assert _candidate(staging, "hello") == "1.1"
