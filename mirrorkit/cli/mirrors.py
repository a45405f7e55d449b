"""mirror add/update/list/show/rm, and sync (the main job)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli.common import (
    JSON,
    G,
    TqdmReporter,
    app,
    command_with_usage,
    emit_json,
    extra_line,
    fail,
    info,
    mb,
    mirror_app,
    plural,
    user_errors,
)
from mirrorkit.cli.exports import print_published, published_json
from mirrorkit.errors import UsageError
from mirrorkit.models import UpdateResult, index_label, kinds_text
from mirrorkit.net.redact import redact_url

if TYPE_CHECKING:
    from mirrorkit.mirror import Mirror


def summary_line(result: UpdateResult) -> str:
    s = result.summary
    if result.dry_run and result.changed:
        p = result.plan
        return (
            f"{result.mirror}: would download {plural(p.files, 'file')}, {mb(p.bytes)} "
            f"({p.bytes} bytes); reuse {p.reused}; {plural(result.packages, 'package')} "
            "(dry run: nothing downloaded)"
        )
    if not result.changed:
        return (
            f"{result.mirror}: unchanged ({plural(result.packages, 'package')}, "
            f"Release of {result.release_date or 'no Date'}); fetched 0 files"
        )
    return (
        f"{result.mirror}: {plural(result.packages, 'package')}; fetched "
        f"{plural(s.fetched, 'file')}, reused {s.reused}, {mb(s.bytes)} in {s.seconds:.1f} s "
        f"({s.mb_per_s:.1f} MB/s)"
    )


def update_json(result: UpdateResult) -> dict[str, Any]:
    s = result.summary
    return {
        "mirror": result.mirror,
        "changed": result.changed,
        "packages": result.packages,
        "release_date": result.release_date,
        "fetched": s.fetched,
        "reused": s.reused,
        "bytes": s.bytes,
        "seconds": round(s.seconds, 3),
        "dry_run": result.dry_run,
        "plan": asdict(result.plan),  # planned before downloading: files, bytes, reused
    }


def mirror_json(m: Mirror) -> dict[str, Any]:
    return {
        # A record written before URL credentials moved to the store's auth file may hold some.
        "spec": {**asdict(m.spec), "url": redact_url(m.spec.url)},
        "created_at": m.created_at,
        "state": None if m.state is None else {**asdict(m.state), "packages": m.state.packages},
    }


NO_CHECK = typer.Option(
    False, "--no-check", help="Do not ask the upstream (offline): it is checked at update."
)


@mirror_app.command(
    "add", cls=command_with_usage("(NAME URL SUITE --keyring FILE | --profile FILE)")
)
def mirror_add(
    name: str | None = typer.Argument(None, metavar="NAME", help="Mirror name."),
    url: str | None = typer.Argument(
        None, metavar="URL", help="Upstream URL, e.g. http://deb.debian.org/debian"
    ),
    suite: str | None = typer.Argument(
        None, metavar="SUITE", help="Suite (codename); 'path/' for a flat repository."
    ),
    component: list[str] = typer.Option(
        [],
        "-c",
        "--component",
        metavar="COMPONENT",
        help="Component; repeat it or give a list: -c main,contrib [main].",
    ),
    architecture: list[str] = typer.Option(
        [],
        "-a",
        "--architecture",
        metavar="ARCH",
        help="Architecture; repeat it or give a list: -a amd64,arm64 [amd64].",
    ),
    keyring: Path | None = typer.Option(
        None, "--keyring", metavar="FILE", help="Keyring that signs the upstream's Release."
    ),
    fingerprint: list[str] = typer.Option(
        [], "--fingerprint", metavar="FINGERPRINT", help="Allowed signer (repeatable)."
    ),
    profile: Path | None = typer.Option(
        None, "--profile", metavar="FILE", help="Add every upstream of a profile."
    ),
    filter_query: str | None = typer.Option(
        None,
        "--filter",
        metavar="QUERY",
        help="Keep only the packages this query matches (aptly syntax).",
    ),
    with_deps: bool = typer.Option(
        False, "--with-deps", help="With the filter: add the dependency closure."
    ),
    with_recommends: bool = typer.Option(
        False, "--with-recommends", help="With --with-deps: follow Recommends too."
    ),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="With the filter: matching nothing is not an error."
    ),
    languages: str | None = typer.Option(
        None,
        "--languages",
        metavar="LANGS",
        help="Translations (long descriptions) to keep: en,de or none [en].",
    ),
    with_contents: bool = typer.Option(
        False, "--with-contents", help="Keep the Contents-ARCH files too (for apt-file)."
    ),
    no_check: bool = NO_CHECK,
    with_sources: bool = typer.Option(
        False, "--with-sources", help="Source packages too (with a filter: those that built it)."
    ),
    with_udebs: bool = typer.Option(
        False, "--with-udebs", help="debian-installer udebs too (a filter names them as debs)."
    ),
    json_out: bool = JSON,
) -> None:
    """Start following an upstream suite (verified with KEYRING).

    The upstream is asked first: its Release must be signed by KEYRING and list the suite,
    components and architectures. --proxy, --ca-bundle and --auth-file given here are
    remembered for this mirror's updates (whose own options override them)."""
    with user_errors():
        added = api.mirror_add(
            name,
            url,
            suite,
            components=component,
            architectures=architecture,
            keyring=keyring,
            fingerprints=fingerprint,
            profile=profile,
            filter=filter_query,
            with_deps=with_deps,
            with_recommends=with_recommends,
            with_sources=with_sources,
            with_udebs=with_udebs,
            allow_empty=allow_empty,
            languages=None if languages is None else [languages],
            with_contents=with_contents,
            proxy=G.proxy,
            ca_bundle=G.ca_bundle,
            auth_file=G.auth_files,
            no_check=no_check,
            wait=G.wait,
            store=G.store,
        )
    for why in added.unchecked:
        info(f"warning: not checked: {why} (the first update checks it)")
    if json_out:
        emit_json(
            {"added": [mirror_json(m) for m in added.mirrors], "unchecked": list(added.unchecked)}
        )
        return
    for m in added.mirrors:
        typer.echo(f"added mirror {m.spec.name}: {m.spec.url} {m.spec.suite}")


