"""snapshot create/list/show/rm/merge/diff/filter/search/verify/why."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli.common import (
    JSON,
    G,
    emit_json,
    err,
    extra_line,
    field_line,
    info,
    plural,
    snapshot_app,
    user_errors,
)
from mirrorkit.errors import UsageError
from mirrorkit.models import Package, Provenance, index_label, kinds_text

if TYPE_CHECKING:
    from mirrorkit.snapshot import SnapshotInfo


def package_json(p: Package) -> dict[str, Any]:
    return {
        "name": p.name,
        "version": p.version,
        "architecture": p.architecture,
        "component": p.component,
        "sha256": p.sha256,
        "size": p.size,
    }


def snapshot_json(info: SnapshotInfo, problems: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.name,
        "created_at": info.created_at,
        "mirrorkit_version": info.mirrorkit_version,
        "sources": [s.to_json() for s in info.sources],
        "indexes": [asdict(i) for i in info.indexes],
        "extras": [asdict(e) for e in info.extras],
        "kinds": list(info.kinds),
        "packages": info.packages,
        "digest": info.digest,
    }
    if problems is not None:
        out["intact"] = not problems
        out["problems"] = problems
    return out


def source_label(source: Provenance) -> str:
    if source.kind == "debs":
        return plural(len(source.files or ()), ".deb file")
    if source.kind == "repo":
        return f"repo {source.repo} ({source.action})"
    return source.mirror or source.snapshot or source.kind or "?"


@snapshot_app.command("create")
def snapshot_create(
    name: str | None = typer.Argument(
        None, metavar="[NAME]", help="Snapshot name [MIRROR-YYYYMMDD]."
    ),
    more_debs: list[Path] = typer.Argument(
        None, metavar="[FILE_OR_DIR]...", help="More paths for --from-debs.", show_default=False
    ),
    from_mirror: str | None = typer.Option(
        None, "--from-mirror", metavar="MIRROR", help="Mirror to freeze."
    ),
    from_debs: list[Path] = typer.Option(
        [],
        "--from-debs",
        metavar="FILE_OR_DIR",
        help="Your own .deb files or directories of them (repeatable).",
    ),
    from_repo: str | None = typer.Option(
        None, "--from-repo", metavar="REPO", help="A repo's head, under a name of your own."
    ),
    component: str | None = typer.Option(
        None, "--component", metavar="COMPONENT", help="Component [main]."
    ),
    json_out: bool = JSON,
) -> None:
    """Freeze a mirror, .deb files or a repo into a snapshot.

    The snapshot never changes. With --from-debs, paths may follow it: --from-debs a.deb b.deb
    dir/."""
    with user_errors():
        if more_debs and (from_mirror or from_repo) and not from_debs:
            raise UsageError(f"unexpected extra argument(s): {' '.join(map(str, more_debs))}")
        created = api.snapshot_create(
            name,
            from_mirror=from_mirror,
            from_debs=[*from_debs, *(more_debs or [])] if from_debs else [],
            from_repo=from_repo,
            component=component,
            wait=G.wait,
            store=G.store,
        )
    if json_out:
        emit_json(snapshot_json(created))
        return
    typer.echo(f"created snapshot {created.name} ({plural(created.packages, 'package')})")


@snapshot_app.command("list")
def snapshot_list(json_out: bool = JSON) -> None:
    """List snapshots.

    Exit 1 if a record cannot be read; the others are listed."""
    with user_errors():
        listed = api.snapshot_list(store=G.store)
    if json_out:
        emit_json([snapshot_json(i) for i in listed.snapshots])
    else:
        for i in listed.snapshots:
            sources = ", ".join(source_label(s) for s in i.sources)
            count = plural(i.packages, "package")
            typer.echo(f"{i.name}\t{i.created_at}\t{count}\tfrom {sources}")
    for exc in listed.damaged:
        err(f"error: {exc.message}")
        if exc.hint:
            err(f"hint: {exc.hint}")
    if listed.damaged:
        raise typer.Exit(1)


@snapshot_app.command("show")
def snapshot_show(
    name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    packages: bool = typer.Option(False, "--packages", help="List every package."),
    json_out: bool = JSON,
) -> None:
    """Show a snapshot's provenance and check that it is intact.

    Exit 1 if it is modified or damaged on disk."""
    with user_errors():
        shown = api.snapshot_show(name, packages=packages, store=G.store)
    snap, problems = shown.snapshot, list(shown.problems)
    if json_out:
        out = snapshot_json(snap, problems)
        if packages:
            out["package_list"] = [package_json(p) for p in shown.packages]
        emit_json(out)
    else:
        typer.echo(f"Name: {snap.name}\nCreated: {snap.created_at}")
        typer.echo(f"mirrorkit version: {snap.mirrorkit_version}\nDigest: {snap.digest}")
        typer.echo(f"Packages: {snap.packages}")
        typer.echo(f"Kinds: {kinds_text(snap.kinds)}")
        for s in snap.sources:
            typer.echo("Source:")
            for k, v in sorted(s.to_json().items()):
                typer.echo(field_line("  ", k, v))
        for i in snap.indexes:
            typer.echo(f"Index: {index_label(i)} ({plural(i.packages, 'package')})")
        for e in snap.extras:
            typer.echo(f"Extra: {extra_line(e)}")
        typer.echo("Integrity: intact" if not problems else "Integrity: MODIFIED OR DAMAGED")
        for problem in problems:
            typer.echo(f"  {problem}")
        seen: set[tuple[str, str]] = set()
        for p in shown.packages:
            if (p.ref, p.sha256) not in seen:
                seen.add((p.ref, p.sha256))
                typer.echo(f"{p.ref}\t{p.sha256}")
    if problems:
        raise typer.Exit(1)


@snapshot_app.command("rm")
def snapshot_rm(
    name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    force: bool = typer.Option(False, "--force", help="Even if something needs it."),
    json_out: bool = JSON,
) -> None:
    """Remove a snapshot that no channel or snapshot needs."""
    with user_errors():
        removed = api.snapshot_rm(name, force=force, wait=G.wait, store=G.store)
    if json_out:
        emit_json(asdict(removed))
        return
    typer.echo(f"removed snapshot {removed.name}")


@snapshot_app.command("merge")
def snapshot_merge(
    dest: str = typer.Argument(..., metavar="DEST", help="The new snapshot."),
    sources: list[str] = typer.Argument(..., metavar="SRC...", help="The snapshots to merge."),
    latest: bool = typer.Option(False, "--latest", help="Highest version wins."),
    all_versions: bool = typer.Option(False, "--all-versions", help="Keep every version."),
    json_out: bool = JSON,
) -> None:
    """Merge snapshots into a new snapshot DEST.

    By default, for each package the later SRC wins; --latest: the highest version;
    --all-versions: every version stays."""
    with user_errors():
        merged = api.snapshot_merge(
            dest, sources, latest=latest, all_versions=all_versions, wait=G.wait, store=G.store
        )
    if json_out:
        emit_json({**snapshot_json(merged.snapshot), "policy": merged.policy})
        return
    typer.echo(
        f"created snapshot {merged.snapshot.name} ({plural(merged.snapshot.packages, 'package')}"
        f", policy {merged.policy})"
    )


@snapshot_app.command("diff")
def snapshot_diff(
    a: str = typer.Argument(..., metavar="A", help="The older snapshot."),
    b: str = typer.Argument(..., metavar="B", help="The newer snapshot."),
    json_out: bool = JSON,
) -> None:
    """Show what changed from snapshot A to B.

    Packages added, removed, upgraded, downgraded and changed (same version, other contents);
    exit 0 either way."""
    from mirrorkit.snapshot import CHANGE_KINDS  # loaded by the diff anyway

    with user_errors():
        changes = api.snapshot_diff(a, b, store=G.store).changes
    if json_out:
        emit_json(
            {
                kind: [
                    {"name": c.name, "architecture": c.architecture, "old": c.old, "new": c.new}
                    for c in changes
                    if c.kind == kind
                ]
                for kind in CHANGE_KINDS
            }
        )
        return
    counts = {k: sum(c.kind == k for c in changes) for k in CHANGE_KINDS}
    typer.echo(", ".join(f"{n} {k}" for k, n in counts.items()) + f"  ({a} -> {b})")
    rows = [(c.kind, c.name, c.architecture, c.old or "-", c.new or "-") for c in changes]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    for kind in counts:
        for row in (r for r in rows if r[0] == kind):
            typer.echo(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )


WITH_DEPS = typer.Option(False, "--with-deps", help="Add the dependency closure.")
WITH_RECOMMENDS = typer.Option(False, "--with-recommends", help="Follow Recommends too.")


@snapshot_app.command("filter")
def snapshot_filter(
    source: str = typer.Argument(..., metavar="SOURCE", help="The snapshot to filter."),
    dest: str = typer.Argument(..., metavar="DEST", help="The new snapshot."),
    query_text: str = typer.Argument(..., metavar="QUERY", help="What to keep (aptly syntax)."),
    with_deps: bool = WITH_DEPS,
    with_recommends: bool = WITH_RECOMMENDS,
    with_essential: bool = typer.Option(
        False, "--with-essential", help="Add the Essential/required set, to bootstrap a system."
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Create it even if dependencies are unmet (listed)."
    ),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Create it even if QUERY matches nothing."
    ),
    json_out: bool = JSON,
) -> None:
    """Make snapshot DEST of what QUERY matches in SOURCE.

    With --with-deps, and everything those packages need."""
    with user_errors():
        picked = api.snapshot_filter(
            source,
            dest,
            query_text,
            with_deps=with_deps,
            with_recommends=with_recommends,
            with_essential=with_essential,
            allow_missing=allow_missing,
            allow_empty=allow_empty,
            wait=G.wait,
            store=G.store,
        )
    if json_out:
        emit_json(
            {
                **snapshot_json(picked.snapshot),
                "matched": [p.ref for p in picked.matched],
                "unmet": [str(u) for u in picked.unmet],
            }
        )
        return
    for unmet in picked.unmet:
        err(f"warning: unmet: {unmet}")
    typer.echo(
        f"created snapshot {picked.snapshot.name}: {len(picked.matched)} matched, "
        f"{plural(len(picked.packages), 'package')} in all"
    )


@snapshot_app.command("search")
def snapshot_search(
    name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    query_text: str = typer.Argument(..., metavar="QUERY", help="What to find (aptly syntax)."),
    json_out: bool = JSON,
) -> None:
    """List the packages of SNAPSHOT that QUERY matches.

    One name_version_arch per line, sorted. QUERY is aptly's language: 'nginx',
    'nginx (>= 1.22)', 'Priority (required)', '$Source (openssl)', 'Name (% lib*)', 'a | b',
    'a, b', '!a', parentheses. Exit 1 if nothing matches (as grep)."""
    with user_errors():
        found = api.snapshot_search(name, query_text, store=G.store)
    if json_out:
        emit_json([package_json(p) for p in found])
    else:
        for ref in dict.fromkeys(p.ref for p in found):
            typer.echo(ref)
    if not found:
        raise typer.Exit(1)


@snapshot_app.command("verify")
def snapshot_verify(
    name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    with_: list[str] = typer.Option(
        [], "--with", metavar="SNAPSHOT", help="Also consider this snapshot's packages."
    ),
    json_out: bool = JSON,
) -> None:
    """List the unmet dependencies of SNAPSHOT's packages.

    Exit 1 if there are any."""
    with user_errors():
        unmet = api.snapshot_verify(name, with_=with_, store=G.store).unmet
    if json_out:
        emit_json(
            [{"package": u.package.ref, "dependency": u.dependency, "why": u.why} for u in unmet]
        )
    else:
        for u in unmet:
            typer.echo(str(u))
        missing = plural(len(unmet), "unmet dependency", "unmet dependencies")
        info(f"{name}: {missing}" if unmet else f"{name}: all satisfied")
    if unmet:
        raise typer.Exit(1)


@snapshot_app.command("why")
def snapshot_why(
    name: str = typer.Argument(..., metavar="SNAPSHOT", help="The snapshot."),
    package: str = typer.Argument(..., metavar="PACKAGE", help="A name or name_version_arch."),
    from_query: str | None = typer.Option(
        None, "--from", metavar="QUERY", help="Start from this query [the snapshot's own filter]."
    ),
    json_out: bool = JSON,
) -> None:
    """Show the dependency chain that pulled PACKAGE in."""
    with user_errors():
        chain = api.snapshot_why(name, package, from_=from_query, store=G.store)
    if json_out:
        # From the filter's match down to PACKAGE; "dependency" is what pulled each one in.
        emit_json([{"package": s.package.ref, "dependency": s.dependency or None} for s in chain])
        return
    for depth, step in enumerate(chain):
        via = f"  (for: {step.dependency})" if step.dependency else "  (matches the filter)"
        typer.echo(f"{'  ' * depth}{step.package.ref}{via}")
