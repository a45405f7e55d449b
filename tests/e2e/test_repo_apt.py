"""Local repos end to end with real apt: the CI flow (add, publish, prune, roll back), and a
suite made of a frozen upstream and your own packages, one component each."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


def _ok(store: Path, *args: str, key: TestKey | None = None) -> str:
    r = run_cli(store, *args, gnupghome=key.gnupghome if key else None)
    assert r.exit_code == 0, r.output
    return r.stdout + r.stderr


def _versions(apt: AptClient, pkg: str) -> tuple[str, list[str]]:
    out = apt.policy(pkg).stdout
    m = re.search(r"Candidate: (\S+)", out)
    assert m, out
    table = out.split("Version table:", 1)[-1]
    return m.group(1), re.findall(r"^\s+(?:\*\*\* )?(\d\S*) \d+", table, re.M)


def test_ci_flow_add_publish_prune_rollback(
    tmp_path: Path, publish_key: TestKey, make_server: Callable[[Path], FaultServer],
    apt_client: AptClient,
) -> None:  # fmt: skip
    store, out, debs = tmp_path / "store", tmp_path / "out", tmp_path / "debs"
    _ok(store, "repo", "create", "ourapps", "--distribution", "ci")
    _ok(store, "repo", "add", "ourapps", str(build_deb(debs, "app", "1.0", "amd64")))
    _ok(store, "repo", "add", "ourapps", str(build_deb(debs, "app", "2.0", "amd64")))
    text = _ok(store, "publish", "fs", "ourapps", str(out), "--key", publish_key.fingerprint,
               key=publish_key)  # fmt: skip
    assert "Suites: ci" in text
    srv = make_server(out)
    apt_client.add_source(srv.url, "ci", ["main"], next(out.glob("mirrorkit-archive-*.gpg")))
    assert apt_client.update().returncode == 0
    assert _versions(apt_client, "app") == ("2.0", ["2.0", "1.0"])
    inst = apt_client.install_download_only("app")
    assert inst.returncode == 0 and apt_client.downloaded() == ["app_2.0_amd64.deb"]

    # Prune and publish in one step: the suite follows the repo.
    text = _ok(store, "repo", "prune", "ourapps", "--keep", "1", "--publish", key=publish_key)
    assert "published ourapps+3 as suite ci" in text
    assert apt_client.update().returncode == 0
    assert _versions(apt_client, "app") == ("2.0", ["2.0"])
    assert not (out / "pool/main/a/app/app_1.0_amd64.deb").exists()

    # Roll back the prune: apt sees the older version again; then back to entry 1.
    _ok(store, "repo", "rollback", "ourapps", "--publish", key=publish_key)
    assert apt_client.update().returncode == 0
    assert _versions(apt_client, "app") == ("2.0", ["2.0", "1.0"])
    _ok(store, "repo", "rollback", "ourapps", "--to", "1", "--publish", key=publish_key)
    assert apt_client.update().returncode == 0
    assert _versions(apt_client, "app") == ("1.0", ["1.0"])


def test_a_suite_of_a_frozen_upstream_and_own_packages(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    make_server: Callable[[Path], FaultServer], apt_client: AptClient,
) -> None:  # fmt: skip
    store, out, debs = tmp_path / "store", tmp_path / "out", tmp_path / "debs"
    _ok(store, "mirror", "add", "up", upstream.url, "stable", "--keyring",
        str(archive.key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", "up-1", "--from-mirror", "up")
    _ok(store, "repo", "create", "own")
    # Our package needs a library that only the mirrored upstream has.
    own = build_deb(debs, "own-tool", "1.0", "amd64", depends="libgreet (>= 1.0)")
    _ok(store, "repo", "add", "own", str(own))
    text = _ok(store, "publish", "fs", "--component", "main=up-1", "--component",
               "internal=own", str(out), "--suite", "mixed", "--key",
               publish_key.fingerprint, key=publish_key)  # fmt: skip
    assert "Components: internal main" in text
    srv = make_server(out)
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    apt_client.add_source(srv.url, "mixed", ["main", "internal"], key)
    assert apt_client.update().returncode == 0
    inst = apt_client.install_download_only("own-tool", "hello")
    assert inst.returncode == 0, inst.stdout
    got = apt_client.downloaded()
    assert "own-tool_1.0_amd64.deb" in got and "libgreet_1.0_amd64.deb" in got
    assert "hello_1.0_amd64.deb" in got

    # A new build with --publish: the mixed suite follows the repo, the upstream stays.
    newer = build_deb(debs, "own-tool", "1.1", "amd64", depends="libgreet (>= 1.0)")
    text = _ok(store, "repo", "add", "own", str(newer), "--publish", key=publish_key)
    assert "as suite mixed" in text
    assert apt_client.update().returncode == 0
    assert _versions(apt_client, "own-tool")[0] == "1.1"
    assert _versions(apt_client, "hello")[0] == "1.0"
    assert (out / "pool/internal/o/own-tool/own-tool_1.1_amd64.deb").exists()
