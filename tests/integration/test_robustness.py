"""Ctrl-C and a full disk: clear errors, the previous state intact, and the next run resumes."""

from __future__ import annotations

import json
import os
import signal
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
from tests.mk import run_cli


def _state(store: Path) -> object:
    return json.loads(run_cli(store, "mirror", "show", "up", "--json").stdout)["state"]


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_or_sigterm_keeps_state_and_next_run_resumes(
    tmp_path: Path, upstream: FaultServer, archive: Archive, signum: int, code: int, said: str
) -> None:
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", upstream.url, "stable",
                "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0
    upstream.add_fault("*.deb", "slow", times=-1, delay=0.4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirrorkit", "--store", str(store), "mirror", "update", "up",
         "--jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list((store / "pool").glob("*/*"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert f"error: {said}; nothing was committed" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert _state(store) is None  # nothing committed
    kept = len(list((store / "pool").glob("*/*")))
    assert 2 <= kept < 7

    upstream.clear_faults()
    upstream.clear_log()
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 0, r.output
    assert f"fetched {7 - kept} files, reused {kept}" in r.stdout
    assert upstream.count("*.deb") == 7 - kept
    assert _state(store) is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_full_disk_is_a_clear_error_and_commits_nothing(
    tmp_path: Path, small_disk: Path, test_key: TestKey, make_server: Callable[[Path], FaultServer]
) -> None:
    big = build_deb(tmp_path / "debs", "big", "1.0", "all", payload_size=2_000_000)
    up = build_archive(tmp_path / "up", test_key, {"main": [big]}, suite="stable",
                       codename="stable")  # fmt: skip
    srv = make_server(up.root)
    store = small_disk / "store"
    r = run_cli(store, "mirror", "add", "up", srv.url, "stable",
                "--keyring", str(test_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 1
    assert "error:" in r.stderr and "free" in r.stderr and "disk" in r.stderr
    assert _state(store) is None
    assert list((store / "pool").glob("*/*")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a filesystem needs root")
def test_read_only_store_is_a_clear_error(
    tmp_path: Path, small_disk: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = small_disk / "store"
    r = run_cli(store, "mirror", "add", "up", upstream.url, "stable",
                "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    proc = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {proc.stderr.strip()}")
    for args in (("mirror", "update", "up"), ("channel", "set", "prod", "x"), ("gc",)):
        r = run_cli(store, *args)
        assert r.exit_code == 1, (args, r.output)
        assert f"error: {store / 'lock'}: cannot write" in r.stderr, r.stderr
        assert "read-only" in r.stderr and "Traceback" not in r.output
