"""Translations and Contents (issue 15): mirrored from what the signed Release lists, carried by
snapshots, filters, merges and bundles, and published beside the Packages indices. The
upstream's Contents come from ``apt-ftparchive contents``, which is also the oracle for the
Contents mirrorkit generates for a filtered snapshot."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkit import archive as core_archive
from tests.helpers.archive import Archive, build_archive
from tests.helpers.bundles import tree_digest
from tests.helpers.extras import add_extras, ftparchive_contents, rewrite_release
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

GERMAN = {"hello": "Ein freundlicher Gruss.", "tool": "Ein Werkzeug."}
OWN_TEXT = {"hello": "The friendliest greeter there is: it says hello in many languages."}


@pytest.fixture(scope="module")
def upstream_x(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey, debs_dir: dict[str, Path]
) -> Iterator[tuple[Archive, FaultServer]]:
    root = tmp_path_factory.mktemp("extras") / "upstream"
    up = build_archive(root, test_key, {"main": list(debs_dir.values())})
    add_extras(up, {"en": OWN_TEXT, "de": GERMAN})
    with FaultServer(up.root) as srv:
        yield up, srv


@pytest.fixture(scope="module")
def store_x(
    tmp_path_factory: pytest.TempPathFactory, upstream_x: tuple[Archive, FaultServer]
) -> Path:
    up, srv = upstream_x
    store = tmp_path_factory.mktemp("extras-store") / "store"
    r = run_cli(store, "mirror", "add", "up", srv.url, "stable", "--languages", "en,de",
                "--with-contents", "--keyring", str(up.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 0, r.output
    for args in (
        ("snapshot", "create", "full", "--from-mirror", "up"),
        ("snapshot", "filter", "full", "small", "hello", "--with-deps"),
    ):
        r = run_cli(store, *args)
        assert r.exit_code == 0, r.output
    return store


def _published(store: Path, snap: str, out: Path, key: TestKey) -> Path:
    r = run_cli(store, "publish", "fs", snap, str(out), "--key", key.fingerprint,
                gnupghome=key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    return out / "dists" / snap


def test_mirror_and_snapshots_say_what_they_hold(store_x: Path) -> None:
    r = run_cli(store_x, "mirror", "show", "up")
    assert "Languages: en, de" in r.stdout and "Contents: yes" in r.stdout
    assert "main/i18n/Translation-de: 2 descriptions" in r.stdout
    assert "main/i18n/Translation-en: 7 descriptions" in r.stdout
    assert "main/Contents-amd64: 7 files" in r.stdout
    r = run_cli(store_x, "snapshot", "show", "small")
    assert r.exit_code == 0, r.output
    assert "Extra: main/i18n/Translation-en: 2 descriptions" in r.stdout
    assert "Extra: main/i18n/Translation-de: 1 description" in r.stdout
    assert "Extra: main/Contents-amd64: 2 files" in r.stdout
    shown = json.loads(run_cli(store_x, "snapshot", "show", "full", "--json").stdout)
    assert {(e["kind"], e["name"]) for e in shown["extras"]} == {
        ("translation", "en"), ("translation", "de"), ("contents", "amd64")
    }  # fmt: skip


def test_unfiltered_snapshot_publishes_the_upstreams_files(
    store_x: Path, upstream_x: tuple[Archive, FaultServer], tmp_path: Path, publish_key: TestKey
) -> None:
    up, _ = upstream_x
    dists = _published(store_x, "full", tmp_path / "pub", publish_key)
    upstream_contents = gzip.decompress((up.dists / "main/Contents-amd64.gz").read_bytes())
    assert gzip.decompress((dists / "main/Contents-amd64.gz").read_bytes()) == upstream_contents
    upstream_en = lzma.decompress((up.dists / "main/i18n/Translation-en.xz").read_bytes())
    assert (dists / "main/i18n/Translation-en").read_bytes() == upstream_en
    release = (dists / "Release").read_text()
    # Listed under the plain names too: apt looks the targets up by them.
    for name in ("main/i18n/Translation-en", "main/i18n/Translation-de.xz",
                 "main/Contents-amd64", "main/Contents-amd64.gz"):  # fmt: skip
        assert f" {name}\n" in release, name
    plain_sha = hashlib.sha256(upstream_contents).hexdigest()
    assert f" {plain_sha} " in release


def test_filtered_snapshot_has_generated_contents_as_apt_ftparchive_writes(
    store_x: Path, upstream_x: tuple[Archive, FaultServer], tmp_path: Path, publish_key: TestKey
) -> None:
    up, _ = upstream_x
    dists = _published(store_x, "small", tmp_path / "pub", publish_key)
    # The oracle: apt-ftparchive over exactly the filtered snapshot's .debs.
    pool = tmp_path / "oracle" / "pool"
    pool.mkdir(parents=True)
    for rel, path in up.debs.items():
        if Path(rel).name.startswith(("hello_", "libgreet_")):
            shutil.copy(path, pool)
    oracle = ftparchive_contents(pool.parent, "pool", "amd64")
    assert oracle.count(b"\n") == 2
    assert gzip.decompress((dists / "main/Contents-amd64.gz").read_bytes()) == oracle
    en = (dists / "main/i18n/Translation-en").read_text()
    assert "Package: hello\n" in en and "Package: libgreet\n" in en and "tool" not in en
    assert OWN_TEXT["hello"] in en
    de = (dists / "main/i18n/Translation-de").read_text()
    assert GERMAN["hello"] in de and GERMAN["tool"] not in de


def test_merge_and_bundle_carry_the_extras(
    store_x: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    r = run_cli(store_x, "snapshot", "filter", "full", "tools", "tool")
    assert r.exit_code == 0, r.output
    r = run_cli(store_x, "snapshot", "merge", "both", "small", "tools")
    assert r.exit_code == 0, r.output
    dists = _published(store_x, "both", tmp_path / "pub", publish_key)
    contents = gzip.decompress((dists / "main/Contents-amd64.gz").read_bytes()).decode()
    assert [line.split()[-1] for line in contents.splitlines()] == ["hello", "libgreet", "tool"]
    de = (dists / "main/i18n/Translation-de").read_text()
    assert GERMAN["hello"] in de and GERMAN["tool"] in de

    bundle = tmp_path / "b.tar.zst"
    r = run_cli(store_x, "bundle", "export", "both", "--output", str(bundle),
                "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run_cli(store_x, "bundle", "show", str(bundle))
    assert "extra: main/i18n/Translation-de: 2 descriptions" in r.stdout, r.output
    other = tmp_path / "other"
    r = run_cli(other, "bundle", "import", str(bundle), "--keyring",
                str(publish_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    again = _published(other, "both", tmp_path / "pub2", publish_key)
    for name in ("main/Contents-amd64.gz", "main/i18n/Translation-de"):
        assert (again / name).read_bytes() == (dists / name).read_bytes()
    # gc keeps what snapshots' extras need.
    assert run_cli(other, "gc").exit_code == 0
    assert run_cli(other, "snapshot", "show", "both").exit_code == 0


def _bad_upstream(tmp_path: Path, test_key: TestKey, debs: list[Path]) -> Archive:
    up = build_archive(tmp_path / "up", test_key, {"main": debs})
    add_extras(up, {"en": {}})
    return up


def _refused(store: Path, srv: FaultServer, up: Archive, message: str) -> None:
    r = run_cli(store, "mirror", "add", "up", srv.url, "stable", "--with-contents",
                "--keyring", str(up.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    before = tree_digest(store)
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 1, r.output
    assert message in r.stderr, r.stderr
    assert "hint: " in r.stderr
    assert tree_digest(store) == before  # nothing stored
    shown = json.loads(run_cli(store, "mirror", "show", "up", "--json").stdout)
    assert shown["state"] is None


def test_a_translation_that_disagrees_with_the_release_is_refused(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]
) -> None:
    up = _bad_upstream(tmp_path, test_key, [debs_dir["hello"]])
    for name in ("Translation-en.xz", "Translation-en.bz2"):
        path = up.dists / "main/i18n" / name
        path.write_bytes(path.read_bytes()[:-1] + b"!")  # after the Release was signed
    shutil.rmtree(up.dists / "main/i18n/by-hash")
    with FaultServer(up.root) as srv:
        _refused(tmp_path / "store", srv, up, "main/i18n/Translation-en.xz: SHA256 mismatch")


def test_a_malformed_contents_line_is_refused(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]
) -> None:
    up = _bad_upstream(tmp_path, test_key, [debs_dir["hello"]])
    contents = up.dists / "main/Contents-amd64.gz"
    bad = gzip.decompress(contents.read_bytes()) + b"usr/bin/lonely\n"
    contents.write_bytes(gzip.compress(bad, mtime=0))
    rewrite_release(up, {"main/Contents-amd64": bad})
    with FaultServer(up.root) as srv:
        _refused(tmp_path / "store", srv, up,
                 "main/Contents-amd64.gz: line 2: not 'path section/package[,...]'")  # fmt: skip


def test_a_translation_bomb_is_refused(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]
) -> None:
    up = _bad_upstream(tmp_path, test_key, [debs_dir["hello"]])
    i18n = up.dists / "main/i18n"
    real = lzma.decompress((i18n / "Translation-en.xz").read_bytes())
    shutil.rmtree(i18n)
    i18n.mkdir()
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"\0" * (8 << 20)
    parts = [c.compress(real + b"\n")]
    parts += [c.compress(chunk) for _ in range(core_archive.MAX_INDEX_SIZE // len(chunk) + 1)]
    (i18n / "Translation-en.gz").write_bytes(b"".join(parts) + c.flush())
    rewrite_release(up, {})
    with FaultServer(up.root) as srv:
        _refused(tmp_path / "store", srv, up,
                 "main/i18n/Translation-en.gz: decompresses to more than 256 MiB")  # fmt: skip