@mirror_app.command("edit")
def mirror_edit(
    name: str = typer.Argument(..., metavar="NAME", help="The mirror."),
    url: str | None = typer.Option(None, "--url", metavar="URL", help="Another upstream URL."),
    suite: str | None = typer.Option(None, "--suite", metavar="SUITE", help="Another suite."),
    component: list[str] | None = typer.Option(
        None,
        "-c",
        "--component",
        metavar="COMPONENT",
        help="The components (replacing them); repeat it or give a list: -c main,contrib.",
    ),
    architecture: list[str] | None = typer.Option(
        None,
        "-a",
        "--architecture",
        metavar="ARCH",
        help="The architectures (replacing them); repeat it or give a list: -a amd64,arm64.",
    ),
    keyring: Path | None = typer.Option(
        None, "--keyring", metavar="FILE", help="Another keyring for the upstream's Release."
    ),
    fingerprint: list[str] | None = typer.Option(
        None, "--fingerprint", metavar="FINGERPRINT", help="Allowed signers (replacing them)."
    ),
    no_fingerprints: bool = typer.Option(
        False, "--no-fingerprints", help="Drop the signer allow-list (any key of the keyring)."
    ),
    filter_query: str | None = typer.Option(
        None, "--filter", metavar="QUERY", help="Keep only what this query matches."
    ),
    no_filter: bool = typer.Option(False, "--no-filter", help="Drop the filter: the whole suite."),
    with_deps: bool | None = typer.Option(
        None, "--with-deps/--without-deps", help="With the filter: the dependency closure."
    ),
    with_recommends: bool | None = typer.Option(
        None, "--with-recommends/--without-recommends", help="Follow Recommends too."
    ),
    allow_empty: bool | None = typer.Option(
        None, "--allow-empty/--no-allow-empty", help="A filter matching nothing is no error."
    ),
    reset_network: bool = typer.Option(
        False,
        "--reset-network",
        help="Forget the mirror's --proxy, --ca-bundle and --auth-file (the environment's "
        "and apt's apply again).",
    ),
    no_check: bool = NO_CHECK,
    json_out: bool = JSON,
) -> None:
    """Change what a mirror follows; the next update takes it up.

    Checked as 'mirror add' checks (the upstream included, unless --no-check). Its state stays
    unless the URL, suite or keyring changed. --proxy, --ca-bundle and --auth-file given here
    replace what the mirror remembers."""
    if filter_query is not None and no_filter:
        fail(UsageError("give --filter QUERY or --no-filter, not both"))
    if fingerprint and no_fingerprints:
        fail(UsageError("give --fingerprint or --no-fingerprints, not both"))
    with user_errors():
        edited = api.mirror_edit(
            name,
            url=url,
            suite=suite,
            components=component or None,
            architectures=architecture or None,
            keyring=keyring,
            fingerprints=() if no_fingerprints else (fingerprint or None),
            filter="" if no_filter else filter_query,
            with_deps=with_deps,
            with_recommends=with_recommends,
            allow_empty=allow_empty,
            proxy=G.proxy,
            ca_bundle=G.ca_bundle,
            auth_file=G.auth_files,
            reset_network=reset_network,
            no_check=no_check,
            wait=G.wait,
            store=G.store,
        )
    m = edited.mirror
    if edited.unchecked is not None:
        info(f"warning: not checked: {edited.unchecked} (the next update checks it)")
    if json_out:
        emit_json({**mirror_json(m), "unchecked": edited.unchecked})
        return
    state = "kept" if m.state is not None else "none (the next update fetches everything)"
    typer.echo(
        f"edited mirror {m.spec.name}: {redact_url(m.spec.url)} {m.spec.suite}; state {state}"
    )


