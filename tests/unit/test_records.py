"""The record codec: versions, schemas, and what a damaged record says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorkit.errors import StorageError, StoreFormatError
from mirrorkit.store import (
    CHANNEL,
    IMPORTED_BUNDLES,
    MIRROR,
    PUBLISHED,
    SNAPSHOT,
    decode_record,
    encode_record,
    read_record,
    write_record,
)
from mirrorkit.store.records import KINDS

INDEX = {"component": "main", "architecture": "amd64", "sha256": "ab" * 32, "packages": 3}
SNAP = {
    "name": "s",
    "created_at": "2026-12-04T00:00:00+00:00",
    "mirrorkit_version": "0.1.0",
    "sources": [{"kind": "debs", "files": ["a_1_all abc"]}],
    "indexes": [INDEX],
    "digest": "cd" * 32,
}
CHAN = {"name": "prod", "snapshot": "s", "history": [
    {"action": "set", "snapshot": "s", "at": "2026-12-04T00:00:00+00:00", "by": "me@host"}
]}  # fmt: skip


def test_every_kind_has_its_version_and_a_hint() -> None:
    assert [(k.name, k.version) for k in KINDS] == [
        ("mirror", 4),  # 2: languages, contents, extras (issue 15); 3: proxy, CA, auth (13);
        # 4: index kinds, with_sources, with_udebs, with_installer, installer_files (issue 15)
        ("snapshot", 3),  # 2: extras; 3: index kinds (udeb, source, installer) (issue 15)
        ("channel", 1),
        ("published-tree", 1),
        ("imported-bundles", 1),
        ("repo", 1),
    ]
    assert all(k.hint for k in KINDS)


def test_a_record_round_trips_with_its_version_and_canonical_bytes(tmp_path: Path) -> None:
    path = tmp_path / "channels" / "prod.json"
    write_record(path, CHANNEL, CHAN, tmp_dir=tmp_path)
    raw = path.read_bytes()
    assert raw == json.dumps({**CHAN, "format": 1}, sort_keys=True, indent=1).encode() + b"\n"
    assert read_record(path, CHANNEL) == {**CHAN, "format": 1}
    # A record read, changed and written back keeps one "format", the current one.
    assert encode_record(CHANNEL, {**CHAN, "format": 1}) == raw


def test_unversioned_records_are_version_1_only_where_they_were_written_so() -> None:
    assert decode_record(json.dumps(CHAN).encode(), CHANNEL, "c.json")["name"] == "prod"
    published = {"dir": "/srv/apt", "suites": {"prod": "s"}}
    assert decode_record(json.dumps(published).encode(), PUBLISHED, "p.json") == published
    assert decode_record(b'{"bundles": []}', IMPORTED_BUNDLES, "i.json") == {"bundles": []}
    # Snapshots and mirrors always carried their version: without one a record is damaged.
    with pytest.raises(StorageError, match=r"s\.json: not a valid snapshot record: format: "):
        decode_record(json.dumps(SNAP).encode(), SNAPSHOT, "s.json")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({**SNAP, "extra": 1}, "extra: unknown field"),
        ({**SNAP, "indexes": [{**INDEX, "packages": True}]},
         r"indexes\[0\]\.packages: expected an integer, got a boolean"),
        ({**SNAP, "indexes": [{**INDEX, "packages": "3"}]},
         r"indexes\[0\]\.packages: expected an integer, got a string"),
        ({**SNAP, "sources": [1]}, r"sources\[0\]: expected an object, got a number"),
        ({**SNAP, "sources": [{"files": []}]}, r"sources\[0\]\.kind: missing"),
        ({k: v for k, v in SNAP.items() if k != "digest"}, "digest: missing"),
    ],
)  # fmt: skip
def test_a_record_that_does_not_fit_its_schema_is_damaged(
    body: dict[str, object], problem: str
) -> None:
    raw = json.dumps({**body, "format": 1}).encode()
    with pytest.raises(StorageError, match=f"^s.json: not a valid snapshot record: {problem}$"):
        decode_record(raw, SNAPSHOT, "s.json")
    with pytest.raises(ValueError, match="does not fit its schema"):
        encode_record(SNAPSHOT, body)  # a bug in mirrorkit never reaches the disk


def test_a_newer_record_is_refused_before_its_schema_is_checked() -> None:
    newer = SNAPSHOT.version + 1
    raw = json.dumps({"format": newer, "whatever": [], "mirrorkit_version": "3.1"}).encode()
    with pytest.raises(StoreFormatError) as caught:
        decode_record(raw, SNAPSHOT, "s.json")
    assert caught.value.message.startswith(f"s.json: snapshot record format {newer}, but this ")
    assert "written by mirrorkit 3.1" in (caught.value.hint or "")
    for bad in (b'{"format": 0}', b'{"format": true}', b"[1]", b"\xff"):
        with pytest.raises(StorageError, match=r"^m\.json: "):
            decode_record(bad, MIRROR, "m.json")


def test_a_published_record_names_one_target() -> None:
    both: dict[str, object] = {"dir": "/a", "s3": "s3://b/p", "endpoint_url": None, "suites": {}}
    with pytest.raises(StorageError, match="neither or both"):
        decode_record(json.dumps(both).encode(), PUBLISHED, "p.json")
