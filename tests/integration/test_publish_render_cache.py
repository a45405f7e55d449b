"""A snapshot's indices are rendered and compressed once (publish/render.py): another suite,
a switch back and a re-publish read them from the store, byte for byte; gc keeps them while
their snapshot lives; a damaged or lost entry is rendered again to the same bytes."""

from __future__ import annotations

import lzma
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

import mirrorkit
from mirrorkit import compression
from mirrorkit.models import Package
from mirrorkit.publish import plan, render
from mirrorkit.store import Store
from tests.helpers.gpgkeys import TestKey

INDEX = "main/binary-amd64/Packages"


def _publish(store: Path, name: str, tree: Path, suite: str, key: TestKey) -> None:
    mirrorkit.publish_fs(
        name,
        tree,
        key=key.fingerprint,
        suite=suite,
        gnupghome=str(key.gnupghome),
        store=store,
    )


def _indices(tree: Path, suite: str) -> list[bytes]:
    base = tree / "dists" / suite / INDEX
    return [Path(f"{base}{suffix}").read_bytes() for suffix in ("", ".gz", ".xz")]


def test_indices_render_once_per_snapshot(
    tmp_path: Path,
    publish_key: TestKey,
    debs_dir: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    mirrorkit.snapshot_create("s1", from_debs=list(debs_dir.values()), store=store)
    tree = tmp_path / "tree"
    _publish(store, "s1", tree, "one", publish_key)
    first = _indices(tree, "one")
    assert lzma.decompress(first[2]) == first[0]
    cached = list(render.entries(Store(store)))
    assert len(cached) == 1  # main/amd64 (the "all" packages folded in)

    # Another suite, then a re-publish: nothing is rendered again, and the bytes are the same.
    def no_render(pkgs: Sequence[Package]) -> plan.RenderedIndex:
        raise AssertionError("rendered again")

    monkeypatch.setattr(render, "render_index", no_render)
    _publish(store, "s1", tree, "two", publish_key)
    _publish(store, "s1", tree, "one", publish_key)
    assert _indices(tree, "two") == first == _indices(tree, "one")

    # gc keeps what a living snapshot's entry needs.
    mirrorkit.gc(store=store)
    _publish(store, "s1", tree, "three", publish_key)
    assert _indices(tree, "three") == first

    # A damaged object is no error: the index is rendered again, to the same bytes.
    monkeypatch.undo()
    _, _, outputs = cached[0]
    xz_object = Store(store).meta.path(outputs[2])
    xz_object.chmod(0o644)
    xz_object.write_bytes(b"damaged")
    _publish(store, "s1", tree, "four", publish_key)
    assert _indices(tree, "four") == first

    # Without its snapshot (and tree), gc removes the entry and its objects.
    mirrorkit.snapshot_rm("s1", force=True, store=store)
    for suite in ("one", "two", "three", "four"):
        (tree / "dists" / suite).unlink()
    mirrorkit.gc(store=store)
    assert list(render.entries(Store(store))) == []
    assert not any(Store(store).meta.has(sha) for sha in outputs)


def test_xz_in_independent_blocks_reads_back_everywhere(tmp_path: Path) -> None:
    data = b"".join(b"Package: p%d\nVersion: 1.0\n\n" % n for n in range(40_000))
    packed = compression.compress_xz(data, preset=1, block=256 << 10)
    assert packed == compression.compress_xz(data, preset=1, block=256 << 10)  # deterministic
    blocks = compression.xz_blocks(packed)
    assert blocks is not None and len(blocks) == -(-len(data) // (256 << 10))
    assert lzma.decompress(packed) == data
    assert compression.decompress(packed, "xz", "test") == data  # the parallel reader
    out = tmp_path / "Packages.xz"
    out.write_bytes(packed)
    proc = subprocess.run(["xz", "-dc", str(out)], capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stdout == data
    # Short input: one ordinary stream.
    assert lzma.decompress(compression.compress_xz(b"x", block=16)) == b"x"
    assert compression.compress_xz(b"") == lzma.compress(b"", check=lzma.CHECK_CRC64)
