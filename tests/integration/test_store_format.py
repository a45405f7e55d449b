"""The versioned store: its format file, record versions, damaged records, and old stores.

Every check goes through the CLI, as a user meets it, and a refused store is compared file by
file (bytes, mode, mtime) before and after: nothing may be written to a store this mirrorkit
does not know.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from mirrorkit import __version__, bundle, snapshot
from mirrorkit.errors import StoreFormatError
from mirrorkit.store import SNAPSHOT, Store
from mirrorkit.store.records import KINDS
from tests.helpers.archive import Archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

NEXT = SNAPSHOT.version + 1  # what a newer mirrorkit would write


@pytest.fixture
def store(tmp_path: Path, upstream: FaultServer, archive: Archive) -> Path:
    """A store with mirror ``up`` updated, snapshot ``snap`` of it and channel ``prod``."""
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", upstream.url, "stable",
                "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert run_cli(store, "mirror", "update", "up").exit_code == 0
    assert run_cli(store, "snapshot", "create", "snap", "--from-mirror", "up").exit_code == 0
    assert run_cli(store, "channel", "set", "prod", "snap").exit_code == 0
    return store


def listing(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and directory under ``root``: mode, mtime and (for files) SHA256; but not the
    resource locks (``locks/``: each holds the pid of whoever held it last; ``lock`` is left to
    the callers)."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if path.relative_to(root).parts[0] == "locks":
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        seen[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return seen


def edit_record(path: Path, **changes: object) -> None:
    data = json.loads(path.read_bytes())
    data.update(changes)
    path.chmod(0o644)  # snapshot records are read-only
    path.write_text(json.dumps(data))


def test_a_new_store_gets_a_format_file_and_reading_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    assert run_cli(missing, "snapshot", "list").exit_code == 0
    assert not missing.exists()
    store = tmp_path / "store"
    Store(store).init()
    assert json.loads((store / "format").read_bytes()) == {
        "format": 1,
        "mirrorkit_version": __version__,
    }


@pytest.mark.parametrize("writer", ["9.0.0", None])
def test_a_store_of_a_newer_format_is_refused_and_nothing_is_written(
    store: Path, tmp_path: Path, publish_key: TestKey, writer: str | None
) -> None:
    body: dict[str, object] = {"format": 99}
    if writer is not None:
        body["mirrorkit_version"] = writer
    (store / "format").write_text(json.dumps(body))
    (store / "tmp" / "partial").rmdir()  # a command that changes the store creates it again
    before = listing(store)
    out = tmp_path / "out"
    commands = [
        ("snapshot", "list"),
        ("mirror", "show", "up"),
        ("channel", "list"),
        ("mirror", "update", "up"),
        ("snapshot", "create", "again", "--from-mirror", "up"),
        ("snapshot", "rm", "snap", "--force"),
        ("channel", "set", "dev", "snap"),
        ("gc",),
        ("publish", "fs", "snap", str(out), "--key", publish_key.fingerprint),
    ]
    for command in commands:
        r = run_cli(store, *command, gnupghome=publish_key.gnupghome)
        assert r.exit_code == 1, (command, r.output)
        first = r.stderr.splitlines()[0]
        assert first == (
            f"error: store {store} is in format 99 ({store / 'format'}), but this mirrorkit "
            f"({__version__}) knows store formats up to 1"
        ), command
        assert "upgrade mirrorkit" in r.stderr and "Nothing was changed" in r.stderr
        if writer is not None:
            assert "to 9.0.0 or later" in r.stderr
    assert listing(store) == before
    assert not out.exists()
    with pytest.raises(StoreFormatError):
        Store(store)


@pytest.mark.parametrize(
    ("kind", "record", "command"),
    [
        ("mirror", "mirrors/up.json", ("mirror", "show", "up")),
        ("mirror", "mirrors/up.json", ("mirror", "update", "up")),
        ("snapshot", "snapshots/snap/snapshot.json", ("snapshot", "show", "snap")),
        ("snapshot", "snapshots/snap/snapshot.json", ("snapshot", "rm", "snap", "--force")),
        ("channel", "channels/prod.json", ("channel", "list")),
        ("channel", "channels/prod.json", ("channel", "set", "prod", "snap")),
    ],
)
def test_a_record_of_a_newer_version_is_refused_naming_the_file(
    store: Path, kind: str, record: str, command: tuple[str, ...]
) -> None:
    path = store / record
    # A field this mirrorkit does not know: loading the record would drop it on the next write.
    edit_record(path, format=99, future_field={"x": 1})
    before = listing(store)
    r = run_cli(store, *command)
    assert r.exit_code == 1, r.output
    known = {k.name: k.version for k in KINDS}[kind]
    assert f"error: {path}: {kind} record format 99, but this mirrorkit ({__version__}) reads " \
        f"{kind} records up to format {known}" in r.stderr, r.stderr  # fmt: skip
    assert "upgrade mirrorkit" in r.stderr
    # The lock holds the pid of the last command that took it; it is not a record.
    del before["lock"]
    after = listing(store)
    del after["lock"]
    assert after == before


def test_a_published_record_of_a_newer_version_stops_gc(
    store: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    r = run_cli(store, "publish", "fs", "snap", str(tmp_path / "out"), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    (path,) = (store / "published").glob("*.json")
    edit_record(path, format=2)
    before = listing(store)
    r = run_cli(store, "gc")
    assert r.exit_code == 1
    assert f"error: {path}: published-tree record format 2" in r.stderr, r.stderr
    assert {k: v for k, v in listing(store).items() if k != "lock"} == {
        k: v for k, v in before.items() if k != "lock"
    }


@pytest.mark.parametrize(
    ("record", "damage", "command", "problem"),
    [
        ("mirrors/up.json", {"spec": None}, ("mirror", "list"),
         "not a valid mirror record: spec: expected an object, got null"),
        ("mirrors/up.json", {"created_at": 5}, ("mirror", "show", "up"),
         "not a valid mirror record: created_at: expected a string, got a number"),
        ("mirrors/up.json", {"state": {"signer": "x"}}, ("snapshot", "create", "s2",
         "--from-mirror", "up"), "not a valid mirror record: state.inrelease_sha256: missing"),
        ("channels/prod.json", {"history": [{"action": "set"}]}, ("channel", "list"),
         "not a valid channel record: history[0].snapshot: missing"),
        ("channels/prod.json", {"snapshot": ["snap"]}, ("channel", "history", "prod"),
         "not a valid channel record: snapshot: expected a string, got a list"),
        ("channels/prod.json", {"format": "1"}, ("snapshot", "rm", "snap"),
         "not a valid channel record: format: expected a positive integer, got '1'"),
    ],
)  # fmt: skip
def test_a_damaged_record_is_a_clear_error_naming_the_file(
    store: Path, record: str, damage: dict[str, object], command: tuple[str, ...], problem: str
) -> None:
    path = store / record
    edit_record(path, **damage)
    r = run_cli(store, *command)
    assert r.exit_code == 1, r.output
    assert f"error: {path}: {problem}\n" in r.stderr, r.stderr
    assert "hint: the store was modified by hand or damaged" in r.stderr
    assert "Traceback" not in r.output


def test_a_record_with_a_missing_key_is_named_for_a_channel_and_for_publish(
    store: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    path = store / "channels" / "prod.json"
    data = json.loads(path.read_bytes())
    del data["history"]
    path.write_text(json.dumps(data))
    r = run_cli(store, "publish", "fs", "prod", str(tmp_path / "out"), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1
    assert f"error: {path}: not a valid channel record: history: missing" in r.stderr
    path.write_text("{")
    r = run_cli(store, "channel", "list")
    assert r.exit_code == 1 and f"error: {path}: corrupt JSON" in r.stderr, r.stderr


def test_a_store_written_before_the_format_file_works_and_gets_it_on_its_first_write(
    store: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    """As mirrorkit wrote stores before it versioned them: no format file, and channel,
    published-tree and imported-bundle records without a "format" key."""
    r = run_cli(store, "publish", "fs", "prod", str(tmp_path / "out"), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    (store / "format").unlink()
    for record in [store / "channels" / "prod.json", *(store / "published").glob("*.json")]:
        data = json.loads(record.read_bytes())
        del data["format"]
        record.write_text(json.dumps(data))
    before = listing(store)
    for command in [("snapshot", "list"), ("channel", "list"), ("mirror", "show", "up")]:
        r = run_cli(store, *command)
        assert r.exit_code == 0, r.output
    assert "prod\tsnap" in run_cli(store, "channel", "list").stdout
    assert listing(store) == before  # reading never writes, not even the format file
    assert Store(store).format == 1
    r = run_cli(store, "channel", "set", "dev", "snap")
    assert r.exit_code == 0, r.output
    assert json.loads((store / "format").read_bytes())["format"] == 1
    # gc reads the published record of the old store; the old channel record still loads.
    assert run_cli(store, "gc").exit_code == 0
    assert run_cli(store, "channel", "set", "prod", "snap").exit_code == 0
    assert json.loads((store / "channels" / "prod.json").read_bytes())["history"][0]["snapshot"] \
        == "snap"  # fmt: skip


def test_a_format_file_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "format").write_text("1\n")
    r = run_cli(store, "snapshot", "list")
    assert r.exit_code == 1
    assert f"error: {store / 'format'}: not a valid store format file: expected a JSON " \
        "object, got a number" in r.stderr, r.stderr  # fmt: skip


def test_an_import_log_of_a_newer_version_stops_an_import_before_it_writes(
    store: Path, tmp_path: Path, publish_key: TestKey
) -> None:
    bundle = tmp_path / "snap.bundle"
    r = run_cli(store, "bundle", "export", "snap", "-o", str(bundle), "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    target = tmp_path / "target"
    log = target / "bundles" / "imported.json"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"format": 99, "bundles": [], "by_peer": {}}))
    before = listing(target)
    r = run_cli(target, "bundle", "import", str(bundle), "--keyring",
                str(publish_key.public_keyring))  # fmt: skip
    assert r.exit_code == 1
    assert f"error: {log}: imported-bundles record format 99" in r.stderr, r.stderr
    assert listing(target) == before


def test_a_bundle_carrying_a_snapshot_record_of_a_newer_version_is_refused(
    tmp_path: Path,
    debs_dir: dict[str, Path],
    publish_key: TestKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a newer mirrorkit would export it: the record's own digest holds and the signed
    manifest vouches for it, yet this mirrorkit cannot know what its version means."""
    with monkeypatch.context() as newer:
        newer.setattr(snapshot, "SNAPSHOT", dataclasses.replace(SNAPSHOT, version=NEXT))
        newer.setattr(snapshot, "FORMAT", NEXT)
        source = Store(tmp_path / "source")
        snapshot.create_from_debs(source, "next", [debs_dir["tool"]])
        bundle.export(source, ["next"], tmp_path / "next.bundle", key=publish_key.fingerprint,
                      gnupghome=str(publish_key.gnupghome))  # fmt: skip
    target = tmp_path / "target"
    r = run_cli(target, "bundle", "import", str(tmp_path / "next.bundle"), "--keyring",
                str(publish_key.public_keyring))  # fmt: skip
    assert r.exit_code == 1
    assert f"snapshots/next/snapshot.json: snapshot record format {NEXT}, but this mirrorkit " \
        f"({__version__}) reads snapshot records up to format {SNAPSHOT.version}" \
        in r.stderr, r.stderr  # fmt: skip
    assert not (target / "snapshots" / "next").exists()
    assert not list((target / "pool").glob("*/*"))  # refused before anything was committed
