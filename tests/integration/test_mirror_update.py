"""``mirror add`` + ``mirror update`` against a real signed archive on a loopback FaultServer.

Every failure test checks three things: the error names the file or URL, there is a hint, and
the store did not change in a way the rule forbids. The rule: nothing unverified enters the pool
and the mirror's committed state (``mirrors/NAME.json``) does not change. A failure while
verifying the indices leaves the whole store (mirrors, pool, meta) byte for byte as it was; a
failure among the .deb downloads may leave *verified* .debs in the pool, nothing else.
"""

from __future__ import annotations

import datetime as dt
import gc
import gzip
import hashlib
import json
import lzma
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mirrorkit import mirror
from mirrorkit.errors import FetchError, MirrorkitError
from mirrorkit.fetch import RetryPolicy
from mirrorkit.models import UpdateResult
from mirrorkit.store import Store
from tests.helpers.archive import (
    Archive,
    build_archive,
    build_flat_archive,
    format_date,
    resign,
    write_release,
)
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey, clearsign, detach_sign, kill_agents, make_key
from tests.helpers.httpserver import FaultServer
from tests.mk import Result, run_cli

NAME = "up"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)

# -- helpers -----------------------------------------------------------------------------------


def store_digest(store: Path) -> str:
    """One SHA256 over every file path and content under mirrors/, pool/ and meta/."""
    h = hashlib.sha256()
    for sub in ("mirrors", "pool", "meta"):
        top = store / sub
        if not top.exists():
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file():
                h.update(path.relative_to(store).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def record(store: Path, name: str = NAME) -> bytes:
    return (store / "mirrors" / f"{name}.json").read_bytes()


def pool_files(store: Path) -> dict[str, str]:
    """pool file name -> SHA256 of its content."""
    top = store / "pool"
    if not top.exists():
        return {}
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in top.rglob("*") if p.is_file()
    }


def deb_shas(archive: Archive) -> dict[str, str]:
    """pool path in the archive (pool/main/h/hello/hello_1.0_amd64.deb) -> SHA256."""
    return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in archive.debs.items()}


def assert_pool_only_verified(store: Path, archive: Archive) -> None:
    """After a failed first update: every pool file is named by its own SHA256 and is one of
    the archive's .debs, and no index reached the meta store."""
    assert not [p for p in (store / "meta").rglob("*") if p.is_file()]
    expected = set(deb_shas(archive).values())
    for name, sha in pool_files(store).items():
        assert name == sha, f"pool file {name} does not hold the bytes its name promises"
        assert sha in expected, f"pool holds {name}, which is no .deb of the archive"


def add(store: Path, url: str, suite: str, keyring: Path, *extra: str, name: str = NAME) -> None:
    # --no-check: these tests are about what 'mirror update' refuses and fetches (and count the
    # upstream's requests); test_mirror_edit.py tests what 'mirror add' asks the upstream.
    r = run_cli(store, "mirror", "add", name, url, suite, "--keyring", str(keyring),
                "--no-check", *extra)  # fmt: skip
    assert r.exit_code == 0, r.output


def update(store: Path, *extra: str, name: str = NAME) -> Result:
    return run_cli(store, "mirror", "update", name, *extra)


def core_update(store: Path, name: str = NAME, **options: object) -> UpdateResult:
    options.setdefault("retry", FAST)
    return mirror.update(Store(store), name, mirror.UpdateOptions(**options))  # type: ignore[arg-type]


def assert_refused(r: Result, *needles: str) -> None:
    """Exit 1, ``error: ...`` naming every needle, and a ``hint: ...``."""
    assert r.exit_code == 1, r.output
    error = next((x for x in r.stderr.splitlines() if x.startswith("error: ")), None)
    assert error is not None, r.stderr
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"
    assert re.search(r"^hint: \S", r.stderr, re.M), r.stderr
    assert r.stdout == ""


def state(store: Path, name: str = NAME) -> dict[str, object] | None:
    r = run_cli(store, "mirror", "show", name, "--json")
    assert r.exit_code == 0, r.output
    st: dict[str, object] | None = json.loads(r.stdout)["state"]
    return st


def deb_gets(srv: FaultServer) -> list[tuple[str, dict[str, str]]]:
    return [(p, h) for m, p, h in srv.requests if m == "GET" and p.endswith(".deb")]


def edit_release(archive: Archive, edit: Callable[[str], str]) -> None:
    """Change the Release text and sign it again with the archive's own key."""
    text = archive.release.read_text()
    new = edit(text)
    assert new != text
    archive.release.write_text(new)
    resign(archive)


