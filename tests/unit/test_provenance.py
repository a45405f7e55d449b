"""Provenance: a snapshot record's sources, typed inside mirrorkit, the same JSON outside."""

from __future__ import annotations

import pytest

from mirrorkit.models import Provenance


def test_a_record_reads_and_writes_back_exactly() -> None:
    mirror = {
        "kind": "mirror",
        "mirror": "bookworm",
        "url": "http://deb.debian.org/debian",
        "suite": "bookworm",
        "inrelease_sha256": "ab" * 32,
        "signer": "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
        "release_date": "2026-11-08T09:41:53+00:00",
        "fetched_at": "2026-11-09T10:00:00+00:00",
        "filter": "nginx",
        "with_deps": True,
        "with_recommends": False,
        "with_essential": False,
        "policy": "later",
    }
    p = Provenance.from_json(mirror)
    assert (p.kind, p.mirror, p.with_deps, p.extra) == ("mirror", "bookworm", True, ())
    assert p.to_json() == mirror
    debs = {"kind": "debs", "files": ["hello_1.0_amd64 " + "cd" * 32]}
    assert Provenance.from_json(debs).files == ("hello_1.0_amd64 " + "cd" * 32,)
    assert Provenance.from_json(debs).to_json() == debs


def test_what_this_version_does_not_know_is_kept_verbatim() -> None:
    # A newer mirrorkit's field, and a known field holding another type: the record's digest
    # covers both, so neither may change or drop on the way through.
    record = {"kind": "repo", "snapshot": "web", "layers": [1, 2], "with_deps": "yes"}
    p = Provenance.from_json(record)
    assert p.with_deps is None and dict(p.extra) == {"layers": [1, 2], "with_deps": "yes"}
    assert p.to_json() == record


@pytest.mark.parametrize("bad", [None, [], {"snapshot": "web"}, {"kind": 1}])
def test_a_source_without_a_kind_is_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        Provenance.from_json(bad)
