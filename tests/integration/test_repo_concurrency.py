"""Many writers, no lost update: 16 processes add 16 different packages to one repo at once;
each queues on the repo's lock and re-reads the head under it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mirrorkit
from tests.helpers.debs import build_deb


def test_sixteen_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    debs = [build_deb(tmp_path / "debs", f"app{i:02d}", "1.0", "amd64") for i in range(16)]
    mirrorkit.repo_create("ci", store=store)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirrorkit",
                "--store",
                str(store),
                "repo",
                "add",
                "ci",
                str(deb),
                "--wait",
                "120",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for deb in debs
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, (out, err)
    refs = [p.ref for p in mirrorkit.repo_search("ci", "Name", store=store)]
    assert refs == [f"app{i:02d}_1.0_amd64" for i in range(16)]
    history = mirrorkit.repo_history("ci", store=store)
    assert [e.n for e in history] == list(range(1, 17))
    assert sorted(e.added[0].split()[0] for e in history) == refs
    # Each change's parent is the head before it: a chain, no fork.
    parents = [
        mirrorkit.snapshot_show(e.snapshot, store=store).snapshot.sources[0].parent for e in history
    ]
    assert parents == [None, *(e.snapshot for e in history[:-1])]
