"""The resolver's cases, table-driven: each universe, seeds, and the closure apt would install."""

from __future__ import annotations

import pytest

from mirrorkit import resolve
from mirrorkit.merge import merge_packages
from mirrorkit.resolve import Selection, Universe, resolve_closure
from tests.unit.universe import packages, stanza, universe


def closure_of(u: Universe, *seeds: str, **kwargs: bool) -> resolve.Closure:
    chosen = [next(p for p in u.by_name[s] if u.is_candidate(p)) for s in seeds]
    return resolve_closure(u, chosen, **kwargs)


def names(c: resolve.Closure) -> list[str]:
    return sorted(f"{p.name}={p.version}:{p.architecture}" for p in c.packages)


CASES = {
    "first satisfiable alternative, not all": (
        [stanza("app", Depends="liba | libb"), stanza("liba"), stanza("libb")],
        ["app"], ["app=1.0:amd64", "liba=1.0:amd64"],
    ),
    "skip an alternative that does not exist": (
        [stanza("app", Depends="missing | libb (>= 2)"), stanza("libb", "2.1")],
        ["app"], ["app=1.0:amd64", "libb=2.1:amd64"],
    ),
    "skip an alternative whose versions are too old": (
        [stanza("app", Depends="liba (>= 2) | libb"), stanza("liba", "1.0"), stanza("libb")],
        ["app"], ["app=1.0:amd64", "libb=1.0:amd64"],
    ),
    "an alternative already selected satisfies the group": (
        [stanza("app", Depends="libb, liba | libb"), stanza("liba"), stanza("libb")],
        ["app"], ["app=1.0:amd64", "libb=1.0:amd64"],
    ),
    "real package before providers": (
        [stanza("app", Depends="mta"), stanza("mta"), stanza("exim", Provides="mta")],
        ["app"], ["app=1.0:amd64", "mta=1.0:amd64"],
    ),
    "providers by Priority": (
        [stanza("app", Depends="awk"), stanza("gawk", Provides="awk", Priority="optional"),
         stanza("mawk", Provides="awk", Priority="required")],
        ["app"], ["app=1.0:amd64", "mawk=1.0:amd64"],
    ),
    "Essential providers first": (
        [stanza("app", Depends="sh"), stanza("zsh", Provides="sh", Priority="required"),
         stanza("dash", Provides="sh", Priority="optional", Essential="yes")],
        ["app"], ["app=1.0:amd64", "dash=1.0:amd64"],
    ),
    "equal providers: apt takes the later in the index": (
        [stanza("app", Depends="phpapi"), stanza("php-cgi", Provides="phpapi"),
         stanza("php-fpm", Provides="phpapi")],
        ["app"], ["app=1.0:amd64", "php-fpm=1.0:amd64"],
    ),
    "versioned provides satisfy versioned dependencies": (
        [stanza("app", Depends="api (>= 2)"), stanza("old", Provides="api (= 1.5)"),
         stanza("new", Provides="api (= 2.1)")],
        ["app"], ["app=1.0:amd64", "new=1.0:amd64"],
    ),
    "unversioned provides never satisfy versioned dependencies": (
        [stanza("app", Depends="api (>= 2) | fallback"), stanza("any", Provides="api"),
         stanza("fallback")],
        ["app"], ["app=1.0:amd64", "fallback=1.0:amd64"],
    ),
    "highest version that satisfies, across sources": (
        [stanza("app", Depends="libssl3 (>= 3.0)"), stanza("libssl3", "3.0.11-1"),
         stanza("libssl3", "3.0.15-1~deb12u1"), stanza("libssl3", "2.9")],
        ["app"], ["app=1.0:amd64", "libssl3=3.0.15-1~deb12u1:amd64"],
    ),
    "upper bounds pick an older version": (
        [stanza("app", Depends="lib (<< 2)"), stanza("lib", "2.0"), stanza("lib", "1:0.5"),
         stanza("lib", "1.9")],
        ["app"], ["app=1.0:amd64", "lib=1.9:amd64"],
    ),
    "Pre-Depends count like Depends, Recommends do not": (
        [stanza("app", Pre_Depends="pre", Recommends="nice", Suggests="more"), stanza("pre"),
         stanza("nice"), stanza("more")],
        ["app"], ["app=1.0:amd64", "pre=1.0:amd64"],
    ),
    "Architecture all satisfies any architecture": (
        [stanza("app", Depends="data"), stanza("data", arch="all")],
        ["app"], ["app=1.0:amd64", "data=1.0:all"],
    ),
    "pkg:any needs Multi-Arch: allowed": (
        [stanza("app", Depends="perl:any | python3:any"), stanza("perl"),
         stanza("python3", Multi_Arch="allowed")],
        ["app"], ["app=1.0:amd64", "python3=1.0:amd64"],
    ),
    "pkg:native": (
        [stanza("app", arch="all", Depends="tool:native"), stanza("tool", arch="arm64"),
         stanza("tool")],
        ["app"], ["app=1.0:all", "tool=1.0:amd64"],
    ),
    "Multi-Arch: foreign from another selected architecture": (
        [stanza("app", arch="arm64", Depends="helper, lib"),
         stanza("helper", Multi_Arch="foreign"), stanza("lib"), stanza("lib", arch="arm64")],
        ["app"], ["app=1.0:arm64", "helper=1.0:amd64", "lib=1.0:arm64"],
    ),
    "transitive, depth first": (
        [stanza("a", Depends="b, c"), stanza("b", Depends="d"), stanza("c", Depends="d | e"),
         stanza("d"), stanza("e")],
        ["a"], ["a=1.0:amd64", "b=1.0:amd64", "c=1.0:amd64", "d=1.0:amd64"],
    ),
    "an alternative that conflicts with its dependent gives way to the next one": (
        [stanza("want", Depends="opt-a | opt-b"),
         stanza("opt-a", Conflicts="want", Depends="lib-a"), stanza("opt-b"), stanza("lib-a")],
        ["want"], ["opt-b=1.0:amd64", "want=1.0:amd64"],
    ),
    "a conflict below an alternative changes that alternative (as apt's resolver does)": (
        [stanza("gui", Conflicts="gui-gles"), stanza("gui-gles", Conflicts="gui"),
         stanza("quick", Depends="gui"), stanza("quick-gles", Depends="gui | gui-gles"),
         stanza("app", Depends="quick | quick-gles")],
        ["gui-gles", "app"], ["app=1.0:amd64", "gui-gles=1.0:amd64", "quick-gles=1.0:amd64"],
    ),
    "what only an undone choice used goes, though another package could use it too": (
        [stanza("gui", Conflicts="gui-gles"), stanza("gui-gles", Conflicts="gui"),
         stanza("quick", Depends="gui"), stanza("quick-gles", Depends="gui | gui-gles"),
         stanza("app2", Depends="gui | gui-gles, quick | quick-gles")],
        ["app2", "gui-gles"], ["app2=1.0:amd64", "gui-gles=1.0:amd64", "quick-gles=1.0:amd64"],
    ),
    "Conflicts on a provided name hit the provider": (
        [stanza("gm", Conflicts="im-api"), stanza("im-impl", Provides="im-api"),
         stanza("im-tool"), stanza("gosa", Depends="im-api | im-tool")],
        ["gosa", "gm"], ["gm=1.0:amd64", "gosa=1.0:amd64", "im-tool=1.0:amd64"],
    ),
    "an early alternative that conflicts with a later need is dropped": (
        [stanza("writer", Depends="base, core"), stanza("base", Depends="nogui | core"),
         stanza("nogui", Conflicts="core"), stanza("core", Conflicts="nogui")],
        ["writer"], ["base=1.0:amd64", "core=1.0:amd64", "writer=1.0:amd64"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_resolver_cases(case: str) -> None:
    stanzas, seeds, expected = CASES[case]
    u = universe(*stanzas, archs=("amd64", "arm64"))
    result = closure_of(u, *seeds)
    assert result.unmet == []
    assert names(result) == expected


@pytest.mark.parametrize(
    ("stanzas", "why"),
    [
        ([stanza("app", Depends="nothere")], "no package nothere"),
        ([stanza("app", Depends="lib (>= 2)"), stanza("lib", "1.0")], "lib has only 1.0 (amd64)"),
        ([stanza("app", Depends="api (>= 2)"), stanza("p", Provides="api (= 1)")],
         "no provider of api fits"),
        ([stanza("app", Depends="armlib"), stanza("armlib", arch="arm64")],
         "armlib has only 1.0 (arm64)"),
        ([stanza("app", Depends="lib (<< 2), other"), stanza("other", Depends="lib (>= 2)"),
          stanza("lib", "1.5"), stanza("lib", "2.5")], "lib 1.5 is already selected"),
    ],
)  # fmt: skip
def test_unmet_dependencies_are_reported(stanzas: list[str], why: str) -> None:
    u = universe(*stanzas, archs=("amd64", "arm64"))
    result = closure_of(u, "app")
    assert len(result.unmet) == 1
    assert why in result.unmet[0].why
    assert str(result.unmet[0]).startswith("app_1.0_amd64: ") or "other" in str(result.unmet[0])


def test_recommends_when_asked() -> None:
    u = universe(stanza("app", Recommends="nice | other"), stanza("nice"), stanza("other"))
    assert names(closure_of(u, "app", recommends=True)) == ["app=1.0:amd64", "nice=1.0:amd64"]


def test_why_gives_the_chain() -> None:
    u = universe(stanza("a", Depends="b"), stanza("b", Depends="c | d"), stanza("c"))
    result = closure_of(u, "a")
    c = next(p for p in result.packages if p.name == "c")
    assert [(p.name, dep) for p, dep in result.why(c)] == [("a", ""), ("b", "b"), ("c", "c | d")]


def test_same_input_same_closure() -> None:
    stanzas = [stanza("app", Depends="v1, v2, v3")] + [
        stanza(f"p{i}", Provides=f"v{i % 3 + 1}") for i in range(30)
    ]
    first = names(closure_of(universe(*stanzas), "app"))
    for _ in range(5):
        assert names(closure_of(universe(*stanzas), "app")) == first


def test_selection_with_deps_and_essential() -> None:
    u = universe(
        stanza("nginx", Depends="libc"), stanza("libc"), stanza("base", Essential="yes",
        Priority="required"), stanza("unrelated"),
    )  # fmt: skip
    picked = resolve.apply(u, Selection("nginx", with_deps=True))
    assert sorted(p.name for p in picked.packages) == ["libc", "nginx"]
    picked = resolve.apply(u, Selection("nginx", with_deps=True, with_essential=True))
    assert sorted(p.name for p in picked.packages) == ["base", "libc", "nginx"]
    assert [p.name for p in resolve.apply(u, Selection("nginx")).packages] == ["nginx"]


def test_selection_fails_on_unmet_unless_allowed() -> None:
    u = universe(stanza("nginx", Depends="libc, gone"), stanza("libc"))
    with pytest.raises(resolve.UnmetDependenciesError, match=r"nginx_1\.0_amd64: gone"):
        resolve.apply(u, Selection("nginx", with_deps=True))
    picked = resolve.apply(u, Selection("nginx", with_deps=True, allow_missing=True))
    assert sorted(p.name for p in picked.packages) == ["libc", "nginx"]
    assert picked.closure is not None and len(picked.closure.unmet) == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("later", ["a=1.0", "b=2.0"]),
        ("latest", ["a=3.0", "b=2.0"]),
        ("all-versions", ["a=1.0", "a=3.0", "b=1.0", "b=2.0"]),
    ],
)
def test_merge_policies(policy: str, expected: list[str]) -> None:
    first = packages(stanza("a", "3.0"), stanza("b", "1.0"))
    second = packages(stanza("a", "1.0"), stanza("b", "2.0"))
    merged = merge_packages([first, second], policy)
    assert sorted(f"{p.name}={p.version}" for p in merged) == expected


def test_quick_provides_matches_python_debian_on_the_real_index() -> None:
    import shutil
    import subprocess
    from pathlib import Path

    from mirrorkit import archive

    index = Path(
        "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
    )
    if not index.exists() or shutil.which("lz4") is None:
        pytest.skip("the bookworm index is not in apt's lists")
    text = subprocess.run(["lz4", "-dc", str(index)], check=True, capture_output=True).stdout
    u = Universe(archive.parse_packages(text, "main"), ["amd64"])
    checked = 0
    for p in u.packages:
        value = u.field(p, "Provides")
        oracle = [
            (g[0].name, g[0].version if g[0].op == "=" else None)
            for g in resolve.parse_relations(value)
        ] if value else []  # fmt: skip
        assert u.provides(p) == oracle, p.ref
        checked += bool(value)
    assert checked > 5000


def test_name_queries_use_the_indices_and_agree_with_a_full_scan() -> None:
    from mirrorkit import query

    u = universe(
        stanza("nginx"), stanza("nginx", "2.0"), stanza("web", Provides="httpd"),
        stanza("other", Section="web"), stanza("curl", arch="all"),
    )  # fmt: skip
    for text in ("nginx | httpd", "nginx (>= 2), nginx", "curl {amd64} | other_1.0_amd64",
                 "httpd, Section (web)", "!nginx", "nginx | Section (web)"):  # fmt: skip
        parsed = query.parse(text)
        full = [p for p in u.packages if parsed.matches(p, u)]
        assert resolve.search(u, text) == full, text
