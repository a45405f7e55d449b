"""The REST API: aptly's API (``docs/rest-api.md``) served over the store, with
authentication built in.

Starlette routes (``routes``, ``routes_publish``, ``routes_repos``) parse a request, call
:mod:`mirrorkit.api` and render aptly's JSON (``aptly``); reads run on a thread pool, changes
as tasks (``tasks``); ``users`` holds the users file and checks credentials, ``uploads`` the
upload directories. uvicorn serves it. Imports point one way: server -> api.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.api._support import StrPath, open_store
from mirrorkit.api.server import users_file as api_users_file
from mirrorkit.errors import UsageError
from mirrorkit.server.app import Authentication, Server, ServerConfig, error_response, is_loopback

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ServerConfig", "is_loopback", "make_app", "run", "serve"]


def make_app(config: ServerConfig) -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute, Route

    from mirrorkit.server import routes

    server = Server(config)
    table: list[BaseRoute] = [
        Route(path, handler, methods=[method]) for method, path, handler in routes.table()
    ]
    app = Starlette(routes=table)
    app.state.server = server

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no such endpoint: {request.method} {request.url.path}")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    app.add_middleware(Authentication, server=server)
    return app


def run(
    config: ServerConfig,
    host: str,
    port: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; running tasks finish first. ``on_ready`` is told the URL
    once the socket listens (port 0: a free port)."""
    import uvicorn

    app = make_app(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A response goes out as two writes (head, body): without NODELAY, Nagle holds the body
    # until the client's delayed ACK, 40 ms per request on a keep-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "pick another --listen address or port (0: any free port).",
        ) from exc
    sock.set_inheritable(True)
    uv = uvicorn.Config(
        app,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_config=None,
        access_log=False,
        lifespan="off",
        # Behind a reverse proxy on this host, the client's address and scheme are its.
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )
    server = uvicorn.Server(uv)
    if on_ready is not None:
        scheme = "https" if tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        on_ready(f"{scheme}://{shown}:{sock.getsockname()[1]}")
    try:
        server.run(sockets=[sock])
    finally:
        app.state.server.tasks.shutdown()
        sock.close()


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", listen
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"invalid --listen {listen!r}", "use HOST:PORT, e.g. 127.0.0.1:8080.")
    return host, int(port)


def _endpoints(items: Mapping[str, str] | Sequence[str], what: str) -> dict[str, str]:
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"invalid {what} {item!r}", f"use {what} NAME=LOCATION.")
        out[name] = value
    return out


def serve(
    *,
    listen: str = "127.0.0.1:8080",
    users: StrPath | None = None,
    no_auth: bool = False,
    fs_endpoint: Mapping[str, str] | Sequence[str] = (),
    s3_endpoint: Mapping[str, str] | Sequence[str] = (),
    s3_endpoint_url: str | None = None,
    public_dir: StrPath | None = None,
    key: str | None = None,
    tls_cert: StrPath | None = None,
    tls_key: StrPath | None = None,
    max_upload: int = 1 << 30,
    workers: int = 8,
    auth_version: bool = False,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve aptly's REST API over the store until SIGINT/SIGTERM (blocks). Every request but
    ``GET /api/version`` (all of them with ``auth_version``) needs a user of the ``users``
    file; ``no_auth`` serves anyone, and only on a loopback address."""
    host, port = parse_listen(listen)
    if no_auth and not is_loopback(host):
        raise UsageError(
            f"--no-auth on {host}: anonymous access is only allowed on a loopback address",
            "listen on 127.0.0.1 (or ::1), or give users with 'mirrorkit api user add'.",
        )
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if workers < 1 or max_upload < 1:
        raise UsageError("--workers and --max-upload must be positive")
    st = open_store(store)
    fs = {n: Path(p).resolve() for n, p in _endpoints(fs_endpoint, "--fs-endpoint").items()}
    s3 = _endpoints(s3_endpoint, "--s3-endpoint")
    for name, url in s3.items():
        if not url.startswith("s3://"):
            raise UsageError(f"--s3-endpoint {name}={url}: not an s3:// URL")
    users_file = api_users_file(users, store)
    if not no_auth and not users_file.exists():
        raise UsageError(
            f"no users file {users_file}",
            "add a user first: 'mirrorkit api user add NAME --role admin' (or --no-auth on "
            "a loopback address).",
        )
    st.init()
    config = ServerConfig(
        store=st.root.resolve(),
        users=users_file,
        no_auth=no_auth,
        public_dir=Path(public_dir).resolve() if public_dir is not None else None,
        fs_endpoints=fs,
        s3_endpoints=s3,
        s3_endpoint_url=s3_endpoint_url,
        key=key,
        gnupghome=None if gnupghome is None else str(gnupghome),
        max_upload=max_upload,
        workers=workers,
        anonymous_version=not auth_version,
    )
    run(
        config,
        host,
        port,
        tls_cert=None if tls_cert is None else str(tls_cert),
        tls_key=None if tls_key is None else str(tls_key),
        on_ready=on_ready,
    )
