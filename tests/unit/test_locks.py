"""The store's locks (``Store.locked``): whole store or named resources, threads and processes,
re-entrancy, bounded waits, and a killed holder's lock taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkit.errors import StoreLockedError, UsageError
from mirrorkit.store import Store
from mirrorkit.store.locks import set_wait_reporter


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _in_thread(fn: Callable[[], object]) -> BaseException | None:
    """Run ``fn`` on another thread; what it raised, or None."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    return box[0] if box else None


def _try(store: Store, *resources: str, wait: float | None = None) -> None:
    with store.locked(*resources, wait=wait):
        pass


@pytest.fixture
def heard() -> Iterator[list[str]]:
    lines: list[str] = []
    set_wait_reporter(lines.append)
    yield lines
    set_wait_reporter(None)


def test_other_resources_go_ahead_the_same_one_is_refused_naming_it(store: Store) -> None:
    with store.locked("mirror/a"):
        assert _in_thread(lambda: _try(store, "mirror/b", "snapshot/a")) is None
        err = _in_thread(lambda: _try(store, "snapshot/x", "mirror/a"))
        assert isinstance(err, StoreLockedError)
        assert err.resource == "mirror/a"
        assert "mirror/a" in err.message and f"pid {os.getpid()}" in err.message
        # the whole store waits for every resource holder, and names what is in use
        err = _in_thread(lambda: _try(store))
        assert isinstance(err, StoreLockedError) and err.resource == "store"
        assert "mirror/a" in err.message, err.message
    assert _in_thread(lambda: _try(store)) is None
    assert (store.root / "locks" / "mirror" / "a.lock").is_file()


def test_the_whole_store_excludes_every_resource(store: Store) -> None:
    with store.locked():
        err = _in_thread(lambda: _try(store, "mirror/a"))
        assert isinstance(err, StoreLockedError) and err.resource == "store"
        assert "is locked by another command of this process" in err.message
    assert _in_thread(lambda: _try(store, "mirror/a")) is None


def test_reentrant_in_a_thread(store: Store) -> None:
    with store.locked("mirror/a"):
        with store.locked("mirror/a", "snapshot/s"):  # adds snapshot/s, keeps mirror/a
            assert isinstance(_in_thread(lambda: _try(store, "snapshot/s")), StoreLockedError)
        assert _in_thread(lambda: _try(store, "snapshot/s")) is None  # released with its level
        assert isinstance(_in_thread(lambda: _try(store, "mirror/a")), StoreLockedError)
        with pytest.raises(RuntimeError, match="whole store"), store.locked():
            pass
    with store.locked(), store.locked("mirror/a"), store.locked():
        assert isinstance(_in_thread(lambda: _try(store, "mirror/b")), StoreLockedError)
    # the bookkeeping is per store directory, not per Store object
    with store.locked("mirror/a"), Store(store.root).locked("mirror/a"):
        pass


def test_work_an_operation_hands_to_a_thread_is_still_that_operation(store: Store) -> None:
    async def operation() -> None:
        with store.locked("mirror/a"):
            await asyncio.to_thread(_try, store, "mirror/a", "snapshot/s")
            # a thread started on its own is another operation
            assert isinstance(_in_thread(lambda: _try(store, "mirror/a")), StoreLockedError)

    asyncio.run(operation())
    with store.locked():
        assert asyncio.run(asyncio.to_thread(_try, store, "mirror/b")) is None


def test_wait_takes_it_when_released_and_says_what_it_waits_for(
    store: Store, heard: list[str]
) -> None:
    released = threading.Event()

    def hold() -> None:
        with store.locked("mirror/a"):
            time.sleep(0.4)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.1)
    with store.locked("mirror/a", wait=10):
        assert released.is_set()
    holder.join()
    assert len(heard) == 1 and "waiting up to 10 s: mirror/a is locked" in heard[0], heard


def test_wait_is_bounded(store: Store, heard: list[str]) -> None:
    with store.locked("mirror/a"):
        err = _in_thread(lambda: _try(store, "mirror/a", wait=0.3))
    assert isinstance(err, StoreLockedError)
    assert "gave up after waiting" in err.message and "mirror/a" in err.message


def test_bad_resource_names_are_refused(store: Store) -> None:
    for bad in ("", "mirror/../x", "/abs", "mirror/", "a b"):
        with pytest.raises(UsageError):
            _try(store, bad)


HOLD = """
import sys, time
from pathlib import Path
from mirrorkit.store import Store
with Store(Path(sys.argv[1])).locked(*sys.argv[2:]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_holder_releases_its_lock(store: Store) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store.root), "mirror/a"], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        with pytest.raises(StoreLockedError) as caught:
            _try(store, "mirror/a")
        assert f"pid {proc.pid}" in caught.value.message
        with pytest.raises(StoreLockedError, match="mirror/a"):
            _try(store)  # gc cannot start either
        _try(store, "mirror/b")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _try(store, "mirror/a")  # at once: the kernel released it
        _try(store)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
