"""Snapshots (immutable, provenance, tamper detection) and fs publishing (layout, determinism,
shared pool, atomic switch)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from mirrorkit import archive as fmt
from mirrorkit import publish
from mirrorkit.publish import fs as publish_fs
from mirrorkit.publish.executor import Item
from mirrorkit.store import Store
from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


def _mirror(store: Path, srv: FaultServer, archive: Archive, name: str = "up") -> None:
    r = run_cli(store, "mirror", "add", name, srv.url, archive.suite,
                "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", name)
    assert r.exit_code == 0, r.output


def _publish(store: Path, name: str, out: Path, key: TestKey, *extra: str) -> None:
    r = run_cli(store, "publish", "fs", name, str(out), "--key", key.fingerprint, *extra,
                gnupghome=key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output


def _hello_upgraded(
    store: Path, tmp_path: Path, archive: Archive, debs_dir: dict[str, Path], name: str
) -> None:
    """Upstream moves hello to 1.1; the mirror follows; snapshot ``name`` freezes that."""
    newer = build_deb(tmp_path / "debs", "hello", "1.1", "amd64", depends="libgreet (>= 1.0)")
    debs = [p for n, p in debs_dir.items() if n != "hello"] + [newer]
    build_archive(archive.root, archive.key, {"main": debs}, suite="stable", codename="stable",
                  date="Sat, 01 Jan 2050 00:00:00 UTC")  # fmt: skip
    assert run_cli(store, "mirror", "update", "up").exit_code == 0
    assert run_cli(store, "snapshot", "create", name, "--from-mirror", "up").exit_code == 0


def _snapshot_one(tmp_path: Path, upstream: FaultServer, archive: Archive) -> tuple[Path, Path]:
    """A store with mirror ``up`` and its snapshot ``one``; and where to publish."""
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "one", "--from-mirror", "up").exit_code == 0
    return store, tmp_path / "out"


def _show(store: Path, name: str) -> dict[str, object]:
    r = run_cli(store, "snapshot", "show", name, "--json")
    data: dict[str, object] = json.loads(r.stdout)
    return data


def test_snapshot_records_provenance_and_default_names(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    today = datetime.now(UTC).strftime("%Y%m%d")
    r1 = run_cli(store, "snapshot", "create", "--from-mirror", "up")
    r2 = run_cli(store, "snapshot", "create", "--from-mirror", "up")
    assert r1.exit_code == r2.exit_code == 0, r1.output + r2.output
    assert f"up-{today} " in r1.stdout and f"up-{today}-2 " in r2.stdout

    info = _show(store, f"up-{today}")
    assert info["intact"] is True and info["packages"] == 7
    (source,) = cast("list[dict[str, object]]", info["sources"])
    assert source["url"] == upstream.url and source["suite"] == "stable"
    assert source["inrelease_sha256"] == hashlib.sha256(archive.inrelease.read_bytes()).hexdigest()
    assert source["signer"] == archive.key.fingerprint
    assert source["release_date"]
    assert info["mirrorkit_version"] and info["created_at"] and info["digest"]
    # Two snapshots of an unchanged mirror share their indices: metadata only.
    other = _show(store, f"up-{today}-2")
    assert other["indexes"] == info["indexes"]


def test_snapshot_never_changes_when_the_mirror_moves_on(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "before", "--from-mirror", "up").exit_code == 0
    _hello_upgraded(store, tmp_path, archive, debs_dir, "after")

    def versions(name: str) -> set[str]:
        r = run_cli(store, "snapshot", "show", name, "--packages")
        return {line.split("\t")[0] for line in r.stdout.splitlines() if line.startswith("hello_")}

    assert versions("before") == {"hello_1.0_amd64"}
    assert versions("after") == {"hello_1.1_amd64"}
    r = run_cli(store, "snapshot", "create", "before", "--from-mirror", "up")
    assert r.exit_code == 1 and "never change" in r.stderr


def test_snapshot_show_detects_changes_on_disk(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    record = store / "snapshots" / "s" / "snapshot.json"
    assert not os.access(record, os.W_OK) or os.geteuid() == 0  # written read-only
    original = record.read_bytes()

    record.chmod(0o644)
    record.write_bytes(original.replace(b'"packages": 7', b'"packages": 8'))
    r = run_cli(store, "snapshot", "show", "s")
    assert r.exit_code == 1 and "MODIFIED" in r.stdout and "digest" in r.stdout
    record.write_bytes(original)
    assert run_cli(store, "snapshot", "show", "s").exit_code == 0

    deb = next((store / "pool").glob("*/*"))
    deb.chmod(0o644)
    deb.unlink()
    r = run_cli(store, "snapshot", "show", "s")
    assert r.exit_code == 1 and "is missing" in r.stdout


def test_snapshot_rm_refuses_what_another_snapshot_needs(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "base", "--from-mirror", "up").exit_code == 0
    assert run_cli(store, "snapshot", "merge", "merged", "base").exit_code == 0
    r = run_cli(store, "snapshot", "rm", "base")
    assert r.exit_code == 1 and "snapshot merged" in r.stderr and "--force" in r.stderr
    assert run_cli(store, "snapshot", "rm", "merged").exit_code == 0
    assert run_cli(store, "snapshot", "rm", "base").exit_code == 0
    assert run_cli(store, "snapshot", "list").stdout == ""


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("InRelease", "Release.gpg", "lock")
    }


def test_publish_is_deterministic(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    _publish(store, "s", tmp_path / "a", publish_key)
    _publish(store, "s", tmp_path / "b", publish_key)
    a, b = tmp_path / "a" / "dists" / "s", tmp_path / "b" / "dists" / "s"
    assert _tree_digest(a) == _tree_digest(b)  # Release and every index, byte for byte
    release = (a / "Release").read_text()
    assert "Date: Tue, 14 Nov 2023 22:13:20 UTC" in release

    # Without SOURCE_DATE_EPOCH the Date is the publish time, and never moves back: apt
    # ignores a Release older than the one it has, which would hide a rollback. Nor does it
    # run ahead of the clock: apt refuses a Release dated over 10 s in the future.
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    dates = []
    for _ in range(3):
        _publish(store, "s", tmp_path / "c", publish_key)
        rel = fmt.parse_release((tmp_path / "c/dists/s/Release").read_bytes())
        assert rel.date is not None
        dates.append(rel.date)
    assert dates[0] <= dates[1] <= dates[2] <= datetime.now(UTC)
    c = tmp_path / "c" / "dists" / "s"

    # A SOURCE_DATE_EPOCH older than the suite's Release would be ignored by every client that
    # has the suite: refused, and the tree is left as it was.
    before = _tree_digest(c)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(dates[-1].timestamp()) - 1))
    r = run_cli(store, "publish", "fs", "s", str(tmp_path / "c"), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "SOURCE_DATE_EPOCH" in r.output and "older than the Date" in r.output
    assert _tree_digest(c) == before
    assert {k: v for k, v in _tree_digest(c).items() if k != "Release"} == {
        k: v for k, v in _tree_digest(a).items() if k != "Release"
    }


def test_publish_layout_and_release_fields(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    out = tmp_path / "out"
    _publish(store, "s", out, publish_key, "--suite", "prod", "--origin", "Ops", "--label",
             "Frozen", "--valid-for", "7d")  # fmt: skip
    suite = out / "dists" / "prod"
    assert suite.is_symlink()
    rel = fmt.parse_release((suite / "Release").read_bytes())
    text = (suite / "Release").read_text()
    for field in (
        "Origin: Ops",
        "Label: Frozen",
        "Suite: prod",
        "Codename: prod",
        "Architectures: amd64",
        "Components: main",
        "Acquire-By-Hash: yes",
        "MD5Sum:",
    ):
        assert field in text  # fmt: skip
    assert rel.valid_until is not None and rel.date is not None
    for name, ref in rel.files.items():
        data = (suite / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == ref.sha256 and len(data) == ref.size
        assert (suite / fmt.by_hash_path(name, ref.sha256)).read_bytes() == data
    pkgs = fmt.parse_packages((suite / "main/binary-amd64/Packages").read_bytes(), "main")
    assert {p.name for p in pkgs} == {"hello", "libgreet", "greet-data", "tool", "libalt",
                                       "virt-user", "mta-one"}  # fmt: skip
    for p in pkgs:
        prefix = p.name[:4] if p.name.startswith("lib") else p.name[0]
        assert p.filename.startswith(f"pool/main/{prefix}/{p.name}/")
        deb = out / p.filename
        assert hashlib.sha256(deb.read_bytes()).hexdigest() == p.sha256
        assert deb.stat().st_nlink >= 2  # hard-linked from the store's pool
    assert (out / "pool/main/libg/libgreet").is_dir()  # dak's lib prefix rule
    assert list(out.glob("mirrorkit-archive-*.gpg")) and list(out.glob("mirrorkit-archive-*.asc"))
    # Everything a client or a web server reads is world-readable (a web server runs as its own
    # user; apt reads the Signed-By key as _apt, and 0600 gives NO_PUBKEY).
    served = [p for p in out.rglob("*") if p.is_file()]
    assert served and all(p.stat().st_mode & 0o044 == 0o044 for p in served), [
        (p.name, oct(p.stat().st_mode)) for p in served if p.stat().st_mode & 0o044 != 0o044
    ]


def test_republish_switches_atomically_and_keeps_previous_by_hash(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path],
    publish_key: TestKey,
) -> None:  # fmt: skip
    store, out = _snapshot_one(tmp_path, upstream, archive)
    _publish(store, "one", out, publish_key, "--suite", "prod")
    _publish(store, "one", out, publish_key, "--suite", "dev")
    old = fmt.parse_release((out / "dists/prod/Release").read_bytes())
    old_target = os.readlink(out / "dists/prod")

    _hello_upgraded(store, tmp_path, archive, debs_dir, "two")
    _publish(store, "two", out, publish_key, "--suite", "prod")

    assert os.readlink(out / "dists/prod") != old_target
    assert not (out / "dists" / old_target).exists()  # the old generation is gone...
    for name, ref in old.files.items():  # ...but a client holding the old InRelease still works
        assert (out / "dists/prod" / fmt.by_hash_path(name, ref.sha256)).is_file()
    prod = (out / "dists/prod/main/binary-amd64/Packages").read_text()
    dev = (out / "dists/dev/main/binary-amd64/Packages").read_text()
    assert "Version: 1.1" in prod and "Version: 1.1" not in dev
    # One pool serves both suites: both hello versions, one libgreet.
    assert sorted(p.name for p in (out / "pool/main/h/hello").iterdir()) == [
        "hello_1.0_amd64.deb", "hello_1.1_amd64.deb"]  # fmt: skip
    assert len(list((out / "pool/main/libg/libgreet").iterdir())) == 1


def test_publish_errors_are_clear(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    empty = tmp_path / "gnupg"
    empty.mkdir(mode=0o700)
    r = run_cli(store, "publish", "fs", "s", str(tmp_path / "o"), gnupghome=empty)
    assert r.exit_code == 2 and "no secret key in" in r.stderr and "--key" in r.stderr
    r = run_cli(store, "publish", "fs", "nope", str(tmp_path / "o"), "--key", "x")
    assert r.exit_code == 1 and "no snapshot, channel or repo named 'nope'" in r.stderr
    r = run_cli(store, "publish", "fs", "s", str(tmp_path / "o"), "--key", "nobody@nowhere",
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 2 and "no secret key matches" in r.stderr
    foreign = tmp_path / "foreign"
    (foreign / "dists" / "s").mkdir(parents=True)
    r = run_cli(store, "publish", "fs", "s", str(foreign), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1 and "not published by mirrorkit" in r.stderr


def test_publish_removes_only_the_pool_files_it_placed(
    tmp_path: Path, upstream: FaultServer, archive: Archive, debs_dir: dict[str, Path],
    publish_key: TestKey,
) -> None:  # fmt: skip
    store, out = _snapshot_one(tmp_path, upstream, archive)
    # Another tool's files in the same tree: mirrorkit must never delete them.
    foreign = [out / "pool/main/o/other/other_1.0_all.deb", out / "pool/README"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not mirrorkit's\n")
    (out / "dists/legacy/main/binary-amd64").mkdir(parents=True)
    _publish(store, "one", out, publish_key, "--suite", "prod")

    _hello_upgraded(store, tmp_path, archive, debs_dir, "two")
    r = run_cli(store, "publish", "fs", "two", str(out), "--suite", "prod", "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    # hello 1.0 was mirrorkit's and no suite lists it now: removed. The rest stays.
    assert sorted(p.name for p in (out / "pool/main/h/hello").iterdir()) == ["hello_1.1_amd64.deb"]
    assert all(path.read_bytes() == b"not mirrorkit's\n" for path in foreign)
    assert (out / "dists/legacy/main/binary-amd64").is_dir()
    listed = (out / ".mirrorkit/pool.sha256").read_text()
    assert "hello_1.1_amd64.deb" in listed and "hello_1.0_amd64.deb" not in listed
    assert "other_1.0_all.deb" not in listed


def test_publish_refuses_another_build_under_the_same_pool_name(
    tmp_path: Path, publish_key: TestKey
) -> None:
    # Two builds of twin 1.0 with the same size: a size check alone would take one for the other,
    # and apt clients of the second suite would get a hash mismatch.
    store = tmp_path / "store"
    builds: dict[int, list[Path]] = {}
    for tag in "abcdefghijklmnopqrstuvwxyz":
        deb = build_deb(tmp_path / f"b-{tag}", "twin", "1.0", extra_fields={"X-Build": tag})
        builds.setdefault(deb.stat().st_size, []).append(deb)
        same = next((v for v in builds.values() if len(v) == 2), None)
        if same:
            break
    assert same, "no two builds of the same size"
    for name, deb in zip(("one", "two"), same, strict=True):
        r = run_cli(store, "snapshot", "create", name, "--from-debs", str(deb))
        assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    _publish(store, "one", out, publish_key)
    before = _tree_digest(out)
    r = run_cli(store, "publish", "fs", "two", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "twin_1.0_all.deb: exists with different contents" in r.stderr
    assert "new version" in r.stderr
    assert not (out / "dists/two").exists()
    assert {k: v for k, v in _tree_digest(out).items() if not k.startswith(".mirrorkit")} == {
        k: v for k, v in before.items() if not k.startswith(".mirrorkit")
    }


def test_published_tree_is_world_readable_whatever_the_umask(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    # apt reads a file: tree as its _apt user, and a web server as its own.
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", "up").exit_code == 0
    out = tmp_path / "out"
    old = os.umask(0o077)
    try:
        _publish(store, "s", out, publish_key)
    finally:
        os.umask(old)
    paths = [p for p in out.rglob("*") if p.name != "lock" and not p.is_symlink()]
    assert any(p.name == "InRelease" for p in paths)
    for path in paths:
        need = 0o555 if path.is_dir() else 0o444
        assert path.stat().st_mode & need == need, (path, oct(path.stat().st_mode))


def test_architecture_all_packages_are_in_every_architecture_index(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    _mirror(store, upstream, archive)
    assert run_cli(store, "snapshot", "create", "base", "--from-mirror", "up").exit_code == 0
    own = build_deb(tmp_path / "own", "site-config", "1.0", "all", depends="hello")
    r = run_cli(store, "snapshot", "create", "local", "--from-debs", str(own))
    assert r.exit_code == 0, r.output
    assert run_cli(store, "snapshot", "merge", "both", "base", "local").exit_code == 0
    out = tmp_path / "out"
    _publish(store, "both", out, publish_key)
    release = fmt.parse_release((out / "dists/both/Release").read_bytes())
    assert release.architectures == ("amd64",) and release.no_arch_all_packages
    amd64 = (out / "dists/both/main/binary-amd64/Packages").read_bytes()
    assert b"Package: site-config\n" in amd64

    # Only Architecture: all packages: the suite says so, and serves every architecture.
    _publish(store, "local", out, publish_key)
    release = fmt.parse_release((out / "dists/local/Release").read_bytes())
    assert release.architectures == ("all",) and not release.no_arch_all_packages
    assert set(release.files) >= {"main/binary-all/Packages", "main/binary-all/Packages.xz"}


def test_the_executor_writes_pool_record_indices_then_the_signed_files_last(
    tmp_path: Path, publish_key: TestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The order every target gets (the S3 tests check the same on the wire): pool files and
    # the key, the pool record, by-hash copies, indices, then Release, Release.gpg, InRelease.
    store = tmp_path / "store"
    debs = tmp_path / "debs"
    build_deb(debs, "hello", "1.0", "amd64")
    build_deb(debs, "greet-data", "1.0", "all")
    r = run_cli(store, "snapshot", "create", "s", "--from-debs", str(debs))
    assert r.exit_code == 0, r.output
    written: list[str] = []

    class Recording(publish_fs.DirectoryTarget):
        def put(self, item: Item) -> None:
            written.append(item.rel)
            super().put(item)

    monkeypatch.setattr(publish_fs, "DirectoryTarget", Recording)
    out = tmp_path / "out"
    pub = publish.publish_fs(
        Store(store), "s", out, key=publish_key.fingerprint, gnupghome=str(publish_key.gnupghome)
    )
    assert isinstance(pub.result, publish_fs.PublishResult) and pub.result.linked == 2
    pool = [i for i, rel in enumerate(written) if rel.startswith("pool/")]
    record = written.index(".mirrorkit/pool.sha256")
    by_hash = [i for i, rel in enumerate(written) if "/by-hash/" in rel]
    indices = [i for i, rel in enumerate(written) if "/binary-" in rel and "/by-hash/" not in rel]
    assert len(pool) == 2 and max(pool) < record < min(by_hash)
    assert max(by_hash) < min(indices)
    assert written[-3:] == ["dists/s/Release", "dists/s/Release.gpg", "dists/s/InRelease"]
    assert max(indices) < len(written) - 3


def test_a_tree_another_process_publishes_into_is_refused_and_left_alone(
    tmp_path: Path, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    build_deb(tmp_path / "debs", "hello", "1.0", "amd64")
    r = run_cli(store, "snapshot", "create", "s", "--from-debs", str(tmp_path / "debs"))
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    _publish(store, "s", out, publish_key, "--suite", "prod")
    before = _tree_digest(out)
    # Another process holds the tree's lock (as a publish from another store would).
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys\n"
         f"fd = os.open({str(out / '.mirrorkit/lock')!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        r = run_cli(store, "publish", "fs", "s", str(out), "--suite", "dev", "--key",
                    publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
        assert r.exit_code == 1, r.output
        assert f"{out}: another mirrorkit is publishing into this tree" in r.stderr
        assert not (out / "dists/dev").exists() and _tree_digest(out) == before
    finally:
        holder.communicate("", timeout=10)
    _publish(store, "s", out, publish_key, "--suite", "dev")  # the lock is free again
    assert (out / "dists/dev/InRelease").is_file()
