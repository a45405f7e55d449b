"""Hostile or broken source packages (issue 15): a Sources index naming a file with ``..``, a
.dsc that disagrees with its Sources entry, a .dsc given to --from-debs whose files are missing
or altered. Each is a clear error naming the file, and the mirror's state stays as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.archive import Archive, build_archive, resign, write_release
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.helpers.sources import build_source_set
from tests.mk import run_cli


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return build_source_set(tmp_path_factory.mktemp("bad-src-pkgs"))


def _archive(root: Path, key: TestKey, pkgs: dict[str, list[Path]]) -> Archive:
    return build_archive(root, key, {"main": pkgs["debs"]}, sources={"main": pkgs["dscs"]},
                         compressions=("plain",), by_hash=False)  # fmt: skip


def _edit_sources(archive: Archive, edit: str, new: str) -> None:
    """Change the Sources index as a broken upstream would, and sign the result."""
    sources = archive.dists / "main" / "source" / "Sources"
    text = sources.read_text()
    assert re.search(edit, text), text
    sources.write_text(re.sub(edit, new, text))
    release = (archive.dists / "Release").read_text()
    header = dict(
        line.split(": ", 1) for line in release.split("\nMD5Sum:")[0].splitlines() if ": " in line
    )
    files = sorted(
        (p.relative_to(archive.dists).as_posix(), p)
        for p in archive.dists.rglob("*")
        if p.is_file() and "/" in p.relative_to(archive.dists).as_posix()
    )
    write_release(archive.dists, files, fields=header)
    resign(archive)


@pytest.mark.parametrize(
    ("edit", "new", "message"),
    [
        (r"( [0-9a-f]{64} +\d+ )(hello_1\.0\.orig\.tar\.gz)", r"\1../\2",
         "refusing unsafe file name '../hello_1.0.orig.tar.gz'"),
        (r"(Checksums-Sha256:\n(?: [^\n]*\n)*? )[0-9a-f]{64}( +\d+ hello_1\.0\.orig)", r"\g<1>" +
         "ab" * 32 + r"\2",
         "pool/main/h/hello/hello_1.0-1.dsc: the .dsc and the Sources index disagree about "
         "hello_1.0.orig.tar.gz"),
    ],
    ids=["dotdot", "dsc-disagrees"],
)  # fmt: skip
def test_a_broken_sources_entry_is_refused_and_nothing_is_committed(
    tmp_path: Path, test_key: TestKey, packages: dict[str, list[Path]], edit: str, new: str,
    message: str,
) -> None:  # fmt: skip
    archive = _archive(tmp_path / "up", test_key, packages)
    _edit_sources(archive, edit, new)
    store = tmp_path / "store"
    with FaultServer(archive.root) as srv:
        r = run_cli(store, "mirror", "add", "up", srv.url, "stable", "--keyring",
                    str(test_key.public_keyring), "--with-sources")  # fmt: skip
        assert r.exit_code == 0, r.output
        record = (store / "mirrors" / "up.json").read_bytes()
        r = run_cli(store, "mirror", "update", "up")
        assert r.exit_code == 1, r.output
        assert message in r.stderr, r.stderr
        assert (store / "mirrors" / "up.json").read_bytes() == record
        # The orig tarball was never downloaded: the check comes first.
        assert not any(p.endswith(".orig.tar.gz") for m, p, _ in srv.requests)
