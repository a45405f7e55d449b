"""publish fs/s3, serve, bundle export/show/verify/import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mirrorkit import api
from mirrorkit.cli.common import (
    JSON,
    G,
    TqdmReporter,
    app,
    bundle_app,
    emit_json,
    err,
    field_line,
    info,
    mb,
    publish_app,
    user_errors,
)

if TYPE_CHECKING:
    from mirrorkit.publish import Published

app.add_typer(bundle_app, name="bundle")


def print_published(pub: Published) -> None:
    from mirrorkit.publish.fs import PublishResult

    r = pub.result
    if isinstance(r, PublishResult):
        done = f"{r.linked} pool files linked, {r.reused} already there"
        removed = f"{r.removed} pool files" if r.removed else ""
    else:
        if r.broken_lock is not None:
            info(f"removed the lock of {r.broken_lock.describe()} (--break-lock)")
        done = f"{len(r.uploaded)} objects uploaded, {r.reused} already there"
        removed = f"{len(r.removed)} objects" if r.removed else ""
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


KEY = typer.Option(
    None,
    "--key",
    metavar="KEYID",
    help="Signing key (id, fingerprint, uid); default: the only secret key in the GnuPG home.",
)


@publish_app.command("fs")
def publish_fs(
    name: str = typer.Argument(..., metavar="SNAPSHOT_OR_CHANNEL"),
    directory: Path = typer.Argument(..., metavar="DIR"),
    suite: str | None = typer.Option(None, "--suite", help="Suite name [the snapshot's name]."),
    key: str | None = KEY,
    origin: str | None = typer.Option(None, "--origin", help="Release Origin field."),
    label: str | None = typer.Option(None, "--label", help="Release Label field."),
    valid_for: str | None = typer.Option(
        None, "--valid-for", help="Set Valid-Until this far ahead, e.g. 14d."
    ),
    json_out: bool = JSON,
) -> None:
    """Publish a snapshot as a signed APT tree in DIR (suite switched atomically)."""
    with user_errors():
        pub = api.publish_fs(
            name,
            directory,
            key=key,
            suite=suite,
            origin=origin,
            label=label,
            valid_for=valid_for,
            store=G.store,
            gnupghome=G.gnupghome,
        )
    _render_published(pub, json_out)


@publish_app.command("s3")
def publish_s3(
    name: str = typer.Argument(..., metavar="SNAPSHOT_OR_CHANNEL"),
    url: str = typer.Argument(..., metavar="s3://BUCKET/PREFIX"),
    # No square brackets in these helps: rich would take them for markup.
    suite: str | None = typer.Option(
        None, "--suite", help="Suite name (default: the snapshot's or channel's name)."
    ),
    key: str | None = KEY,
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="S3-compatible server, e.g. http://minio:9000 (default: AWS)."
    ),
    region: str | None = typer.Option(
        None, "--region", help="Region (default: from the AWS configuration)."
    ),
    jobs: int = typer.Option(8, "--jobs", "-j", help="Concurrent uploads."),
    prune: bool = typer.Option(
        False, "--prune", help="Then delete the pool objects mirrorkit placed that no suite lists."
    ),
    break_lock: bool = typer.Option(
        False, "--break-lock", help="Remove a stale lock a killed publish left behind."
    ),
    origin: str | None = typer.Option(None, "--origin", help="Release Origin field."),
    label: str | None = typer.Option(None, "--label", help="Release Label field."),
    valid_for: str | None = typer.Option(
        None, "--valid-for", help="Set Valid-Until this far ahead, e.g. 14d."
    ),
    json_out: bool = JSON,
) -> None:
    """Publish a snapshot as a signed APT tree to S3 (InRelease last: never a half suite).

    Credentials come from the standard AWS chain (environment, ~/.aws, instance role)."""
    with user_errors():
        pub = api.publish_s3(
            name,
            url,
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
            store=G.store,
            gnupghome=G.gnupghome,
            reporter=TqdmReporter(),
        )
    _render_published(pub, json_out)


@app.command("serve")
def serve_cmd(
    directory: Path = typer.Argument(..., metavar="DIR"),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free port)."),
) -> None:
    """Serve a published tree over HTTP, for tests and small sites.

    GET/HEAD, Range, If-Modified-Since; never outside DIR, no directory listings. Not a
    replacement for nginx or Apache in production (no TLS, no access control)."""
    from mirrorkit import serve  # a long-running server, not an API call

    with user_errors():
        server = serve.make_server(directory, bind, port, log=None if G.quiet else err)
    typer.echo(f"serving {directory} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


BUNDLE_KEYRING = typer.Option(
    ..., "--keyring", metavar="FILE", help="Public key(s) of who may sign bundles (.gpg/.asc)."
)


@bundle_app.command("export")
def bundle_export(
    snapshots: list[str] = typer.Argument(..., metavar="SNAPSHOT..."),
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
        None, "--since", metavar="BASE", help="Incremental: only pool objects BASE lacks."
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
    """Write snapshots and the packages they need as one signed, verifiable bundle."""
    with user_errors():
        result = api.bundle_export(
            snapshots,
            output=output,
            key=key,
            channels=channels,
            since=since,
            split=split,
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
        + f": {len(m.pool)} pool objects, {mb(m.total_bytes)} -> "
        f"{mb(result.compressed_bytes)} in {result.seconds:.1f} s ({rate:.0f} MB/s), "
        f"signed by {result.signer}"
    )
    for part in result.files:
        typer.echo(str(part.path))
    if result.index is not None:
        typer.echo(str(result.index))


@bundle_app.command("show")
def bundle_show(
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path | None = typer.Option(
        None, "--keyring", help="Also check the manifest's signature against this keyring."
    ),
    json_out: bool = JSON,
) -> None:
    """What a bundle holds (snapshots, provenance, counts, sizes), from its manifest alone."""
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
        typer.echo(f"Snapshot: {s.name} ({s.packages} packages, created {s.created_at})")
        typer.echo(f"  digest: {s.digest}")
        for source in s.sources:
            typer.echo("  source:")
            for k, v in sorted(source.to_json().items()):
                typer.echo(field_line("    ", k, v))
        for i in s.indexes:
            typer.echo(f"  index: {i.component}/binary-{i.architecture} ({i.packages} packages)")
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
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path = BUNDLE_KEYRING,
    json_out: bool = JSON,
) -> None:
    """Check the signature, then every member's size and SHA256; exit 1 on any problem."""
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
                f"{report.members} members verified against it"
            )
        else:
            from mirrorkit.bundle import DAMAGED

            err(f"{report.what}: {len(report.problems)} problem(s): do not import this bundle")
            # The signature's own hint names --keyring; member problems share DAMAGED's.
            hints = dict.fromkeys(p.hint for p in report.problems if p.hint) or {DAMAGED: 0}
            for hint in hints:
                err(f"hint: {hint}")
    if not report.ok:
        raise typer.Exit(1)


@bundle_app.command("import")
def bundle_import(
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path = BUNDLE_KEYRING,
    json_out: bool = JSON,
) -> None:
    """Verify a bundle (signature first) and add its snapshots and channel pins to the store.

    FILE is the bundle, or the first part or the index of a split one."""
    with user_errors():
        result = api.bundle_import(file, keyring=keyring, store=G.store, reporter=TqdmReporter())
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
        f"signed by {', '.join(result.signers)}; {result.pool_added} pool objects added, "
        f"{result.pool_present} were here already; {mb(result.bytes)} read in "
        f"{result.seconds:.1f} s"
    )
