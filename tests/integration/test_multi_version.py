"""A suite may list several versions of one package (bookworm lists two of linux-doc,
linux-doc-6.1, linux-source and linux-source-6.1): every snapshot operation keeps them as the
user's merge policy says (issue 18 found merge keeping 63,436 of 63,440 packages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorkit import snapshot
from mirrorkit.store import Store
from tests.helpers.archive import build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


def _refs(store: Path, name: str) -> list[str]:
    r = run_cli(store, "snapshot", "search", name, "Name (% *)")
    assert r.exit_code == 0, r.output
    return r.stdout.split()


@pytest.fixture
def store(tmp_path: Path, test_key: TestKey) -> object:
    debs = tmp_path / "debs"
    archive = build_archive(
        tmp_path / "upstream",
        test_key,
        {
            "main": [
                build_deb(debs, "kdoc", "6.1.76-1", "all"),
                build_deb(debs, "kdoc", "6.1.90-1", "all"),
                build_deb(debs, "ksrc", "6.1.76-1", "amd64"),
                build_deb(debs, "ksrc", "6.1.90-1", "amd64"),
                build_deb(debs, "tool", "1.0", "amd64", depends="ksrc (>= 6.1.80)"),
            ]
        },
    )
    with FaultServer(archive.root) as server:
        store = tmp_path / "store"
        r = run_cli(store, "mirror", "add", "up", server.url, "stable",
                    "--keyring", str(archive.key.public_keyring))  # fmt: skip
        assert r.exit_code == 0, r.output
        assert run_cli(store, "mirror", "update", "up").exit_code == 0
        yield store


BOTH = [
    "kdoc_6.1.76-1_all",
    "kdoc_6.1.90-1_all",
    "ksrc_6.1.76-1_amd64",
    "ksrc_6.1.90-1_amd64",
    "tool_1.0_amd64",
]


def test_two_versions_in_one_index_survive_merge_diff_and_filter(store: Path) -> None:
    for name in ("a", "b"):
        assert run_cli(store, "snapshot", "create", name, "--from-mirror", "up").exit_code == 0
    assert _refs(store, "a") == BOTH

    # merge: 'later' keeps what the later source holds, every version of it; so does
    # 'all-versions'; 'latest' keeps the highest version only (as aptly's -latest).
    for flag, dest in (("", "later"), ("--all-versions", "every")):
        r = run_cli(store, "snapshot", "merge", dest, "a", "b", *([flag] if flag else []))
        assert r.exit_code == 0, r.output
        assert _refs(store, dest) == BOTH
    assert run_cli(store, "snapshot", "merge", "newest", "a", "b", "--latest").exit_code == 0
    assert _refs(store, "newest") == ["kdoc_6.1.90-1_all", "ksrc_6.1.90-1_amd64", "tool_1.0_amd64"]

    # sync's path: one snapshot of several mirrors' states, merged
    info = snapshot.create_from_mirrors(Store(store), "both", ["up", "up"], "later")
    assert info.packages == 5

    # diff: nothing changed between two snapshots that both hold both versions; a snapshot
    # without one of them shows exactly that version removed.
    r = run_cli(store, "snapshot", "diff", "a", "later", "--json")
    assert r.exit_code == 0 and all(v == [] for v in json.loads(r.stdout).values()), r.stdout
    r = run_cli(store, "snapshot", "diff", "a", "newest", "--json")
    removed = json.loads(r.stdout)["removed"]
    assert sorted((c["name"], c["old"]) for c in removed) == [
        ("kdoc", "6.1.76-1"),
        ("ksrc", "6.1.76-1"),
    ]

    # filter: a query that names both versions keeps both; a dependency keeps what it needs
    r = run_cli(store, "snapshot", "filter", "a", "docs", "kdoc")
    assert r.exit_code == 0, r.output
    assert _refs(store, "docs") == ["kdoc_6.1.76-1_all", "kdoc_6.1.90-1_all"]
    r = run_cli(store, "snapshot", "filter", "a", "web", "kdoc | tool", "--with-deps")
    assert r.exit_code == 0, r.output
    assert _refs(store, "web") == [
        "kdoc_6.1.76-1_all",
        "kdoc_6.1.90-1_all",
        "ksrc_6.1.90-1_amd64",
        "tool_1.0_amd64",
    ]
