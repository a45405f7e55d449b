"""Long work does not block short work (issue 13): commands lock what they change, not the store.

A real ``python -m mirrorkit mirror update`` process is kept mid-download (the loopback upstream
holds its package requests unanswered) while other commands run: those on other resources
succeed at once; those on the same mirror, and gc, fail at once naming it and its pid, or wait
with ``--wait`` and then succeed; nothing is torn.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.archive import Archive, build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import Result, run_cli


def _ok(store: Path, *args: str, gnupghome: Path | None = None) -> Result:
    r = run_cli(store, *args, gnupghome=gnupghome)
    assert r.exit_code == 0, r.output
    return r


def _locked(r: Result, resource: str, pid: int) -> None:
    assert r.exit_code == 1, r.output
    assert f"{resource}" in r.stderr and f"pid {pid}" in r.stderr, r.stderr
    assert "--wait" in r.stderr and "Traceback" not in r.output


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reaped() -> Iterator[None]:
    """Whatever a test started is ended (by its pid) when the test ends, passed or not."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _start(store: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    """mirrorkit in a process of its own, stderr to ``log`` (read while it runs)."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirrorkit", "--store", str(store), *args],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    _STARTED.append(proc)
    return proc


def _until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, f"{what}: the process ended: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{what}: never happened"
        time.sleep(0.02)


def _done(proc: subprocess.Popen[str], log: Path) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{out}\n{log.read_text()}"
    return out


@pytest.fixture
def slow(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> Iterator[FaultServer]:  # fmt: skip
    """A second upstream whose package downloads wait until the test releases them."""
    extra = build_deb(tmp_path / "extra", "extra", "1.0", "amd64", payload_size=20_000)
    big: Archive = build_archive(
        tmp_path / "big", test_key, {"main": [*debs_dir.values(), extra]},
        suite="stable", codename="stable", architectures=["amd64"],
    )  # fmt: skip
    srv = make_server(big.root)
    srv.hold("*.deb")
    yield srv
    srv.release()


def test_a_long_update_blocks_only_what_it_changes(
    tmp_path: Path, upstream: FaultServer, slow: FaultServer, test_key: TestKey,
    publish_key: TestKey, debs_dir: dict[str, Path],
) -> None:  # fmt: skip
    store = tmp_path / "store"
    keyring = str(test_key.public_keyring)
    gpg = publish_key.gnupghome
    _ok(store, "mirror", "add", "up", upstream.url, "stable", "--keyring", keyring)
    _ok(store, "mirror", "add", "big", slow.url, "stable", "--keyring", keyring)
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", "s1", "--from-mirror", "up")

    update = _start(store, tmp_path / "update.err", "mirror", "update", "big")
    _until("the update downloads", lambda: slow.count("*.deb") > 0, update)
    pid = update.pid

    # Other resources: at once, while it holds mirror/big.
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "filter", "s1", "f1", "hello", "--with-deps")
    _ok(store, "snapshot", "merge", "m1", "s1", "f1")
    _ok(store, "channel", "set", "prod", "f1")
    _ok(store, "publish", "fs", "prod", str(tmp_path / "www"), "--key", publish_key.fingerprint,
        gnupghome=gpg)  # fmt: skip
    _ok(store, "bundle", "export", "s1", "-o", str(tmp_path / "s1.bundle"),
        "--key", publish_key.fingerprint, gnupghome=gpg)  # fmt: skip
    _ok(store, "gc", "--dry-run")

    # The same mirror, and gc: refused at once, naming what holds it.
    for args in (("mirror", "update", "big"), ("mirror", "rm", "big"),
                 ("snapshot", "create", "b1", "--from-mirror", "big")):  # fmt: skip
        _locked(run_cli(store, *args), "mirror/big", pid)
    _locked(run_cli(store, "gc"), "mirror/big", pid)

    # ...or waiting for it, saying so.
    second_log, gc_log = tmp_path / "second.err", tmp_path / "gc.err"
    second = _start(store, second_log, "mirror", "update", "big", "--wait", "120")
    _until("the second update waits", lambda: "waiting" in second_log.read_text(), second)
    waiting = second_log.read_text()
    assert "waiting up to 120 s: mirror/big is locked by another mirrorkit process" in waiting
    assert f"pid {pid}" in waiting, waiting
    collect = _start(store, gc_log, "--wait", "120", "gc")
    _until("gc waits", lambda: "waiting" in gc_log.read_text(), collect)
    assert "mirror/big" in gc_log.read_text()

    slow.release()
    assert "big" in _done(update, tmp_path / "update.err")
    _done(second, second_log)  # after the first: up to date
    _done(collect, gc_log)

    # Nothing torn: every record readable, every snapshot intact, the mirror committed once.
    _ok(store, "snapshot", "create", "b1", "--from-mirror", "big")
    for snap in ("s1", "f1", "m1", "b1"):
        _ok(store, "snapshot", "verify", snap)
    state = json.loads(_ok(store, "mirror", "show", "big", "--json").stdout)["state"]
    assert state is not None and state["packages"] == len(debs_dir) + 1
    assert (tmp_path / "www/dists/prod/InRelease").is_file()


def test_gc_waits_for_no_one_when_the_store_is_idle_and_excludes_a_holder_of_any_lock(
    tmp_path: Path, slow: FaultServer, test_key: TestKey
) -> None:
    store = tmp_path / "store"
    _ok(store, "mirror", "add", "big", slow.url, "stable",
        "--keyring", str(test_key.public_keyring))  # fmt: skip
    _ok(store, "gc")
    update = _start(store, tmp_path / "update.err", "mirror", "update", "big")
    _until("the update downloads", lambda: slow.count("*.deb") > 0, update)
    r = run_cli(store, "--wait", "0.5", "gc")
    assert r.exit_code == 1, r.output
    assert "gave up after waiting" in r.stderr and "mirror/big" in r.stderr, r.stderr
    update.kill()  # SIGKILL: no cleanup; the kernel releases its locks
    update.communicate(timeout=30)
    assert (store / "locks" / "mirror" / "big.lock").is_file()
    _ok(store, "gc")
    assert not (store / "locks").exists()  # gc, alone in the store, clears the lock files
    slow.release()
    _ok(store, "mirror", "update", "big")
