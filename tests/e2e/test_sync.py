"""The main job, as a user runs it: `mirrorkit sync PROFILE` (real process, real apt client)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive, build_archive, build_flat_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


def _mirrorkit(store: Path, *args: str, gnupghome: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIRRORKIT_HOME": str(store), "GNUPGHOME": str(gnupghome)}
    return subprocess.run(
        [sys.executable, "-m", "mirrorkit", *args], env=env, capture_output=True, text=True
    )


def _upstream(url: str, keyring: Path | str, name: str = "base") -> str:
    """One [[upstream]] table of suite stable."""
    return (
        f'[[upstream]]\nname = "{name}"\nurl = "{url}"\nsuite = "stable"\nkeyring = "{keyring}"\n'
    )


def test_sync_merges_security_updates_and_apt_installs_them(
    tmp_path: Path,
    upstream: FaultServer,
    archive: Archive,
    test_key: TestKey,
    publish_key: TestKey,
    make_server: Callable[[Path], FaultServer],
    apt_client: AptClient,
) -> None:
    fixed = build_deb(tmp_path / "debs", "hello", "1.0+deb1", "amd64", depends="libgreet (>= 1.0)")
    security = build_archive(
        tmp_path / "security", test_key, {"main": [fixed]}, suite="stable-security",
        codename="stable-security", release_components={"main": "updates/main"}, md5sum=False,
    )  # fmt: skip
    sec_srv = make_server(security.root)
    profile = tmp_path / "profiles" / "test.toml"
    profile.parent.mkdir()
    profile.write_text(
        f"""
[[upstream]]
name = "base"
url = "{upstream.url}"
suite = "stable"
components = ["main"]
architectures = ["amd64"]
keyring = "{test_key.public_keyring}"
fingerprints = ["{test_key.fingerprint}"]

[[upstream]]
name = "base-security"
url = "{sec_srv.url}"
suite = "stable-security"
components = ["main"]
keyring = "{test_key.public_keyring}"

[snapshot]
name = "test-{{date}}"
merge = "latest"

[publish]
fs = "../published"
suite = "stable"
key = "{publish_key.fingerprint}"
"""
    )
    store = tmp_path / "store"
    r = _mirrorkit(store, "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r.returncode == 0, r.stderr
    assert "snapshot: test-" in r.stdout and "Suites: stable" in r.stdout
    assert "base-security: 1 package; fetched 1 file" in r.stderr

    out = tmp_path / "published"
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    # Over HTTP: with a file: URI apt uses the .debs in place instead of downloading them.
    apt_client.add_source(make_server(out).url, "stable", ["main"], key)
    assert apt_client.update().returncode == 0
    inst = apt_client.install_download_only("hello")
    assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["hello_1.0+deb1_amd64.deb", "libgreet_1.0_amd64.deb"]

    # A second sync of unchanged upstreams downloads nothing and makes no new snapshot (issue
    # 13; it made a new dated one before): it names the one the first sync made.
    name = r.stdout.split()[1]
    published = sorted(p.stat().st_mtime_ns for p in out.rglob("*Release"))
    r2 = _mirrorkit(store, "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r2.returncode == 0, r2.stderr
    assert r2.stderr.count("unchanged") == 2
    assert r2.stdout == f"unchanged: {name}\n"
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*Release")) == published
    # --force-snapshot: a new dated snapshot all the same, as every sync made before.
    r2 = _mirrorkit(store, "sync", str(profile), "--force-snapshot",
                    gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r2.returncode == 0, r2.stderr
    assert r2.stderr.count("unchanged") == 2
    assert "-2 (" in r2.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[filter]\nquery = "hello (>= "\n', "filter.query: query: expected a value and ')'"),
        ('[publish]\ns3 = "s3://bucket/apt"\n', "publish.key: no secret key in"),
        (  # the bucket is checked before downloading: here no credentials are configured
            '[publish]\ns3 = "s3://bucket/apt"\nendpoint_url = "http://127.0.0.1:9"\n',
            "publish.s3: s3://bucket/apt (at http://127.0.0.1:9): no S3 credentials found",
        ),
        ('[publish]\nfs = "out"\n', "publish.key: no secret key in"),
    ],
)
def test_sync_refuses_bad_or_unsupported_profiles_before_downloading(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey, extra: str, message: str
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(_upstream(upstream.url, test_key.public_keyring) + "\n" + extra)
    home = test_key.gnupghome  # its one secret key is the default signing key...
    if "publish.key" in message:
        home = tmp_path / "gnupg"  # ...and here there is none
        home.mkdir(mode=0o700)
    r = run_cli(tmp_path / "store", "sync", str(profile), gnupghome=home)
    assert r.exit_code != 0 and message in r.stderr
    assert upstream.requests == []


def test_flat_repository_round_trip(
    tmp_path: Path,
    test_key: TestKey,
    publish_key: TestKey,
    debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
    apt_client: AptClient,
) -> None:
    root = tmp_path / "flatrepo"
    build_flat_archive(root, test_key, list(debs_dir.values()), subdir="flat")
    srv = make_server(root)
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "flat", srv.url, "flat/",
                "--keyring", str(test_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", "flat")
    assert r.exit_code == 0, r.output
    assert run_cli(store, "snapshot", "create", "f", "--from-mirror", "flat").exit_code == 0
    out = tmp_path / "out"
    r = run_cli(store, "publish", "fs", "f", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    key = next(out.glob("mirrorkit-*.gpg"))
    apt_client.add_source(make_server(out).url, "f", ["main"], key)
    assert apt_client.update().returncode == 0
    inst = apt_client.install_download_only("virt-user")
    assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["mta-one_1.0_all.deb", "virt-user_1.0_all.deb"]


def test_sync_points_a_channel_and_publishes_it(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey, publish_key: TestKey
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        _upstream(upstream.url, test_key.public_keyring)
        + f"""
