"""mmdebstrap is a client too: a snapshot holding the required set bootstraps a system."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.archive import build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

# mmdebstrap is one of the tools tests/conftest.py requires before the session starts.
pytestmark = [pytest.mark.e2e]


def test_mmdebstrap_minbase_from_published_snapshot(
    tmp_path: Path, test_key: TestKey, publish_key: TestKey
) -> None:
    debs = tmp_path / "debs"
    # A tiny "required set": no maintainer scripts, so chrootless mode (the host's dpkg) can
    # install it without root-only chroot tricks.
    packages = [
        build_deb(debs, "base-one", "1.0", "amd64", essential=True, priority="required"),
        build_deb(debs, "base-two", "1.0", "all", priority="required", depends="base-one"),
        build_deb(debs, "apt", "9.9", "amd64", priority="required", depends="base-one"),
        build_deb(debs, "extra", "1.0", "all", priority="optional"),
    ]
    up = build_archive(tmp_path / "up", test_key, {"main": packages}, suite="stable",
                       codename="stable")  # fmt: skip
    store, out = tmp_path / "store", tmp_path / "out"
    with FaultServer(up.root) as srv:
        r = run_cli(store, "mirror", "add", "base", srv.url, "stable",
                    "--keyring", str(test_key.public_keyring))  # fmt: skip
        assert r.exit_code == 0, r.output
        assert run_cli(store, "mirror", "update", "base").exit_code == 0
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "base").exit_code == 0
    r = run_cli(store, "publish", "fs", "s", str(out), "--suite", "stable",
                "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    key = next(out.glob("mirrorkit-archive-*.gpg"))

    target = tmp_path / "target"
    with FaultServer(out) as srv:
        proc = subprocess.run(
            ["mmdebstrap", "--mode=chrootless", "--variant=minbase", "--skip=check/empty",
             '--aptopt=Acquire::http::Proxy "DIRECT"', "stable", str(target),
             f"deb [signed-by={key}] {srv.url} stable main"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = (target / "var/lib/dpkg/status").read_text()
    installed = {
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in status.split("\n\n")
        if "Status: install ok installed" in block
    }
    assert installed == {"base-one", "base-two", "apt"}
