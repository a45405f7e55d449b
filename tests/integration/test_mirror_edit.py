"""'mirror add' asks the upstream before recording a mirror, and 'mirror edit' changes one with
the same checks; the next update follows the change. Real parts: the signed test archive on a
loopback HTTP server, real gpg keyrings, Debian's tinyproxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import mirrorkit
from mirrorkit.errors import NotFoundError, UsageError
from tests.helpers.archive import Archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.helpers.proxy import TinyProxy, free_port
from tests.mk import Result, run_cli

NAME = "up"


def _add(store: Path, url: str, keyring: Path, *extra: str, suite: str = "stable") -> Result:
    return run_cli(store, "mirror", "add", NAME, url, suite, "--keyring", str(keyring), *extra)


def _record(store: Path) -> bytes:
    return (store / "mirrors" / f"{NAME}.json").read_bytes()


def test_add_refuses_what_the_signed_release_does_not_list(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    store = tmp_path / "store"
    keyring = archive.key.public_keyring
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stable", "--keyring", str(keyring),
                "-c", "main,contrib")  # fmt: skip
    assert r.exit_code == 1
    assert "component 'contrib' is not in this suite (it has: main)" in r.stderr, r.stderr
    assert "--no-check" in r.stderr
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stable", "--keyring", str(keyring),
                "-a", "arm64")  # fmt: skip
    assert r.exit_code == 1 and "architecture 'arm64' is not in this suite (it has: amd64)" in (
        r.stderr
    )
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "oldstable", "--keyring", str(keyring))
    assert r.exit_code == 1 and "there is no suite 'oldstable'" in r.stderr
    # Signed by a key the keyring lacks: refused, naming the signature problem.
    r = _add(store, upstream.url, publish_key.public_keyring)
    assert r.exit_code == 1 and "InRelease" in r.stderr and "signature" in r.stderr, r.stderr
    # A file that holds no key is refused even offline.
    junk = tmp_path / "junk.gpg"
    junk.write_text("not a keyring\n")
    r = _add(store, upstream.url, junk, "--no-check")
    assert r.exit_code == 1 and "no OpenPGP public keys found" in r.stderr
    assert not (store / "mirrors").exists() or not any((store / "mirrors").iterdir())

    # What it lists is accepted; --json says it was checked.
    r = _add(store, upstream.url, keyring, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unchecked"] == []
    assert run_cli(store, "mirror", "update", NAME).exit_code == 0


def test_an_upstream_that_cannot_be_asked_is_added_with_a_warning(
    tmp_path: Path, archive: Archive
) -> None:
    store = tmp_path / "store"
    port = free_port()
    r = _add(store, f"http://127.0.0.1:{port}/debian", archive.key.public_keyring)
    assert r.exit_code == 0, r.output
    assert f"warning: not checked: up: http://127.0.0.1:{port}/debian/dists/stable/InRelease: " in (
        r.stderr
    )
    assert "tries" not in r.stderr  # one try: nothing to give up on
    added = mirrorkit.mirror_add(
        "other", f"http://127.0.0.1:{port}/debian", "stable",
        keyring=archive.key.public_keyring, store=store,
    )  # fmt: skip
    assert added.unchecked and added.unchecked[0].startswith("other: ")
    assert mirrorkit.mirror_add(
        "offline", f"http://127.0.0.1:{port}/debian", "stable",
        keyring=archive.key.public_keyring, store=store, no_check=True,
    ).unchecked == ()  # fmt: skip


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TinyProxy]:
    for name in ("no_proxy", "NO_PROXY"):  # the suite sets NO_PROXY=*: the proxy must apply
        monkeypatch.delenv(name, raising=False)
    with TinyProxy(tmp_path / "proxy") as p:
        yield p


def test_the_network_options_of_add_are_used_and_remembered(
    tmp_path: Path, upstream: FaultServer, archive: Archive, proxy: TinyProxy
) -> None:
    store = tmp_path / "store"
    r = _add(store, upstream.url, archive.key.public_keyring, "--proxy", proxy.url)
    assert r.exit_code == 0, r.output
    assert proxy.requests() == [("GET", f"{upstream.url}/dists/stable/InRelease")]
    assert json.loads(_record(store))["spec"]["proxy"] == proxy.url
    # The next update goes through it without being told.
    r = run_cli(store, "mirror", "update", NAME)
    assert r.exit_code == 0, r.output
    through = [target for _m, target in proxy.requests()]
    assert len(through) == len(upstream.requests) and all(
        t.startswith(upstream.url) for t in through
    )
    # A proxy with credentials is never kept in a record.
    r = run_cli(store, "mirror", "edit", NAME, "--proxy", proxy.url_with("mk", "s3cret"))
    assert r.exit_code == 2 and "carries credentials" in r.stderr and "s3cret" not in r.output
    # --reset-network forgets it: the environment applies again (here: no proxy).
    before = len(proxy.requests())
    r = run_cli(store, "mirror", "edit", NAME, "--reset-network")
    assert r.exit_code == 0, r.output
    assert "proxy" not in json.loads(_record(store))["spec"]
    assert len(proxy.requests()) == before  # the edit's check went direct


def test_edit_changes_what_the_next_update_follows(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    assert _add(store, upstream.url, archive.key.public_keyring).exit_code == 0
    assert run_cli(store, "mirror", "update", NAME).exit_code == 0
    full = mirrorkit.mirror_show(NAME, store=store).state
    assert full is not None and full.packages == len(archive.debs)

    # Refused like 'mirror add' would refuse it; the record is untouched.
    record = _record(store)
    r = run_cli(store, "mirror", "edit", NAME, "-c", "main,non-free")
    assert r.exit_code == 1 and "component 'non-free' is not in this suite" in r.stderr
    r = run_cli(store, "mirror", "edit", NAME, "--with-deps")
    assert r.exit_code == 2 and "need --filter" in r.stderr
    r = run_cli(store, "mirror", "edit", NAME, "--filter", "hello (")
    assert r.exit_code == 2
    r = run_cli(store, "mirror", "edit", NAME)
    assert r.exit_code == 2 and "nothing to change" in r.stderr
    assert _record(store) == record
    with pytest.raises(NotFoundError):
        mirrorkit.mirror_edit("nope", filter="hello", store=store)

    # A filter: the state stays (same upstream) and the next update keeps only the closure.
    r = run_cli(store, "mirror", "edit", NAME, "--filter", "hello", "--with-deps")
    assert r.exit_code == 0 and "state kept" in r.stdout, r.output
    r = run_cli(store, "mirror", "update", NAME, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["packages"] == 2  # hello and libgreet
    # Dropped again: the whole suite, from the pool it already holds.
    edited = mirrorkit.mirror_edit(NAME, filter="", store=store)
    assert edited.mirror.spec.filter == "" and not edited.mirror.spec.with_deps
    r = run_cli(store, "mirror", "update", NAME, "--json")
    assert json.loads(r.stdout)["packages"] == len(archive.debs)

    # Another suite of the same archive is another upstream: the state goes.
    with pytest.raises(UsageError):
        mirrorkit.mirror_edit(NAME, allow_empty=True, store=store)  # needs a filter
    r = run_cli(store, "mirror", "edit", NAME, "--suite", "stable", "--url", upstream.url + "/")
    assert r.exit_code == 2  # the same URL and suite: nothing to change
    r = run_cli(store, "mirror", "edit", NAME, "--url", f"http://localhost:{upstream.port}",
                "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["state"] is None and out["unchecked"] is None
    assert out["spec"]["url"] == f"http://localhost:{upstream.port}"


def test_an_old_record_with_credentials_is_migrated_by_its_next_update(
    tmp_path: Path, upstream: FaultServer, archive: Archive
) -> None:
    store = tmp_path / "store"
    assert _add(store, upstream.url, archive.key.public_keyring).exit_code == 0
    record = store / "mirrors" / f"{NAME}.json"
    # As a record written before credentials left mirror URLs held them.
    record.write_text(record.read_text().replace("http://", "http://mk:s3cret@"))
    shown = mirrorkit.mirror_show(NAME, store=store)
    assert "s3cret" not in repr(shown) and "***@" in shown.spec.url
    assert "s3cret" not in repr(mirrorkit.mirror_list(store=store))
    asked = len(upstream.requests)  # by 'mirror add', before the credentials were there
    r = run_cli(store, "mirror", "update", NAME)
    assert r.exit_code == 0 and "s3cret" not in r.output, r.output
    assert (
        "s3cret" not in record.read_text()
        and "mk" not in json.loads(record.read_text())["spec"]["url"]
    )
    assert "s3cret" in (store / "auth.conf").read_text()
    assert all("authorization" in h for _m, _p, h in upstream.requests[asked:])
