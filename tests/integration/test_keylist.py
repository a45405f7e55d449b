"""Merge and diff work on key lists (keylist.py) made when an index is stored: the merged
index is byte for byte what merging the parsed packages gives, under every policy, and a
missing or damaged key list is made again from the index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkit import archive, keylist, mirror, snapshot
from mirrorkit import merge as merge_rule
from mirrorkit.models import IndexRef, MergePolicy
from mirrorkit.store import Store
from tests.helpers.archive import build_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, test_key: TestKey) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("keylist")
    debs = tmp / "debs"
    day1 = [
        build_deb(debs, "kdoc", "6.1.76-1", "all"),
        build_deb(debs, "kdoc", "6.1.90-1", "all"),
        build_deb(debs, "ksrc", "6.1.76-1", "amd64"),
        build_deb(debs, "tool", "1:1.0", "amd64"),
        build_deb(debs, "lib", "2.0~rc1", "amd64"),
    ]
    day2 = [
        *day1[:3],
        build_deb(debs, "tool", "1.5", "amd64"),  # lower: the epoch is gone
        build_deb(debs, "lib", "2.0", "amd64"),
        build_deb(debs, "new", "0.1", "amd64"),
    ]
    root = tmp / "store"
    for name, pkgs in (("d1", day1), ("d2", day2)):
        archive_ = build_archive(tmp / name, test_key, {"main": pkgs})
        with FaultServer(archive_.root) as server:
            keyring = str(archive_.key.public_keyring)
            assert run_cli(root, "mirror", "add", name, server.url, "stable",
                           "--keyring", keyring).exit_code == 0  # fmt: skip
            assert run_cli(root, "mirror", "update", name).exit_code == 0
        assert run_cli(root, "snapshot", "create", name, "--from-mirror", name).exit_code == 0
    yield root


def _parsed_merge(store: Store, sources: list[tuple[IndexRef, ...]], policy: str) -> list[bytes]:
    loaded = [
        [(r.component, r.architecture, mirror.packages(store, [r])) for r in refs]
        for refs in sources
    ]
    merged = merge_rule.merge_indexes(loaded, policy)
    return [archive.render_packages(pkgs) for _, pkgs in sorted(merged.items())]


def test_merge_on_key_lists_is_the_merge_of_the_packages(store: Path) -> None:
    s = Store(store)
    infos = [snapshot.load(s, n) for n in ("d1", "d2")]
    for ref in (r for i in infos for r in i.indexes):
        assert keylist.exists(s, ref.sha256)  # made by mirror update
    for policy in MergePolicy:
        sources = [infos[0].indexes, infos[1].indexes]
        refs = snapshot.merge_indexes(s, sources, policy)
        got = [s.meta.get(r.sha256) for r in sorted(refs, key=lambda r: r.architecture)]
        assert got == _parsed_merge(s, list(sources), policy.value), policy
        # the merged index has its key list, equal to what parsing it gives
        for r in refs:
            keys = keylist.keys(s, r)
            assert keys is not None
            parsed = mirror.packages(s, [r])
            assert [(k.name, k.version, k.sha256) for k in keys] == [
                (p.name, p.version, p.sha256) for p in parsed
            ]


def test_diff_and_a_damaged_key_list(store: Path) -> None:
    s = Store(store)
    r = run_cli(store, "snapshot", "diff", "d1", "d2", "--json")
    assert r.exit_code == 0, r.output
    before = r.stdout
    assert '"downgraded"' in before and '"tool"' in before and '"new"' in before
    ref = snapshot.load(s, "d1").indexes[0]
    path = next(s.root.glob(f"cache/keys/*/{ref.sha256}.zst"))
    path.write_bytes(b"damaged")
    assert run_cli(store, "snapshot", "diff", "d1", "d2", "--json").stdout == before
    assert keylist.keys(s, ref) is not None and path.read_bytes() != b"damaged"
    path.unlink()
    assert run_cli(store, "snapshot", "diff", "d1", "d2", "--json").stdout == before
    assert path.exists()


def test_split_stanzas_is_iter_stanzas() -> None:
    texts = [
        b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n\n",
        b"\nPackage: a\n\nPackage: b",
        b"Package: a\r\n\r\nPackage: b\r\n",
        b"Package: a\n \nPackage: b\n\n\n\nPackage: c\n",
        b"",
        b"\n\n",
    ]
    for text in texts:
        assert keylist.split_stanzas(text) == list(archive.iter_stanzas(text)), text
