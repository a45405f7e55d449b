"""The one merge rule (mirrorkit.merge) and the one version comparison it uses."""

from __future__ import annotations

import pytest
from debian.debian_support import version_compare

from mirrorkit.archive import compare_versions
from mirrorkit.errors import UsageError
from mirrorkit.merge import merge_indexes, merge_packages
from mirrorkit.models import MergePolicy, Package
from tests.unit.universe import packages, stanza


def refs(pkgs: list[Package]) -> list[str]:
    return sorted(f"{p.name}={p.version}" for p in pkgs)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # the later source wins with every version it holds (bookworm's two linux-doc)
        ("later", ["doc=6.1.76", "doc=6.1.90", "other=1.0"]),
        ("latest", ["doc=6.1.90", "other=1.0"]),
        ("all-versions", ["doc=6.1.70", "doc=6.1.76", "doc=6.1.90", "other=1.0"]),
    ],
)
def test_several_versions_in_one_source_are_kept_as_the_policy_says(
    policy: str, expected: list[str]
) -> None:
    first = packages(stanza("doc", "6.1.70"), stanza("other"))
    second = packages(stanza("doc", "6.1.76"), stanza("doc", "6.1.90"))
    assert refs(merge_packages([first, second], policy)) == expected
    # the same rule where sources are indices (snapshot merge)
    merged = merge_indexes([[("main", "amd64", first)], [("main", "amd64", second)]], policy)
    assert refs(merged[("main", "amd64")]) == expected


def test_latest_takes_the_later_source_on_equal_versions() -> None:
    first = packages(stanza("a", "1.0", Section="old"))
    second = packages(stanza("a", "0:1.0", Section="new"))
    (kept,) = merge_packages([first, second], MergePolicy.LATEST)
    assert b"Section: new" in kept.stanza


def test_an_arch_all_winner_is_listed_in_every_index_of_its_component() -> None:
    amd64 = packages(stanza("tool", arch="amd64"), stanza("doc", arch="all"))
    arm64 = packages(stanza("tool", arch="arm64"))
    merged = merge_indexes([[("main", "amd64", amd64), ("main", "arm64", arm64)]], "later")
    assert refs(merged[("main", "arm64")]) == ["doc=1.0", "tool=1.0"]


def test_an_unknown_policy_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown merge policy 'newest'"):
        merge_packages([], "newest")
    assert MergePolicy.parse("latest") is MergePolicy.LATEST


def test_compare_versions_is_python_debians() -> None:
    versions = ["1.0", "1.0-1", "1.0~rc1", "1:0.9", "0:1.0", "1.0+b1", "2.36-9+deb12u4", "1.00"]
    for a in versions:
        for b in versions:
            want = version_compare(a, b)
            got = compare_versions(a, b)
            assert (got > 0) - (got < 0) == (want > 0) - (want < 0), (a, b)
