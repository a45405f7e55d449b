"""repo create/add/remove/copy/move/prune/list/show/search/history/rollback/rm."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli.common import JSON, G, app, emit_json, info, plural, user_errors
from mirrorkit.cli.snapshots import package_json

if TYPE_CHECKING:
    from mirrorkit.repo import Change, Entry, Repo

repo_app = typer.Typer(
    help="Local repos: your own packages, every change a snapshot.", no_args_is_help=True
)
app.add_typer(repo_app, name="repo")

REPO = typer.Argument(..., metavar="REPO", help="The repo.")
WAIT = typer.Option(
    300.0,
    "--wait",
    metavar="SECONDS",
    help="Wait this long for another writer of the repo, then fail.",
)
PUBLISH = typer.Option(
    False, "--publish", help="Then publish every suite that follows the repo again."
)


def entry_json(e: Entry) -> dict[str, Any]:
    return {
        "n": e.n,
        "action": e.action,
        "snapshot": e.snapshot,
        "digest": e.digest,
        "at": e.at,
        "by": e.by,
        "added": list(e.added),
        "removed": list(e.removed),
        "note": e.note,
    }


def repo_json(r: Repo) -> dict[str, Any]:
    return {
        "name": r.name,
        "component": r.component,
        "distribution": r.distribution,
        "suite": r.suite,
        "comment": r.comment,
        "created_at": r.created_at,
        "head": r.head,
        "changes": len(r.history),
        "retention": {"keep": r.retention.keep, "older_than": r.retention.older_than},
        "followers": [
            {"target": f["target"], "suite": f["suite"], "kind": f.get("kind")} for f in r.followers
        ],
    }


def change_json(c: Change) -> dict[str, Any]:
    from mirrorkit.cli.exports import published_json

    return {
        "repo": c.repo.name,
        "changed": c.changed,
        "head": c.repo.head,
        "snapshot": c.snapshot.name if c.snapshot is not None else None,
        "added": [package_json(p) for p in c.added],
        "removed": [package_json(p) for p in c.removed],
        "unchanged": [package_json(p) for p in c.unchanged],
        "waited": round(c.waited, 3),
        "published": [published_json(p) for p in c.published],
    }


def _render_change(c: Change, json_out: bool, *, dry_run: bool = False) -> None:
    from mirrorkit.cli.exports import print_published

    if c.waited >= 1:
        info(f"waited {c.waited:.1f} s for another writer of repo {c.repo.name}")
    if json_out:
        emit_json({**change_json(c), "dry_run": dry_run})
        return
    if dry_run:
        for p in c.removed:
            typer.echo(f"would remove {p.ref}")
        typer.echo(f"repo {c.repo.name}: {plural(len(c.removed), 'package')} would go")
        return
    for p in c.added:
        info(f"+ {p.ref}")
    for p in c.removed:
        info(f"- {p.ref}")
    if c.snapshot is None:
        same = f" ({plural(len(c.unchanged), 'package')} there already)" if c.unchanged else ""
        typer.echo(f"repo {c.repo.name}: unchanged{same}, head {c.repo.head or '(empty)'}")
    else:
        typer.echo(
            f"repo {c.repo.name}: +{len(c.added)} -{len(c.removed)}, head {c.snapshot.name} "
            f"({plural(c.snapshot.packages, 'package')})"
        )
    for pub in c.published:
        print_published(pub)


@repo_app.command("create")
def repo_create(
    name: str = REPO,
    component: str = typer.Option("main", "--component", metavar="C", help="Component."),
    distribution: str | None = typer.Option(
        None, "--distribution", metavar="D", help="Suite to publish as [the repo's name]."
    ),
    comment: str | None = typer.Option(None, "--comment", metavar="TEXT", help="A note."),
    keep: int | None = typer.Option(
        None, "--keep", metavar="N", help="Retention: after each add, keep N versions of each."
    ),
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        metavar="DURATION",
        help="Retention: after each add, drop older versions added longer ago, e.g. 30d.",
    ),
    json_out: bool = JSON,
) -> None:
    """Create an empty repo for your own packages."""
    with user_errors():
        r = api.repo_create(
            name,
            component=component,
            distribution=distribution,
            comment=comment,
            keep=keep,
            older_than=older_than,
            store=G.store,
        )
    if json_out:
        emit_json(repo_json(r))
    else:
        typer.echo(f"created repo {r.name} (component {r.component}, suite {r.suite})")


@repo_app.command("add")
def repo_add(
    name: str = REPO,
    files: list[Path] = typer.Argument(
        ..., metavar="FILE_OR_DIR...", help=".deb/.udeb files, or directories of them."
    ),
    force_replace: bool = typer.Option(
        False, "--force-replace", help="Replace another build of the same name_version_arch."
    ),
    publish: bool = PUBLISH,
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Add .deb files to REPO, as a new snapshot.

    None is made when every file is there already with the same bytes.

    Every file is checked first; a bad one is refused and nothing is written."""
    with user_errors():
        c = api.repo_add(
            name,
            files,
            force_replace=force_replace,
            publish=publish,
            wait=wait,
            store=G.store,
            gnupghome=G.gnupghome,
        )
    _render_change(c, json_out)


