"""Real clients read the Translations and Contents mirrorkit publishes (issue 15): `apt-cache
show` prints the long description from Translation-en, `apt-file search` (Debian's apt-file,
with its own isolated configuration) finds the package that ships a file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive, build_archive
from tests.helpers.extras import add_extras
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli

pytestmark = pytest.mark.e2e

LONG = "The friendliest greeter there is: it says hello in many languages."


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    test_key: TestKey,
    debs_dir: dict[str, Path],
    publish_key: TestKey,
) -> Iterator[tuple[Path, Archive]]:
    base = tmp_path_factory.mktemp("extras-e2e")
    up = build_archive(base / "upstream", test_key, {"main": list(debs_dir.values())})
    add_extras(up, {"en": {"hello": LONG}})
    store, out = base / "store", base / "published"
    with FaultServer(up.root) as srv:
        for args in (
            ("mirror", "add", "up", srv.url, "stable", "--with-contents",
             "--keyring", str(up.key.public_keyring)),
            ("mirror", "update", "up"),
            ("snapshot", "create", "full", "--from-mirror", "up"),
            ("snapshot", "filter", "full", "small", "hello", "--with-deps"),
        ):  # fmt: skip
            r = run_cli(store, *args)
            assert r.exit_code == 0, r.output
    r = run_cli(store, "publish", "fs", "small", str(out), "--key", publish_key.fingerprint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    yield out, up


def _client(root: Path, *, contents: bool) -> AptClient:
    """An isolated client that fetches Translation-en (and, for apt-file, Contents)."""
    client = AptClient(root)
    conf = client.config.read_text().replace(
        'Acquire::Languages "none";', 'Acquire::Languages "en";'
    )
    if contents:
        off = 'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";\n'
        conf = conf.replace(off, "")
        # apt-file's own target definitions, in the client's private apt.conf.d.
        shutil.copy("/etc/apt/apt.conf.d/50apt-file.conf", root / "etc/apt/apt.conf.d")
    client.config.write_text(conf)
    return client


def test_apt_shows_the_long_description_from_the_translation(
    published: tuple[Path, Archive], tmp_path: Path
) -> None:
    out, _ = published
    client = _client(tmp_path / "apt", contents=False)
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    with FaultServer(out) as srv:
        client.add_source(srv.url, "small", ["main"], key)
        upd = client.update()
        assert upd.returncode == 0, upd.stdout
        assert srv.count("*/main/i18n/*") >= 1
    shown = client.show("hello")
    assert shown.returncode == 0, shown.stdout
    assert LONG in shown.stdout, shown.stdout
    # The Packages index itself has the first line only.
    assert "Description-md5:" in shown.stdout or "Description-en:" in shown.stdout


def test_apt_file_finds_the_package_that_ships_a_file(
    published: tuple[Path, Archive], tmp_path: Path
) -> None:
    out, _ = published
    client = _client(tmp_path / "apt", contents=True)
    key = next(out.glob("mirrorkit-archive-*.gpg"))
    with FaultServer(out) as srv:
        client.add_source(srv.url, "small", ["main"], key)
        upd = client.run("apt-file", "update")
        assert upd.returncode == 0, upd.stdout
        assert srv.count("*/main/by-hash/*") >= 1, upd.stdout
    found = client.run("apt-file", "search", "/usr/share/doc/libgreet/hello")
    assert found.returncode == 0, found.stdout
    assert found.stdout.strip() == "libgreet: /usr/share/doc/libgreet/hello"
    # 'tool' was filtered out: its files are not in the published Contents.
    missing = client.run("apt-file", "search", "/usr/share/doc/tool/hello")
    assert missing.returncode == 1 and not missing.stdout.strip(), missing.stdout
