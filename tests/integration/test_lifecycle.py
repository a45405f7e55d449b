"""Snapshot lifecycle: diff, channels, your own packages, retention (rm, gc)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from mirrorkit import garbage as gc
from mirrorkit.errors import StoreLockedError
from mirrorkit.store import Store
from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


def _ok(store: Path, *args: str, **kw: Path) -> str:
    r = run_cli(store, *args, **kw)
    assert r.exit_code == 0, r.output
    return r.stdout


def _mirror_and_snapshot(store: Path, srv: FaultServer, archive: Archive, name: str) -> None:
    if not (store / "mirrors" / "up.json").exists():
        _ok(store, "mirror", "add", "up", srv.url, "stable", "--keyring",
            str(archive.key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", name, "--from-mirror", "up")


def _upgrade(archive: Archive, tmp_path: Path, debs: dict[str, Path]) -> None:
    """Upstream moves on: hello 1.1, tool 1.5 (a downgrade), libalt gone, newpkg added."""
    d = tmp_path / "newdebs"
    new = [
        build_deb(d, "hello", "1.1", "amd64", depends="libgreet (>= 1.0)"),
        build_deb(d, "tool", "1.5", "amd64", depends="libgreet | libalt"),
        build_deb(d, "newpkg", "0.1", "all"),
    ]
    keep = [p for n, p in debs.items() if n not in ("hello", "tool", "libalt")]
    build_archive(archive.root, archive.key, {"main": keep + new}, suite="stable",
                  codename="stable", date="Sat, 01 Jan 2050 00:00:00 UTC")  # fmt: skip


def test_diff_reports_every_kind_of_change(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    _mirror_and_snapshot(store, upstream, archive, "a")
    _upgrade(archive, tmp_path, debs_dir)
    _mirror_and_snapshot(store, upstream, archive, "b")
    text = _ok(store, "snapshot", "diff", "a", "b").splitlines()
    assert text[0] == "1 added, 1 removed, 1 upgraded, 1 downgraded, 0 changed  (a -> b)"
    assert [line.split()[:2] for line in text[1:]] == [
        ["added", "newpkg"], ["removed", "libalt"], ["upgraded", "hello"], ["downgraded", "tool"]
    ]  # fmt: skip
    assert "1.0" in text[3] and "1.1" in text[3]  # old and new versions, aligned
    data = json.loads(_ok(store, "snapshot", "diff", "a", "b", "--json"))
    assert data["upgraded"] == [{"name": "hello", "architecture": "amd64", "old": "1.0",
                                 "new": "1.1"}]  # fmt: skip
    assert data["added"][0]["old"] is None and data["removed"][0]["new"] is None
    assert _ok(store, "snapshot", "diff", "a", "a").startswith("0 added, 0 removed")


def test_diff_of_epochs_rebuilds_and_several_versions(tmp_path: Path) -> None:
    store = tmp_path / "store"

    def snap(name: str, *debs: Path, component: str = "main") -> None:
        _ok(store, "snapshot", "create", name, "--from-debs", *map(str, debs),
            "--component", component)  # fmt: skip

    d = tmp_path / "debs"
    zero = build_deb(d / "a", "zero", "0:1.0")
    plain = build_deb(d / "b", "zero", "1.0")
    foo1 = build_deb(d / "c", "foo", "1.0", extra_fields={"X-Build": "one"})
    foo1b = build_deb(d / "d", "foo", "1.0", extra_fields={"X-Build": "two"})
    foo2 = build_deb(d / "e", "foo", "2.0")
    snap("a", zero, foo1)
    snap("b", plain, foo1b)  # "0:1.0" is "1.0"; foo 1.0 rebuilt
    data = json.loads(_ok(store, "snapshot", "diff", "a", "b", "--json"))
    # The same version each time, so neither is an up- or downgrade: both are other bytes.
    assert data["changed"] == [
        {"name": "foo", "architecture": "all", "old": "1.0", "new": "1.0"},
        {"name": "zero", "architecture": "all", "old": "0:1.0", "new": "1.0"},
    ]
    assert not data["upgraded"] and not data["downgraded"]
    # Several versions of one name+arch (an --all-versions merge): each version counts.
    snap("c", foo1)
    snap("c2", foo2)
    _ok(store, "snapshot", "merge", "both", "c", "c2", "--all-versions")
    data = json.loads(_ok(store, "snapshot", "diff", "c", "both", "--json"))
    assert data["added"] == [{"name": "foo", "architecture": "all", "old": None, "new": "2.0"}]
    assert not data["removed"] and not data["upgraded"]
    data = json.loads(_ok(store, "snapshot", "diff", "both", "c2", "--json"))
    assert data["removed"] == [{"name": "foo", "architecture": "all", "old": "1.0", "new": None}]


def test_channels_set_history_rollback_and_rm_protection(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror_and_snapshot(store, upstream, archive, "s1")
    _ok(store, "snapshot", "create", "s2", "--from-mirror", "up")
    _ok(store, "snapshot", "create", "s3", "--from-mirror", "up")
    for snap in ("s1", "s2", "s3", "s3"):  # the second s3 changes nothing, in the history too
        _ok(store, "channel", "set", "prod", snap)
    _ok(store, "channel", "set", "dev", "s3")
    listed = json.loads(_ok(store, "channel", "list", "--json"))
    assert [(c["name"], c["snapshot"]) for c in listed] == [("dev", "s3"), ("prod", "s3")]
    assert _ok(store, "channel", "rollback", "prod").strip() == "channel prod -> s2 (rolled back)"
    assert "-> s1" in _ok(store, "channel", "rollback", "prod")
    r = run_cli(store, "channel", "rollback", "prod")
    assert r.exit_code == 1 and "no earlier snapshot" in r.stderr
    history = json.loads(_ok(store, "channel", "history", "prod", "--json"))
    assert [(e["action"], e["snapshot"]) for e in history] == [
        ("set", "s1"),
        ("set", "s2"),
        ("set", "s3"),
        ("rollback", "s2"),
        ("rollback", "s1"),
    ]
    assert all(e["by"] and e["at"] for e in history)

    r = run_cli(store, "snapshot", "rm", "s1")  # prod points at it
    assert r.exit_code == 1 and "channel prod" in r.stderr
    r = run_cli(store, "snapshot", "rm", "s3")  # dev points at it
    assert r.exit_code == 1 and "channel dev" in r.stderr
    _ok(store, "snapshot", "rm", "s2")  # nothing can return to it any more
    r = run_cli(store, "channel", "set", "s1", "s3")
    assert r.exit_code == 1 and "is a snapshot name" in r.stderr
    r = run_cli(store, "channel", "set", "prod", "nope")
    assert r.exit_code == 1 and "no snapshot named 'nope'" in r.stderr
    _ok(store, "snapshot", "rm", "s3", "--force")


def test_own_packages_become_a_snapshot_and_merge_with_upstream(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror_and_snapshot(store, upstream, archive, "upstream")
    own = tmp_path / "own"
    build_deb(own, "ourapp", "2.3", "amd64", depends="libgreet")
    build_deb(own / "sub", "ourconf", "1.0", "all")
    out = _ok(store, "snapshot", "create", "internal", "--from-debs", str(own),
              "--component", "main")  # fmt: skip
    assert "created snapshot internal (2 packages)" in out
    refs = _ok(store, "snapshot", "search", "internal", "Name").split()
    assert refs == ["ourapp_2.3_amd64", "ourconf_1.0_all"]
    _ok(store, "snapshot", "merge", "release", "upstream", "internal")
    assert "ourapp_2.3_amd64" in _ok(store, "snapshot", "search", "release", "ourapp")
    _ok(store, "snapshot", "verify", "release")  # exit 0: ourapp's libgreet is upstream's

    bad = tmp_path / "bad.deb"
    bad.write_bytes((own / "ourapp_2.3_amd64.deb").read_bytes()[:400])
    before = sorted(p.name for p in (store / "pool").rglob("*"))
    r = run_cli(store, "snapshot", "create", "broken", "--from-debs", str(bad))
    assert r.exit_code == 1 and "bad.deb: not a valid Debian package" in r.stderr
    assert "hint:" in r.stderr
    assert sorted(p.name for p in (store / "pool").rglob("*")) == before
    assert not (store / "snapshots" / "broken").exists()


def test_snapshots_cost_metadata_only(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror_and_snapshot(store, upstream, archive, "day1")

    def objects() -> list[str]:
        return sorted(p.name for d in ("pool", "meta") for p in (store / d).rglob("*"))

    before = objects()
    _mirror_and_snapshot(store, upstream, archive, "day2")
    assert objects() == before
    size = (store / "snapshots" / "day2" / "snapshot.json").stat().st_size
    assert size < 4096


def test_gc_keeps_what_is_referenced_and_removes_the_rest(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    _mirror_and_snapshot(store, upstream, archive, "old")
    _upgrade(archive, tmp_path, debs_dir)
    _mirror_and_snapshot(store, upstream, archive, "new")
    assert "freed 0.0 MB: 0 pool files" in _ok(store, "gc")

    _ok(store, "snapshot", "rm", "old")  # hello 1.0, tool 2.0 and libalt now unreferenced
    dry = _ok(store, "gc", "--dry-run")
    assert "would free" in dry and "3 pool files" in dry
    assert len(list((store / "pool").glob("*/*"))) == 10
    assert "3 pool files" in _ok(store, "gc")
    assert len(list((store / "pool").glob("*/*"))) == 7
    assert run_cli(store, "snapshot", "show", "new").exit_code == 0  # intact

    _ok(store, "mirror", "rm", "up")  # the snapshot still holds everything it needs
    _ok(store, "gc")
    assert run_cli(store, "snapshot", "show", "new").exit_code == 0


def test_gc_interrupted_leaves_a_consistent_store_and_respects_the_lock(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    store_dir = tmp_path / "store"
    _mirror_and_snapshot(store_dir, upstream, archive, "old")
    _upgrade(archive, tmp_path, debs_dir)
    _mirror_and_snapshot(store_dir, upstream, archive, "new")
    _ok(store_dir, "snapshot", "rm", "old")

    # Held by another thread (within one thread the lock is re-entrant, as one command may
    # call another); threads exclude each other as processes do.
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with Store(store_dir).locked():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        with pytest.raises(StoreLockedError):
            gc.collect(Store(store_dir))
    finally:
        release.set()
        holder.join()

    calls = 0
    real_unlink = Path.unlink

    def flaky_unlink(self: Path, missing_ok: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", flaky_unlink)
    with pytest.raises(KeyboardInterrupt):
        gc.collect(Store(store_dir))
    monkeypatch.undo()
    assert len(list((store_dir / "pool").glob("*/*"))) == 9  # one removed, then interrupted
    assert run_cli(store_dir, "snapshot", "show", "new").exit_code == 0
    assert "2 pool files" in _ok(store_dir, "gc")
    assert run_cli(store_dir, "snapshot", "show", "new").exit_code == 0
    assert os.listdir(store_dir / "tmp") == ["partial"]


def test_merge_policies_compare_packages_not_indices(tmp_path: Path) -> None:
    store = tmp_path / "store"
    d = tmp_path / "debs"

    def names(snapshot: str) -> list[str]:
        return _ok(store, "snapshot", "search", snapshot, "Name").split()

    old_all = build_deb(d / "1", "data", "1.0~rc1")  # Architecture: all
    _ok(store, "snapshot", "create", "a", "--from-debs", str(old_all),
        str(build_deb(d / "1", "tool", "1.0", "amd64")),
        str(build_deb(d / "1", "tool", "1.0", "arm64")))  # fmt: skip
    _ok(store, "snapshot", "create", "f", "--from-debs", str(build_deb(d / "2", "data", "2.0")),
        str(build_deb(d / "2", "tool", "1.1", "amd64")))  # fmt: skip
    # "later": f's data 2.0 replaces a's in every architecture's index, not only amd64's.
    _ok(store, "snapshot", "merge", "af", "a", "f")
    assert names("af") == ["data_2.0_all", "tool_1.0_arm64", "tool_1.1_amd64"]
    info = json.loads(_ok(store, "snapshot", "show", "af", "--json"))
    assert {(i["architecture"], i["packages"]) for i in info["indexes"]} == {
        ("amd64", 2), ("arm64", 2)}  # fmt: skip

    # Across components too, as in aptly: the later source's foo wins.
    _ok(store, "snapshot", "create", "main", "--from-debs", str(build_deb(d / "3", "foo", "2.0")))
    _ok(store, "snapshot", "create", "contrib", "--from-debs",
        str(build_deb(d / "4", "foo", "0.5")), "--component", "contrib")  # fmt: skip
    _ok(store, "snapshot", "merge", "mc", "main", "contrib")
    assert names("mc") == ["foo_0.5_all"]
    _ok(store, "snapshot", "merge", "mc-latest", "main", "contrib", "--latest")
    assert names("mc-latest") == ["foo_2.0_all"]

    # "latest" on a tie: the later source, as aptly's -latest does.
    one = build_deb(d / "5", "tie", "1.0", extra_fields={"X-Build": "one"})
    two = build_deb(d / "6", "tie", "1.0", extra_fields={"X-Build": "two"})
    _ok(store, "snapshot", "create", "t1", "--from-debs", str(one))
    _ok(store, "snapshot", "create", "t2", "--from-debs", str(two))
    _ok(store, "snapshot", "merge", "tt", "t1", "t2", "--latest")
    shown = json.loads(_ok(store, "snapshot", "show", "tt", "--json", "--packages"))
    assert [p["sha256"] for p in shown["package_list"]] == [
        hashlib.sha256(two.read_bytes()).hexdigest()
    ]


def test_create_from_debs_refuses_two_builds_of_one_version(tmp_path: Path) -> None:
    store = tmp_path / "store"
    one = build_deb(tmp_path / "a", "tie", "1.0", extra_fields={"X-Build": "one"})
    two = build_deb(tmp_path / "b", "tie", "1.0", extra_fields={"X-Build": "two"})
    r = run_cli(store, "snapshot", "create", "x", "--from-debs", str(one), str(two))
    assert r.exit_code == 1 and "two different builds of tie_1.0_all" in r.stderr
    # The same file twice (a file and its directory) is one package.
    out = _ok(store, "snapshot", "create", "y", "--from-debs", str(one), str(one.parent))
    assert "(1 package)" in out


def test_why_follows_the_closure_the_snapshot_was_made_with(tmp_path: Path) -> None:
    store = tmp_path / "store"
    d = tmp_path / "debs"
    debs = [build_deb(d, "app", recommends="rec"), build_deb(d, "rec"), build_deb(d, "other")]
    _ok(store, "snapshot", "create", "base", "--from-debs", *map(str, debs))
    _ok(store, "snapshot", "filter", "base", "fr", "app", "--with-deps", "--with-recommends")
    chain = json.loads(_ok(store, "snapshot", "why", "fr", "rec", "--json"))
    assert [c["package"] for c in chain] == ["app_1.0_all", "rec_1.0_all"]


def test_a_channel_never_follows_a_snapshot_name_to_other_contents(
    tmp_path: Path, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    d = tmp_path / "debs"
    _ok(store, "snapshot", "create", "rel", "--from-debs", str(build_deb(d / "1", "app", "1.0")))
    _ok(store, "channel", "set", "prod", "rel")
    _ok(store, "snapshot", "rm", "rel", "--force")
    _ok(store, "snapshot", "create", "rel", "--from-debs", str(build_deb(d / "2", "app", "6.6")))
    out = tmp_path / "out"
    r = run_cli(store, "publish", "fs", "prod", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1 and "now has other contents" in r.stderr, r.output
    assert "channel set prod rel" in r.stderr and not out.exists()
    r = run_cli(store, "bundle", "export", "rel", "-o", str(tmp_path / "b"), "--channel", "prod",
                "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1 and "now has other contents" in r.stderr
    _ok(store, "channel", "set", "prod", "rel")  # deliberately: a new event
    r = run_cli(store, "publish", "fs", "prod", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    history = json.loads(_ok(store, "channel", "history", "prod", "--json"))
    assert [e["snapshot"] for e in history] == ["rel", "rel"]
    assert history[0]["digest"] != history[1]["digest"]
