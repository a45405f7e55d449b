"""Source packages and udebs end to end (issue 15): mirrored from the signed Release, filtered
with the Source: rule across upstreams, merged, diffed, searched, bundled (incremental too),
published, and fetched by real ``apt-get source`` (dpkg-source checks every file's hash).

Real parts only: source packages built by dpkg-source, Sources indices by apt-ftparchive,
udebs by dpkg-deb, a signed archive on a loopback FaultServer, the real CLI, real apt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive, build_archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.helpers.sources import build_source_set
from tests.mk import run_cli


@pytest.fixture(scope="module")
def upstreams(
    tmp_path_factory: pytest.TempPathFactory, test_key: TestKey
) -> Iterator[tuple[Archive, FaultServer, Archive, FaultServer]]:
    """The main archive (hello, greet/libgreet, tool, the hello-udeb udeb) and a security
    archive with hello 1.0-1+deb1, each with Sources, served on loopback."""
    base = tmp_path_factory.mktemp("src-upstreams")
    main = build_source_set(base / "main-pkgs")
    sec = build_source_set(base / "sec-pkgs", security=True)
    a = build_archive(base / "main", test_key, {"main": main["debs"]},
                      sources={"main": main["dscs"]}, udebs={"main": main["udebs"]})  # fmt: skip
    b = build_archive(base / "sec", test_key, {"main": sec["debs"]}, suite="stable-security",
                      sources={"main": sec["dscs"]})  # fmt: skip
    with FaultServer(a.root) as srv_a, FaultServer(b.root) as srv_b:
        yield a, srv_a, b, srv_b


def _ok(store: Path, *args: str, **kw: object) -> str:
    r = run_cli(store, *args, **kw)  # type: ignore[arg-type]
    assert r.exit_code == 0, r.output
    return r.stdout


def _search(store: Path, snap: str, query: str) -> list[str]:
    r = run_cli(store, "snapshot", "search", snap, query)
    assert r.exit_code in (0, 1), r.output
    return r.stdout.split()


def _apt_source(tmp: Path, tree: Path, suite: str, package: str) -> list[str]:
    """``apt-get source PACKAGE`` from the published tree (signature checked, dpkg-source
    unpacks and checks every file): the names of what it left behind."""
    apt = AptClient(tmp / "apt")
    key = next(tree.glob("mirrorkit-archive-*.gpg")).resolve()
    apt.add_source(tree.resolve().as_uri(), suite, ["main"], key, types="deb deb-src")
    done = apt.update()
    assert done.returncode == 0, done.stdout
    work = tmp / "work"
    work.mkdir()
    got = apt.run("sh", "-c", f"cd {work} && apt-get source {package}")
    assert got.returncode == 0, got.stdout
    assert "extracting" in got.stdout
    return sorted(p.name for p in work.iterdir())


def test_a_filtered_mirror_takes_the_sources_that_built_its_binaries(
    tmp_path: Path,
    upstreams: tuple[Archive, FaultServer, Archive, FaultServer],
    publish_key: TestKey,
) -> None:
    archive, srv, _, _ = upstreams
    store = tmp_path / "store"
    _ok(store, "mirror", "add", "up", srv.url, "stable", "--keyring",
        str(archive.key.public_keyring), "--with-sources", "--with-udebs",
        "--filter", "hello | hello-udeb", "--with-deps")  # fmt: skip
    assert "Kinds: debs udebs sources" in _ok(store, "mirror", "show", "up")
    _ok(store, "mirror", "update", "up")
    _ok(store, "snapshot", "create", "s", "--from-mirror", "up")

    # The Source: rule: libgreet 2.0-1+b1 (Source: greet (2.0-1)) brings greet 2.0-1; tool's
    # source stays out, as tool does.
    assert _search(store, "s", "$Architecture (source)") == [
        "greet_2.0-1_source", "hello_1.0-1_source"]  # fmt: skip
    assert _search(store, "s", "$PackageType (source)") == _search(
        store, "s", "$Architecture (source)")  # fmt: skip
    assert _search(store, "s", "$PackageType (udeb)") == ["hello-udeb_1.0-1_amd64"]
    assert _search(store, "s", "Name") == [
        "greet_2.0-1_source", "hello-udeb_1.0-1_amd64", "hello_1.0-1_amd64",
        "hello_1.0-1_source", "libgreet_2.0-1+b1_amd64"]  # fmt: skip
    shown = _ok(store, "snapshot", "show", "s")
    assert "Kinds: debs udebs sources" in shown
    assert "Index: main/source (2 packages)" in shown
    assert json.loads(_ok(store, "snapshot", "show", "s", "--json"))["kinds"] == [
        "deb", "udeb", "source"]  # fmt: skip

    tree = tmp_path / "tree"
    out = _ok(store, "publish", "fs", "s", str(tree), "--key", publish_key.fingerprint,
              gnupghome=publish_key.gnupghome)  # fmt: skip
    assert "Types: deb deb-src" in out
    release = (tree / "dists" / "s" / "Release").read_text()
    for index in ("main/source/Sources.xz", "main/debian-installer/binary-amd64/Packages.xz"):
        assert f" {index}\n" in release
    assert (tree / "pool/main/h/hello/hello-udeb_1.0-1_amd64.udeb").is_file()
    assert not list(tree.glob("pool/main/t/tool/*"))
    got = _apt_source(tmp_path, tree, "s", "hello")
    assert got == ["hello-1.0", "hello_1.0-1.debian.tar.xz", "hello_1.0-1.dsc",
                   "hello_1.0.orig.tar.gz"]  # fmt: skip


def test_sources_merge_diff_filter_and_travel_in_bundles(
    tmp_path: Path,
    upstreams: tuple[Archive, FaultServer, Archive, FaultServer],
    publish_key: TestKey,
) -> None:
    archive, srv, _, srv_sec = upstreams
    store = tmp_path / "store"
    keyring = str(archive.key.public_keyring)
    _ok(store, "mirror", "add", "main", srv.url, "stable", "--keyring", keyring,
        "--with-sources", "--with-udebs")  # fmt: skip
    _ok(store, "mirror", "add", "sec", srv_sec.url, "stable-security", "--keyring", keyring,
        "--with-sources")  # fmt: skip
    _ok(store, "mirror", "update", "main")
    _ok(store, "mirror", "update", "sec")
    _ok(store, "snapshot", "create", "full", "--from-mirror", "main")
    _ok(store, "snapshot", "create", "sec", "--from-mirror", "sec")
    assert _search(store, "full", "$Architecture (source)") == [
        "greet_2.0-1_source", "hello_1.0-1_source", "tool_3.0_source"]  # fmt: skip

    # filter: the binaries a query keeps bring their sources, nothing else does.
    _ok(store, "snapshot", "filter", "full", "tools", "tool")
    assert _search(store, "tools", "Name") == ["tool_3.0_amd64", "tool_3.0_source"]

    # merge: the security source wins with its binary; diff shows both.
    _ok(store, "snapshot", "merge", "merged", "full", "sec", "--latest")
    assert _search(store, "merged", "hello") == ["hello_1.0-1+deb1_amd64",
                                                 "hello_1.0-1+deb1_source"]  # fmt: skip
    diff = json.loads(_ok(store, "snapshot", "diff", "full", "merged", "--json"))
    assert {k: v for k, v in diff.items() if v} == {"upgraded": [
        {"name": "hello", "architecture": "amd64", "old": "1.0-1", "new": "1.0-1+deb1"},
        {"name": "hello", "architecture": "source", "old": "1.0-1", "new": "1.0-1+deb1"},
    ]}  # fmt: skip

    # Bundles carry the sources: a full one, then an incremental one, into a fresh store.
    def signed(*args: str) -> None:
        _ok(store, *args, "--key", publish_key.fingerprint, gnupghome=publish_key.gnupghome)

    signed("bundle", "export", "full", "-o", str(tmp_path / "full.bundle"))
    signed("bundle", "export", "merged", "-o", str(tmp_path / "inc.bundle"), "--since", "full")
    shown = _ok(store, "bundle", "show", str(tmp_path / "inc.bundle"))
    assert "kinds: debs udebs sources" in shown and "index: main/source" in shown
    fresh = tmp_path / "fresh"
    for name in ("full", "inc"):
        _ok(fresh, "bundle", "import", str(tmp_path / f"{name}.bundle"), "--keyring",
            str(publish_key.public_keyring))  # fmt: skip
    assert "Integrity: intact" in _ok(fresh, "snapshot", "show", "merged")
    tree = tmp_path / "tree"
    _ok(fresh, "publish", "fs", "merged", str(tree), "--key", publish_key.fingerprint,
        gnupghome=publish_key.gnupghome)  # fmt: skip
    got = _apt_source(tmp_path, tree, "merged", "hello")
    assert "hello_1.0-1+deb1.dsc" in got and "hello-1.0" in got


def test_a_profile_filter_takes_each_source_from_the_upstream_of_its_binary(
    tmp_path: Path, upstreams: tuple[Archive, FaultServer, Archive, FaultServer]
) -> None:
    archive, srv, _, srv_sec = upstreams
    keyring = archive.key.public_keyring
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'[[upstream]]\nname = "main"\nurl = "{srv.url}"\nsuite = "stable"\n'
        f'keyring = "{keyring}"\nwith_sources = true\n\n'
        f'[[upstream]]\nname = "sec"\nurl = "{srv_sec.url}"\nsuite = "stable-security"\n'
        f'keyring = "{keyring}"\nwith_sources = true\n\n'
        '[snapshot]\nname = "web-{date}"\nmerge = "latest"\n\n'
        '[filter]\nquery = "hello"\nwith_deps = true\n'
    )
    store = tmp_path / "store"
    srv.clear_log()
    snap = _ok(store, "sync", str(profile)).split()[1]
    assert _search(store, snap, "$Architecture (source)") == [
        "greet_2.0-1_source", "hello_1.0-1+deb1_source"]  # fmt: skip
    # Each mirror downloaded only its share: the main archive's hello source was not fetched.
    gets = [p for m, p, _ in srv.requests if m == "GET"]
    assert not any(p.endswith("hello_1.0-1.dsc") for p in gets), gets
    assert any(p.endswith("greet_2.0-1.dsc") for p in gets)
    assert not any(p.endswith("hello_1.0-1_amd64.deb") for p in gets)
