"""channel set/list/history/rollback; gc and store verify."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli.common import (
    JSON,
    G,
    TqdmReporter,
    app,
    channel_app,
    emit_json,
    err,
    mb,
    plural,
    user_errors,
)

if TYPE_CHECKING:
    from mirrorkit.channel import Channel


def channel_json(c: Channel) -> dict[str, Any]:
    return {"name": c.name, "snapshot": c.snapshot, "updated_at": c.updated_at}


CHANNEL = typer.Argument(..., metavar="CHANNEL", help="The channel, e.g. prod.")


@channel_app.command("set")
def channel_set(
    name: str = CHANNEL,
    snapshot_name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    json_out: bool = JSON,
) -> None:
    """Point CHANNEL at SNAPSHOT.

    A channel (prod, staging, ...) is a name clients keep; publish the channel to make the
    move live."""
    with user_errors():
        ch = api.channel_set(name, snapshot_name, wait=G.wait, store=G.store)
    if json_out:
        emit_json(channel_json(ch))
        return
    typer.echo(f"channel {ch.name} -> {ch.snapshot}")


@channel_app.command("list")
def channel_list(json_out: bool = JSON) -> None:
    """List channels and the snapshots they point at."""
    with user_errors():
        channels = api.channel_list(store=G.store)
    if json_out:
        emit_json([channel_json(c) for c in channels])
        return
    for c in channels:
        typer.echo(f"{c.name}\t{c.snapshot}\t{c.updated_at}")


@channel_app.command("history")
def channel_history(name: str = CHANNEL, json_out: bool = JSON) -> None:
    """Show who moved CHANNEL, when, and to what.

    Oldest first."""
    with user_errors():
        history = api.channel_history(name, store=G.store)
    if json_out:
        emit_json([{"action": e.action, "snapshot": e.snapshot, "at": e.at, "by": e.by,
                    "digest": e.digest or None} for e in history])  # fmt: skip
        return
    for e in history:
        typer.echo(f"{e.at}\t{e.action:<8}\t{e.snapshot}\t{e.by}")


@channel_app.command("rollback")
def channel_rollback(name: str = CHANNEL, json_out: bool = JSON) -> None:
    """Point CHANNEL back at the snapshot it had before.

    Publish the channel to make the move live."""
    with user_errors():
        ch = api.channel_rollback(name, wait=G.wait, store=G.store)
    if json_out:
        emit_json(channel_json(ch))
        return
    typer.echo(f"channel {ch.name} -> {ch.snapshot} (rolled back)")


@app.command("gc")
def gc_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
    json_out: bool = JSON,
) -> None:
    """Remove the files nothing references any more.

    Pool and metadata objects no mirror, snapshot or published suite references,
    temporary files left behind, and partial downloads of abandoned updates; in the
    directories published from the store, pool files no suite lists any more and what
    killed publishes left."""
    with user_errors():
        result = api.gc(dry_run=dry_run, wait=G.wait, store=G.store)
    if json_out:
        emit_json(
            {
                "dry_run": result.dry_run,
                "pool_files": result.pool_files,
                "meta_files": result.meta_files,
                "temp_files": result.temp_files,
                "partial_files": result.partial_files,
                "tree_files": result.tree_files,
                "bytes": result.bytes,
                "removed": list(result.removed),
            }
        )
        return
    if G.verbose:
        for path in result.removed:
            err(f"{'would remove' if dry_run else 'removed'} {path}")
    verb = "would free" if dry_run else "freed"
    typer.echo(
        f"{verb} {mb(result.bytes)}: {plural(result.pool_files, 'pool file')}, "
        f"{plural(result.meta_files, 'metadata object')}, "
        f"{plural(result.temp_files, 'temporary file')}, "
        f"{plural(result.partial_files, 'partial download')}"
        + (f"; {plural(result.tree_files, 'file')} in published trees" if result.tree_files else "")
    )


store_app = typer.Typer(help="The store itself: check it the hard way.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("verify")
def store_verify(json_out: bool = JSON) -> None:
    """Re-hash every object in the store and check every record.

    Every pool and metadata object against its name, every record readable, every
    snapshot and mirror state intact, every published directory consistent with its
    suites and records. Exit 1 on any problem."""
    with user_errors():
        report = api.store_verify(wait=G.wait, store=G.store, reporter=TqdmReporter())
    if json_out:
        emit_json(
            {
                "store": report.store,
                "ok": report.ok,
                "pool_objects": report.pool_objects,
                "meta_objects": report.meta_objects,
                "records": report.records,
                "snapshots": report.snapshots,
                "mirrors": report.mirrors,
                "trees": report.trees,
                "problems": list(report.problems),
                "unrecorded": list(report.unrecorded),
                "pending": list(report.pending),
            }
        )
    else:
        for problem in report.problems:
            err(f"problem: {problem}")
        for path in report.unrecorded:
            err(f"note: {path}: in a published tree, but in no record of it")
        for what in report.pending:
            err(f"note: {what}: left by a killed publish; the next publish there or gc reclaims it")
        checked = (
            f"{plural(report.pool_objects, 'pool object')}, "
            f"{plural(report.meta_objects, 'metadata object')}, "
            f"{plural(report.records, 'record')}, {plural(report.snapshots, 'snapshot')}, "
            f"{plural(report.trees, 'published tree')}"
        )
        if report.ok:
            typer.echo(f"{report.store}: OK: {checked} checked")
        else:
            err(f"{report.store}: {plural(len(report.problems), 'problem')} in {checked}")
            err("hint: restore the damaged files from a backup, or run again what made them.")
    if not report.ok:
        raise typer.Exit(1)
