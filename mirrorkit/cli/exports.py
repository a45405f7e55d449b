"""publish fs/s3, serve, bundle export/show/verify/import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli import signals
from mirrorkit.cli.common import (
    JSON,
    G,
    TqdmReporter,
    app,
    bundle_app,
    command_with_usage,
    emit_json,
    err,
    extra_line,
    field_line,
    info,
    mb,
    plural,
    publish_app,
    user_errors,
)
from mirrorkit.models import INDEX_KINDS, index_label, kinds_text

if TYPE_CHECKING:
    from mirrorkit.publish import Published

app.add_typer(bundle_app, name="bundle")


def print_published(pub: Published) -> None:
    from mirrorkit.publish.fs import PublishResult

    r = pub.result
    if isinstance(r, PublishResult):
        done = f"{plural(r.linked, 'pool file')} linked, {r.reused} already there"
        removed = plural(r.removed, "pool file") if r.removed else ""
    else:
        if r.broken_lock is not None:
            info(f"removed the lock of {r.broken_lock.describe()} (--break-lock)")
        done = f"{plural(len(r.uploaded), 'object')} uploaded, {r.reused} already there"
        removed = plural(len(r.removed), "object") if r.removed else ""
    info(f"published {pub.snapshot} as suite {r.suite} in {pub.location} ({done})")
    if removed:
        info(f"removed {removed} no suite needs any more")
    info(f"public key: {pub.key_location} (copy it to the clients, e.g. /etc/apt/keyrings/)")
    info("client source (/etc/apt/sources.list.d/mirrorkit.sources):")
    typer.echo(pub.client_stanza())


def published_json(pub: Published) -> dict[str, Any]:
    from mirrorkit.publish.fs import PublishResult

    r = pub.result
    out: dict[str, Any] = {
        "snapshot": pub.snapshot,
        "suite": r.suite,
        "location": pub.location,
        "components": list(pub.components),
        "architectures": list(pub.architectures),
        "signed_by": pub.fingerprint,
        "public_key": pub.key_location,
        "client_stanza": pub.client_stanza(),
    }
    if isinstance(r, PublishResult):
        out.update(linked=r.linked, reused=r.reused, removed=r.removed)
    else:
        out.update(uploaded=len(r.uploaded), reused=r.reused, removed=len(r.removed))
    return out


def _render_published(pub: Published, json_out: bool) -> None:
    if json_out:
        emit_json(published_json(pub))
    else:
        print_published(pub)


SOURCE = typer.Argument(
    None,
    metavar="SOURCE",
    help="A snapshot, channel or repo (a channel or repo is followed); none with --component.",
    show_default=False,
)
COMPONENT = typer.Option(
    [],
    "--component",
    metavar="COMPONENT=SOURCE",
    help="One source per component, e.g. main=bookworm-20261204 internal=ourapps "
    "(repeatable; then no SOURCE argument, and --suite is needed).",
)


def _source_and_target(name: str | None, target: Any, components: list[str]) -> tuple[Any, Any]:
    """With --component the one positional argument is the target (DIR or s3://...)."""
    from mirrorkit.errors import UsageError

    if components and target is None:
        return None, name
    if target is None:
        raise UsageError("missing the target argument (DIR or s3://BUCKET/PREFIX)")
    if name is None and not components:
        raise UsageError("missing SOURCE (a snapshot, channel or repo), or --component options")
    return name, target


ORIGIN = typer.Option(None, "--origin", metavar="TEXT", help="Release Origin field.")
LABEL = typer.Option(None, "--label", metavar="TEXT", help="Release Label field.")
VALID_FOR = typer.Option(
    None, "--valid-for", metavar="DURATION", help="Set Valid-Until this far ahead, e.g. 14d."
)
KEY = typer.Option(
    None,
    "--key",
    metavar="KEYID",
    help="Signing key (id, fingerprint, uid); default: the only secret key in the GnuPG home.",
)


@publish_app.command(
    "fs", cls=command_with_usage("(SOURCE DIR | --component COMPONENT=SOURCE... DIR --suite SUITE)")
)
def publish_fs(
    name: str | None = SOURCE,
    directory: Path | None = typer.Argument(
        None, metavar="DIR", help="Where the tree goes.", show_default=False
    ),
    suite: str | None = typer.Option(
        None, "--suite", metavar="SUITE", help="Suite name [the snapshot's name]."
    ),
    key: str | None = KEY,
    origin: str | None = ORIGIN,
    label: str | None = LABEL,
    valid_for: str | None = VALID_FOR,
    component: list[str] = COMPONENT,
    json_out: bool = JSON,
) -> None:
    """Publish a snapshot, channel or repo as a signed APT tree in DIR.

    The suite is switched atomically: clients see the old one or the whole new one."""
    with user_errors():
        source, target = _source_and_target(
            name, None if directory is None else str(directory), component
        )
        pub = api.publish_fs(
            source,
            Path(target),
            component=component,
            key=key,
            suite=suite,
            origin=origin,
            label=label,
            valid_for=valid_for,
            wait=G.wait,
            store=G.store,
            gnupghome=G.gnupghome,
        )
    _render_published(pub, json_out)


@publish_app.command(
    "s3",
    cls=command_with_usage(
        "(SOURCE s3://BUCKET/PREFIX | --component COMPONENT=SOURCE... s3://BUCKET/PREFIX "
        "--suite SUITE)"
    ),
)
def publish_s3(
    name: str | None = SOURCE,
    url: str | None = typer.Argument(
        None, metavar="s3://BUCKET/PREFIX", help="Where the tree goes.", show_default=False
    ),
    # No square brackets in these helps: rich would take them for markup.
    suite: str | None = typer.Option(
        None,
        "--suite",
        metavar="SUITE",
        help="Suite name (default: the snapshot's or channel's name).",
    ),
    key: str | None = KEY,
    endpoint_url: str | None = typer.Option(
        None,
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible server, e.g. http://minio:9000 (default: AWS).",
    ),
    region: str | None = typer.Option(
        None, "--region", metavar="REGION", help="Region (default: from the AWS configuration)."
    ),
    jobs: int = typer.Option(8, "--jobs", "-j", metavar="N", help="Concurrent uploads."),
    prune: bool = typer.Option(
        False, "--prune", help="Then delete the pool objects mirrorkit placed that no suite lists."
    ),
    break_lock: bool = typer.Option(
        False, "--break-lock", help="Remove a stale lock a killed publish left behind."
    ),
    origin: str | None = ORIGIN,
    label: str | None = LABEL,
    valid_for: str | None = VALID_FOR,
    component: list[str] = COMPONENT,
    client_url: str = typer.Option(
        "http",
        "--client-url",
        metavar="http|s3",
        help="The client stanza's URIs: http(s), or s3:// for Debian's apt-transport-s3.",
    ),
    json_out: bool = JSON,
) -> None:
    """Publish a snapshot, channel or repo as a signed APT tree to S3.

    InRelease goes up last: a client never sees half a suite. Credentials come from the
    standard AWS chain (environment, ~/.aws, instance role)."""
    with user_errors():
        source, target = _source_and_target(name, url, component)
        pub = api.publish_s3(
            source,
            target,
            component=component,
            client_url=client_url,
            key=key,
            suite=suite,
            origin=origin,
            label=label,
            valid_for=valid_for,
            endpoint_url=endpoint_url,
            region=region,
            jobs=jobs,
            prune=prune,
            break_lock=break_lock,
            wait=G.wait,
            store=G.store,
            gnupghome=G.gnupghome,
            reporter=TqdmReporter(),
        )
    _render_published(pub, json_out)


@app.command("serve")
def serve_cmd(
    directory: Path = typer.Argument(..., metavar="DIR", help="A published tree."),
    bind: str = typer.Option(
        "127.0.0.1", "--bind", metavar="ADDRESS", help="Address to listen on."
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, metavar="PORT", help="Port (0: any free port)."
    ),
) -> None:
    """Serve a published tree over HTTP, for tests and small sites.

    GET/HEAD, Range, If-Modified-Since; never outside DIR, no directory listings. Not a
    replacement for nginx or Apache in production (no TLS, no access control)."""
    from mirrorkit import serve  # a long-running server, not an API call

    with user_errors():
        server = serve.make_server(directory, bind, port, log=None if G.quiet else err)
    typer.echo(f"serving {directory} at {server.url} (Ctrl-C to stop)")
    try:
        with signals.interruptible():
            server.serve_forever()
    except KeyboardInterrupt:
        signals.handled()  # Ctrl-C (or SIGTERM from a service manager) is how a server stops
    finally:
        server.server_close()


BUNDLE_FILE = typer.Argument(
    ..., metavar="FILE", help="The bundle, or the first part or the index of a split one."
)
BUNDLE_KEYRING = typer.Option(
    ..., "--keyring", metavar="FILE", help="Public key(s) of who may sign bundles (.gpg/.asc)."
)


@bundle_app.command("export")
def bundle_export(
    snapshots: list[str] = typer.Argument(
        ..., metavar="SNAPSHOT...", help="Snapshots (or channels) to carry."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", metavar="FILE", help="The bundle file to write."
    ),
    key: str | None = KEY,
    channels: list[str] = typer.Option(
        [],
        "--channel",
        metavar="CHANNEL",
        help="Pin this channel to its snapshot on the other side (repeatable).",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="SNAPSHOT",
        help="Incremental: only the pool objects SNAPSHOT (there already) lacks.",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        metavar="SIZE",
        help="Write FILE.001, FILE.002, ... of at most SIZE each, e.g. 700M, 4G, 25G "
        "(K/M/G decimal, KiB/MiB/GiB binary), plus FILE.index.json.",
    ),
    json_out: bool = JSON,
) -> None:
    """Write snapshots and their packages as one signed bundle.

    The other side checks it with 'bundle verify' or 'bundle import' before anything is
    written."""
    with user_errors():
        result = api.bundle_export(
            snapshots,
            output=output,
            key=key,
            channels=channels,
            since=since,
            split=split,
            wait=G.wait,
            store=G.store,
            gnupghome=G.gnupghome,
            reporter=TqdmReporter(),
        )
    m = result.manifest
    if json_out:
        emit_json(
            {
                "snapshots": [s.name for s in m.snapshots],
                "since": m.since.name if m.since else None,
                "files": [{"path": str(p.path), "size": p.size} for p in result.files],
                "index": None if result.index is None else str(result.index),
                "pool_objects": len(m.pool),
                "bytes": m.total_bytes,
                "compressed_bytes": result.compressed_bytes,
                "signed_by": result.signer,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    rate = m.total_bytes / 1e6 / result.seconds if result.seconds > 0 else 0.0
    info(
        f"bundled {', '.join(s.name for s in m.snapshots)}"
        + (f" (since {m.since.name})" if m.since else "")
        + f": {plural(len(m.pool), 'pool object')}, {mb(m.total_bytes)} -> "
        f"{mb(result.compressed_bytes)} in {result.seconds:.1f} s ({rate:.1f} MB/s), "
        f"signed by {result.signer}"
    )
    for part in result.files:
        typer.echo(str(part.path))
    if result.index is not None:
        typer.echo(str(result.index))


@bundle_app.command("show")
def bundle_show(
    file: Path = BUNDLE_FILE,
    keyring: Path | None = typer.Option(
        None,
        "--keyring",
        metavar="FILE",
        help="Also check the manifest's signature against this keyring.",
    ),
    json_out: bool = JSON,
) -> None:
    """Show what a bundle holds, from its manifest alone.

    Snapshots, provenance, channel pins, counts and sizes."""
    with user_errors():
        shown = api.bundle_show(file, keyring=keyring)
    if json_out:
        emit_json(shown.to_json())
        return
    m = shown.manifest
    files = shown.files
    where = f"{len(files.parts)} parts, index {files.index}" if files.index else "1 file"
    typer.echo(f"Bundle: {files.what} ({where}, {mb(files.size)})")
    typer.echo(f"Created: {m.created_at} by mirrorkit {m.mirrorkit_version}")
    typer.echo(f"Manifest SHA256: {shown.manifest_sha256}")
    if shown.signers is None:
        typer.echo("Signature: not checked (give --keyring, or run 'mirrorkit bundle verify')")
    else:
        typer.echo(f"Signature: good, by {', '.join(shown.signers)}")
    since = f"incremental, since {m.since.name} ({m.since.digest})" if m.since else "full"
    typer.echo(f"Kind: {since}")
    for s in m.snapshots:
        typer.echo(f"Snapshot: {s.name} ({plural(s.packages, 'package')}, created {s.created_at})")
        typer.echo(f"  digest: {s.digest}")
        for source in s.sources:
            typer.echo("  source:")
            for k, v in sorted(source.to_json().items()):
                typer.echo(field_line("    ", k, v))
        kinds = [k for k in INDEX_KINDS if any(i.kind == k for i in s.indexes)]
        typer.echo(f"  kinds: {kinds_text(kinds)}")
        for i in s.indexes:
            typer.echo(f"  index: {index_label(i)} ({plural(i.packages, 'package')})")
        for e in s.extras:
            typer.echo(f"  extra: {extra_line(e)}")
    for c in m.channels:
        typer.echo(f"Channel: {c.name} -> {c.snapshot}")
    pool = m.pool
    typer.echo(
        f"Members: {shown.members}; pool objects: {len(pool)} "
        f"({mb(sum(p.size for p in pool))}); metadata objects: {len(m.meta)}; "
        f"{mb(m.total_bytes)} uncompressed"
    )


@bundle_app.command("verify")
def bundle_verify(
    file: Path = BUNDLE_FILE,
    keyring: Path = BUNDLE_KEYRING,
    json_out: bool = JSON,
) -> None:
    """Check a bundle's signature and every member's SHA256.

    The signature first, then each member's size and SHA256; exit 1 on any problem."""
    with user_errors():
        report = api.bundle_verify(file, keyring=keyring, reporter=TqdmReporter())
    if json_out:
        emit_json(report.to_json())
    else:
        for problem in report.problems:
            err(f"problem: {problem.message}")
        if report.ok:
            typer.echo(
                f"{report.what}: OK: manifest signed by {', '.join(report.signers)}; "
                f"{plural(report.members, 'member')} verified against it"
            )
        else:
            from mirrorkit.bundle import DAMAGED

            problems = plural(len(report.problems), "problem")
            err(f"{report.what}: {problems}: do not import this bundle")
            # The signature's own hint names --keyring; member problems share DAMAGED's.
            hints = dict.fromkeys(p.hint for p in report.problems if p.hint) or {DAMAGED: 0}
            for hint in hints:
                err(f"hint: {hint}")
    if not report.ok:
        raise typer.Exit(1)


@bundle_app.command("import")
def bundle_import(
    file: Path = BUNDLE_FILE,
    keyring: Path = BUNDLE_KEYRING,
    json_out: bool = JSON,
) -> None:
    """Verify a bundle, then add its snapshots to the store.

    The signature is checked first, every member as it streams in; its channel pins are
    applied last. FILE is the bundle, or the first part or the index of a split one."""
    with user_errors():
        result = api.bundle_import(
            file, keyring=keyring, wait=G.wait, store=G.store, reporter=TqdmReporter()
        )
    if json_out:
        emit_json(
            {
                "bundle": result.what,
                "signers": list(result.signers),
                "added": list(result.added),
                "present": list(result.present),
                "channels": [
                    {
                        "name": c.name,
                        "old": c.old,
                        "new": c.new,
                        "applied": c.applied,
                        "reason": c.reason or None,
                    }
                    for c in result.channels
                ],
                "pool_added": result.pool_added,
                "pool_present": result.pool_present,
                "compressed_bytes": result.bytes,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    for name in result.added:
        typer.echo(f"imported snapshot {name}")
    for name in result.present:
        typer.echo(f"snapshot {name} was here already (same digest)")
    for move in result.channels:
        if move.applied:
            typer.echo(f"channel {move.name} -> {move.new}")
        elif move.old == move.new:
            typer.echo(f"channel {move.name} -> {move.new} (unchanged)")
        else:
            err(f"channel {move.name} not moved to {move.new}: {move.reason}")
    info(
        f"signed by {', '.join(result.signers)}; {plural(result.pool_added, 'pool object')} "
        f"added, {result.pool_present} were here already; {mb(result.bytes)} read in "
        f"{result.seconds:.1f} s"
    )
