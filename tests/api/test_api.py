"""mirrorkit's Python API against a real upstream on loopback: a fresh store, the locks the CLI
takes, the checks it used to make, only MirrorkitError out, nothing printed, no process-wide
state left changed, and the sync functions inside a running event loop."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import mirrorkit
from tests.helpers.archive import Archive
from tests.helpers.httpserver import FaultServer


@contextmanager
def held_lock(store: Path) -> Iterator[None]:
    """The store lock as another mirrorkit process holds it (flock is per open file)."""
    store.mkdir(parents=True, exist_ok=True)
    fd = os.open(store / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _add(store: Path, upstream: FaultServer, archive: Archive, **kw: object) -> None:
    mirrorkit.mirror_add("up", upstream.url + "/", "stable", keyring=archive.key.public_keyring,
                         store=store, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_fresh_store_is_created_and_nothing_is_printed(
    tmp_path: Path, upstream: FaultServer, archive: Archive, capfd: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "new" / "store"
    added = mirrorkit.mirror_add(
        "up", upstream.url + "/", "stable", components=["main,contrib", "non-free"],
        fingerprints=[f"{archive.key.fingerprint[:20].lower()} {archive.key.fingerprint[20:]}"],
        keyring=os.path.relpath(archive.key.public_keyring), store=store,
        no_check=True,  # the upstream has only main: what is tested here is the parsing
    )  # fmt: skip
    spec = added.mirrors[0].spec
    assert spec.url == upstream.url and spec.components == ("main", "contrib", "non-free")
    assert spec.fingerprints == (archive.key.fingerprint.upper(),)
    assert Path(spec.keyring).is_absolute()
    assert mirrorkit.mirror_show("up", store=store).spec == spec
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]  # results are frozen
    assert capfd.readouterr() == ("", "")


def test_commands_that_change_the_store_take_its_lock(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    with held_lock(store), pytest.raises(mirrorkit.StoreLockedError):
        _add(store, upstream, archive)
    _add(store, upstream, archive)
    with held_lock(store), pytest.raises(mirrorkit.StoreLockedError):
        mirrorkit.mirror_rm("up", store=store)
    with held_lock(store), pytest.raises(mirrorkit.StoreLockedError):
        mirrorkit.mirror_update("up", store=store)
    assert mirrorkit.mirror_rm("up", store=store).name == "up"
    assert mirrorkit.mirror_list(store=store) == ()


def test_arguments_are_checked_before_the_store_is_touched(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    with pytest.raises(mirrorkit.UsageError, match="--with-deps"):
        _add(store, upstream, archive, with_deps=True)
    with pytest.raises(mirrorkit.QueryError):
        _add(store, upstream, archive, filter="hello (>>")
    with pytest.raises(mirrorkit.UsageError, match="NAME URL SUITE"):
        mirrorkit.mirror_add("up", store=store)
    with pytest.raises(mirrorkit.UsageError, match="--jobs"):
        mirrorkit.mirror_update("up", jobs=0, store=store)
    with pytest.raises(mirrorkit.UsageError, match="invalid rate"):
        mirrorkit.mirror_update("up", limit_rate="fast", store=store)
    with pytest.raises(mirrorkit.UsageError, match="exclude each other"):
        mirrorkit.snapshot_merge("d", ["a"], latest=True, all_versions=True, store=store)
    with pytest.raises(mirrorkit.UsageError, match="--with-deps"):
        mirrorkit.snapshot_filter("a", "b", "hello", with_recommends=True, store=store)
    assert not store.exists()
    with pytest.raises(mirrorkit.NotFoundError):
        mirrorkit.mirror_show("up", store=store)
    (tmp_path / "file").write_text("")
    with pytest.raises(mirrorkit.UsageError, match="not a directory"):
        mirrorkit.mirror_list(store=tmp_path / "file")


def test_the_default_store_is_the_cli_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upstream: FaultServer, archive: Archive
) -> None:
    monkeypatch.setenv("MIRRORKIT_HOME", str(tmp_path / "home"))
    mirrorkit.mirror_add("up", upstream.url, "stable", keyring=archive.key.public_keyring)
    assert (tmp_path / "home" / "mirrors" / "up.json").is_file()


def test_an_unexpected_error_leaves_as_a_mirrorkit_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirrorkit import mirror

    def broken(store: object) -> list[object]:
        raise ValueError("boom")

    monkeypatch.setattr(mirror, "list_all", broken)
    with pytest.raises(mirrorkit.MirrorkitError, match="unexpected ValueError: boom") as info:
        mirrorkit.mirror_list(store=tmp_path)
    assert isinstance(info.value.__cause__, ValueError)


def test_updates_leave_no_process_wide_state_behind(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    _add(store, upstream, archive)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0123)
    try:
        result = mirrorkit.mirror_update("up", store=store)
        assert result.changed and result.packages == 7
        assert sys.getswitchinterval() == pytest.approx(0.0123)
        assert gc.isenabled() and gc.get_freeze_count() == 0
        gc.disable()  # a host that runs without the cyclic GC keeps it off
        try:
            mirrorkit.mirror_rm("up", store=store)
            _add(store, upstream, archive)
            mirrorkit.mirror_update("up", store=store)
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        sys.setswitchinterval(interval)


def test_sync_and_async_functions_inside_a_running_loop(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"

    async def main() -> tuple[bool, bool, int]:
        _add(store, upstream, archive)
        first = await mirrorkit.mirror_update_async("up", store=store)
        again = mirrorkit.mirror_update("up", store=store)  # a plain call from async code
        snap = mirrorkit.snapshot_create("s", from_mirror="up", store=store)
        return first.changed, again.changed, snap.packages

    assert asyncio.run(main()) == (True, False, 7)
    found = mirrorkit.snapshot_search("s", "hello", store=store)
    assert [p.ref for p in found] == ["hello_1.0_amd64"]
    why = mirrorkit.snapshot_why("s", "libgreet", from_="hello", store=store)
    assert [(s.package.name, bool(s.dependency)) for s in why] == [("hello", False),
                                                                    ("libgreet", True)]  # fmt: skip
    assert mirrorkit.snapshot_verify("s", store=store).ok