def release_header(archive: Archive) -> dict[str, str]:
    head = archive.release.read_text().split("\nMD5Sum:\n", 1)[0].split("\nSHA256:\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines())


def replace_packages(archive: Archive, text: bytes, component: str = "main") -> None:
    """Serve ``text`` as the component's amd64 Packages index (.xz, .gz and by-hash copies), with
    the Release hashes updated and signed again: consistent, trusted, and as bad as ``text``."""
    bindir = archive.component_dir(component) / "binary-amd64"
    blobs = {
        "Packages.xz": lzma.compress(text, format=lzma.FORMAT_XZ),
        "Packages.gz": gzip.compress(text, mtime=0),
    }
    for name, blob in blobs.items():
        (bindir / name).write_bytes(blob)
        hashed = bindir / "by-hash" / "SHA256"
        if hashed.is_dir():
            (hashed / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    files: list[tuple[str, bytes]] = []
    for line in archive.release.read_text().split("\nSHA256:\n", 1)[1].splitlines():
        rel = line.split()[2]
        base = rel.rsplit("/", 1)[-1]
        if rel == f"{component}/binary-amd64/Packages":
            files.append((rel, text))
        elif rel.startswith(f"{component}/binary-amd64/") and base in blobs:
            files.append((rel, blobs[base]))
        else:
            files.append((rel, (archive.dists / rel).read_bytes()))
    write_release(archive.dists, files, fields=release_header(archive))
    resign(archive)


def packages_text(archive: Archive) -> bytes:
    return lzma.decompress(
        (archive.component_dir("main") / "binary-amd64/Packages.xz").read_bytes()
    )


def days_from_now(days: int) -> str:
    return format_date(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    key = make_key(tmp_path_factory.mktemp("other-key"), uid="Mallory <mallory@example.org>")
    yield key
    kill_agents(key)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def added(store: Path, upstream: FaultServer, archive: Archive) -> Path:
    """A store with mirror ``up`` added for ``upstream`` (never updated)."""
    add(store, upstream.url, "stable", archive.key.public_keyring)
    return store


@pytest.fixture(scope="module")
def big_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300 kB package, so that a dropped transfer leaves a meaningful partial file."""
    return build_deb(tmp_path_factory.mktemp("big"), "bigpkg", "1.0", "amd64", payload_size=300_000)


@pytest.fixture
def big_archive(
    tmp_path: Path, archive: Archive, debs_dir: dict[str, Path], big_deb: Path
) -> Archive:
    return build_archive(
        tmp_path / "big-upstream", archive.key, {"main": [*debs_dir.values(), big_deb]}
    )


BIG = "*/bigpkg_1.0_amd64.deb"

# -- 1. happy path -------------------------------------------------------------------------------


def test_update_mirrors_everything_then_is_a_single_get(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = added
    assert state(store) is None
    r = update(store)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("up: 7 packages; fetched 7 files, reused 0, "), r.stdout

    shas = deb_shas(archive)
    assert len(shas) == 7
    assert pool_files(store) == {sha: sha for sha in shas.values()}
    for sha in shas.values():
        assert (store / "pool" / sha[:2] / sha).is_file()

    st = state(store)
    assert st is not None
    assert st["packages"] == 7
    assert st["signer"] == archive.key.fingerprint
    assert st["inrelease_sha256"] == hashlib.sha256(archive.inrelease.read_bytes()).hexdigest()
    assert [(i["component"], i["architecture"]) for i in st["indexes"]] == [("main", "amd64")]  # type: ignore[attr-defined]
    listed = run_cli(store, "mirror", "list")
    assert listed.exit_code == 0 and "7 packages" in listed.stdout

    before = store_digest(store)
    upstream.clear_log()
    r = update(store)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("up: unchanged (7 packages"), r.stdout
    assert "fetched 0 files" in r.stdout
    assert [(m, p) for m, p, _ in upstream.requests] == [("GET", "/dists/stable/InRelease")]
    assert store_digest(store) == before
    # How fast an unchanged update is (target < 1 s) is measured by scripts/bench download.


def test_second_update_fetches_only_new_packages(
    added: Path, upstream: FaultServer, archive: Archive, big_archive: Archive
) -> None:
    assert update(added).exit_code == 0
    upstream.root = big_archive.root
    upstream.clear_log()
    r = update(added)
    assert r.exit_code == 0, r.output
    assert "up: 8 packages; fetched 1 file, reused 7" in r.stdout
    assert [p for p, _ in deb_gets(upstream)] == ["/pool/main/b/bigpkg/bigpkg_1.0_amd64.deb"]


# -- 2. signatures ------------------------------------------------------------------------------


def test_inrelease_signed_by_another_key_is_refused(
    added: Path, upstream: FaultServer, archive: Archive, other_key: TestKey
) -> None:
    release = archive.release.read_bytes()
    archive.inrelease.write_bytes(clearsign(other_key, release))
    archive.release_gpg.write_bytes(detach_sign(other_key, release))
    before = store_digest(added)
    assert_refused(update(added), f"{upstream.url}/dists/stable/InRelease", "no valid signature")
    assert store_digest(added) == before
    assert not deb_gets(upstream)


def test_inrelease_with_changed_signed_text_is_bad(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    data = archive.inrelease.read_bytes()
    tampered = data.replace(b"Label: Mirrorkit Test", b"Label: Mirrorkit Tesu", 1)
    assert tampered != data
    archive.inrelease.write_bytes(tampered)
    before = store_digest(added)
    r = update(added)
    assert_refused(r, f"{upstream.url}/dists/stable/InRelease", "BAD signature")
    assert store_digest(added) == before
    assert upstream.count("*Packages*") == 0


def test_release_and_release_gpg_are_used_without_inrelease(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    archive.inrelease.unlink()
    r = update(added)
    assert r.exit_code == 0, r.output
    assert "up: 7 packages; fetched 7 files" in r.stdout
    assert upstream.count("*/dists/stable/Release") == 1
    assert upstream.count("*/dists/stable/Release.gpg") == 1
    st = state(added)
    assert st is not None and st["signer"] == archive.key.fingerprint


def test_tampered_release_with_release_gpg_is_bad(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    archive.inrelease.unlink()
    archive.release.write_bytes(archive.release.read_bytes().replace(b"Mirrorkit", b"Mirrorkiy"))
    before = store_digest(added)
    assert_refused(update(added), f"{upstream.url}/dists/stable/Release", "BAD signature")
    assert store_digest(added) == before


def test_unsigned_archive_is_refused(added: Path, upstream: FaultServer, archive: Archive) -> None:
    archive.inrelease.unlink()
    archive.release_gpg.unlink()
    before = store_digest(added)
    assert_refused(update(added), f"{upstream.url}/dists/stable", "unsigned")
    assert store_digest(added) == before


def test_fingerprint_allow_list_without_the_signer_is_refused(
    store: Path, upstream: FaultServer, archive: Archive, other_key: TestKey
) -> None:
    add(
        store, upstream.url, "stable", archive.key.public_keyring,
        "--fingerprint", other_key.fingerprint,
    )  # fmt: skip
    before = store_digest(store)
    assert_refused(update(store), "/dists/stable/InRelease",
                   f"signed by {archive.key.fingerprint}, which is not in the mirror's "
                   "fingerprint allow-list")  # fmt: skip
    assert store_digest(store) == before


def test_fingerprint_allow_list_with_the_signer_works(
    store: Path, upstream: FaultServer, archive: Archive
) -> None:
    spaced = " ".join(re.findall("....", archive.key.fingerprint.lower()))
    add(store, upstream.url, "stable", archive.key.public_keyring, "--fingerprint", spaced)
    r = update(store)
    assert r.exit_code == 0, r.output


def test_missing_keyring_is_a_clear_error(
    store: Path, upstream: FaultServer, archive: Archive, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "archive-keyring.gpg"
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stable", "--keyring", str(missing))
    assert r.exit_code == 2 and f"keyring {missing}: no such file" in r.stderr
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stable", "--keyring",
                str(archive.key.public_keyring), "--fingerprint", "ZZZ")  # fmt: skip
    assert r.exit_code == 2 and "'ZZZ' is not a key fingerprint" in r.stderr
    # A keyring that goes away after 'mirror add'.
    gone = tmp_path / "keyring.gpg"
    gone.write_bytes(archive.key.public_keyring.read_bytes())
    add(store, upstream.url, "stable", gone)
    gone.unlink()
    before = store_digest(store)
    assert_refused(update(store), str(gone), "cannot read keyring")
    assert store_digest(store) == before


# -- 3. Release checks ---------------------------------------------------------------------------


def test_expired_release_is_refused_unless_allowed(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    old = build_archive(
        tmp_path / "old", test_key, {"main": list(debs_dir.values())},
        date=days_from_now(-10), valid_until=days_from_now(-3),
    )  # fmt: skip
    srv = make_server(old.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    before = store_digest(store)
    assert_refused(update(store), f"{srv.url}/dists/stable", "expired", "Valid-Until")
    assert store_digest(store) == before
    r = update(store, "--allow-expired")
    assert r.exit_code == 0, r.output
    assert "7 packages" in r.stdout


def test_rollback_is_refused_unless_allowed(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    debs = {"main": list(debs_dir.values())}
    new = build_archive(tmp_path / "new", test_key, debs, date=days_from_now(-1))
    old = build_archive(tmp_path / "old", test_key, debs, date=days_from_now(-5))
    srv = make_server(new.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    assert update(store).exit_code == 0
    accepted = state(store)
    before = store_digest(store)

    srv.root = old.root
    assert_refused(update(store), f"{srv.url}/dists/stable", "older than the last accepted")
    assert store_digest(store) == before
    assert state(store) == accepted

    r = update(store, "--allow-rollback")
    assert r.exit_code == 0, r.output
    st = state(store)
    assert st is not None and accepted is not None
    assert str(st["release_date"]) < str(accepted["release_date"])


def test_release_without_a_date_keeps_the_last_date_as_the_rollback_floor(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    debs = {"main": list(debs_dir.values())}
    dated = build_archive(tmp_path / "dated", test_key, debs, date=days_from_now(-3))
    undated = build_archive(tmp_path / "undated", test_key, debs, date=days_from_now(-2))
    edit_release(undated, lambda t: re.sub(r"\nDate: [^\n]*", "", t))
    srv = make_server(undated.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    assert update(store).exit_code == 0
    st = state(store)
    assert st is not None and st["release_date"] == ""  # not the time of the fetch
    # So a genuine Release dated before that fetch is no rollback...
    srv.root = dated.root
    assert update(store).exit_code == 0
    st = state(store)
    assert st is not None and st["release_date"]
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(str(st["release_date"]))
    assert dt.timedelta(days=2.9) < age < dt.timedelta(days=3.1)
    # ...and an older Date than the last one still is, also after an undated one was refused.
    older = build_archive(tmp_path / "older", test_key, debs, date=days_from_now(-9))
    srv.root = older.root
    assert_refused(update(store), "older than the last accepted")
    srv.root = undated.root
    assert_refused(update(store), "has no Date")
    srv.root = older.root
    assert_refused(update(store), "older than the last accepted")


def test_a_release_without_a_date_after_a_dated_one_is_refused_unless_allowed(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    """Stripping the Date (and re-signing: a compromised key or a careless upstream) must not
    move a mirror back: apt refuses it like an older Date, and so does mirrorkit."""
    debs = {"main": list(debs_dir.values())}
    dated = build_archive(tmp_path / "dated", test_key, debs, date=days_from_now(-1))
    undated = build_archive(tmp_path / "undated", test_key, debs, date=days_from_now(-5))
    edit_release(undated, lambda t: re.sub(r"\nDate: [^\n]*", "", t))
    assert "Date:" not in (undated.root / "dists/stable/InRelease").read_text()
    srv = make_server(dated.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    assert update(store).exit_code == 0
    accepted = state(store)
    before = store_digest(store)

    srv.root = undated.root
    for _ in range(2):  # refused every time, not only once
        assert_refused(update(store), f"{srv.url}/dists/stable", "has no Date")
    assert store_digest(store) == before
    assert state(store) == accepted

    r = update(store, "--allow-rollback")
    assert r.exit_code == 0, r.output
    st = state(store)
    assert st is not None and st["release_date"] == ""  # the floor went down with it


def test_a_suite_that_changes_codename_is_not_followed_silently(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    debs = {"main": list(debs_dir.values())}
    old = build_archive(tmp_path / "old", test_key, debs, suite="stable", codename="bookworm",
                        date=days_from_now(-2))  # fmt: skip
    new = build_archive(tmp_path / "new", test_key, debs, suite="stable", codename="trixie",
                        date=days_from_now(-1))  # fmt: skip
    srv = make_server(old.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    assert update(store).exit_code == 0
    srv.root = new.root
    before = store_digest(store)
    assert_refused(update(store), "suite stable is now codename 'trixie', not 'bookworm'")
    assert store_digest(store) == before
    r = update(store, "--allow-releaseinfo-change")
    assert r.exit_code == 0, r.output


def test_release_for_another_suite_is_refused(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    other = build_archive(
        tmp_path / "up", test_key, {"main": list(debs_dir.values())},
        suite="testing", codename="trixie",
    )  # fmt: skip
    # The server answers dists/stable/ with testing's (correctly signed) files.
    (other.root / "dists" / "testing").rename(other.root / "dists" / "stable")
    srv = make_server(other.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    before = store_digest(store)
    assert_refused(update(store), f"{srv.url}/dists/stable", "'testing'", "'trixie'")
    assert store_digest(store) == before


def test_suite_may_be_given_as_codename(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    arch = build_archive(
        tmp_path / "up", test_key, {"main": list(debs_dir.values())},
        suite="stable", codename="bookworm",
    )  # fmt: skip
    (arch.root / "dists" / "stable").rename(arch.root / "dists" / "bookworm")
    srv = make_server(arch.root)
    add(store, srv.url, "bookworm", test_key.public_keyring)
    assert update(store).exit_code == 0


# -- 4. indices ---------------------------------------------------------------------------------


def test_corrupt_packages_index_is_refused(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault("*Packages.xz", "corrupt", times=-1)
    upstream.add_fault("*/by-hash/SHA256/*", "corrupt", times=-1)
    before = store_digest(added)
    r = update(added)
    assert_refused(r, "/dists/stable/main/binary-amd64/Packages.xz", "SHA256 mismatch")
    assert store_digest(added) == before
    # A hash mismatch is never retried, and no .deb is fetched on an unverified index.
    assert upstream.count("*/by-hash/SHA256/*") + upstream.count("*Packages.xz") == 1
    assert not deb_gets(upstream)


def test_index_is_fetched_by_hash_when_advertised(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    assert "Acquire-By-Hash: yes" in archive.release.read_text()
    assert update(added).exit_code == 0
    sha = hashlib.sha256((archive.dists / "main/binary-amd64/Packages.xz").read_bytes()).hexdigest()
    assert f"/dists/stable/main/binary-amd64/by-hash/SHA256/{sha}" in upstream.paths()
    assert upstream.count("*Packages.xz") == 0


def test_index_download_dropped_once_is_retried(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault("*/by-hash/SHA256/*", "drop", after_bytes=50)
    result = core_update(added)
    assert result.changed and result.packages == 7
    assert upstream.count("*/by-hash/SHA256/*") == 2


def test_by_hash_404_falls_back_to_the_plain_name(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault("*/by-hash/SHA256/*", "not_found", times=-1)
    r = update(added)
    assert r.exit_code == 0, r.output
    assert upstream.count("*/main/binary-amd64/Packages.xz") == 1


def test_archive_without_by_hash_uses_packages_xz(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    plain = build_archive(
        tmp_path / "up", test_key, {"main": list(debs_dir.values())}, by_hash=False
    )
    srv = make_server(plain.root)
    add(store, srv.url, "stable", test_key.public_keyring)
    r = update(store)
    assert r.exit_code == 0, r.output
    assert "7 packages" in r.stdout
    assert srv.count("/dists/stable/main/binary-amd64/Packages.xz") == 1
    assert not any("/by-hash/" in p for p in srv.paths())


def test_release_without_sha256_is_a_format_error(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    edit_release(archive, lambda t: t.split("\nSHA256:\n", 1)[0] + "\n")
    assert "MD5Sum:" in archive.release.read_text()
    before = store_digest(added)
    assert_refused(update(added), f"{upstream.url}/dists/stable/Release", "no SHA256 field")
    assert store_digest(added) == before


# str.isdigit() takes the superscript 2 and Arabic-Indic 300; int() then fails or misreads them.
@pytest.mark.parametrize("size", ["big", "\u00b2", "\u0663\u0660\u0660"])
def test_release_with_malformed_sha256_line_is_a_format_error(
    added: Path, upstream: FaultServer, archive: Archive, size: str
) -> None:
    edit_release(archive, lambda t: re.sub(r"(\n [0-9a-f]{64}) +\d+ ", rf"\1 {size} ", t))
    before = store_digest(added)
    assert_refused(update(added), "/dists/stable/Release", "malformed SHA256 line")
    assert store_digest(added) == before


def test_packages_stanza_without_filename_is_refused(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    text = packages_text(archive)
    stanzas = text.rstrip(b"\n").split(b"\n\n")
    victim = 2
    name = re.search(rb"^Package: (\S+)$", stanzas[victim], re.M)
    assert name is not None
    stanzas[victim] = re.sub(rb"^Filename: .*\n", b"", stanzas[victim], flags=re.M)
    replace_packages(archive, b"\n\n".join(stanzas) + b"\n")
    before = store_digest(added)
    r = update(added)
    assert_refused(
        r,
        "/dists/stable/main/binary-amd64/Packages",
        f"stanza {victim + 1} ({name.group(1).decode()})",
        "Filename",
    )
    assert store_digest(added) == before
    assert not deb_gets(upstream)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "pool/../../../etc/passwd"])
def test_unsafe_filename_in_packages_is_refused(
    added: Path, upstream: FaultServer, archive: Archive, bad: str
) -> None:
    text = packages_text(archive)
    hacked = re.sub(rb"^Filename: .*hello_1.0_amd64.deb$", b"Filename: " + bad.encode(), text,
                    flags=re.M)  # fmt: skip
    assert hacked != text
    replace_packages(archive, hacked)
    before = store_digest(added)
    assert_refused(update(added), "unsafe path", repr(bad))
    assert store_digest(added) == before
    assert pool_files(added) == {}
    assert not deb_gets(upstream)


def test_packages_that_contradict_each_other_are_refused(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    text = packages_text(archive)
    stanzas = text.rstrip(b"\n").split(b"\n\n")
    # A second stanza claiming the same file with other contents.
    clone = re.sub(rb"^Package: .*$", b"Package: clone", stanzas[0], flags=re.M)
    clone = re.sub(rb"^SHA256: .*$", b"SHA256: " + b"ab" * 32, clone, flags=re.M)
    replace_packages(archive, b"\n\n".join([*stanzas, clone]) + b"\n")
    before = store_digest(added)
    assert_refused(update(added), "two different SHA256 sums")
    assert store_digest(added) == before


def test_packages_stanza_with_a_repeated_field_is_refused(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    # Two Filename lines: one would be downloaded and the other published.
    text = packages_text(archive)
    hacked = re.sub(rb"^(Filename: .*hello_1.0_amd64.deb)$", rb"\1\nFilename: pool/main/x.deb",
                    text, flags=re.M)  # fmt: skip
    assert hacked != text
    replace_packages(archive, hacked)
    before = store_digest(added)
    assert_refused(update(added), "(hello)", "Filename given twice")
    assert store_digest(added) == before
    assert not deb_gets(upstream)


def test_packages_field_names_are_case_insensitive(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    # deb822 field names are case-insensitive, and apt reads them so; they are stored (and so
    # published and resolved) in the usual spelling.
    text = packages_text(archive)
    hacked = re.sub(rb"^Filename: (.*hello_1.0_amd64.deb)$", rb"filename: \1", text, flags=re.M)
    hacked = re.sub(rb"^Version: 1.0$", b"VERSION: 1.0", hacked, flags=re.M)
    assert hacked != text
    replace_packages(archive, hacked)
    r = update(added)
    assert r.exit_code == 0, r.output
    assert "fetched 7 files" in r.stdout
    assert run_cli(added, "snapshot", "create", "s", "--from-mirror", NAME).exit_code == 0
    r = run_cli(added, "snapshot", "search", "s", "hello")
    assert r.exit_code == 0 and "hello_1.0_amd64" in r.stdout, r.output


@pytest.mark.parametrize("size", ["+824", "8_24", "0x10"])
def test_packages_size_must_be_digits(
    added: Path, upstream: FaultServer, archive: Archive, size: str
) -> None:
    text = packages_text(archive)
    stanzas = text.rstrip(b"\n").split(b"\n\n")
    stanzas[0] = re.sub(rb"^Size: .*$", b"Size: " + size.encode(), stanzas[0], flags=re.M)
    replace_packages(archive, b"\n\n".join(stanzas) + b"\n")
    before = store_digest(added)
    assert_refused(update(added), "/binary-amd64/Packages", "stanza 1", repr(size))
    assert store_digest(added) == before


def test_release_date_out_of_range_is_malformed(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    edit_release(archive, lambda t: re.sub(r"\nDate: [^\n]*", "\nDate: Sat, 99999999999999999999 "
                                           "Jun 2024 08:55:59 UTC", t))  # fmt: skip
    before = store_digest(added)
    assert_refused(update(added), "/dists/stable/Release", "Date", "not an RFC 2822 date")
    assert store_digest(added) == before


# -- 5. .deb downloads ---------------------------------------------------------------------------

HELLO = "*/hello_1.0_amd64.deb"


def test_corrupt_deb_is_refused_and_not_retried(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault(HELLO, "corrupt", times=-1)
    before = record(added)
    r = update(added)
    assert_refused(r, "/pool/main/h/hello/hello_1.0_amd64.deb", "SHA256 mismatch")
    assert upstream.count(HELLO) == 1
    assert record(added) == before
    assert_pool_only_verified(added, archive)
    hello = deb_shas(archive)["pool/main/h/hello/hello_1.0_amd64.deb"]
    assert hello not in pool_files(added)
    assert not (added / "tmp" / "partial" / hello).exists()


def test_truncated_deb_is_a_size_mismatch(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault(HELLO, "truncate", times=-1, after_bytes=100)
    before = record(added)
    r = update(added)
    assert_refused(r, "/pool/main/h/hello/hello_1.0_amd64.deb", "size mismatch")
    assert upstream.count(HELLO) == 1
    assert record(added) == before
    assert_pool_only_verified(added, archive)
    assert deb_shas(archive)["pool/main/h/hello/hello_1.0_amd64.deb"] not in pool_files(added)


def _big_sha(big_archive: Archive) -> str:
    return deb_shas(big_archive)["pool/main/b/bigpkg/bigpkg_1.0_amd64.deb"]


def test_dropped_connection_is_resumed_with_range(
    store: Path, big_archive: Archive, make_server: Callable[[Path], FaultServer]
) -> None:
    srv = make_server(big_archive.root)
    srv.add_fault(BIG, "drop", after_bytes=100_000)
    add(store, srv.url, "stable", big_archive.key.public_keyring)
    result = core_update(store)
    assert result.changed and result.packages == 8
    gets = [h for p, h in deb_gets(srv) if p.endswith("bigpkg_1.0_amd64.deb")]
    assert len(gets) == 2
    assert "range" not in gets[0]
    assert gets[1].get("range") == "bytes=100000-"
    sha = _big_sha(big_archive)
    assert pool_files(store)[sha] == sha
    # The resume moved only the rest of the file.
    total = sum(p.stat().st_size for p in big_archive.debs.values())
    assert result.summary.bytes == total - 100_000
    assert not any((store / "tmp" / "partial").iterdir())


def test_server_ignoring_range_on_resume_gives_a_clean_file(
    store: Path, big_archive: Archive, make_server: Callable[[Path], FaultServer]
) -> None:
    srv = make_server(big_archive.root)
    srv.add_fault(BIG, "drop", after_bytes=100_000)
    srv.add_fault(BIG, "ignore_range")
    add(store, srv.url, "stable", big_archive.key.public_keyring)
    core_update(store)
    gets = [h for p, h in deb_gets(srv) if p.endswith("bigpkg_1.0_amd64.deb")]
    assert len(gets) == 2 and "range" in gets[1]
    assert srv.pending_faults() == []
    sha = _big_sha(big_archive)
    pooled = store / "pool" / sha[:2] / sha
    original = big_archive.root / "pool/main/b/bigpkg/bigpkg_1.0_amd64.deb"
    assert pooled.read_bytes() == original.read_bytes()


def test_503_with_retry_after_zero_is_retried(
    added: Path, upstream: FaultServer, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.add_fault(HELLO, "status", code=503, times=2, retry_after="0")
    delays: list[float] = []
    real_delay = RetryPolicy.delay

    def delay(policy: RetryPolicy, attempt: int, retry_after: str | None = None) -> float:
        delays.append(real_delay(policy, attempt, retry_after))
        return delays[-1]

    monkeypatch.setattr(RetryPolicy, "delay", delay)
    r = update(added)
    assert r.exit_code == 0, r.output
    assert delays == [0.0, 0.0]  # the server's "Retry-After: 0", not a backoff
    assert upstream.count(HELLO) == 3
    assert "fetched 7 files" in r.stdout


def test_503_forever_gives_up_after_max_tries(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    upstream.add_fault(HELLO, "status", code=503, times=-1)
    before = record(added)
    with pytest.raises(FetchError) as info:
        core_update(added, retry=RetryPolicy(base_delay=0.01, max_tries=3))
    err = info.value
    assert err.url.endswith("/pool/main/h/hello/hello_1.0_amd64.deb")
    assert "HTTP 503" in err.message and "gave up after 3 tries" in err.message
    assert err.hint and "--max-tries" in err.hint
    assert upstream.count(HELLO) == 3
    assert record(added) == before
    assert_pool_only_verified(added, archive)


def test_503_forever_through_the_cli(added: Path, upstream: FaultServer) -> None:
    upstream.add_fault(HELLO, "status", code=503, times=-1, retry_after="0")
    before = record(added)
    r = update(added, "--max-tries", "3")
    assert_refused(r, "/pool/main/h/hello/hello_1.0_amd64.deb", "HTTP 503", "3 tries")
    assert upstream.count(HELLO) == 3
    assert record(added) == before


def test_404_deb_fails_at_once(added: Path, upstream: FaultServer, archive: Archive) -> None:
    upstream.add_fault(HELLO, "not_found", times=-1)
    before = record(added)
    r = update(added)
    assert_refused(r, "/pool/main/h/hello/hello_1.0_amd64.deb", "HTTP 404")
    assert upstream.count(HELLO) == 1
    assert record(added) == before
    assert_pool_only_verified(added, archive)


def test_inrelease_503_is_retried(added: Path, upstream: FaultServer) -> None:
    upstream.add_fault("*/InRelease", "status", code=503, times=2)
    result = core_update(added)
    assert result.changed and result.packages == 7
    assert upstream.count("*/InRelease") == 3


def test_redirect_loop_is_a_clear_error(added: Path, upstream: FaultServer) -> None:
    upstream.add_fault("*/InRelease", "status", code=302, location="/dists/stable/InRelease",
                       times=-1)  # fmt: skip
    before = store_digest(added)
    assert_refused(update(added), "/dists/stable/InRelease", "too many redirects")
    assert store_digest(added) == before


def test_unreachable_upstream_is_a_clear_error(
    tmp_path: Path, store: Path, test_key: TestKey, make_server: Callable[[Path], FaultServer]
) -> None:
    srv = make_server(tmp_path)
    url = srv.url
    srv.stop()  # nothing listens on that port any more
    add(store, url, "stable", test_key.public_keyring)
    before = store_digest(store)
    assert_refused(update(store, "--max-tries", "1"), f"{url}/dists/stable/InRelease")
    assert store_digest(store) == before


# -- 6. interrupted updates resume ----------------------------------------------------------


def test_failed_update_keeps_state_and_next_run_fetches_only_the_rest(
    added: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = added
    # With one job, files go largest first (then by path): fail the last one, so the others
    # are verified and in the pool when the update fails.
    order = sorted(archive.debs.items(), key=lambda kv: (-kv[1].stat().st_size, kv[0]))
    last = order[-1][0]
    upstream.add_fault("/" + last, "not_found", times=-1)
    before = record(store)
    r = update(store, "--jobs", "1")
    assert_refused(r, last, "HTTP 404")
    assert record(store) == before
    show = run_cli(store, "mirror", "show", NAME)
    assert "State: never updated" in show.stdout
    assert_pool_only_verified(store, archive)
    kept = set(pool_files(store))
    assert len(kept) == 6

    upstream.clear_faults()
    upstream.clear_log()
    r = update(store)
    assert r.exit_code == 0, r.output
    assert "fetched 1 file, reused 6" in r.stdout
    assert [p for p, _ in deb_gets(upstream)] == ["/" + last]
    assert set(pool_files(store)) == set(deb_shas(archive).values())
    st = state(store)
    assert st is not None and st["packages"] == 7


def test_failed_update_keeps_the_previous_state(
    added: Path, upstream: FaultServer, archive: Archive, big_archive: Archive
) -> None:
    assert update(added).exit_code == 0
    accepted = state(added)
    before = record(added)
    upstream.root = big_archive.root
    upstream.add_fault(BIG, "not_found", times=-1)
    assert_refused(update(added), "bigpkg_1.0_amd64.deb", "HTTP 404")
    assert record(added) == before
    assert state(added) == accepted


def test_partial_download_survives_a_failed_run_and_is_resumed(
    store: Path, big_archive: Archive, make_server: Callable[[Path], FaultServer]
) -> None:
    srv = make_server(big_archive.root)
    srv.add_fault(BIG, "drop", after_bytes=120_000)
    add(store, srv.url, "stable", big_archive.key.public_keyring)
    before = record(store)
    r = update(store, "--max-tries", "1")
    assert_refused(r, "/pool/main/b/bigpkg/bigpkg_1.0_amd64.deb", "gave up after 1 tries")
    assert record(store) == before
    sha = _big_sha(big_archive)
    assert sha not in pool_files(store)
    partial = store / "tmp" / "partial" / sha
    assert partial.stat().st_size == 120_000

    srv.clear_log()
    r = update(store)
    assert r.exit_code == 0, r.output
    gets = [h for p, h in deb_gets(srv) if p.endswith("bigpkg_1.0_amd64.deb")]
    assert [h.get("range") for h in gets] == ["bytes=120000-"]
    assert pool_files(store)[sha] == sha
    assert not partial.exists()


def test_partial_file_from_another_version_is_restarted(
    store: Path, big_archive: Archive, make_server: Callable[[Path], FaultServer]
) -> None:
    """A stale partial (garbage, no validator) fails its hash after the resume: start over once."""
    srv = make_server(big_archive.root)
    add(store, srv.url, "stable", big_archive.key.public_keyring)
    sha = _big_sha(big_archive)
    partial = store / "tmp" / "partial" / sha
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"\0" * 50_000)
    core_update(store)
    gets = [h for p, h in deb_gets(srv) if p.endswith("bigpkg_1.0_amd64.deb")]
    assert [h.get("range") for h in gets] == ["bytes=50000-", None]
    assert pool_files(store)[sha] == sha


# -- 7. archive shapes ---------------------------------------------------------------------------


def test_flat_repository(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    root = tmp_path / "flatroot"
    flat = build_flat_archive(root, test_key, list(debs_dir.values()))
    srv = make_server(root)
    add(store, srv.url, "flat/", test_key.public_keyring)
    r = update(store)
    assert r.exit_code == 0, r.output
    assert "up: 7 packages; fetched 7 files" in r.stdout
    assert srv.count("/flat/InRelease") == 1
    expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in flat.glob("*.deb")}
    assert set(pool_files(store)) == expected


def test_security_style_archive(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    sec = build_archive(
        tmp_path / "sec", test_key, {"main": list(debs_dir.values())},
        suite="stable-security", release_components={"main": "updates/main"}, md5sum=False,
    )  # fmt: skip
    assert "Components: updates/main" in sec.release.read_text()
    srv = make_server(sec.root)
    # As users write it (apt's "main"), and as that Release lists it.
    for name, component in (("up", "main"), ("as-listed", "updates/main")):
        add(store, srv.url, "stable-security", test_key.public_keyring, "-c", component,
            name=name)  # fmt: skip
        r = update(store, name=name)
        assert r.exit_code == 0, r.output
        assert f"{name}: 7 packages" in r.stdout
        st = state(store, name)
        assert st is not None
        assert [i["component"] for i in st["indexes"]] == ["main"]  # type: ignore[attr-defined]
    assert all(p.startswith("/pool/updates/main/") for p, _ in deb_gets(srv))


def test_unknown_component_is_refused(store: Path, upstream: FaultServer, archive: Archive) -> None:
    add(store, upstream.url, "stable", archive.key.public_keyring, "-c", "contrib")
    before = store_digest(store)
    assert_refused(update(store), "component 'contrib'", "main")
    assert store_digest(store) == before


# -- 8. concurrency ------------------------------------------------------------------------------


def test_downloads_overlap(
    tmp_path: Path, store: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    extra = build_deb(tmp_path / "extra", "eighth", "1.0", "all")
    arch = build_archive(tmp_path / "up", test_key, {"main": [*debs_dir.values(), extra]})
    assert len(arch.debs) == 8
    srv = make_server(arch.root)
    srv.add_fault("*.deb", "slow", times=-1, delay=0.3)
    add(store, srv.url, "stable", test_key.public_keyring)
    result = core_update(store, jobs=4)
    assert result.summary.fetched == 8
    # Each .deb is held 0.3 s by the server: several were asked for at once, never more than
    # --jobs. (The speed this gives is scripts/bench download's business.)
    assert 2 <= srv.max_in_flight("*.deb") <= 4, srv.max_in_flight("*.deb")
    assert srv.count("*.deb") == 8


# -- misc ---------------------------------------------------------------------------------------


def test_update_of_unknown_mirror(store: Path) -> None:
    assert_refused(update(store, name="nope"), "'nope'")


def test_core_errors_are_mirrorkit_errors(added: Path, archive: Archive) -> None:
    archive.inrelease.unlink()
    archive.release_gpg.unlink()
    with pytest.raises(MirrorkitError) as info:
        core_update(added)
    assert info.value.hint


def test_mirror_json_record_is_untouched_byte_for_byte(added: Path, archive: Archive) -> None:
    shutil.copy(added / "mirrors" / "up.json", added / "before.json")
    archive.inrelease.write_bytes(archive.inrelease.read_bytes().replace(b"stable", b"stablf", 1))
    assert update(added).exit_code == 1
    assert record(added) == (added / "before.json").read_bytes()


def test_update_leaves_the_gc_as_it_found_it(
    store: Path, archive: Archive, upstream: FaultServer
) -> None:
    """The parsed indices are frozen out of the GC's sight during an update only; a program
    that freezes objects itself keeps its freeze."""
    add(store, upstream.url, "stable", archive.key.public_keyring)
    assert gc.get_freeze_count() == 0
    core_update(store)
    assert gc.get_freeze_count() == 0
    replace_packages(archive, packages_text(archive) + b"\n")  # the next update has work to do
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        assert core_update(store).changed
        # Not unfrozen (that would make it 0); a few frozen objects may have died since.
        assert gc.get_freeze_count() > frozen * 0.9
    finally:
        gc.unfreeze()


def test_filtered_update_with_an_unmet_dependency_writes_nothing(
    store: Path, archive: Archive, upstream: FaultServer, tmp_path: Path
) -> None:
    """The closure fails after the indices are verified, while they are being packed for the
    store beside the resolver: nothing is fetched or written, and the next update (with the
    missing package published) completes."""
    debs = tmp_path / "debs"
    app = build_deb(debs, "app", "1.0", "amd64", depends="gone (>= 2)")
    up = build_archive(tmp_path / "up", archive.key, {"main": [app]}, codename="stable")
    upstream.root = up.root
    add(store, upstream.url, "stable", archive.key.public_keyring, "--filter", "app", "--with-deps")
    before = store_digest(store)
    upstream.clear_log()
    r = update(store)
    assert_refused(r, "1 unmet dependency:")
    assert "  app_1.0_amd64: gone (>= 2): no package gone" in r.stderr
    assert not any(path.endswith(".deb") for _, path, _ in upstream.requests)
    assert store_digest(store) == before and state(store) is None

    gone = build_deb(debs, "gone", "2.0", "all")
    upstream.root = build_archive(tmp_path / "up2", archive.key, {"main": [app, gone]}).root
    r = update(store)
    assert r.exit_code == 0 and r.stdout.startswith("up: 2 packages; fetched 2 files"), r.output
