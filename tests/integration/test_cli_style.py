"""The CLI as a new user meets it (issue 12): global options after the subcommand, --json with
one result object on every command that changes something, help that is not cut
mid-sentence, one metavar style, and counts written as people write them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from mirrorkit.cli import app
from tests.helpers.archive import Archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


def _invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "80"})
    return r.exit_code, r.stdout, r.stderr


def _commands() -> list[tuple[str, ...]]:
    """Every command path: ("mirror", "add"), ("gc",), ..."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    out: list[tuple[str, ...]] = []
    for name, cmd in root.commands.items():
        if isinstance(cmd, TyperGroup):
            out += [(name, sub) for sub in cmd.commands]
        else:
            out.append((name,))
    return out


def test_global_options_work_after_the_subcommand(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "debs", "site-motd")
    store = tmp_path / "store"
    code, out, _ = _invoke("snapshot", "create", "own", "--from-debs", str(deb), "--store",
                           str(store))  # fmt: skip
    assert code == 0 and out == "created snapshot own (1 package)\n"
    code, out, err = _invoke("snapshot", "verify", "own", "--store", str(store))
    assert code == 0 and "own: all satisfied" in err
    code, out, err = _invoke("snapshot", "verify", "own", f"--store={store}", "-q")
    assert code == 0 and out == "" and err == ""
    code, out, err = _invoke("snapshot", "verify", "own", "-qv", "--store", str(store))
    assert code == 0 and out == "" and err == ""
    (tmp_path / "file").write_text("")
    code, _, err = _invoke("mirror", "list", "--store", str(tmp_path / "file"))
    assert code == 2 and "not a directory" in err
    code, out, _ = _invoke("channel", "list", "--json", "--store", str(store), "-v")
    assert code == 0 and json.loads(out) == []


def test_help_is_never_cut_mid_sentence_and_has_one_metavar_style() -> None:
    for group in ([], ["mirror"], ["snapshot"], ["publish"], ["channel"], ["bundle"], ["repo"]):
        code, out, _ = _invoke(*group, "--help")
        assert code == 0
        listing = out.split("Commands:", 1)[1]
        for line in listing.splitlines():
            assert not line.rstrip().endswith("..."), (group, line)
            assert not line.strip() or line.rstrip().endswith("."), (group, line)
    for path in _commands():
        code, out, _ = _invoke(*path, "--help")
        assert code == 0, path
        for bad in ("<str>", "<path>", "<int>", "<float>", "{", "}"):
            assert bad not in out, (path, bad, out)
    code, out, _ = _invoke("mirror", "add", "--help")
    out = " ".join(out.split())  # the usage line wraps at 80 columns
    assert "mirror add [OPTIONS] (NAME URL SUITE --keyring FILE | --profile FILE)" in out
    assert "-c, --component COMPONENT" in out and "-c main,contrib" in out
    code, out, _ = _invoke("snapshot", "filter", "--help")
    out = " ".join(out.split())
    assert "snapshot filter [OPTIONS] SOURCE DEST QUERY" in out
    code, out, _ = _invoke("publish", "fs", "--help")
    out = " ".join(out.split())
    assert (
        "publish fs [OPTIONS] (SOURCE DIR | --component COMPONENT=SOURCE... DIR --suite SUITE)"
        in out
    )
    assert "--key KEYID" in out


def test_shell_completion_is_offered() -> None:
    code, out, _ = _invoke("--help")
    assert code == 0 and "--install-completion" in out and "--show-completion" in out


def test_every_command_that_changes_something_reports_one_json_object(
    tmp_path: Path, upstream: FaultServer, archive: Archive, publish_key: TestKey
) -> None:
    store = tmp_path / "store"

    def ok(*args: str, gnupghome: Path | None = None) -> dict[str, object]:
        r = run_cli(store, *args, "--json", gnupghome=gnupghome)
        assert r.exit_code == 0, (args, r.output)
        value = json.loads(r.stdout)
        assert isinstance(value, dict), args
        return value

    added = ok("mirror", "add", "up", upstream.url, "stable", "-c", "main",
               "--keyring", str(archive.key.public_keyring))  # fmt: skip
    assert json.dumps(added["added"]).count('"name": "up"') == 1
    update = ok("mirror", "update", "up")
    assert update["changed"] is True and update["packages"] == 7 and update["fetched"] == 7
    assert ok("snapshot", "create", "s", "--from-mirror", "up")["packages"] == 7
    web = ok("snapshot", "filter", "s", "web", "hello", "--with-deps")
    assert web["name"] == "web" and web["matched"] == ["hello_1.0_amd64"] and web["packages"] == 2
    merged = ok("snapshot", "merge", "both", "web", "s")
    assert merged["policy"] == "later" and merged["packages"] == 7
    assert ok("channel", "set", "prod", "web")["snapshot"] == "web"
    assert ok("channel", "set", "prod", "s")["snapshot"] == "s"
    assert ok("channel", "rollback", "prod")["snapshot"] == "web"
    pub = ok("publish", "fs", "prod", str(tmp_path / "out"), "--key", publish_key.fingerprint,
             gnupghome=publish_key.gnupghome)  # fmt: skip
    assert (
        pub["suite"] == "prod"
        and pub["linked"] == 2
        and "Suites: prod" in str(pub["client_stanza"])
    )
    bundle = tmp_path / "web.bundle"
    exported = ok("bundle", "export", "web", "-o", str(bundle), "--key", publish_key.fingerprint,
                  gnupghome=publish_key.gnupghome)  # fmt: skip
    assert exported["snapshots"] == ["web"] and exported["pool_objects"] == 2
    other = store
    store = tmp_path / "other"
    imported = ok("bundle", "import", str(bundle), "--keyring", str(publish_key.public_keyring))
    assert imported["added"] == ["web"] and imported["pool_added"] == 2
    store = other
    assert ok("snapshot", "rm", "both") == {"kind": "snapshot", "name": "both"}
    assert ok("mirror", "rm", "up") == {"kind": "mirror", "name": "up"}
    assert ok("gc", "--dry-run")["dry_run"] is True


def test_counts_are_singular_for_one(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "debs", "site-motd")
    store = tmp_path / "store"
    r = run_cli(store, "snapshot", "create", "own", "--from-debs", str(deb))
    assert r.stdout == "created snapshot own (1 package)\n"
    r = run_cli(store, "snapshot", "list")
    assert "\t1 package\tfrom 1 .deb file" in r.stdout
    r = run_cli(store, "snapshot", "filter", "own", "motd", "site-motd")
    assert r.stdout == "created snapshot motd: 1 matched, 1 package in all\n"