JOBS = typer.Option(8, "--jobs", "-j", metavar="N", help="Concurrent downloads.")
MAX_TRIES = typer.Option(5, "--max-tries", metavar="N", help="Attempts per file before giving up.")
LIMIT_RATE = typer.Option(
    None, "--limit-rate", metavar="RATE", help="Bandwidth cap, e.g. 10M (bytes/s)."
)
ALLOW_EXPIRED = typer.Option(
    False, "--allow-expired", help="Accept a Release past its Valid-Until (replay risk)."
)
ALLOW_ROLLBACK = typer.Option(
    False, "--allow-rollback", help="Accept a Release older than the last accepted one."
)
ALLOW_RELEASEINFO_CHANGE = typer.Option(
    False, "--allow-releaseinfo-change", help="Follow a suite whose Codename changed (as apt)."
)
DRY_RUN = typer.Option(
    False,
    "--dry-run",
    help="Verify InRelease and the indices, print what would be downloaded, change nothing.",
)
NO_SPACE_CHECK = typer.Option(
    False,
    "--no-space-check",
    help="Download even if the store's filesystem lacks the space (download + 5% + 64 MiB).",
)


@mirror_app.command("update")
def mirror_update(
    name: str = typer.Argument(..., metavar="NAME", help="The mirror."),
    jobs: int = JOBS,
    max_tries: int = MAX_TRIES,
    limit_rate: str | None = LIMIT_RATE,
    allow_expired: bool = ALLOW_EXPIRED,
    allow_rollback: bool = ALLOW_ROLLBACK,
    allow_releaseinfo_change: bool = ALLOW_RELEASEINFO_CHANGE,
    dry_run: bool = DRY_RUN,
    no_space_check: bool = NO_SPACE_CHECK,
    json_out: bool = JSON,
) -> None:
    """Fetch and verify the upstream's current state."""
    with user_errors():
        result = api.mirror_update(
            name,
            jobs=jobs,
            max_tries=max_tries,
            limit_rate=limit_rate,
            allow_expired=allow_expired,
            allow_rollback=allow_rollback,
            allow_releaseinfo_change=allow_releaseinfo_change,
            dry_run=dry_run,
            no_space_check=no_space_check,
            proxy=G.proxy,
            ca_bundle=G.ca_bundle,
            auth_file=G.auth_files,
            wait=G.wait,
            store=G.store,
            reporter=TqdmReporter(),
        )
    if json_out:
        emit_json(update_json(result))
        return
    typer.echo(summary_line(result))


@mirror_app.command("list")
def mirror_list(json_out: bool = JSON) -> None:
    """List mirrors."""
    with user_errors():
        mirrors = api.mirror_list(store=G.store)
    if json_out:
        emit_json([mirror_json(m) for m in mirrors])
        return
    for m in mirrors:
        when = (m.state.release_date or "no Date") if m.state else "never updated"
        count = m.state.packages if m.state else 0
        typer.echo(
            f"{m.spec.name}\t{redact_url(m.spec.url)} {m.spec.suite}\t{plural(count, 'package')}"
            f"\t{when}"
        )