@repo_app.command("remove")
def repo_remove(
    name: str = REPO,
    query: str = typer.Argument(..., metavar="QUERY", help="What to remove (aptly syntax)."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="A query that matches nothing is no error."
    ),
    publish: bool = PUBLISH,
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Remove the packages QUERY matches from REPO.

    Exit 1 if none does, unless --allow-empty."""
    with user_errors():
        c = api.repo_remove(
            name,
            query,
            allow_empty=allow_empty,
            publish=publish,
            wait=wait,
            store=G.store,
            gnupghome=G.gnupghome,
        )
    _render_change(c, json_out)


@repo_app.command("copy")
def repo_copy(
    source: str = typer.Argument(..., metavar="SRC", help="A repo, snapshot or channel."),
    dest: str = typer.Argument(..., metavar="DST", help="The repo to copy into."),
    query: str = typer.Argument(..., metavar="QUERY", help="What to copy (aptly syntax)."),
    with_deps: bool = typer.Option(False, "--with-deps", help="And what it needs from SRC."),
    force_replace: bool = typer.Option(
        False, "--force-replace", help="Replace another build of the same name_version_arch."
    ),
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Copy packages from SRC into repo DST (promotion)."""
    with user_errors():
        c = api.repo_copy(
            source,
            dest,
            query,
            with_deps=with_deps,
            force_replace=force_replace,
            wait=wait,
            store=G.store,
        )
    _render_change(c, json_out)


@repo_app.command("move")
def repo_move(
    source: str = typer.Argument(..., metavar="SRC", help="The repo to take packages from."),
    dest: str = typer.Argument(..., metavar="DST", help="The repo to move them to."),
    query: str = typer.Argument(..., metavar="QUERY", help="What to move (aptly syntax)."),
    with_deps: bool = typer.Option(False, "--with-deps", help="And what it needs from SRC."),
    force_replace: bool = typer.Option(
        False, "--force-replace", help="Replace another build of the same name_version_arch."
    ),
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Move packages from repo SRC to repo DST.

    One new snapshot in each."""
    with user_errors():
        moved = api.repo_move(
            source,
            dest,
            query,
            with_deps=with_deps,
            force_replace=force_replace,
            wait=wait,
            store=G.store,
        )
    if json_out:
        emit_json({"dest": change_json(moved.dest), "source": change_json(moved.source)})
        return
    _render_change(moved.dest, False)
    _render_change(moved.source, False)


@repo_app.command("prune")
def repo_prune(
    name: str = REPO,
    keep: int | None = typer.Option(
        None, "--keep", metavar="N", help="Keep the N newest versions of each package."
    ),
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        metavar="DURATION",
        help="Drop versions added longer ago, e.g. 30d (the newest version stays).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
    publish: bool = PUBLISH,
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Drop old versions from REPO.

    By --keep and --older-than, or else the repo's own retention setting."""
    with user_errors():
        c = api.repo_prune(
            name,
            keep=keep,
            older_than=older_than,
            dry_run=dry_run,
            publish=publish,
            wait=wait,
            store=G.store,
            gnupghome=G.gnupghome,
        )
    _render_change(c, json_out, dry_run=dry_run)


@repo_app.command("rollback")
def repo_rollback(
    name: str = REPO,
    to: int | None = typer.Option(
        None, "--to", metavar="N", help="Back to the head after history entry N."
    ),
    publish: bool = PUBLISH,
    wait: float = WAIT,
    json_out: bool = JSON,
) -> None:
    """Undo REPO's last change, or go back to entry N.

    The head moves; no snapshot is removed."""
    with user_errors():
        c = api.repo_rollback(
            name, to=to, publish=publish, wait=wait, store=G.store, gnupghome=G.gnupghome
        )
    _render_change(c, json_out)


@repo_app.command("list")
def repo_list(json_out: bool = JSON) -> None:
    """List repos."""
    with user_errors():
        repos = api.repo_list(store=G.store)
    if json_out:
        emit_json([repo_json(r) for r in repos])
        return
    for r in repos:
        changes = plural(len(r.history), "change")
        typer.echo(f"{r.name}\t{r.component}\t{r.head or '(empty)'}\t{changes}")


@repo_app.command("show")
def repo_show(
    name: str = REPO,
    packages: bool = typer.Option(False, "--packages", help="List the packages too."),
    json_out: bool = JSON,
) -> None:
    """Show a repo: settings, head, retention, following suites."""
    with user_errors():
        d = api.repo_show(name, packages=packages, store=G.store)
    r = d.repo
    if json_out:
        out = repo_json(r)
        out["packages"] = d.head.packages if d.head is not None else 0
        if packages:
            out["package_list"] = [package_json(p) for p in d.packages]
        emit_json(out)
        return
    typer.echo(f"name: {r.name}")
    typer.echo(f"component: {r.component}")
    typer.echo(f"suite: {r.suite}")
    if r.comment:
        typer.echo(f"comment: {r.comment}")
    typer.echo(f"created: {r.created_at}")
    typer.echo(f"head: {r.head or '(empty)'}")
    typer.echo(f"packages: {d.head.packages if d.head is not None else 0}")
    typer.echo(f"changes: {len(r.history)}")
    if r.retention:
        rule = [f"keep {r.retention.keep}"] if r.retention.keep else []
        rule += [f"older than {r.retention.older_than}"] if r.retention.older_than else []
        typer.echo(f"retention: {', '.join(rule)}")
    for f in r.followers:
        typer.echo(f"published: {f['target']} suite {f['suite']}")
    if packages:
        typer.echo("package list:")
        for p in d.packages:
            typer.echo(f"  {p.ref}")


@repo_app.command("search")
def repo_search(
    name: str = REPO,
    query: str = typer.Argument(..., metavar="QUERY", help="What to find (aptly syntax)."),
    json_out: bool = JSON,
) -> None:
    """List the packages of REPO that QUERY matches.

    One name_version_arch per line, sorted. Exit 1 if none does (as grep)."""
    with user_errors():
        found = api.repo_search(name, query, store=G.store)
    if json_out:
        emit_json([package_json(p) for p in found])
    else:
        for ref in dict.fromkeys(p.ref for p in found):
            typer.echo(ref)
    if not found:
        raise typer.Exit(1)


@repo_app.command("history")
def repo_history(name: str = REPO, json_out: bool = JSON) -> None:
    """List every change of REPO, oldest first.

    Entry number, when, who, what, the snapshot it made."""
    with user_errors():
        entries = api.repo_history(name, store=G.store)
    if json_out:
        emit_json([entry_json(e) for e in entries])
        return
    for e in entries:
        note = f"\t{e.note}" if e.note else ""
        typer.echo(
            f"{e.n}\t{e.at}\t{e.by}\t{e.action}\t+{len(e.added)} -{len(e.removed)}\t"
            f"{e.snapshot}{note}"
        )


@repo_app.command("rm")
def repo_rm(name: str = REPO) -> None:
    """Remove REPO and the history snapshots nothing else needs."""
    with user_errors():
        api.repo_rm(name, store=G.store)
    typer.echo(f"removed repo {name}")
