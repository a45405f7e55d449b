"""Local repos through the Python API and the CLI: every change a snapshot with its history,
no-ops, conflicts, bad input that changes nothing, retention, rollback, copy/move, names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import mirrorkit
from mirrorkit import repo, repoedit
from mirrorkit.errors import (
    ConflictError,
    EmptyResultError,
    FormatError,
    NotFoundError,
    UsageError,
)
from mirrorkit.store import Store
from tests.helpers.debs import build_deb
from tests.mk import run_cli


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("repo-debs")
    rebuilt = tmp_path_factory.mktemp("rebuilt")
    return {
        "hello1": build_deb(out, "hello", "1.0", "amd64", depends="libgreet"),
        "hello2": build_deb(out, "hello", "2.0", "amd64", depends="libgreet"),
        "hello3": build_deb(out, "hello", "3.0", "amd64", depends="libgreet"),
        "libgreet": build_deb(out, "libgreet", "1.0", "amd64"),
        "data": build_deb(out, "greet-data", "1.0", "all"),
        # The same name, version and architecture as hello1, other bytes.
        "hello1b": build_deb(rebuilt, "hello", "1.0", "amd64", payload_size=10),
    }


def _refs(store: Path, name: str) -> list[str]:
    return [p.ref for p in mirrorkit.repo_search(name, "Name", store=store)]


def test_every_change_is_a_snapshot_and_the_same_bytes_again_are_a_no_op(
    tmp_path: Path, debs: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    created = mirrorkit.repo_create("ourapps", distribution="stable", store=store)
    assert created.head is None and created.suite == "stable"
    first = mirrorkit.repo_add("ourapps", [debs["hello1"], debs["data"]], store=store)
    assert first.snapshot is not None and first.snapshot.name == "ourapps+1"
    assert sorted(p.ref for p in first.added) == ["greet-data_1.0_all", "hello_1.0_amd64"]
    again = mirrorkit.repo_add("ourapps", debs["hello1"], store=store)
    assert not again.changed and [p.ref for p in again.unchanged] == ["hello_1.0_amd64"]
    second = mirrorkit.repo_add("ourapps", [debs["hello2"]], store=store)
    assert second.snapshot is not None and second.snapshot.name == "ourapps+2"
    assert _refs(store, "ourapps") == ["greet-data_1.0_all", "hello_1.0_amd64", "hello_2.0_amd64"]

    history = mirrorkit.repo_history("ourapps", store=store)
    assert [(e.n, e.action, e.snapshot) for e in history] == [
        (1, "add", "ourapps+1"), (2, "add", "ourapps+2")]  # fmt: skip
    assert history[1].added == (f"hello_2.0_amd64 {second.added[0].sha256}",)
    # The snapshot says the same: repo, action, who, parent, what changed.
    info = mirrorkit.snapshot_show("ourapps+2", store=store).snapshot
    (source,) = info.sources
    assert (source.kind, source.repo, source.action, source.parent) == (
        "repo", "ourapps", "add", "ourapps+1")  # fmt: skip
    assert source.files == (f"+ hello_2.0_amd64 {second.added[0].sha256}",)
    assert source.by == history[1].by and "@" in source.by
    # Snapshots of the history are snapshots like any other (diff, here).
    diff = mirrorkit.snapshot_diff("ourapps+1", "ourapps+2", store=store)
    assert [(c.kind, c.name, c.new) for c in diff.changes] == [("added", "hello", "2.0")]

    details = mirrorkit.repo_show("ourapps", packages=True, store=store)
    assert details.head is not None and details.head.name == "ourapps+2"
    assert [p.ref for p in details.packages] == _refs(store, "ourapps")
    assert [r.name for r in mirrorkit.repo_list(store=store)] == ["ourapps"]


def test_conflicts_and_bad_input_change_nothing(tmp_path: Path, debs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    mirrorkit.repo_create("r", store=store)
    mirrorkit.repo_add("r", [debs["hello1"]], store=store)
    before = mirrorkit.repo_history("r", store=store)
    # Another build under the same name_version_arch: refused, naming both digests.
    old = mirrorkit.repo_search("r", "hello", store=store)[0].sha256
    with pytest.raises(ConflictError) as exc:
        mirrorkit.repo_add("r", [debs["hello1b"]], store=store)
    assert old in exc.value.message and str(debs["hello1b"]) in exc.value.message
    assert "--force-replace" in (exc.value.hint or "")
    # A broken file among good ones: nothing of the batch goes in.
    bad = tmp_path / "broken.deb"
    bad.write_bytes(debs["hello2"].read_bytes()[:300])
    with pytest.raises(FormatError, match=r"broken\.deb"):
        mirrorkit.repo_add("r", [debs["hello2"], bad], store=store)
    with pytest.raises(EmptyResultError):
        mirrorkit.repo_remove("r", "nosuchpackage", store=store)
    with pytest.raises(NotFoundError):
        mirrorkit.repo_add("r", [tmp_path / "missing.deb"], store=store)
    with pytest.raises(UsageError, match="no package files"):
        mirrorkit.repo_add("r", [tmp_path / "store" / "tmp"], store=store)
    assert mirrorkit.repo_history("r", store=store) == before
    assert not mirrorkit.repo_remove("r", "nosuchpackage", allow_empty=True, store=store).changed

    replaced = mirrorkit.repo_add("r", [debs["hello1b"]], force_replace=True, store=store)
    assert [p.sha256 for p in replaced.removed] == [old]
    assert mirrorkit.repo_search("r", "hello", store=store)[0].sha256 != old


def test_remove_rollback_and_retention(tmp_path: Path, debs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    mirrorkit.repo_create("r", store=store)
    for name in ("hello1", "hello2", "hello3", "libgreet"):
        mirrorkit.repo_add("r", [debs[name]], store=store)
    removed = mirrorkit.repo_remove("r", "libgreet", store=store)
    assert [p.ref for p in removed.removed] == ["libgreet_1.0_amd64"]

    dry = mirrorkit.repo_prune("r", keep=1, dry_run=True, store=store)
    assert not dry.changed
    assert [p.ref for p in dry.removed] == ["hello_1.0_amd64", "hello_2.0_amd64"]
    assert len(mirrorkit.repo_history("r", store=store)) == 5
    pruned = mirrorkit.repo_prune("r", keep=1, store=store)
    assert pruned.changed and _refs(store, "r") == ["hello_3.0_amd64"]

    # Rollback undoes one change at a time; --to goes to an entry's state.
    assert _refs(store, "r") == ["hello_3.0_amd64"]
    back = mirrorkit.repo_rollback("r", store=store)
    assert [p.ref for p in back.added] == ["hello_1.0_amd64", "hello_2.0_amd64"]
    assert _refs(store, "r") == ["hello_1.0_amd64", "hello_2.0_amd64", "hello_3.0_amd64"]
    mirrorkit.repo_rollback("r", store=store)
    assert "libgreet_1.0_amd64" in _refs(store, "r")
    mirrorkit.repo_rollback("r", to=1, store=store)
    assert _refs(store, "r") == ["hello_1.0_amd64"]
    with pytest.raises(NotFoundError):
        mirrorkit.repo_rollback("r", to=99, store=store)

    # Older than: the times the history records; the newest version always stays.
    st = Store(store)
    r = repo.load(st, "r")
    pkgs = [p for p in repoedit.search(st, "r", "Name")]
    later = datetime.now(UTC) + timedelta(days=40)
    assert repo.to_prune(r, pkgs, repo.Retention(older_than="30d"), now=later) == []
    mirrorkit.repo_add("r", [debs["hello2"]], store=store)
    r = repo.load(st, "r")
    pkgs = repoedit.search(st, "r", "Name")
    gone = repo.to_prune(r, pkgs, repo.Retention(older_than="30d"), now=later)
    assert [p.ref for p in gone] == ["hello_1.0_amd64"]


def test_a_retention_setting_applies_after_each_add(tmp_path: Path, debs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    mirrorkit.repo_create("r", keep=2, store=store)
    for name in ("hello1", "hello2", "hello3"):
        mirrorkit.repo_add("r", [debs[name]], store=store)
    assert _refs(store, "r") == ["hello_2.0_amd64", "hello_3.0_amd64"]
    last = mirrorkit.repo_history("r", store=store)[-1]
    assert last.action == "add" and len(last.removed) == 1 and "hello_1.0_amd64" in last.removed[0]
    # Still reachable through the older snapshot until that one goes.
    old = mirrorkit.snapshot_search("r+2", "hello (= 1.0)", store=store)
    assert [p.ref for p in old] == ["hello_1.0_amd64"]


def test_copy_move_freeze_and_names(tmp_path: Path, debs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    mirrorkit.repo_create("dev", store=store)
    mirrorkit.repo_create("prod", store=store)
    mirrorkit.repo_add("dev", [debs["hello2"], debs["libgreet"], debs["data"]], store=store)
    copied = mirrorkit.repo_copy("dev", "prod", "hello", with_deps=True, store=store)
    assert sorted(p.ref for p in copied.added) == ["hello_2.0_amd64", "libgreet_1.0_amd64"]
    moved = mirrorkit.repo_move("dev", "prod", "greet-data", store=store)
    assert [p.ref for p in moved.dest.added] == [p.ref for p in moved.source.removed]
    assert "greet-data_1.0_all" not in _refs(store, "dev")
    assert "greet-data_1.0_all" in _refs(store, "prod")

    frozen = mirrorkit.snapshot_create("prod-1", from_repo="prod", store=store)
    assert frozen.packages == 3
    # A snapshot made from a snapshot of the history: a source for copy as well.
    mirrorkit.repo_create("qa", store=store)
    assert mirrorkit.repo_copy("prod-1", "qa", "libgreet", store=store).changed

    # One namespace: repos, snapshots and channels; REPO+N is the history's.
    with pytest.raises(ConflictError):
        mirrorkit.repo_create("prod-1", store=store)
    with pytest.raises(ConflictError, match="history"):
        mirrorkit.snapshot_create("dev+9", from_repo="dev", store=store)
    with pytest.raises(ConflictError, match="repo dev"):
        mirrorkit.snapshot_rm("dev+1", store=store)

    mirrorkit.repo_rm("dev", store=store)
    assert [r.name for r in mirrorkit.repo_list(store=store)] == ["prod", "qa"]
    names = {s.name for s in mirrorkit.snapshot_list(store=store).snapshots}
    assert not any(n.startswith("dev+") for n in names) and "prod-1" in names
    assert mirrorkit.gc(store=store).pool_files == 0  # every package is still in a head


def test_cli_reports_changes_and_history_as_json(tmp_path: Path, debs: dict[str, Path]) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "repo", "create", "r", "--component", "internal").exit_code == 0
    r = run_cli(store, "repo", "add", "r", str(debs["hello1"]), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["changed"] and out["head"] == "r+1" and out["added"][0]["component"] == "internal"
    r = run_cli(store, "repo", "add", "r", str(debs["hello1"]))
    assert r.exit_code == 0 and "unchanged" in r.stdout
    r = run_cli(store, "repo", "history", "r", "--json")
    assert [e["action"] for e in json.loads(r.stdout)] == ["add"]
    assert run_cli(store, "repo", "search", "r", "nothing").exit_code == 1
    r = run_cli(store, "repo", "remove", "r", "nothing")
    assert r.exit_code == 1 and "matches no package" in r.stderr
    r = run_cli(store, "repo", "show", "r", "--json")
    assert json.loads(r.stdout)["packages"] == 1
    r = run_cli(store, "repo", "add", "r", str(debs["hello1b"]))
    assert r.exit_code == 1 and "--force-replace" in r.stderr
