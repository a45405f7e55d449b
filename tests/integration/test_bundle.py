"""Air-gap bundles: export, show, verify, import; incremental, split, tampered and hostile
bundles, and the third-party check of docs/bundle-format.md run as written."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirrorkit import bundle, channel, snapshot
from mirrorkit.bundle import importer, reader
from mirrorkit.bundle.manifest import VERSION
from mirrorkit.errors import BundleError
from mirrorkit.store import Store
from tests.helpers.bundles import Entry, read_entries, tree_digest, write_entries
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey, detach_sign
from tests.mk import Result, run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "bundle-format.md"
SPLIT = 100_000


@dataclass
class Source:
    store: Path
    key: TestKey
    full: Path  # snapshot "next" with channel prod -> next
    base: Path  # snapshot "base"
    delta: Path  # "next" --since "base"
    split: Path  # "next", split into SPLIT-byte parts
    new_shas: set[str]  # pool objects "next" has and "base" lacks


def _export(store: Path, key: TestKey, *args: str) -> Result:
    return run_cli(store, "bundle", "export", *args, "--key", key.fingerprint,
                   gnupghome=key.gnupghome)  # fmt: skip


def _ok(r: Result) -> Result:
    assert r.exit_code == 0, r.output
    return r


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def source(
    tmp_path_factory: pytest.TempPathFactory, debs_dir: dict[str, Path], publish_key: TestKey
) -> Source:
    """A store with snapshots base (the standard packages) and next (hello 1.1 and a new
    package with a 400 kB payload on top), channel prod -> next, and bundles made from it."""
    root = tmp_path_factory.mktemp("bundle-source")
    store = root / "store"
    s = Store(store)
    new = [
        build_deb(root / "debs", "hello", "1.1", "amd64", depends="libgreet (>= 1.0)"),
        build_deb(root / "debs", "bigpkg", "1.0", "all", payload_size=400_000),
    ]
    snapshot.create_from_debs(s, "base", list(debs_dir.values()))
    snapshot.create_from_debs(s, "next", [p for n, p in debs_dir.items() if n != "hello"] + new)
    channel.set_channel(s, "prod", "next")
    out = root / "bundles"
    _ok(_export(store, publish_key, "next", "-o", str(out / "full.bundle"), "--channel", "prod"))
    _ok(_export(store, publish_key, "base", "-o", str(out / "base.bundle")))
    _ok(_export(store, publish_key, "next", "--since", "base", "-o", str(out / "delta.bundle")))
    _ok(_export(store, publish_key, "next", "-o", str(out / "split.bundle"), "--split",
                str(SPLIT)))  # fmt: skip
    new_shas = {_sha(p) for p in new}
    return Source(store, publish_key, out / "full.bundle", out / "base.bundle",
                  out / "delta.bundle", out / "split.bundle", new_shas)  # fmt: skip


def _import(store: Path, path: Path, keyring: Path) -> Result:
    return run_cli(store, "bundle", "import", str(path), "--keyring", str(keyring))


def _pool_members(path: Path) -> set[str]:
    info = bundle.show(path)
    return {m.path.removeprefix("pool/") for m in info.manifest.pool}


def _other_store(tmp_path: Path, debs_dir: dict[str, Path]) -> Path:
    """A store with some content of its own, to show that a refused import changes nothing."""
    store = tmp_path / "target"
    snapshot.create_from_debs(Store(store), "other", [debs_dir["libalt"]])
    return store


# --- the round trip -------------------------------------------------------------------------


def test_export_show_verify_import_and_reimport(source: Source, tmp_path: Path) -> None:
    shown = json.loads(_ok(run_cli(tmp_path, "bundle", "show", str(source.full), "--json")).stdout)
    m = shown["manifest"]
    assert [s["name"] for s in m["snapshots"]] == ["next"] and m["since"] is None
    assert m["snapshots"][0]["sources"][0]["kind"] == "debs"  # full provenance travels
    assert m["channels"] == [{"name": "prod", "snapshot": "next", "path": "channels/prod.json",
                              "digest": m["snapshots"][0]["digest"]}]  # fmt: skip
    assert shown["signature"] == "not checked"
    assert shown["counts"]["pool_objects"] == 8 and shown["counts"]["metadata_objects"] == 1
    paths = [x["path"] for x in m["members"]]
    assert paths[:3] == ["SHA256SUMS", "SHA256SUMS.asc", "snapshots/next/snapshot.json"]
    assert paths[3].startswith("meta/") and paths[4] == "channels/prod.json"
    text = _ok(run_cli(tmp_path, "bundle", "show", str(source.full), "--keyring",
                       str(source.key.public_keyring))).stdout  # fmt: skip
    assert f"Signature: good, by {source.key.fingerprint}" in text
    assert "Snapshot: next (8 packages" in text and "Channel: prod -> next" in text

    r = _ok(run_cli(tmp_path, "bundle", "verify", str(source.full), "--keyring",
                    str(source.key.public_keyring)))  # fmt: skip
    assert f"OK: manifest signed by {source.key.fingerprint}; 13 members verified" in r.stdout
    assert shown["counts"]["members"] == 13  # show counts the members verify verifies

    target = tmp_path / "airgapped"
    r = _ok(_import(target, source.full, source.key.public_keyring))
    assert "imported snapshot next" in r.stdout and "channel prod -> next" in r.stdout
    a, b = Store(source.store), Store(target)
    assert snapshot.load(b, "next").digest == snapshot.load(a, "next").digest
    assert snapshot.check(b, snapshot.load(b, "next")) == []
    assert channel.load(b, "prod").snapshot == "next"
    for p in snapshot.packages(b, snapshot.load(b, "next")):
        assert _sha(b.pool.path(p.sha256)) == p.sha256
    assert not list((target / "tmp").glob("bundle-import-*"))
    log = json.loads((target / "bundles" / "imported.json").read_bytes())["bundles"]
    assert log[0]["signers"] == [source.key.fingerprint] and log[0]["snapshots"] == ["next"]

    before = tree_digest(target)
    r = _ok(_import(target, source.full, source.key.public_keyring))
    assert "snapshot next was here already" in r.stdout and "0 pool objects added" in r.stderr
    assert tree_digest(target) == before


def test_import_refuses_a_different_snapshot_of_the_same_name(
    source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    target = tmp_path / "target"
    snapshot.create_from_debs(Store(target), "next", [debs_dir["tool"]])
    before = tree_digest(target)
    r = _import(target, source.full, source.key.public_keyring)
    assert r.exit_code == 1
    assert "snapshot next exists in this store with other contents" in r.stderr
    assert "snapshot rm" in r.stderr
    assert tree_digest(target) == before


def test_import_refuses_a_snapshot_named_like_a_channel(
    source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    # "publish next" would then publish the snapshot, and the channel could never move again.
    target = tmp_path / "target"
    snapshot.create_from_debs(Store(target), "mine", [debs_dir["tool"]])
    assert run_cli(target, "channel", "set", "next", "mine").exit_code == 0
    before = tree_digest(target)
    r = _import(target, source.full, source.key.public_keyring)
    assert r.exit_code == 1
    assert "snapshot next has the name of a channel in this store" in r.stderr
    assert tree_digest(target) == before


# --- incremental ----------------------------------------------------------------------------


def test_incremental_bundle_holds_only_new_objects_and_needs_its_base(
    source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    assert _pool_members(source.delta) == source.new_shas
    assert len(_pool_members(source.base)) == 7
    delta = bundle.show(source.delta).manifest
    assert delta.since is not None and delta.since.name == "base"
    assert len(delta.meta) == 1  # all metadata travels, even incrementally

    fresh = tmp_path / "fresh"
    r = _import(fresh, source.delta, source.key.public_keyring)
    assert r.exit_code == 1
    assert "against snapshot base, which this store does not have" in r.stderr
    assert "import the bundle that carries base first" in r.stderr
    assert not fresh.exists()  # refused before anything was written

    _ok(_import(fresh, source.base, source.key.public_keyring))
    r = _ok(_import(fresh, source.delta, source.key.public_keyring))
    assert "imported snapshot next" in r.stdout and "2 pool objects added, 0" in r.stderr
    s = Store(fresh)
    assert snapshot.check(s, snapshot.load(s, "next")) == []
    assert snapshot.load(s, "next").digest == snapshot.load(Store(source.store), "next").digest

    other = tmp_path / "other"
    snapshot.create_from_debs(Store(other), "base", [debs_dir["tool"]])
    before = tree_digest(other)
    r = _import(other, source.delta, source.key.public_keyring)
    assert r.exit_code == 1 and "this store's base is different" in r.stderr
    assert tree_digest(other) == before


def test_incremental_import_checks_the_base_still_has_its_objects(
    source: Source, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    _ok(_import(target, source.base, source.key.public_keyring))
    s = Store(target)
    libgreet = next(p for p in snapshot.packages(s, snapshot.load(s, "base"))
                    if p.name == "libgreet")  # fmt: skip
    s.pool.path(libgreet.sha256).unlink()  # e.g. removed by hand
    before = tree_digest(target)
    r = _import(target, source.delta, source.key.public_keyring)
    assert r.exit_code == 1
    assert f"needs libgreet_1.0_amd64 (pool object {libgreet.sha256})" in r.stderr
    assert tree_digest(target) == before


# --- split ----------------------------------------------------------------------------------


def _parts(split: Path) -> list[Path]:
    return sorted(split.parent.glob(f"{split.name}.[0-9][0-9][0-9]"))


def test_split_parts_are_at_most_the_limit_and_import_from_any_entry(
    source: Source, tmp_path: Path
) -> None:
    parts = _parts(source.split)
    assert len(parts) >= 4
    assert all(p.stat().st_size == SPLIT for p in parts[:-1]) and parts[-1].stat().st_size <= SPLIT
    index = json.loads(Path(f"{source.split}.index.json").read_bytes())
    assert [(p["name"], p["size"], p["sha256"]) for p in index["parts"]] == [
        (p.name, p.stat().st_size, _sha(p)) for p in parts
    ]
    assert index["size"] == sum(p.stat().st_size for p in parts) and index["split"] == SPLIT

    keyring = source.key.public_keyring
    for n, entry in enumerate([parts[0], Path(f"{source.split}.index.json"), source.split]):
        _ok(_import(tmp_path / f"s{n}", entry, keyring))
        assert snapshot.exists(Store(tmp_path / f"s{n}"), "next")

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for p in [*parts, Path(f"{source.split}.index.json")]:
        shutil.copy(p, moved / p.name)
    r = _ok(run_cli(tmp_path, "bundle", "verify", str(moved / parts[0].name), "--keyring",
                    str(keyring)))  # fmt: skip
    assert "OK" in r.stdout
    _ok(_import(tmp_path / "s-moved", moved / "split.bundle.index.json", keyring))


def _copy_split(source: Source, dest: Path) -> list[Path]:
    dest.mkdir()
    for p in [*_parts(source.split), Path(f"{source.split}.index.json")]:
        shutil.copy(p, dest / p.name)
    return _parts(dest / "split.bundle")


def test_split_names_the_missing_or_damaged_part(
    source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    keyring = source.key.public_keyring
    target = _other_store(tmp_path, debs_dir)
    before = tree_digest(target)

    parts = _copy_split(source, tmp_path / "missing")
    parts[2].unlink()
    r = _import(target, parts[0], keyring)
    assert r.exit_code == 1
    assert "part split.bundle.003 of bundle split.bundle is missing" in r.stderr

    parts = _copy_split(source, tmp_path / "damaged")
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 2] ^= 0x40
    parts[1].write_bytes(bytes(data))
    r = _import(target, parts[0], keyring)
    assert r.exit_code == 1
    assert f"{parts[1]}: part is damaged: SHA256 mismatch" in r.stderr
    v = run_cli(tmp_path, "bundle", "verify", str(parts[0]), "--keyring", str(keyring))
    assert v.exit_code == 1 and f"problem: {parts[1]}: part is damaged" in v.stderr

    # Damage seen long before the end of its part (here: under the manifest) is blamed on it.
    out = tmp_path / "head" / "big.bundle"
    _ok(_export(source.store, source.key, "next", "-o", str(out), "--split", "300000"))
    parts = _parts(out)
    assert len(parts) == 2
    parts[0].write_bytes(_flip(parts[0].read_bytes(), 700))
    r = _import(target, parts[0], keyring)
    assert r.exit_code == 1 and f"{parts[0]}: part is damaged: SHA256 mismatch" in r.stderr
    v = run_cli(tmp_path, "bundle", "verify", str(parts[0]), "--keyring", str(keyring))
    assert v.exit_code == 1 and f"problem: {parts[0]}: part is damaged" in v.stderr

    parts = _copy_split(source, tmp_path / "short")
    parts[1].write_bytes(parts[1].read_bytes()[:-10])
    r = _import(target, Path(f"{parts[0].parent}/split.bundle.index.json"), keyring)
    assert r.exit_code == 1 and f"{parts[1]}: part is damaged: {SPLIT - 10} bytes" in r.stderr

    parts = _copy_split(source, tmp_path / "noindex")
    Path(f"{parts[0].parent}/split.bundle.index.json").unlink()
    parts[-1].unlink()
    shown = _ok(run_cli(tmp_path, "bundle", "show", str(parts[0])))  # the first part is enough
    assert "Snapshot: next (8 packages" in shown.stdout
    r = _import(target, parts[0], keyring)
    assert r.exit_code == 1 and "split.bundle.index.json: the index of split bundle" in r.stderr
    assert "cat split.bundle.[0-9][0-9][0-9] > split.bundle" in r.stderr
    assert tree_digest(target) == before


# --- tampering ------------------------------------------------------------------------------


def _replace(entries: list[Entry], name: str, data: bytes) -> list[Entry]:
    return [Entry(e.name, data) if e.name == name else e for e in entries]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _first_pool(entries: list[Entry]) -> Entry:
    return next(e for e in entries if e.name.startswith("pool/"))


def _tamper(case: str, good: Path, out: Path) -> tuple[Path, str]:
    """A tampered copy of ``good`` and what the refusal must say."""
    entries = read_entries(good)
    pool = _first_pool(entries)
    if case == "manifest byte":
        manifest = next(e for e in entries if e.name == "manifest.json").data
        at = manifest.index(b'"created_at": "') + 16
        entries = _replace(entries, "manifest.json", _flip(manifest, at))
        return write_entries(out, entries), "manifest.json: BAD signature"
    if case == "signature byte":
        sig = next(e for e in entries if e.name == "manifest.json.asc").data
        entries = _replace(entries, "manifest.json.asc", _flip(sig, sig.index(b"\n\n") + 20))
        return write_entries(out, entries), "manifest.json:"
    if case == "pool object byte":
        entries = _replace(entries, pool.name, _flip(pool.data, len(pool.data) // 2))
        return write_entries(out, entries), f"{pool.name}: SHA256 mismatch"
    if case == "member added":
        extra = Entry("pool/" + "0" * 64, b"surprise")
        return write_entries(out, [*entries, extra]), "not listed in the signed manifest"
    if case == "member removed":
        entries = [e for e in entries if e.name != pool.name]
        return write_entries(out, entries), f"missing from the bundle: {pool.name}"
    if case == "members swapped":
        # Every byte still signed and listed; only the stream order differs from the manifest's.
        i = next(n for n, e in enumerate(entries) if e.name.startswith("snapshots/"))
        j = next(n for n, e in enumerate(entries) if e.name.startswith("meta/"))
        entries[i], entries[j] = entries[j], entries[i]
        return write_entries(out, entries), f"{entries[j].name}: refused: out of order"
    if case == "pool objects swapped":
        i, j = [n for n, e in enumerate(entries) if e.name.startswith("pool/")][:2]
        entries[i], entries[j] = entries[j], entries[i]
        return write_entries(out, entries), f"{entries[j].name}: refused: out of order"
    if case == "truncated file":
        out.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return out, "truncated"
    if case == "final checksum cut off":
        out.write_bytes(good.read_bytes()[:-4])
        return out, "truncated"
    if case == "bytes appended":
        out.write_bytes(good.read_bytes() + b"\0" * 16)
        return out, "16 bytes follow the end of the compressed stream"
    if case == "byte flipped in the compressed file":
        data = good.read_bytes()
        out.write_bytes(_flip(data, len(data) * 2 // 3))
        return out, "full.bundle"
    raise AssertionError(case)


TAMPERING = [
    "manifest byte", "signature byte", "pool object byte", "member added", "member removed",
    "members swapped", "pool objects swapped", "truncated file", "final checksum cut off",
    "bytes appended", "byte flipped in the compressed file",
]  # fmt: skip


@pytest.mark.parametrize("case", TAMPERING)
def test_tampered_bundle_is_refused_and_the_store_unchanged(
    case: str, source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    bad, message = _tamper(case, source.full, tmp_path / "full.bundle")
    target = _other_store(tmp_path, debs_dir)
    before = tree_digest(target)
    r = _import(target, bad, source.key.public_keyring)
    assert r.exit_code == 1, r.output
    assert message in r.stderr and "hint: " in r.stderr
    assert tree_digest(target) == before
    v = run_cli(tmp_path, "bundle", "verify", str(bad), "--keyring",
                str(source.key.public_keyring))  # fmt: skip
    assert v.exit_code == 1 and message in v.stderr


def test_wrong_key_is_refused_before_anything_is_written(
    source: Source, tmp_path: Path, test_key: TestKey
) -> None:
    fresh = tmp_path / "fresh"
    r = _import(fresh, source.full, test_key.public_keyring)
    assert r.exit_code == 1
    assert "manifest.json: no valid signature from a trusted key" in r.stderr
    assert "--keyring does not hold the key" in r.stderr
    assert not fresh.exists()
    v = run_cli(tmp_path, "bundle", "verify", str(source.full), "--keyring",
                str(test_key.public_keyring))  # fmt: skip
    assert v.exit_code == 1 and "no valid signature" in v.stderr


def test_verify_reports_every_problem(source: Source, tmp_path: Path) -> None:
    entries = read_entries(source.full)
    pools = [e for e in entries if e.name.startswith("pool/")]
    entries = _replace(entries, pools[0].name, _flip(pools[0].data, 100))
    entries = _replace(entries, pools[1].name, pools[1].data + b"x")
    entries = [e for e in entries if e.name != pools[2].name] + [Entry("../escape", b"x")]
    bad = write_entries(tmp_path / "bad.bundle", entries)
    r = run_cli(tmp_path, "bundle", "verify", str(bad), "--keyring",
                str(source.key.public_keyring), "--json")  # fmt: skip
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert not report["ok"] and report["signers"] == [source.key.fingerprint]
    problems = "\n".join(report["problems"])
    assert len(report["problems"]) == 4, problems
    assert f"{pools[0].name}: SHA256 mismatch" in problems
    assert f"{pools[1].name}: size mismatch" in problems
    assert "../escape: refused: the path contains '..'" in problems
    assert f"missing from the bundle: {pools[2].name}" in problems


# --- hostile members ------------------------------------------------------------------------


def _hostile(case: str, entries: list[Entry]) -> tuple[list[Entry], str]:
    pool = _first_pool(entries)
    rest = [e for e in entries if e.name != pool.name]
    at = rest.index(next(e for e in rest if e.name.startswith("pool/")))

    def insert(*new: Entry) -> list[Entry]:
        return rest[:at] + list(new) + rest[at:]

    if case == "dotdot":
        return insert(pool, Entry("pool/../../evil", b"x")), "pool/../../evil: refused: the path"
    if case == "absolute":
        return insert(pool, Entry("/tmp/evil", b"x")), "/tmp/evil: refused: absolute path"
    if case == "symlink":
        link = Entry(pool.name, type=tarfile.SYMTYPE, linkname="/etc/passwd")
        return insert(link), f"{pool.name}: refused: a symbolic link (to /etc/passwd)"
    if case == "hardlink":
        link = Entry(pool.name, type=tarfile.LNKTYPE, linkname="manifest.json")
        return insert(link), f"{pool.name}: refused: a hard link (to manifest.json)"
    if case == "device":
        return insert(Entry(pool.name, type=tarfile.CHRTYPE)), "refused: a character device"
    if case == "fifo":
        return insert(Entry(pool.name, type=tarfile.FIFOTYPE)), "refused: a FIFO"
    if case == "directory":
        return insert(Entry("pool", type=tarfile.DIRTYPE)), "pool: refused: a directory"
    if case == "duplicate":
        return insert(pool, pool), f"{pool.name}: refused: the name appears twice"
    if case == "size mismatch":
        return insert(Entry(pool.name, pool.data[:-1])), f"{pool.name}: size mismatch ("
    if case == "unknown name":
        return insert(pool, Entry("notes.txt", b"hi")), "notes.txt: refused: not listed"
    if case == "sparse pax record":
        sparse = Entry(pool.name, pool.data, pax={"GNU.sparse.major": "1"})
        return insert(sparse), "carries 'GNU.sparse.major'"
    if case == "global pax header":
        return insert(Entry("g", type=tarfile.XGLTYPE), pool), "g: refused: a pax global header"
    if case == "symlink instead of the manifest":
        link = Entry("manifest.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        return [link, *entries[1:]], "manifest.json expected, found manifest.json (a symbolic"
    raise AssertionError(case)


HOSTILE = [
    "dotdot", "absolute", "symlink", "hardlink", "device", "fifo", "directory", "duplicate",
    "size mismatch", "unknown name", "sparse pax record", "global pax header",
    "symlink instead of the manifest",
]  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_member_is_refused_by_name(
    case: str, source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    entries, message = _hostile(case, read_entries(source.full))
    bad = write_entries(tmp_path / "hostile.bundle", entries)
    target = _other_store(tmp_path, debs_dir)
    before = tree_digest(target)
    r = _import(target, bad, source.key.public_keyring)
    assert r.exit_code == 1, r.output
    assert message in r.stderr
    assert tree_digest(target) == before
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


# --- the third-party check of docs/bundle-format.md -----------------------------------------


def _doc_script(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- bundle-check: {name} -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert m, f"no '{name}' block in {DOC}"
    return m.group(1)


def _run_doc(
    name: str, bundle_path: Path, keyring: Path, cwd: Path
) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "BUNDLE": str(bundle_path), "KEYRING": str(keyring),
           "LC_ALL": "C", "HOME": str(cwd)}  # fmt: skip
    return subprocess.run(["bash", "-c", _doc_script(name)], cwd=cwd, env=env, text=True,
                          capture_output=True, check=False)  # fmt: skip


def test_documented_third_party_check_passes_on_real_bundles(
    source: Source, tmp_path: Path
) -> None:
    keyring = source.key.public_keyring
    for n, b in enumerate([source.full, source.delta]):
        r = _run_doc("file", b, keyring, tmp_path / f"file{n}")
        assert r.returncode == 0 and r.stdout.strip().endswith("bundle OK"), r.stdout + r.stderr
        assert "Good signature" in r.stderr
        r = _run_doc("listing", b, keyring, tmp_path / f"file{n}")
        assert r.returncode == 0 and "nothing else in the bundle" in r.stdout, r.stderr
    r = _run_doc("split", source.split, keyring, tmp_path / "split")
    assert r.returncode == 0 and r.stdout.strip().endswith("bundle OK"), r.stdout + r.stderr
    assert len(_parts(source.split)) > 1


def test_documented_third_party_check_fails_on_tampered_bundles(
    source: Source, tmp_path: Path, test_key: TestKey
) -> None:
    keyring = source.key.public_keyring
    bad, _ = _tamper("pool object byte", source.full, tmp_path / "pool.bundle")
    r = _run_doc("file", bad, keyring, tmp_path / "a")
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
    bad, _ = _tamper("manifest byte", source.full, tmp_path / "manifest.bundle")
    r = _run_doc("file", bad, keyring, tmp_path / "b")
    assert r.returncode != 0 and "BAD signature" in r.stderr
    r = _run_doc("file", source.full, test_key.public_keyring, tmp_path / "c")
    assert r.returncode != 0 and "bundle OK" not in r.stdout
    bad, _ = _tamper("member added", source.full, tmp_path / "added.bundle")
    assert _run_doc("file", bad, keyring, tmp_path / "d").returncode == 0  # sums still hold
    r = _run_doc("listing", bad, keyring, tmp_path / "d")
    assert r.returncode != 0 and "pool/" + "0" * 64 in r.stdout
    entries, _ = _hostile("duplicate", read_entries(source.full))
    r = _run_doc("file", write_entries(tmp_path / "dup.bundle", entries), keyring, tmp_path / "e")
    assert r.returncode != 0 and "bundle OK" not in r.stdout


# --- robustness -----------------------------------------------------------------------------


def test_interrupted_import_can_be_run_again(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    opened = 0
    real_open = importer._Staging.open

    def interrupt_midway(self: importer._Staging, member: bundle.Member) -> reader.Target:
        nonlocal opened
        opened += 1
        if opened == 6:
            raise KeyboardInterrupt
        return real_open(self, member)

    with monkeypatch.context() as mp:
        mp.setattr(importer._Staging, "open", interrupt_midway)
        r = _import(target, source.full, source.key.public_keyring)
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert not snapshot.exists(Store(target), "next")
    assert not list(Store(target).pool.root.glob("*/*"))  # nothing committed from the stream
    assert not list((target / "tmp").glob("bundle-import-*"))

    def crash(store: Store, staging: object) -> list[str]:
        raise KeyboardInterrupt  # after the objects were committed, before the snapshot

    with monkeypatch.context() as mp:
        mp.setattr(importer, "_commit_snapshots", crash)
        assert _import(target, source.full, source.key.public_keyring).exit_code == 130
    assert len(list(Store(target).pool.root.glob("*/*"))) == 8
    assert not snapshot.exists(Store(target), "next")

    # A staging directory an import killed outright (SIGKILL) left behind goes with the next.
    stale = target / "tmp" / "bundle-import-killed"
    stale.mkdir(parents=True)
    (stale / "half-written").write_bytes(b"x" * 1000)
    r = _ok(_import(target, source.full, source.key.public_keyring))
    assert "imported snapshot next" in r.stdout and "0 pool objects added, 8" in r.stderr
    s = Store(target)
    assert snapshot.check(s, snapshot.load(s, "next")) == []
    assert not list((target / "tmp").glob("bundle-import-*"))


def test_import_repairs_a_pool_object_a_crash_left_short(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target"
    _ok(_import(target, source.base, source.key.public_keyring))
    s = Store(target)
    victim = snapshot.packages(s, snapshot.load(s, "base"))[0]
    path = s.pool.path(victim.sha256)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:10])
    r = _ok(_import(target, source.base, source.key.public_keyring))
    assert "snapshot base was here already" in r.stdout and "1 pool object added" in r.stderr
    assert _sha(path) == victim.sha256 and snapshot.check(s, snapshot.load(s, "base")) == []


def test_channel_pins_never_move_backwards(
    tmp_path: Path, debs_dir: dict[str, Path], publish_key: TestKey
) -> None:
    src = tmp_path / "src"
    s = Store(src)
    snapshot.create_from_debs(s, "v1", [debs_dir["libgreet"]])
    snapshot.create_from_debs(s, "v2", [debs_dir["libgreet"], debs_dir["libalt"]])
    channel.set_channel(s, "prod", "v1")
    _ok(_export(src, publish_key, "v1", "-o", str(tmp_path / "old.bundle"), "--channel", "prod"))
    channel.set_channel(s, "prod", "v2")
    _ok(_export(src, publish_key, "v2", "-o", str(tmp_path / "new.bundle"), "--channel", "prod"))
    keyring = publish_key.public_keyring

    forward = tmp_path / "forward"
    _ok(_import(forward, tmp_path / "old.bundle", keyring))
    r = _ok(_import(forward, tmp_path / "new.bundle", keyring))
    assert "channel prod -> v2" in r.stdout
    history = channel.load(Store(forward), "prod").history
    assert [e.snapshot for e in history] == ["v1", "v2"]
    # The history says where a move came from: which bundle, signed by whom.
    assert "via bundle made 20" in history[-1].by and publish_key.fingerprint in history[-1].by

    replay = tmp_path / "replay"
    _ok(_import(replay, tmp_path / "new.bundle", keyring))
    r = _ok(_import(replay, tmp_path / "old.bundle", keyring))  # its snapshot is welcome
    assert "imported snapshot v1" in r.stdout
    assert "channel prod not moved to v1: a newer bundle (made " in r.stderr
    assert channel.load(Store(replay), "prod").snapshot == "v2"

    channel.rollback(Store(forward), "prod")  # a local decision on the air-gapped side...
    r = _ok(_import(forward, tmp_path / "new.bundle", keyring))  # ...is not undone by a re-import
    assert "not moved to v2: this bundle set it before" in r.stderr
    assert channel.load(Store(forward), "prod").snapshot == "v1"


def test_export_refuses_a_damaged_store_and_leaves_no_output(
    tmp_path: Path, debs_dir: dict[str, Path], publish_key: TestKey
) -> None:
    src = tmp_path / "src"
    s = Store(src)
    info = snapshot.create_from_debs(s, "v1", [debs_dir["libgreet"], debs_dir["tool"]])
    victim = snapshot.packages(s, info)[0]
    path = s.pool.path(victim.sha256)
    path.chmod(0o644)
    path.write_bytes(_flip(path.read_bytes(), 10))
    out = tmp_path / "out"
    for args in ([], ["--split", "1000"]):
        r = _export(src, publish_key, "v1", "-o", str(out / "b.bundle"), *args)
        assert r.exit_code == 1
        assert f"{path}: SHA256 mismatch" in r.stderr and "nothing was exported" in r.stderr
        assert list(out.iterdir()) == []
    path.unlink()
    r = _export(src, publish_key, "v1", "-o", str(out / "b.bundle"))
    assert r.exit_code == 1 and f"pool object {victim.sha256} ({victim.ref})" in r.stderr
    assert list(out.iterdir()) == []


def test_export_usage_errors(source: Source, tmp_path: Path, debs_dir: dict[str, Path]) -> None:
    out = str(tmp_path / "b.bundle")
    empty = tmp_path / "gnupg"
    empty.mkdir(mode=0o700)
    r = run_cli(source.store, "bundle", "export", "next", "-o", out, gnupghome=empty)
    assert r.exit_code == 2 and "no secret key in" in r.stderr and "--key" in r.stderr
    r = run_cli(source.store, "bundle", "export", "next", "-o", out,
                gnupghome=tmp_path / "nowhere")  # fmt: skip
    assert r.exit_code == 2 and "--gnupghome" in r.stderr and "no such directory" in r.stderr
    r = _export(source.store, source.key, "nope", "-o", out)
    assert r.exit_code == 1 and "no snapshot named 'nope'" in r.stderr
    r = _export(source.store, source.key, "base", "-o", out, "--channel", "prod")
    assert r.exit_code == 2 and "channel prod points at snapshot next" in r.stderr
    r = _export(source.store, source.key, "next", "-o", out, "--since", "next")
    assert r.exit_code == 2 and "the base cannot be one of the exported" in r.stderr
    r = _export(source.store, source.key, "next", "-o", out, "--split", "4X")
    assert r.exit_code == 2 and "invalid size '4X'" in r.stderr
    assert not (tmp_path / "b.bundle").exists()

    # Without --key, the only secret key in the GnuPG home signs (as gpg's default key would).
    r = run_cli(source.store, "bundle", "export", "next", "-o", out, gnupghome=source.key.gnupghome)
    assert r.exit_code == 0, r.output
    assert f"signed by {source.key.fingerprint}" in r.stderr


def test_show_reads_only_the_manifest(source: Source, tmp_path: Path) -> None:
    cut = tmp_path / "head-only.bundle"
    cut.write_bytes(source.full.read_bytes()[:6000])  # the signed head ends its own zstd block
    r = _ok(run_cli(tmp_path, "bundle", "show", str(cut)))
    assert "Snapshot: next (8 packages" in r.stdout and "pool objects: 8" in r.stdout
    v = run_cli(tmp_path, "bundle", "verify", str(cut), "--keyring",
                str(source.key.public_keyring))  # fmt: skip
    assert v.exit_code == 1 and "truncated" in v.stderr


def test_memory_does_not_grow_with_the_bundle(tmp_path: Path, publish_key: TestKey) -> None:
    big = build_deb(tmp_path / "debs", "big", "1.0", "all", payload_size=40 << 20)
    src, dst = Store(tmp_path / "src"), Store(tmp_path / "dst")
    snapshot.create_from_debs(src, "big", [big])
    out = tmp_path / "big.bundle"
    tracemalloc.start()
    try:
        bundle.export(src, ["big"], out, key=publish_key.fingerprint,
                      gnupghome=str(publish_key.gnupghome), split=10 << 20)  # fmt: skip
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = bundle.import_bundle(dst, Path(f"{out}.001"), publish_key.public_keyring)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.added == ("big",) and big.stat().st_size > 40 << 20
    assert export_peak < 16 << 20, export_peak  # a 40 MB object went through
    assert import_peak < 16 << 20, import_peak


# --- the manifest is checked even when it is signed -----------------------------------------


def _edit_manifest(case: str, m: dict[str, Any]) -> str:
    members = m["members"]
    pool = next(x for x in members if x["path"].startswith("pool/"))
    if case == "version":
        m["version"] = VERSION + 1
        return f"bundle format version {VERSION + 1}; this mirrorkit reads versions 1 to {VERSION}"
    if case == "traversal":
        pool["path"] = "pool/../../evil"
        return "member pool/../../evil is not a pool object name"
    if case == "misnamed object":
        pool["path"] = "pool/" + "f" * 64
        return f"pool/{'f' * 64} is not named by its SHA256"
    if case == "no sums":
        del members[0]
        return "members lack SHA256SUMS"
    if case == "index not carried":
        members[:] = [x for x in members if not x["path"].startswith("meta/")]
        return "members lack meta/"
    if case == "sums disagree":
        members.append({"path": "pool/" + "e" * 64, "size": 1, "sha256": "e" * 64})
        return "SHA256SUMS does not match the member list"
    if case == "order":
        # A pool object listed before the indices, SHA256SUMS made to agree: only the order is
        # wrong, and the first member out of its place is named.
        members.insert(2, members.pop(members.index(pool)))
        sums = "".join(f"{x['sha256']}  {x['path']}\n" for x in members[1:] if x["path"] !=
                       "SHA256SUMS.asc")  # fmt: skip
        members[0]["sha256"] = hashlib.sha256(sums.encode()).hexdigest()
        return f"member {members[3]['path']} is listed after {pool['path']}: the member order"
    if case == "pin to a stranger":
        m["channels"][0]["snapshot"] = "elsewhere"
        return "elsewhere is neither bundled nor the base"
    if case == "bad snapshot name":
        m["snapshots"][0]["name"] = "../next"
        return "invalid snapshot name '../next'"
    raise AssertionError(case)


MANIFEST_CASES = [
    "version", "traversal", "misnamed object", "no sums", "index not carried", "sums disagree",
    "order", "pin to a stranger", "bad snapshot name",
]  # fmt: skip


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_signed_but_inconsistent_manifest_is_refused(
    case: str, source: Source, tmp_path: Path, debs_dir: dict[str, Path]
) -> None:
    entries = read_entries(source.full)
    manifest = json.loads(entries[0].data)
    message = _edit_manifest(case, manifest)
    data = json.dumps(manifest).encode()
    with pytest.raises(BundleError) as info:
        bundle.parse_manifest(data, "b")
    assert message in info.value.message
    # Signed by the trusted key, so only the manifest's own checks stand in the way.
    entries = _replace(entries, "manifest.json", data)
    entries = _replace(entries, "manifest.json.asc", detach_sign(source.key, data))
    target = _other_store(tmp_path, debs_dir)
    before = tree_digest(target)
    r = _import(
        target, write_entries(tmp_path / "signed.bundle", entries), source.key.public_keyring
    )
    assert r.exit_code == 1 and message in r.stderr
    assert tree_digest(target) == before


def test_long_names_travel_in_pax_records(
    tmp_path: Path, debs_dir: dict[str, Path], publish_key: TestKey
) -> None:
    src = tmp_path / "src"
    name, chan = "s" + "n" * 127, "c" + "h" * 127
    snapshot.create_from_debs(Store(src), name, [debs_dir["libgreet"]])
    channel.set_channel(Store(src), chan, name)
    out = tmp_path / "long.bundle"
    _ok(_export(src, publish_key, name, "-o", str(out), "--channel", chan))
    listed = subprocess.run(["bash", "-c", f"zstd -dc {out} | tar -tf -"], capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    assert f"snapshots/{name}/snapshot.json" in listed and f"channels/{chan}.json" in listed
    r = _run_doc("file", out, publish_key.public_keyring, tmp_path / "check")
    assert r.returncode == 0, r.stderr
    _ok(_import(tmp_path / "dst", out, publish_key.public_keyring))
    assert channel.load(Store(tmp_path / "dst"), chan).snapshot == name
