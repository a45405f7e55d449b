"""The query language: aptly's syntax, table-driven."""

from __future__ import annotations

import pytest

from mirrorkit import query
from mirrorkit.resolve import search
from tests.unit.universe import stanza, universe

U = universe(
    stanza("nginx", "1.22.1-9", Priority="optional", Section="httpd", Source="nginx",
           Depends="libc6 (>= 2.34)"),
    stanza("nginx", "1.18.0-6", Section="httpd"),
    stanza("libssl-dev", "3.0.11-1", Section="libdevel", Source="openssl"),
    stanza("libssl3", "3.0.11-1", Section="libs", Source="openssl (3.0.11-1)",
           Priority="important"),
    stanza("openssl", "3.0.11-1", Section="utils", Priority="optional"),
    stanza("base-files", "12.4", Priority="required", Essential="yes"),
    stanza("doc-pkg", "2.0", arch="all", Section="doc"),
    stanza("arm-only", "1.0", arch="arm64"),
    stanza("exim4-daemon-light", "4.96-15", Provides="mail-transport-agent"),
    stanza("postfix", "3.7.6", Provides="mail-transport-agent, default-mta"),
    stanza("libfoo-abi", "1.0", Provides="libfoo-api (= 2.5)"),
    archs=("amd64", "arm64"),
)  # fmt: skip


def refs(text: str) -> list[str]:
    return sorted(p.ref for p in search(U, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64"]),
        ("nginx (>= 1.20)", ["nginx_1.22.1-9_amd64"]),
        ("nginx(>= 1.20)", ["nginx_1.22.1-9_amd64"]),  # aptly rejects this; users type it
        ("nginx (<< 1.20)", ["nginx_1.18.0-6_amd64"]),
        ("nginx (= 1.18.0-6)", ["nginx_1.18.0-6_amd64"]),
        ("nginx (1.18.0-6)", ["nginx_1.18.0-6_amd64"]),
        ("nginx (> 1.22.1-9)", ["nginx_1.22.1-9_amd64"]),  # old spelling of >=
        ("nginx (>> 1.22.1-9)", []),
        ("nginx_1.18.0-6_amd64", ["nginx_1.18.0-6_amd64"]),
        ("nginx | openssl", ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64",
                             "openssl_3.0.11-1_amd64"]),
        ("nginx, Section (httpd), !nginx (<< 1.20)", ["nginx_1.22.1-9_amd64"]),
        ("Priority (required)", ["base-files_12.4_amd64"]),
        ("Essential", ["base-files_12.4_amd64"]),
        ("Section (% lib*)", ["libssl-dev_3.0.11-1_amd64", "libssl3_3.0.11-1_amd64"]),
        ("Section (% *devel)", ["libssl-dev_3.0.11-1_amd64"]),
        ("Name (~ ^lib.*-dev$)", ["libssl-dev_3.0.11-1_amd64"]),
        ('Name (~ "^(openssl|nginx)$"), $Version (>= 3)', ["openssl_3.0.11-1_amd64"]),
        ("$Source (openssl)", ["libssl-dev_3.0.11-1_amd64", "libssl3_3.0.11-1_amd64",
                               "openssl_3.0.11-1_amd64"]),
        ("$Version (>= 3.0), !$Version (>> 4)", ["libssl-dev_3.0.11-1_amd64",
                               "libssl3_3.0.11-1_amd64", "openssl_3.0.11-1_amd64",
                               "postfix_3.7.6_amd64"]),
        ("$Architecture (arm64)", ["arm-only_1.0_arm64", "doc-pkg_2.0_all"]),
        ("$Architecture (all)", ["doc-pkg_2.0_all"]),
        ("$PackageType (deb), Section (doc)", ["doc-pkg_2.0_all"]),
        ("doc-pkg {arm64}", ["doc-pkg_2.0_all"]),
        ("arm-only {amd64}", []),
        ("mail-transport-agent", ["exim4-daemon-light_4.96-15_amd64", "postfix_3.7.6_amd64"]),
        ("default-mta | nginx (= 1.18.0-6)", ["nginx_1.18.0-6_amd64", "postfix_3.7.6_amd64"]),
        ("libfoo-api (>= 2)", ["libfoo-abi_1.0_amd64"]),  # versioned Provides
        ("libfoo-api (>= 3)", []),
        ("mail-transport-agent (>= 1)", []),  # an unversioned Provides never satisfies it
        ("!(nginx | Section (% lib*) | $Architecture (all) | $Architecture (arm64))",
         ["base-files_12.4_amd64", "exim4-daemon-light_4.96-15_amd64",
          "libfoo-abi_1.0_amd64", "openssl_3.0.11-1_amd64", "postfix_3.7.6_amd64"]),
        ("(nginx | openssl), Priority (optional)", ["nginx_1.22.1-9_amd64",
                                                     "openssl_3.0.11-1_amd64"]),
        ("Priority (important) | Priority (required), !Essential", ["libssl3_3.0.11-1_amd64"]),
        ("'nginx'", ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64"]),
        ('Section ("ht\\tp\\d")', ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64"]),
        ("Maintainer", []),
    ],
)  # fmt: skip
def test_query_matches(text: str, expected: list[str]) -> None:
    assert refs(text) == expected


def test_and_binds_tighter_than_or() -> None:
    # a | b , c  ==  a | (b , c)
    assert refs("openssl | nginx, Section (nothing)") == ["openssl_3.0.11-1_amd64"]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "empty query"),
        ("nginx |", 8, "expected a package name"),
        ("nginx (>= 1.22", 15, "expected ')'"),
        ("(nginx | curl", 14, "expected ')'"),
        ("nginx curl", 7, "expected ',', '|' or the end"),
        ("nginx (% 1.2)", 8, "works on fields only"),
        ("Name (~ )", 9, "expected a value"),
        ("doc {amd64", 11, "expected '}'"),
        ("Name ('abc", 7, "unterminated string"),
        ("Nginx_1_2 | BAD!", 16, "expected"),
        ("nginx, , curl", 8, "expected a package name"),
        ("ngi#nx", 1, "is not a package name"),
    ],
)
def test_parse_errors_point_at_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(query.QueryError) as err:
        query.parse(text)
    assert err.value.column + 1 == column
    assert message in err.value.message
    lines = err.value.message.splitlines()
    assert lines[1] == f"  {text}" and lines[2] == "  " + " " * (column - 1) + "^"
