"""The command-line contract (shared/cli.md) where a user or a script would notice a breach:
-q, --json, exit codes, names, and options that must not be silently ignored. Unexpected
exceptions are not caught here (run_cli): a traceback fails the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.archive import Archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


@pytest.fixture
def store(tmp_path: Path, upstream: FaultServer, archive: Archive) -> Path:
    """A store with mirror ``up`` updated and snapshot ``snap`` of it."""
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", upstream.url, "stable",
                "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_cli(store, "mirror", "update", "up").exit_code == 0
    assert run_cli(store, "snapshot", "create", "snap", "--from-mirror", "up").exit_code == 0
    return store


def test_quiet_prints_results_and_errors_only(
    store: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    out = tmp_path / "out"
    r = run_cli(store, "-q", "publish", "fs", "snap", str(out), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    assert "Suites: snap" in r.stdout  # the client's stanza is the result
    r = run_cli(store, "-q", "snapshot", "verify", "snap")
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
    bundle = tmp_path / "snap.bundle"
    r = run_cli(store, "-q", "bundle", "export", "snap", "-o", str(bundle), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0 and r.stderr == "" and r.stdout.strip() == str(bundle)
    r = run_cli(tmp_path / "other", "-q", "bundle", "import", str(bundle), "--keyring",
                str(publish_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0 and r.stderr == "" and "imported snapshot snap" in r.stdout


def test_why_and_gc_report_in_json(store: Path) -> None:
    r = run_cli(store, "snapshot", "filter", "snap", "web", "hello", "--with-deps")
    assert r.exit_code == 0, r.output
    r = run_cli(store, "snapshot", "why", "web", "libgreet", "--json")
    assert r.exit_code == 0, r.output
    chain = json.loads(r.stdout)
    assert chain[0] == {"package": "hello_1.0_amd64", "dependency": None}
    assert chain[-1]["package"] == "libgreet_1.0_amd64" and "libgreet" in chain[-1]["dependency"]
    r = run_cli(store, "gc", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["dry_run"] is True and report["pool_files"] == 0 and report["removed"] == []


def test_snapshot_and_channel_names_never_collide(store: Path, tmp_path: Path) -> None:
    # publish and bundle export take either; a name that is both would be ambiguous.
    assert run_cli(store, "channel", "set", "prod", "snap").exit_code == 0
    deb = build_deb(tmp_path / "own", "site-motd")
    r = run_cli(store, "snapshot", "create", "prod", "--from-debs", str(deb))
    assert r.exit_code == 1 and "'prod' is a channel name" in r.stderr
    r = run_cli(store, "snapshot", "merge", "prod", "snap")
    assert r.exit_code == 1 and "'prod' is a channel name" in r.stderr
    r = run_cli(store, "snapshot", "filter", "snap", "prod", "hello")
    assert r.exit_code == 1 and "'prod' is a channel name" in r.stderr
    r = run_cli(store, "snapshot", "create", "prod", "--from-mirror", "up")
    assert r.exit_code == 1 and "'prod' is a channel name" in r.stderr
    r = run_cli(store, "channel", "set", "snap", "snap")
    assert r.exit_code == 1 and "'snap' is a snapshot name" in r.stderr
    r = run_cli(store, "channel", "set", "bad/name", "snap")
    assert r.exit_code == 2 and "invalid channel name 'bad/name'" in r.stderr


def test_a_snapshot_record_naming_another_snapshot_is_refused(store: Path) -> None:
    record = store / "snapshots" / "snap" / "snapshot.json"
    record.chmod(0o644)
    record.write_text(record.read_text().replace('"name": "snap"', '"name": "other"'))
    r = run_cli(store, "snapshot", "show", "snap")
    assert r.exit_code == 1
    assert "is not snapshot snap's (it names 'other')" in r.stderr and "hint:" in r.stderr


def test_snapshot_create_from_several_debs(tmp_path: Path) -> None:
    debs = [build_deb(tmp_path / "own", name) for name in ("one", "two", "three")]
    store = tmp_path / "store"
    r = run_cli(store, "snapshot", "create", "own", "--from-debs", str(debs[0]), str(debs[1]),
                "--from-debs", str(debs[2]))  # fmt: skip
    assert r.exit_code == 0 and "(3 packages)" in r.stdout, r.output


def test_options_that_would_be_ignored_are_usage_errors(
    store: Path, tmp_path: Path, archive: Archive, publish_key: TestKey
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text("")
    deb = build_deb(tmp_path / "own", "site-motd")
    cases = [
        (("snapshot", "create", "x", "--from-mirror", "up", "--from-debs", str(deb)), "not both"),
        (("snapshot", "create", "x", "--from-mirror", "up", "--component", "c"), "--component"),
        (("snapshot", "create", "", "--from-mirror", "up"), "the snapshot name is empty"),
        (("mirror", "add", "n", "http://x", "s", "--profile", str(profile)), "--profile"),
        (("snapshot", "filter", "snap", "d", "hello", "--with-recommends"), "--with-deps"),
        (("serve", str(tmp_path), "--port", "99999"), "99999"),
    ]
    for args, needle in cases:
        r = run_cli(store, *args)
        assert r.exit_code == 2 and needle in r.stderr, (args, r.output)
    r = run_cli(tmp_path / "p.toml", "mirror", "list")
    assert r.exit_code == 2 and "not a directory" in r.stderr
    r = run_cli(store, "publish", "fs", "snap", str(profile), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1 and f"{profile}: not a directory" in r.stderr
    r = run_cli(store, "publish", "fs", "snap", str(tmp_path / "o"),
                gnupghome=tmp_path / "no-gnupg")  # fmt: skip
    assert r.exit_code == 2 and "--gnupghome" in r.stderr and "no such directory" in r.stderr


def test_bundle_verify_with_the_wrong_keyring_says_so(
    store: Path, tmp_path: Path, archive: Archive, publish_key: TestKey
) -> None:
    bundle = tmp_path / "snap.bundle"
    r = run_cli(store, "bundle", "export", "snap", "-o", str(bundle), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "bundle", "verify", str(bundle), "--keyring",
                str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 1 and "--keyring does not hold the key" in r.stderr, r.stderr


def test_mirror_show_says_its_filter(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "web", upstream.url, "stable", "--keyring",
                str(archive.key.public_keyring), "--filter", "hello", "--with-deps")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "show", "web")
    assert r.exit_code == 0 and "Filter: hello --with-deps\n" in r.stdout, r.stdout


def test_snapshot_list_shows_the_readable_ones_and_names_a_damaged_record(store: Path) -> None:
    assert run_cli(store, "snapshot", "create", "second", "--from-mirror", "up").exit_code == 0
    record = store / "snapshots" / "snap" / "snapshot.json"
    record.chmod(0o644)
    record.write_text("{not json")
    r = run_cli(store, "snapshot", "list")
    assert r.exit_code == 1
    assert r.stdout.startswith("second\t")
    assert f"error: {record}: corrupt JSON" in r.stderr
    # gc must know every snapshot: it stops instead.
    r = run_cli(store, "gc", "--dry-run")
    assert r.exit_code == 1 and "corrupt JSON" in r.stderr