[snapshot]
name = "nightly-{{date}}"

[publish]
fs = "out"
key = "{publish_key.fingerprint}"
channel = "dev"
"""
    )
    store = tmp_path / "store"
    r = run_cli(store, "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r.exit_code == 0, r.output
    name = r.stdout.split()[1]
    assert run_cli(store, "channel", "list").stdout.split()[:2] == ["dev", name]
    assert "Suites: dev" in r.stdout
    assert (tmp_path / "out" / "dists" / "dev" / "InRelease").is_file()

    # A publish that fails leaves the channel where it was: it never points at a snapshot its
    # suite does not serve.
    (tmp_path / "blocked").write_text("a file, not a directory\n")
    profile.write_text(profile.read_text().replace('fs = "out"', 'fs = "blocked"'))
    r = run_cli(store, "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r.exit_code == 1, r.output
    assert "blocked: not a directory" in r.stderr
    assert "was created, not published" in r.stderr and "channel dev was not moved" in r.stderr
    assert run_cli(store, "channel", "list").stdout.split()[:2] == ["dev", name]
    history = run_cli(store, "channel", "history", "dev").stdout.splitlines()
    assert len(history) == 1


def test_sync_signs_with_the_only_secret_key_when_the_profile_names_none(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey, publish_key: TestKey
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        _upstream(upstream.url, test_key.public_keyring)
        + '\n[publish]\nfs = "out"\nsuite = "prod"\n'
    )
    r = run_cli(tmp_path / "store", "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "dists" / "prod" / "InRelease").is_file()
    assert f"mirrorkit-archive-{publish_key.fingerprint[-16:].lower()}.gpg" in r.stdout


def test_sync_checks_every_keyring_before_touching_a_mirror(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        _upstream(upstream.url, test_key.public_keyring)
        + _upstream(upstream.url, "missing.gpg", name="extra")
    )
    store = tmp_path / "store"
    r = run_cli(store, "sync", str(profile))
    assert r.exit_code == 1, r.output
    assert f"{profile}: upstream[1].keyring: {tmp_path / 'missing.gpg'}: no such file" in r.stderr
    assert upstream.requests == [] and not (store / "mirrors").exists()


def test_a_mirror_name_reused_for_another_upstream_starts_afresh(
    tmp_path: Path,
    upstream: FaultServer,
    test_key: TestKey,
    make_server: Callable[[Path], FaultServer],
) -> None:
    # Two profiles both call their upstream "base": the second one's Release must not be
    # judged against the first one's Date (a rollback), nor reuse its state.
    store = tmp_path / "store"
    old = build_archive(tmp_path / "old", test_key, {"main": [build_deb(tmp_path / "d", "x")]},
                       suite="stable", date="Sat, 01 Jan 2000 00:00:00 UTC")  # fmt: skip
    other = make_server(old.root)
    for n, url in enumerate((upstream.url, other.url)):
        profile = tmp_path / f"p{n}.toml"
        profile.write_text(_upstream(url, test_key.public_keyring))
        r = run_cli(store, "sync", str(profile), "--no-publish")
        assert r.exit_code == 0, r.output
    assert "(1 package)" in r.stdout
