"""Every command reads what it changes after taking the store lock (issue 14, item 6).

The window between a read and the lock is forced open: ``Store.locked`` is wrapped, in this
process, so that just before the lock is taken a competing command runs in a real separate
``python -m mirrorkit`` process. Whatever that command changed must win, or the command under
test must refuse clearly; it must never be undone by state read before the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkit.store import Store
from tests.helpers.archive import Archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import Result, run_cli


def _cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """mirrorkit in its own process (the competitor: another user, another cron job)."""
    return subprocess.run(
        [sys.executable, "-m", "mirrorkit", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def _ok(store: Path, *args: str) -> str:
    r = run_cli(store, *args)
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.fixture
def race(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, tuple[str, ...]], list[str]]:
    """``race(store, args)``: the next time this process takes the store lock, the command
    ``args`` runs (to completion, in another process) just before. Returns its output lines."""
    original = Store.locked
    out: list[str] = []

    def arm(store: Path, args: tuple[str, ...]) -> list[str]:
        fired = False

        @contextlib.contextmanager
        def locked(self: Store, *resources: str, wait: float | None = None) -> Iterator[None]:
            nonlocal fired
            if not fired and not self._locks.depth():
                fired = True
                r = _cli(store, *args)
                assert r.returncode == 0, r.stdout + r.stderr
                out.append(r.stdout)
            with original(self, *resources, wait=wait):
                yield

        monkeypatch.setattr(Store, "locked", locked)
        return out

    return arm


def _refused(r: Result, needle: str) -> None:
    assert r.exit_code == 1, r.output
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.output


def test_mirror_rm_during_update_is_not_undone(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey, archive: Archive,
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    ran = race(store, ("mirror", "rm", "up"))
    _refused(run_cli(store, "mirror", "update", "up"), "no mirror named 'up'")
    assert ran and "up" in ran[0]  # rm said "removed"...
    assert not (store / "mirrors" / "up.json").exists()  # ...and removed it stays
    assert "up" not in _ok(store, "mirror", "list")


def test_snapshot_rm_sees_a_channel_set_just_before_its_lock(
    tmp_path: Path, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "s1", "--from-debs", str(debs_dir["hello"]))
    race(store, ("channel", "set", "prod", "s1"))
    _refused(run_cli(store, "snapshot", "rm", "s1"), "needed by: channel prod")
    assert "s1" in _ok(store, "snapshot", "list")


def test_channel_rollback_sees_a_set_just_before_its_lock(
    tmp_path: Path, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    for n in (1, 2, 3):
        _ok(store, "snapshot", "create", f"s{n}", "--from-debs", str(debs_dir["hello"]))
    _ok(store, "channel", "set", "prod", "s1")
    _ok(store, "channel", "set", "prod", "s2")
    race(store, ("channel", "set", "prod", "s3"))
    assert "-> s2" in _ok(store, "channel", "rollback", "prod")  # back from s3, not from s2
    history = json.loads(_ok(store, "channel", "history", "prod", "--json"))
    assert [e["snapshot"] for e in history] == ["s1", "s2", "s3", "s2"]


def test_snapshot_merge_of_a_source_removed_just_before_its_lock_is_refused(
    tmp_path: Path, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "a", "--from-debs", str(debs_dir["hello"]))
    _ok(store, "snapshot", "create", "b", "--from-debs", str(debs_dir["hello"]))
    race(store, ("snapshot", "rm", "b"))
    _refused(run_cli(store, "snapshot", "merge", "m", "a", "b"), "no snapshot named 'b'")
    assert "m" not in _ok(store, "snapshot", "list").split()


def test_publish_of_a_channel_moved_just_before_its_lock_publishes_where_it_points(
    tmp_path: Path, debs_dir: dict[str, Path], publish_key: TestKey,
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "s1", "--from-debs", str(debs_dir["hello"]))
    _ok(store, "snapshot", "create", "s2", "--from-debs", str(debs_dir["hello"]),
        str(debs_dir["tool"]))  # fmt: skip
    _ok(store, "channel", "set", "prod", "s1")
    race(store, ("channel", "set", "prod", "s2"))
    r = run_cli(store, "publish", "fs", "prod", str(tmp_path / "www"), "--suite", "stable",
                "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "s2" in r.output, r.output
    packages = (tmp_path / "www/dists/stable/main/binary-amd64/Packages").read_text()
    assert "Package: tool" in packages  # s2's content, not s1's


# --- the commands converted to per-resource locks (issue 13) ------------------------------------


def test_snapshot_filter_of_a_source_removed_just_before_its_lock_is_refused(
    tmp_path: Path, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "a", "--from-debs", str(debs_dir["hello"]))
    race(store, ("snapshot", "rm", "a"))
    _refused(run_cli(store, "snapshot", "filter", "a", "f", "hello"), "no snapshot named 'a'")
    assert "f" not in _ok(store, "snapshot", "list").split()


def test_channel_set_to_a_snapshot_removed_just_before_its_lock_is_refused(
    tmp_path: Path, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "s1", "--from-debs", str(debs_dir["hello"]))
    race(store, ("snapshot", "rm", "s1"))
    _refused(run_cli(store, "channel", "set", "prod", "s1"), "no snapshot named 's1'")
    assert not (store / "channels" / "prod.json").exists()


def test_snapshot_of_a_mirror_removed_just_before_its_lock_is_refused(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey,
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    race(store, ("mirror", "rm", "up"))
    _refused(run_cli(store, "snapshot", "create", "s", "--from-mirror", "up"),
             "no mirror named 'up'")  # fmt: skip
    assert not (store / "snapshots" / "s").exists()


def test_a_default_snapshot_name_taken_just_before_its_lock_is_passed_over(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey, debs_dir: dict[str, Path],
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    from datetime import UTC, datetime

    store = tmp_path / "store"
    _ok(store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    _ok(store, "mirror", "update", "up")
    stem = f"up-{datetime.now(UTC).strftime('%Y%m%d')}"
    race(store, ("snapshot", "create", stem, "--from-debs", str(debs_dir["hello"])))
    _ok(store, "snapshot", "create", "--from-mirror", "up")
    assert {stem, f"{stem}-2"} <= set(_ok(store, "snapshot", "list").split())
    assert json.loads(_ok(store, "snapshot", "show", stem, "--json"))["sources"][0]["kind"] == (
        "debs"
    )


def test_bundle_export_of_a_snapshot_removed_just_before_its_lock_is_refused(
    tmp_path: Path, debs_dir: dict[str, Path], publish_key: TestKey,
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "snapshot", "create", "s1", "--from-debs", str(debs_dir["hello"]))
    race(store, ("snapshot", "rm", "s1"))
    r = run_cli(store, "bundle", "export", "s1", "-o", str(tmp_path / "b"),
                "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    _refused(r, "no snapshot named 's1'")
    assert not (tmp_path / "b").exists()


def test_mirror_edit_keeps_an_edit_made_just_before_its_lock(
    tmp_path: Path, upstream: FaultServer, test_key: TestKey,
    race: Callable[[Path, tuple[str, ...]], list[str]],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    _ok(store, "mirror", "add", "up", upstream.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    race(store, ("mirror", "edit", "up", "--filter", "hello", "--no-check"))
    _ok(store, "mirror", "edit", "up", "-a", "amd64,i386", "--no-check")
    spec = json.loads(_ok(store, "mirror", "show", "up", "--json"))["spec"]
    assert spec["filter"] == "hello" and spec["architectures"] == ["amd64", "i386"], spec
