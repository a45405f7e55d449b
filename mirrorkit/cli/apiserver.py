"""api serve, api user add/list/rm: the REST API server and who may use it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mirrorkit import api
from mirrorkit.cli import signals
from mirrorkit.cli.common import G, app, emit_json, err, user_errors

api_app = typer.Typer(help="aptly's REST API, with authentication.", no_args_is_help=True)
user_app = typer.Typer(help="Who may use the REST API.", no_args_is_help=True)
app.add_typer(api_app, name="api")
api_app.add_typer(user_app, name="user")

USERS = typer.Option(
    None, "--users", metavar="FILE", help="The users file [default: STORE/api/users]."
)


@api_app.command("serve")
def api_serve(
    listen: str = typer.Option(
        "127.0.0.1:8080",
        "--listen",
        metavar="HOST:PORT",
        help="Address to listen on (port 0: any).",
    ),
    users: Path | None = USERS,
    fs_endpoint: list[str] = typer.Option(
        [],
        "--fs-endpoint",
        metavar="NAME=DIR",
        help="A directory that publish prefixes 'filesystem:NAME:...' address; repeatable.",
    ),
    s3_endpoint: list[str] = typer.Option(
        [],
        "--s3-endpoint",
        metavar="NAME=s3://BUCKET/PREFIX",
        help="An S3 prefix that publish prefixes 's3:NAME:...' address; repeatable.",
    ),
    s3_endpoint_url: str | None = typer.Option(
        None,
        "--s3-endpoint-url",
        metavar="URL",
        help="The S3 service of --s3-endpoint [default: AWS].",
    ),
    public_dir: Path | None = typer.Option(
        None,
        "--public-dir",
        metavar="DIR",
        help="Where publish prefixes without a storage go [default: STORE/api/public].",
    ),
    key: str | None = typer.Option(
        None, "--key", metavar="KEYID", help="Signing key of publishes whose request names none."
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", metavar="FILE", help="TLS certificate (PEM)."
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", metavar="FILE", help="TLS private key (PEM)."
    ),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve anyone (refused unless listening on loopback)."
    ),
    auth_version: bool = typer.Option(
        False, "--auth-version", help="Require credentials for GET /api/version too."
    ),
    max_upload: int = typer.Option(
        1 << 30, "--max-upload", metavar="BYTES", min=1, help="Largest upload request."
    ),
    workers: int = typer.Option(8, "--workers", min=1, metavar="N", help="Changes run at once."),
) -> None:
    """Serve aptly's REST API (docs/rest-api.md) over the store until Ctrl-C or SIGTERM.

    Every request but GET /api/version needs a user of the users file (HTTP basic auth, or a
    bearer token); 'mirrorkit api user add' makes them."""
    import logging

    from mirrorkit import server  # a long-running server, not an API call

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("mirrorkit.server")
    log.addHandler(handler)
    log.setLevel(logging.WARNING if G.quiet else logging.INFO)

    def ready(url: str) -> None:
        typer.echo(f"serving aptly's REST API at {url} (Ctrl-C to stop)")
        sys.stdout.flush()

    try:
        with user_errors(), signals.interruptible():
            server.serve(
                listen=listen,
                users=users,
                no_auth=no_auth,
                fs_endpoint=fs_endpoint,
                s3_endpoint=s3_endpoint,
                s3_endpoint_url=s3_endpoint_url,
                public_dir=public_dir,
                key=key,
                tls_cert=tls_cert,
                tls_key=tls_key,
                max_upload=max_upload,
                workers=workers,
                auth_version=auth_version,
                store=G.store,
                gnupghome=G.gnupghome,
                on_ready=ready,
            )
    except KeyboardInterrupt:
        signals.handled()  # Ctrl-C (or SIGTERM from a service manager) is how a server stops


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., metavar="NAME"),
    role: str = typer.Option(..., "--role", metavar="ROLE", help="read, upload, publish or admin."),
    users: Path | None = USERS,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin instead of making one."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Add a user; prints the secret and bearer token once (only a hash is stored)."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    with user_errors():
        new = api.api_user_add(name, role=role, password=password, users=users, store=G.store)
    if json_out:
        emit_json(
            {
                "name": new.user.name,
                "role": new.user.role,
                "users_file": new.users_file,
                **({} if password_stdin else {"secret": new.secret}),
                "token": new.token,
            }
        )
        return
    typer.echo(f"added {new.user.name} ({new.user.role}) to {new.users_file}")
    if not password_stdin:
        typer.echo(f"password: {new.secret}")
    typer.echo(f"bearer token: {new.token}")
    err("the secret is shown only now: keep it somewhere safe.")


@user_app.command("list")
def user_list(
    users: Path | None = USERS,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The users and their roles."""
    with user_errors():
        found = api.api_user_list(users=users, store=G.store)
    if json_out:
        emit_json([{"name": u.name, "role": u.role} for u in found])
        return
    for u in found:
        typer.echo(f"{u.name}\t{u.role}")


@user_app.command("rm")
def user_rm(name: str = typer.Argument(..., metavar="NAME"), users: Path | None = USERS) -> None:
    """Remove a user (a running server refuses it at once)."""
    with user_errors():
        gone = api.api_user_rm(name, users=users, store=G.store)
    typer.echo(f"removed {gone.name}")
