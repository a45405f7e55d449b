"""Dependency-closed filtering end to end: only the closure is downloaded, and real apt installs
the requested packages from the published tree with nothing else available."""

from __future__ import annotations

import json
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


def test_filtered_mirror_downloads_the_closure_and_apt_installs_from_it(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    make_server: Callable[[Path], FaultServer], apt_client: AptClient,
) -> None:  # fmt: skip
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", upstream.url, "stable", "--keyring",
                str(archive.key.public_keyring), "--filter", "hello | virt-user",
                "--with-deps")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 0, r.output
    # hello -> libgreet; virt-user -> mail-transport-agent, provided by mta-one.
    assert "4 packages; fetched 4 files" in r.stdout
    assert upstream.count("*.deb") == 4
    assert "filter 'hello | virt-user': 2 matched, 4 with dependencies" in r.stderr

    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    refs = run_cli(store, "snapshot", "search", "s", "Name").stdout.split()
    assert refs == ["hello_1.0_amd64", "libgreet_1.0_amd64", "mta-one_1.0_all",
                    "virt-user_1.0_all"]  # fmt: skip
    assert run_cli(store, "snapshot", "verify", "s").exit_code == 0
    why = run_cli(store, "snapshot", "why", "s", "mta-one").stdout.splitlines()
    assert why == ["virt-user_1.0_all  (matches the filter)",
                   "  mta-one_1.0_all  (for: mail-transport-agent)"]  # fmt: skip

    out = tmp_path / "out"
    r = run_cli(store, "publish", "fs", "s", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    srv = make_server(out)
    apt_client.add_source(srv.url, "s", ["main"], next(out.glob("mirrorkit-*.gpg")))
    assert apt_client.update().returncode == 0
    inst = apt_client.install_download_only("hello", "virt-user")
    assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
                                       "mta-one_1.0_all.deb", "virt-user_1.0_all.deb"]  # fmt: skip
    # Nothing else is there to install.
    assert apt_client.install_download_only("tool").returncode != 0


def test_sync_resolves_the_filter_across_upstreams(
    tmp_path: Path, upstream: FaultServer, archive: Archive, test_key: TestKey,
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    fixed = build_deb(tmp_path / "debs", "libgreet", "1.0+deb1", "amd64", section="libs")
    security = build_archive(tmp_path / "sec", test_key, {"main": [fixed]},
                             suite="stable-security", codename="stable-security",
                             release_components={"main": "updates/main"})  # fmt: skip
    sec_srv = make_server(security.root)
    profile = tmp_path / "p.toml"
    profile.write_text(
        f"""
[[upstream]]
name = "base"
url = "{upstream.url}"
suite = "stable"
keyring = "{test_key.public_keyring}"

[[upstream]]
name = "security"
url = "{sec_srv.url}"
suite = "stable-security"
keyring = "{test_key.public_keyring}"

[snapshot]
name = "frozen-{{date}}"
merge = "latest"

[filter]
query = "hello"
with_deps = true
"""
    )
    store = tmp_path / "store"
    r = run_cli(store, "sync", str(profile))
    assert r.exit_code == 0, r.output
    # base downloads hello only: libgreet comes from security, whose fix wins.
    assert "base: 1 package; fetched 1 file" in r.stderr
    assert "security: 1 package; fetched 1 file" in r.stderr
    assert upstream.count("*libgreet*") == 0
    name = r.stdout.split()[1]
    refs = run_cli(store, "snapshot", "search", name, "Name").stdout.split()
    assert refs == ["hello_1.0_amd64", "libgreet_1.0+deb1_amd64"]
    shown = json.loads(run_cli(store, "snapshot", "show", name, "--json").stdout)
    assert {s["filter"] for s in shown["sources"]} == {"hello"}

    # Unchanged upstreams and filter: nothing is fetched but the two InRelease files.
    upstream.clear_log()
    r = run_cli(store, "sync", str(profile))
    assert r.exit_code == 0 and r.stderr.count("unchanged") == 2
    assert [path for _, path, _ in upstream.requests] == ["/dists/stable/InRelease"]


def test_unmet_dependencies_fail_the_filter_unless_allowed(
    tmp_path: Path, test_key: TestKey, make_server: Callable[[Path], FaultServer]
) -> None:
    debs = tmp_path / "debs"
    up = build_archive(tmp_path / "up", test_key, {"main": [
        build_deb(debs, "app", "1.0", "amd64", depends="gone (>= 2) | also-gone, present"),
        build_deb(debs, "present", "1.0", "all"),
    ]}, suite="stable", codename="stable")  # fmt: skip
    srv = make_server(up.root)
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", srv.url, "stable", "--keyring",
                str(test_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0
    assert run_cli(store, "mirror", "update", "up").exit_code == 0
    assert run_cli(store, "snapshot", "create", "all", "--from-mirror", "up").exit_code == 0
    r = run_cli(store, "snapshot", "filter", "all", "f", "app", "--with-deps")
    assert r.exit_code == 1
    assert "app_1.0_amd64: gone (>= 2) | also-gone: no package gone; no package also-gone" in (
        r.stderr
    )
    assert "--allow-missing" in r.stderr
    r = run_cli(store, "snapshot", "filter", "all", "f", "app", "--with-deps", "--allow-missing")
    assert r.exit_code == 0 and "warning: unmet: app_1.0_amd64" in r.stderr
    r = run_cli(store, "snapshot", "verify", "f")
    assert r.exit_code == 1 and "app_1.0_amd64: gone (>= 2) | also-gone" in r.stdout
    r = run_cli(store, "snapshot", "search", "all", "app (>= ")
    assert r.exit_code == 2 and "expected" in r.stderr and "^" in r.stderr
