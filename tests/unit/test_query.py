"""The query language: aptly's syntax, table-driven."""

from __future__ import annotations

import pytest

from mirrorkit import archive, query
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
    stanza("contrib-tool", "1.0", Section="contrib/devel", Maintainer="Ann <ann@example.org>"),
    stanza("g++-12", "12.2.0-14", Source="gcc-12 (12.2.0-14)"),
    stanza("0ad-data", "0.0.26-1"),
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
         ["0ad-data_0.0.26-1_amd64", "base-files_12.4_amd64", "contrib-tool_1.0_amd64",
          "exim4-daemon-light_4.96-15_amd64", "g++-12_12.2.0-14_amd64", "libfoo-abi_1.0_amd64",
          "openssl_3.0.11-1_amd64", "postfix_3.7.6_amd64"]),
        ("(nginx | openssl), Priority (optional)", ["nginx_1.22.1-9_amd64",
                                                     "openssl_3.0.11-1_amd64"]),
        ("Priority (important) | Priority (required), !Essential", ["libssl3_3.0.11-1_amd64"]),
        ("'nginx'", ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64"]),
        ('Section ("ht\\tp\\d")', ["nginx_1.18.0-6_amd64", "nginx_1.22.1-9_amd64"]),
        ("Maintainer", ["contrib-tool_1.0_amd64"]),
        # aptly's glob is Go's filepath.Match: '*' and '?' stop at '/', [^..] negates, '\' escapes
        ("Section (% *devel)", ["libssl-dev_3.0.11-1_amd64"]),
        ("Section (% */*)", ["contrib-tool_1.0_amd64"]),
        ("Name (% lib[^s]*)", ["libfoo-abi_1.0_amd64"]),
        ("Name (% g\\+\\+-1?)", ["g++-12_12.2.0-14_amd64"]),
        # aptly's regex is RE2: POSIX classes
        ("Name (~ ^[[:digit:]])", ["0ad-data_0.0.26-1_amd64"]),
        # '%' and '~' on a dependency term: the package's own version
        ("nginx (% 1.2*)", ["nginx_1.22.1-9_amd64"]),
        ("nginx (~ ^1\\.18)", ["nginx_1.18.0-6_amd64"]),
        ("$SourceVersion (12.2.0-14), $Source (gcc-12)", ["g++-12_12.2.0-14_amd64"]),
        ("$SourceVersion (2.0)", ["doc-pkg_2.0_all"]),
        ("$Architecture (source)", []),  # aptly: 'all' is for binary architectures only
        # a field the package lacks compares as "" (aptly), with any operator
        ("Essential (<< a), Section (doc)", ["doc-pkg_2.0_all"]),
        ("Essential (<< a), Priority (required)", []),  # "yes" sorts after "a"
        ("Section (% *), !Section, Name (% [ab]*)", ["arm-only_1.0_arm64",
                                                      "base-files_12.4_amd64"]),
        # relations compare any strings as dpkg would (aptly), not only versions
        ("Maintainer (>= Ann)", ["contrib-tool_1.0_amd64"]),
        ("Maintainer (>> Bob)", []),
        ('Name ("")', []),
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
        ("nginx curl", 7, "unexpected 'curl': expected ',', '|' or the end"),
        ("nginx |", 8, "unexpected end of query"),
        ("nginx (== 1.2)", 8, "'= 1.2' is not a Debian version"),
        ("nginx (>= 1.22 1.24)", 8, "is not a Debian version"),
        ("Name (~ [)", 9, "invalid regular expression '['"),
        ("Name (~ ^nginx(?=-))", 9, "not in RE2's syntax"),
        ("Name (% a[)", 9, "malformed pattern 'a['"),
        ("$Foo (x)", 1, "unknown field '$Foo'"),
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


def test_dpkg_comparison_of_any_string_agrees_with_python_debian_on_versions() -> None:
    # The fallback for values that are not versions (aptly compares any two strings so);
    # python-debian is the oracle wherever both apply.
    from debian.debian_support import version_compare

    versions = [
        "1.0", "1.0-1", "1.0~rc1", "1.0~~", "1:0.9", "2:1.0-1+deb12u1", "1.0a", "1.0+b1",
        "1.0.0", "1.00", "0.0.26-1", "3.0.11-1", "3.0.11-1~bpo12+1", "12.2.0-14", "1.2~",
        "a", "abc", "1.0-1.1", "1.0-1~exp1", "7.88.1-10+deb12u5", "0", "10", "9",
    ]  # fmt: skip
    for a in versions:
        for b in versions:
            want = version_compare(a, b)
            got = archive._dpkg_compare(a, b)
            assert (got > 0) - (got < 0) == (want > 0) - (want < 0), (a, b)
