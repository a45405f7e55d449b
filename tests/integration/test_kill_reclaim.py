"""What a killed command leaves behind is reclaimed (issue 14, item 2).

A real ``publish fs`` is SIGKILLed at random moments while it places pool files; after each
kill the tree holds only files its records (the pool record, or the intent the killed publish
wrote before its first link) list, and the next publish, of a different snapshot, leaves
exactly what the published suites list. ``store verify`` checks the store the hard way after
every kill, and a real apt downloads from the result. A killed snapshot command's staging
directory is removed by the next snapshot command, while a running one's is left alone.

The loop is small here (``MIRRORKIT_KILL_TRIALS``, default 3); ``scripts/bench faults`` runs
dozens of kill points per command.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import faults
from tests.helpers.apt import AptClient
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

PACKAGES = 400
TRIALS = int(os.environ.get("MIRRORKIT_KILL_TRIALS", "3"))


@pytest.fixture(scope="module")
def mirrored(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Path, FaultServer]]:
    """A store with snapshot ``all`` (PACKAGES fake packages) and ``some`` (a hundred of them)."""
    base = tmp_path_factory.mktemp("kill")
    up = faults.fake_archive(base / "up", test_key, PACKAGES, size=2048)
    store = base / "store"
    with FaultServer(up) as srv:
        for args in (
            ("mirror", "add", "up", srv.url, "stable", "--keyring", str(test_key.public_keyring)),
            ("mirror", "update", "up"),
            ("snapshot", "create", "all", "--from-mirror", "up"),
            ("snapshot", "filter", "all", "some", "Name (% pkg01*)"),
        ):
            r = run_cli(store, *args)
            assert r.exit_code == 0, r.output
        yield store, srv


def _args(name: str, out: Path, key: TestKey) -> list[str]:
    return ["publish", "fs", name, str(out), "--suite", "prod", "--key", key.fingerprint]


def _publish(store: Path, name: str, out: Path, key: TestKey) -> list[str]:
    """The argv of a real ``python -m mirrorkit publish fs`` process (to be killed)."""
    return faults.argv(store, *_args(name, out, key), gnupghome=key.gnupghome)


def _publish_here(store: Path, name: str, out: Path, key: TestKey) -> None:
    r = run_cli(store, *_args(name, out, key), gnupghome=key.gnupghome)
    assert r.exit_code == 0, r.output


def test_a_publish_killed_while_linking_is_reclaimed_by_the_next_publish(
    mirrored: tuple[Path, FaultServer], tmp_path: Path, publish_key: TestKey,
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    store, _ = mirrored
    out = tmp_path / "tree"
    rng = random.Random(int(os.environ.get("MIRRORKIT_KILL_SEED", time.time_ns())))
    intent = out / ".mirrorkit/pool.intent"
    interrupted = 0
    for trial in range(TRIALS):
        # Odd trials: a random moment of the whole run; even ones: soon after the intent is
        # on disk, i.e. while pool files are being linked.
        ready = faults.written(intent) if trial % 2 == 0 else None
        delay = rng.uniform(0, 0.05) if ready else rng.uniform(0.2, 1.5)
        kill = faults.kill_at(_publish(store, "all", out, publish_key), delay, ready=ready)
        interrupted += not kill.survived
        state = faults.tree_state(out)
        what = f"trial {trial}: killed {kill.after:.2f} s after the start"
        # Whatever the moment, every pool file is in a record: none is lost to pruning.
        assert not state.unrecorded(), f"{what}: {sorted(state.unrecorded())[:5]}"
        if trial == TRIALS - 1:
            faults.verify(store)

        _publish_here(store, "some", out, publish_key)
        state = faults.tree_state(out)
        assert not state.intent and not intent.exists(), what
        assert set(state.files) == set(state.record) == faults.listed(out), what
        assert len(state.files) == 100, what
        report = faults.verify(store)
        assert report["unrecorded"] == [] and report["pending"] == [], (what, report)
    assert interrupted, "no trial killed the publish before it ended"

    key = next(out.glob("mirrorkit-archive-*.gpg"))
    client = AptClient(tmp_path / "client")
    client.add_source(make_server(out).url, "prod", ["main"], key)
    assert client.update().returncode == 0
    r = client.install_download_only("pkg0150")
    assert r.returncode == 0, r.stdout
    assert client.downloaded() == ["pkg0150_1.0_amd64.deb"]


def test_gc_reclaims_what_a_killed_publish_placed(
    mirrored: tuple[Path, FaultServer], tmp_path: Path, publish_key: TestKey
) -> None:
    store, _ = mirrored
    out = tmp_path / "tree"
    _publish_here(store, "some", out, publish_key)
    intent = out / ".mirrorkit/pool.intent"
    for attempt in range(30):  # until a kill lands after some links, before the record
        delay = 0.01 * attempt  # the intent is fsynced before the first link: wait for it
        faults.kill_at(
            _publish(store, "all", out, publish_key), delay, ready=faults.written(intent)
        )
        placed = faults.tree_state(out)
        if placed.intent and len(placed.files) > 100:
            break
    assert placed.intent and len(placed.files) > 100, "no kill landed while it was linking"
    assert not placed.unrecorded()

    r = run_cli(store, "gc", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert faults.tree_state(out) == placed  # a dry run changes nothing
    r = run_cli(store, "gc")
    assert r.exit_code == 0, r.output
    state = faults.tree_state(out)
    assert not state.intent and set(state.files) == set(state.record) == faults.listed(out)
    assert len(state.files) == 100
    assert f"{len(placed.files) - 100} files in published trees" in r.stdout, r.stdout
    faults.verify(store)


def test_a_killed_snapshot_commands_staging_is_removed_by_the_next_one(
    mirrored: tuple[Path, FaultServer], tmp_path: Path
) -> None:
    store, _ = mirrored
    tmp = store / "tmp"
    # What SIGKILLed commands leave: a staging dir of a snapshot being written and the trash
    # of one being removed, nobody holding them. And one a running command holds (an flock on
    # the directory, as the store's work_dir takes it): that one must stay.
    dead = [tmp / "snapshot-x-1a2b3c", tmp / "rm-y-0011223344556677"]
    for d in dead:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "snapshot.json").write_text("{}")
    live = tmp / "snapshot-z-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = run_cli(store, "snapshot", "filter", "some", "few", "Name (% pkg010*)")
        assert r.exit_code == 0, r.output
        assert not any(d.exists() for d in dead)
        assert live.is_dir()
        # The same for snapshot rm (a trash directory, this time).
        dead[1].mkdir()
        r = run_cli(store, "snapshot", "rm", "few")
        assert r.exit_code == 0, r.output
        assert not dead[1].exists() and live.is_dir()
    finally:
        os.close(fd)

    # Real kills at random moments: whatever is left, the store verifies, a snapshot is
    # there whole or not at all, and the next snapshot command leaves no staging behind.
    rng = random.Random(int(os.environ.get("MIRRORKIT_KILL_SEED", time.time_ns())))
    for trial in range(TRIALS):
        cmd = faults.argv(store, "snapshot", "filter", "all", f"k{trial}", "Name (% pkg0*)")
        faults.kill_at(cmd, rng.uniform(0.1, 0.8))
        r = run_cli(store, "snapshot", "filter", "some", f"n{trial}", "Name (% pkg011*)")
        assert r.exit_code == 0, r.output
        assert not list(tmp.glob("snapshot-*")) and not list(tmp.glob("rm-*"))
    faults.verify(store)


def test_store_verify_rehashes_every_object_and_reads_every_record(
    mirrored: tuple[Path, FaultServer], tmp_path: Path
) -> None:
    store = tmp_path / "copy"
    shutil.copytree(mirrored[0], store, symlinks=True)
    r = run_cli(store, "store", "verify")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{store}: OK: 400 pool objects, ") and " snapshots, " in r.stdout

    # A flipped byte in a pool object (its size stays right: only a re-hash sees it), a
    # damaged metadata object, and a snapshot record edited by hand.
    pool_obj = sorted((store / "pool").glob("*/*"))[7]
    meta_obj = sorted((store / "meta").glob("*/*.zst"))[0]
    record = store / "snapshots/some/snapshot.json"
    for path in (pool_obj, meta_obj, record):
        path.chmod(0o644)
    data = bytearray(pool_obj.read_bytes())
    data[100] ^= 1
    pool_obj.write_bytes(bytes(data))
    meta_obj.write_bytes(b"not zstd")
    record.write_text(record.read_text().replace('"some"', '"Some"', 1))
    r = run_cli(store, "store", "verify", "--json")
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    assert report["ok"] is False and report["pool_objects"] == 400
    text = "\n".join(report["problems"])
    assert f"{pool_obj}: SHA256 is " in text
    assert str(meta_obj) in text and "snapshot some" in text
    r = run_cli(store, "store", "verify")
    assert r.exit_code == 1 and "problem: " in r.stderr and "problems in" in r.stderr
