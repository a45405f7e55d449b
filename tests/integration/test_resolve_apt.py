"""Differential tests: real apt is the oracle for the dependency closure.

For a synthetic two-source archive and for the real Debian bookworm index in apt's lists, the
closure mirrorkit computes equals what `apt-get install -s --no-install-recommends` selects from
an empty dpkg status in a private apt configuration.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Unpack

import pytest

from mirrorkit import archive, resolve
from tests.helpers.apt import AptClient
from tests.helpers.archive import build_archive
from tests.helpers.debs import DebOptions, build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

LISTS = Path("/var/lib/apt/lists")
BOOKWORM = "deb.debian.org_debian_dists_bookworm"
REAL_SEEDS = [
    "nginx", "curl", "openssh-server", "postgresql", "python3", "libreoffice-writer",
    "gnome-core", "php", "mutt", "build-essential", "docker.io", "texlive-base",
    # ties between equally good providers, decided by apt's cache IDs:
    "gimp-help-fr", "php8.2-oauth", "librust-tinytemplate-dev",
]  # fmt: skip


def apt_selects(apt: AptClient, *seeds: str) -> set[str]:
    proc = apt.simulate_install(*seeds)
    assert proc.returncode == 0, proc.stdout
    return set(re.findall(r"^Inst (\S+) ", proc.stdout, re.M))


def _synthetic(debs: Path) -> tuple[list[Path], list[Path]]:
    def deb(name: str, version: str = "1.0", arch: str = "amd64", **kw: Unpack[DebOptions]) -> Path:
        return build_deb(debs, name, version, arch, **kw)

    base = [
        deb("app1", depends="liba | libb, virt-x, libc6 (>= 2)"),
        deb("liba"), deb("libb"),
        deb("p-one", provides="virt-x"), deb("p-two", provides="virt-x"),
        deb("p-three", provides="virt-x", priority="important"),
        deb("libc6", "1.0"),
        deb("app2", depends="api (>= 2), sh"),
        deb("prov-old", provides="api (= 1)"), deb("prov-new", provides="api (= 2.5)"),
        deb("zsh-x", provides="sh", priority="optional"),
        deb("dash-x", provides="sh", priority="required", essential=True),
        deb("app3", arch="all", depends="tool:any, data"),
        deb("tool", multi_arch="allowed"), deb("data", arch="all"),
        deb("app4", pre_depends="app1", depends="missing-x | app2"),
        deb("writer", depends="base-core, core"),
        deb("base-core", depends="nogui | core"),
        deb("nogui", extra_fields={"Conflicts": "core"}),
        deb("core", extra_fields={"Conflicts": "nogui"}),
        deb("deep", depends="mid1 | mid2"), deb("mid1", depends="leaf (>= 2)"),
        deb("mid2", depends="leaf"), deb("leaf", "1.0"),
        deb("want", depends="opt-a | opt-b"), deb("opt-b"),
        deb("opt-a", depends="lib-a", extra_fields={"Conflicts": "want"}), deb("lib-a"),
        # apt marks every named package first: "or-app zor-b" takes zor-b for the "|", though
        # or-app comes first (by name, as the filter's matches do)
        deb("or-app", depends="zor-a | zor-b"), deb("zor-a"), deb("zor-b"),
        # a conflict one level below the alternative taken: apt takes the other alternative
        deb("gui", extra_fields={"Conflicts": "gui-gles"}),
        deb("gui-gles", extra_fields={"Conflicts": "gui"}),
        deb("quick", depends="gui"), deb("quick-gles", depends="gui | gui-gles"),
        deb("qapp", depends="quick | quick-gles"),
        deb("qapp2", depends="gui | gui-gles, quick | quick-gles"),
        # Conflicts on a name another package Provides hits that package too
        deb("gm", extra_fields={"Conflicts": "im-api"}),
        deb("im-impl", provides="im-api"), deb("im-tool"),
        deb("gosa", depends="im-api | im-tool"),
        # an architecture-qualified Conflicts hits that architecture only
        deb("arch-app", depends="arch-a | arch-b"),
        deb("arch-a", extra_fields={"Conflicts": "arch-app:i386"}), deb("arch-b"),
    ]  # fmt: skip
    security = [deb("libc6", "2.5"), deb("leaf", "2.1")]
    return base, security


@pytest.mark.e2e
def test_closure_equals_apt_on_a_synthetic_two_source_archive(
    tmp_path: Path,
    test_key: TestKey,
    make_server: Callable[[Path], FaultServer],
    apt_client: AptClient,
) -> None:
    base_debs, sec_debs = _synthetic(tmp_path / "debs")
    base = build_archive(tmp_path / "base", test_key, {"main": base_debs}, suite="stable",
                         codename="stable")  # fmt: skip
    sec = build_archive(tmp_path / "sec", test_key, {"main": sec_debs}, suite="stable-security",
                        codename="stable-security")  # fmt: skip
    store = tmp_path / "store"
    for name, arch in (("base", base), ("sec", sec)):
        srv = make_server(arch.root)
        apt_client.add_source(srv.url, arch.suite, ["main"], test_key.public_keyring)
        r = run_cli(store, "mirror", "add", name, srv.url, arch.suite,
                    "--keyring", str(test_key.public_keyring))  # fmt: skip
        assert r.exit_code == 0, r.output
        assert run_cli(store, "mirror", "update", name).exit_code == 0
        assert run_cli(store, "snapshot", "create", name, "--from-mirror", name).exit_code == 0
    assert apt_client.update().returncode == 0
    r = run_cli(store, "snapshot", "merge", "both", "base", "sec", "--all-versions")
    assert r.exit_code == 0, r.output

    for seeds in (["app1"], ["app2"], ["app3"], ["app4"], ["writer"], ["deep"], ["want"],
                  ["app1", "app3", "deep"], ["or-app", "zor-b"], ["gui-gles", "qapp"],
                  ["qapp", "gui-gles"], ["qapp2", "gui-gles"], ["gm", "gosa"], ["gosa", "gm"],
                  ["arch-app"]):  # fmt: skip
        dest = "f-" + "-".join(seeds)
        query = " | ".join(seeds)
        r = run_cli(store, "snapshot", "filter", "both", dest, query, "--with-deps")
        assert r.exit_code == 0, r.output
        listed = run_cli(store, "snapshot", "search", dest, "Name").stdout.split()
        ours = {ref.split("_")[0] for ref in listed}
        assert ours == apt_selects(apt_client, *seeds), seeds
        # The security versions won, as apt's candidates do.
        assert not any(ref.startswith(("libc6_1.0", "leaf_1.0")) for ref in listed), listed


@pytest.fixture(scope="module")
def bookworm(tmp_path_factory: pytest.TempPathFactory) -> tuple[resolve.Universe, AptClient]:
    index = LISTS / f"{BOOKWORM}_main_binary-amd64_Packages.lz4"
    inrelease = LISTS / f"{BOOKWORM}_InRelease"
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not (index.exists() and inrelease.exists() and keyring.exists()):
        pytest.skip("the bookworm index is not in apt's lists (run apt-get update)")
    if shutil.which("lz4") is None:
        pytest.skip("lz4 is not installed")
    apt = AptClient(tmp_path_factory.mktemp("bookworm-apt"))
    # apt reads lists it already has: no network, the real signed InRelease and index.
    apt.add_source("http://deb.debian.org/debian", "bookworm", ["main"], keyring)
    for source in (index, inrelease):
        shutil.copy(source, apt.lists_dir / source.name)
    text = subprocess.run(["lz4", "-dc", str(index)], check=True, capture_output=True).stdout
    return resolve.Universe(archive.parse_packages(text, "main"), ["amd64"]), apt


@pytest.mark.e2e
@pytest.mark.parametrize("seeds", [[s] for s in REAL_SEEDS] + [["nginx", "curl", "python3"]])
def test_closure_equals_apt_on_the_real_bookworm_index(
    bookworm: tuple[resolve.Universe, AptClient], seeds: list[str]
) -> None:
    universe, apt = bookworm
    chosen = [next(p for p in universe.by_name[s] if universe.is_candidate(p)) for s in seeds]
    closure = resolve.resolve_closure(universe, chosen)
    assert closure.unmet == []
    assert {p.name for p in closure.packages} == apt_selects(apt, *seeds)
