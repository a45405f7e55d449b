"""Operating safely on full archives (issue 13): know before you fetch (--dry-run), refuse an
update the disk cannot hold, no new snapshot of an unchanged upstream, an empty result is a
mistake, partial downloads are garbage, permissions that fit the file.

Real parts only: a signed archive on a loopback FaultServer, the real CLI, a real tmpfs."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkit import space
from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

NAME = "up"


def _add(store: Path, srv: FaultServer, archive: Archive, *extra: str) -> None:
    r = run_cli(store, "mirror", "add", NAME, srv.url, "stable", "--keyring",
                str(archive.key.public_keyring), *extra)  # fmt: skip
    assert r.exit_code == 0, r.output


def _deb_gets(srv: FaultServer) -> list[str]:
    return [p for m, p, _ in srv.requests if m == "GET" and p.endswith(".deb")]


def _record(store: Path) -> bytes:
    return (store / "mirrors" / f"{NAME}.json").read_bytes()


def _pool(store: Path) -> list[Path]:
    return [p for p in (store / "pool").rglob("*") if p.is_file()]


# -- 1. know before you fetch ------------------------------------------------------------------


def test_update_dry_run_verifies_plans_and_downloads_nothing(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _add(store, upstream, archive)
    before = _record(store)
    asked = upstream.count("*/InRelease")  # 'mirror add' asked the upstream already
    sizes = sum(p.stat().st_size for p in archive.debs.values())

    r = run_cli(store, "mirror", "update", NAME, "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{NAME}: would download 7 files, "), r.stdout
    assert f"({sizes} bytes)" in r.stdout and "dry run" in r.stdout
    # Verified as usual: InRelease and the index were fetched; not one pool file.
    assert upstream.count("*/InRelease") == asked + 1
    assert upstream.count("*/binary-amd64/*") >= 1
    assert _deb_gets(upstream) == []
    assert _record(store) == before and _pool(store) == []

    r = run_cli(store, "mirror", "update", NAME, "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["dry_run"] is True and out["fetched"] == 0
    assert out["plan"] == {"files": 7, "bytes": sizes, "reused": 0}
    assert _deb_gets(upstream) == [] and _record(store) == before

    # A real update afterwards fetches what the plan said; a dry run then plans nothing.
    r = run_cli(store, "mirror", "update", NAME, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["plan"] == {"files": 7, "bytes": sizes, "reused": 0}
    assert len(_deb_gets(upstream)) == 7
    r = run_cli(store, "mirror", "update", NAME, "--dry-run")
    assert r.exit_code == 0 and "unchanged" in r.stdout, r.output


def test_sync_dry_run_prints_the_plan_per_mirror_and_makes_no_snapshot(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'[[upstream]]\nname = "{NAME}"\nurl = "{upstream.url}"\nsuite = "stable"\n'
        f'keyring = "{archive.key.public_keyring}"\n\n[filter]\nquery = "hello"\n'
        "with_deps = true\n"
    )
    r = run_cli(store, "sync", str(profile), "--dry-run")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    hello = archive.debs["pool/main/h/hello/hello_1.0_amd64.deb"].stat().st_size
    lib = archive.debs["pool/main/l/libgreet/libgreet_1.0_amd64.deb"].stat().st_size
    assert lines[0].startswith(f"{NAME}: would download 2 files, "), r.stdout
    assert lines[-1].endswith(f"({hello + lib} bytes)") and lines[-1].startswith("total: ")
    assert _deb_gets(upstream) == []
    assert not (store / "snapshots").exists() or not any((store / "snapshots").iterdir())
    # A dry run changes nothing: not even the record of the profile's (new) mirror.
    assert not (store / "mirrors" / f"{NAME}.json").exists()

    r = run_cli(store, "sync", str(profile), "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["dry_run"] is True and out["snapshot"] is None
    assert [(u["mirror"], u["plan"]["files"], u["plan"]["bytes"]) for u in out["updates"]] == [
        (NAME, 2, hello + lib)
    ]
    assert _deb_gets(upstream) == [] and not (store / "mirrors" / f"{NAME}.json").exists()

    # A mirror the profile changed: the dry run plans with the profile's spec and leaves the
    # record as it was (it used to write the new spec).
    _add(store, upstream, archive)
    record = _record(store)
    r = run_cli(store, "sync", str(profile), "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert [u["plan"]["files"] for u in json.loads(r.stdout)["updates"]] == [2]  # filtered
    assert _record(store) == record and not json.loads(record)["spec"].get("filter")


# -- 2. free space -----------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB tmpfs, mounted for the test and unmounted after it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_update_refuses_before_downloading_when_the_store_filesystem_is_too_small(
    tmp_path: Path, small_fs: Path, archive: Archive, debs_dir: dict[str, Path]
) -> None:
    big = [build_deb(tmp_path / "big", f"big{i}", "1.0", "amd64", payload_size=1_200_000)
           for i in range(3)]  # fmt: skip
    bigger = build_archive(tmp_path / "bigger", archive.key, {"main": [*debs_dir.values(), *big]})
    download = sum(p.stat().st_size for p in bigger.debs.values())
    assert download > 3_000_000  # more than the 2 MB filesystem holds
    store = small_fs / "store"
    with FaultServer(bigger.root) as srv:
        _add(store, srv, bigger)
        before = _record(store)
        r = run_cli(store, "mirror", "update", NAME)
        assert r.exit_code == 1, r.output
        err = r.stderr
        assert f"needs {space._size(space.needed(download))}" in err, err
        assert f"({download} bytes to download + 5% + 64 MiB margin)" in err
        assert "free; nothing was downloaded" in err and str(small_fs) in err
        assert "--no-space-check" in err
        assert _deb_gets(srv) == [] and _record(store) == before and _pool(store) == []

        # The hint's way out: --no-space-check downloads (and here runs out of room for real).
        r = run_cli(store, "mirror", "update", NAME, "--no-space-check")
        assert "--no-space-check" not in r.stderr
        assert _deb_gets(srv) != []
        assert _record(store) == before  # the disk filled up: nothing was committed


# -- 3. unchanged upstream, no new snapshot ------------------------------------------------------


def _snapshots(store: Path) -> list[str]:
    r = run_cli(store, "snapshot", "list", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    items = data["snapshots"] if isinstance(data, dict) else data
    return sorted(s["name"] for s in items)


def test_sync_of_unchanged_upstreams_makes_no_snapshot_and_does_not_republish(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    debs_dir: dict[str, Path],
) -> None:  # fmt: skip
    store, out = tmp_path / "store", tmp_path / "out"
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'[[upstream]]\nname = "{NAME}"\nurl = "{upstream.url}"\nsuite = "stable"\n'
        f'keyring = "{archive.key.public_keyring}"\n\n[snapshot]\nname = "web-{{date}}"\n\n'
        f'[filter]\nquery = "hello"\nwith_deps = true\n\n'
        f'[publish]\nfs = "{out}"\nkey = "{publish_key.fingerprint}"\nchannel = "dev"\n'
    )

    def sync(*extra: str) -> str:
        r = run_cli(store, "sync", str(profile), *extra, gnupghome=publish_key.gnupghome)
        assert r.exit_code == 0, r.output
        return r.stdout

    first = sync().split()[1]
    release = out / "dists" / "dev" / "InRelease"
    signed = release.read_bytes()
    history = run_cli(store, "channel", "history", "dev").stdout

    assert sync() == f"unchanged: {first}\n"
    assert _snapshots(store) == [first]
    assert release.read_bytes() == signed  # not published again (a new signature would differ)
    assert run_cli(store, "channel", "history", "dev").stdout == history
    got = json.loads(sync("--json"))
    assert got["unchanged"] is True and got["snapshot"]["name"] == first
    assert got["published"] is None and _snapshots(store) == [first]

    # --force-snapshot: a new one all the same, published and the channel moved.
    forced = sync("--force-snapshot").split()[1]
    assert forced != first and _snapshots(store) == sorted([first, forced])
    assert release.read_bytes() != signed

    # The upstream changes (a new InRelease): a new snapshot, whatever the filter keeps.
    extra = build_deb(tmp_path / "debs", "extra", "1.0", "amd64")
    rebuilt = build_archive(archive.root, archive.key, {"main": [*debs_dir.values(), extra]})
    assert rebuilt.root == archive.root
    third = sync().split()[1]
    assert third not in (first, forced) and len(_snapshots(store)) == 3

    # A snapshot that is gone is not "the last one": removed, the next sync makes a new one.
    assert sync() == f"unchanged: {third}\n"
    r = run_cli(store, "snapshot", "rm", third, "--force")
    if r.exit_code != 0:  # the channel still needs it: point it back first
        run_cli(store, "channel", "set", "dev", forced)
        r = run_cli(store, "snapshot", "rm", third)
    assert r.exit_code == 0, r.output
    assert sync().split()[0] == "snapshot:"


# -- 4. an empty result is a mistake -----------------------------------------------------------


def test_a_filter_or_search_that_matches_nothing_fails_and_names_close_packages(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    # mirror add --filter: checked at update time, before the update commits or downloads.
    _add(store, upstream, archive, "--filter", "helo | libgret", "--with-deps")
    before = _record(store)
    r = run_cli(store, "mirror", "update", NAME)
    assert r.exit_code == 1, r.output
    assert "query 'helo | libgret' matches no package" in r.stderr
    assert "did you mean: hello, libgreet" in r.stderr and "--allow-empty" in r.stderr
    assert _record(store) == before and _deb_gets(upstream) == []

    r = run_cli(store, "mirror", "add", "empty", upstream.url, "stable", "--keyring",
                str(archive.key.public_keyring), "--filter", "helo", "--allow-empty")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", "empty", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["packages"] == 0
    assert run_cli(store, "mirror", "add", "x", upstream.url, "stable", "--keyring",
                   str(archive.key.public_keyring), "--allow-empty").exit_code == 2  # fmt: skip

    # snapshot filter: exit 1, no snapshot; --allow-empty makes the empty one.
    full = tmp_path / "full"
    _add(full, upstream, archive)
    assert run_cli(full, "mirror", "update", NAME).exit_code == 0
    assert run_cli(full, "snapshot", "create", "s", "--from-mirror", NAME).exit_code == 0
    r = run_cli(full, "snapshot", "filter", "s", "f", "tol")
    assert r.exit_code == 1 and "query 'tol' matches no package" in r.stderr, r.output
    assert "did you mean: tool" in r.stderr
    assert run_cli(full, "snapshot", "show", "f").exit_code == 1
    r = run_cli(full, "snapshot", "filter", "s", "f", "tol", "--allow-empty", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["matched"] == []

    # snapshot search: no match exits 1 like grep (and prints nothing but [] with --json).
    r = run_cli(full, "snapshot", "search", "s", "nothing-like-it")
    assert (r.exit_code, r.stdout) == (1, "")
    r = run_cli(full, "snapshot", "search", "s", "nothing-like-it", "--json")
    assert (r.exit_code, json.loads(r.stdout)) == (1, [])
    r = run_cli(full, "snapshot", "search", "s", "hello")
    assert (r.exit_code, r.stdout) == (0, "hello_1.0_amd64\n")

    # sync: the profile's filter is checked the same way; allow_empty = true accepts it.
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'[[upstream]]\nname = "{NAME}"\nurl = "{upstream.url}"\nsuite = "stable"\n'
        f'keyring = "{archive.key.public_keyring}"\n\n[filter]\nquery = "tool-x"\n'
    )
    r = run_cli(tmp_path / "synced", "sync", str(profile))
    assert r.exit_code == 1 and "query 'tool-x' matches no package" in r.stderr, r.output
    assert "did you mean: tool" in r.stderr
    profile.write_text(profile.read_text() + "allow_empty = true\n")
    r = run_cli(tmp_path / "synced", "sync", str(profile))
    assert r.exit_code == 0 and "(0 packages)" in r.stdout, r.output


# -- 5. partial downloads are garbage too ---------------------------------------------------------


def test_gc_removes_partial_downloads_of_abandoned_updates_and_dry_run_counts_them(
    tmp_path: Path, archive: Archive, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    big = build_deb(tmp_path / "big", "bigpkg", "1.0", "amd64", payload_size=300_000)
    bigger = build_archive(tmp_path / "bigger", archive.key, {"main": [*debs_dir.values(), big]})
    srv = make_server(bigger.root)
    srv.add_fault("*/bigpkg_1.0_amd64.deb", "drop", after_bytes=120_000)
    store = tmp_path / "store"
    _add(store, srv, bigger)
    r = run_cli(store, "mirror", "update", NAME, "--max-tries", "1")
    assert r.exit_code == 1, r.output
    partial = store / "tmp" / "partial"
    held = sorted(p.name for p in partial.iterdir())
    assert len([n for n in held if "." not in n]) == 1  # the abandoned download

    r = run_cli(store, "gc", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["partial_files"] == 1 and report["bytes"] >= 120_000
    assert sorted(p.name for p in partial.iterdir()) == held  # a dry run removes nothing
    assert "1 partial download" in run_cli(store, "gc", "--dry-run").stdout

    r = run_cli(store, "gc")
    assert r.exit_code == 0 and "1 partial download" in r.stdout, r.output
    assert list(partial.iterdir()) == []
    assert json.loads(run_cli(store, "gc", "--json").stdout)["partial_files"] == 0

    # The next update starts that file over (no Range) and completes.
    srv.clear_faults()
    srv.clear_log()
    r = run_cli(store, "mirror", "update", NAME)
    assert r.exit_code == 0, r.output
    gets = [
        h.get("range")
        for m, p, h in srv.requests
        if m == "GET" and p.endswith("bigpkg_1.0_amd64.deb")
    ]
    assert gets == [None]


# -- 6. permissions that fit the file -------------------------------------------------------------


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_what_others_read_is_world_readable_and_secrets_are_private_under_umask_077(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    umask_077: None,
) -> None:  # fmt: skip
    store = tmp_path / "store"
    url = upstream.url.replace("http://", "http://mk:s3cret@")
    r = run_cli(store, "mirror", "add", NAME, url, "stable", "--keyring",
                str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _mode(store / "auth.conf") == 0o600  # the one file that holds a secret
    assert run_cli(store, "mirror", "update", NAME).exit_code == 0
    assert run_cli(store, "snapshot", "create", "s", "--from-mirror", NAME).exit_code == 0
    assert _mode(store / "auth.conf") == 0o600

    def signed(*args: str) -> None:
        r = run_cli(store, *args, "--key", publish_key.fingerprint,
                    gnupghome=publish_key.gnupghome)  # fmt: skip
        assert r.exit_code == 0, r.output

    tree = tmp_path / "tree"
    signed("publish", "fs", "s", str(tree))
    keys = sorted(tree.glob("mirrorkit-archive-*"))
    assert [k.suffix for k in keys] == [".asc", ".gpg"]
    assert all(_mode(k) == 0o644 for k in keys), [oct(_mode(k)) for k in keys]
    assert _mode(tree / "dists" / "s" / "InRelease") == 0o644

    one = tmp_path / "one.bundle"
    signed("bundle", "export", "s", "-o", str(one))
    assert _mode(one) == 0o644
    split = tmp_path / "parts" / "s.bundle"
    signed("bundle", "export", "s", "-o", str(split), "--split", "4096")
    made = sorted(split.parent.iterdir())
    assert len(made) > 2 and any(p.name.endswith(".index.json") for p in made), made
    assert {p.name: oct(_mode(p)) for p in made} == {p.name: "0o644" for p in made}