@mirror_app.command("show")
def mirror_show(
    name: str = typer.Argument(..., metavar="NAME", help="The mirror."), json_out: bool = JSON
) -> None:
    """Show a mirror's spec and last verified state."""
    with user_errors():
        m = api.mirror_show(name, store=G.store)
    if json_out:
        emit_json(mirror_json(m))
        return
    s = m.spec
    typer.echo(f"Name: {s.name}\nURL: {redact_url(s.url)}\nSuite: {s.suite}")
    typer.echo(f"Components: {' '.join(s.components)}\nArchitectures: {' '.join(s.architectures)}")
    typer.echo(f"Keyring: {s.keyring}")
    if s.fingerprints:
        typer.echo(f"Fingerprints: {' '.join(s.fingerprints)}")
    if s.filter:
        deps = " --with-deps" if s.with_deps else ""
        deps += " --with-recommends" if s.with_recommends else ""
        typer.echo(f"Filter: {s.filter}{deps}")
    typer.echo(f"Languages: {', '.join(s.languages) or 'none'}")
    typer.echo(f"Contents: {'yes' if s.with_contents else 'no'}")
    kinds = ["deb"] + ["udeb"] * s.with_udebs + ["source"] * s.with_sources
    typer.echo(f"Kinds: {kinds_text(kinds)}")
    if m.state is None:
        typer.echo("State: never updated")
        return
    st = m.state
    typer.echo(f"Release date: {st.release_date or '-'}\nValid until: {st.valid_until or '-'}")
    typer.echo(f"Signer: {st.signer}\nInRelease SHA256: {st.inrelease_sha256}")
    typer.echo(f"Fetched at: {st.fetched_at}\nPackages: {st.packages}")
    for i in st.indexes:
        typer.echo(f"  {index_label(i)}: {plural(i.packages, 'package')}")
    for e in st.extras:
        typer.echo(f"  {extra_line(e)}")


@mirror_app.command("rm")
def mirror_rm(
    name: str = typer.Argument(..., metavar="NAME", help="The mirror."), json_out: bool = JSON
) -> None:
    """Forget a mirror; its snapshots stay, and its files until gc."""
    with user_errors():
        removed = api.mirror_rm(name, wait=G.wait, store=G.store)
    if json_out:
        emit_json(asdict(removed))
        return
    typer.echo(f"removed mirror {removed.name}")


@app.command("sync")
def sync_cmd(
    profile: Path = typer.Argument(..., metavar="PROFILE", help="The profile (a .toml file)."),
    jobs: int = JOBS,
    max_tries: int = MAX_TRIES,
    limit_rate: str | None = LIMIT_RATE,
    no_publish: bool = typer.Option(False, "--no-publish", help="Update and snapshot only."),
    force_snapshot: bool = typer.Option(
        False, "--force-snapshot", help="Make a new snapshot even if no upstream changed."
    ),
    allow_expired: bool = ALLOW_EXPIRED,
    allow_rollback: bool = ALLOW_ROLLBACK,
    allow_releaseinfo_change: bool = ALLOW_RELEASEINFO_CHANGE,
    dry_run: bool = DRY_RUN,
    no_space_check: bool = NO_SPACE_CHECK,
    json_out: bool = JSON,
) -> None:
    """Update, snapshot and publish what a profile names.

    The main job: update the profile's mirrors, snapshot them into one snapshot (filtered and
    merged as the profile says), publish it and move its channel."""
    with user_errors():
        result = api.sync(
            profile,
            jobs=jobs,
            max_tries=max_tries,
            limit_rate=limit_rate,
            no_publish=no_publish,
            force_snapshot=force_snapshot,
            allow_expired=allow_expired,
            allow_rollback=allow_rollback,
            allow_releaseinfo_change=allow_releaseinfo_change,
            dry_run=dry_run,
            no_space_check=no_space_check,
            proxy=G.proxy,
            ca_bundle=G.ca_bundle,
            auth_file=G.auth_files,
            wait=G.wait,
            store=G.store,
            gnupghome=G.gnupghome,
            reporter=TqdmReporter(),
        )
    if json_out:
        from mirrorkit.cli.snapshots import snapshot_json

        emit_json(
            {
                "profile": str(result.profile.path),
                "updates": [update_json(u) for u in result.updates],
                "dry_run": result.dry_run,
                "unchanged": result.unchanged,
                "snapshot": None if result.snapshot is None else snapshot_json(result.snapshot),
                "published": None if result.published is None else published_json(result.published),
            }
        )
        return
    if result.snapshot is None:  # a dry run: the plan is the result, on stdout
        for update in result.updates:
            typer.echo(summary_line(update))
        total = sum(u.plan.bytes for u in result.updates)
        files = sum(u.plan.files for u in result.updates)
        typer.echo(f"total: would download {plural(files, 'file')}, {mb(total)} ({total} bytes)")
        return
    for update in result.updates:
        info(summary_line(update))
    if result.unchanged:
        typer.echo(f"unchanged: {result.snapshot.name}")
    else:
        typer.echo(
            f"snapshot: {result.snapshot.name} ({plural(result.snapshot.packages, 'package')})"
        )
    if result.published is not None:
        print_published(result.published)
