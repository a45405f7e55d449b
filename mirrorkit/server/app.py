"""The ASGI application: configuration, authentication, errors, and how a route runs its work
(reads on the thread pool, changes as tasks)."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mirrorkit.apiusers import ApiUser, Authenticator, parse_authorization, role_allows
from mirrorkit.errors import MirrorkitError
from mirrorkit.server import aptly, batch
from mirrorkit.server.keys import KeyIndex, SnapshotCache
from mirrorkit.server.tasks import (
    BatchRunner,
    HTTPError,
    Output,
    TaskList,
    error_text,
    http_status,
)
from mirrorkit.server.uploads import Uploads

if TYPE_CHECKING:
    from mirrorkit.repo import Change

log = logging.getLogger("mirrorkit.server")
STORE_LOCK = "store"
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServerConfig:
    store: Path
    users: Path
    no_auth: bool = False
    public_dir: Path | None = None  # the default storage ("" in aptly's prefixes)
    fs_endpoints: dict[str, Path] = field(default_factory=dict)
    s3_endpoints: dict[str, str] = field(default_factory=dict)  # NAME -> s3://BUCKET/PREFIX
    s3_endpoint_url: str | None = None
    key: str | None = None
    gnupghome: str | None = None
    max_upload: int = 1 << 30
    workers: int = 8
    anonymous_version: bool = True

    @property
    def upload_root(self) -> Path:
        return self.store / "api" / "upload"

    @property
    def default_public(self) -> Path:
        return self.public_dir if self.public_dir is not None else self.store / "api" / "public"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server:
    """What the routes share: the configuration, the task list, the uploads, caches."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.tasks = TaskList(config.workers)
        self.uploads = Uploads(config.upload_root, config.max_upload)
        self.auth = Authenticator(config.users)
        self.checksums = aptly.Checksums(self._pool_path)
        self.keys = KeyIndex(str(config.store), self.checksums)
        self.snapshots = SnapshotCache(str(config.store))
        self.add_runner = batch.runner(self._commit_add, _add_report)

    def _commit_add(self, repo: str, files: list[Path], force: bool) -> Change:
        from mirrorkit import api

        return api.repo_add(repo, files, force_replace=force, store=self.store)

    def _pool_path(self, sha256: str) -> Path:
        return self.config.store / "pool" / sha256[:2] / sha256

    @property
    def store(self) -> str:
        return str(self.config.store)


def _add_report(share: batch.Share) -> tuple[int, Any]:
    """aptly's answer to an add: ``{"FailedFiles": [], "Report": {...}}``."""
    added = [f"{p.ref} added" for p in (*share.added, *share.unchanged)]
    conflict = "removed due to conflict with package being added"
    removed = [f"{p.ref} {conflict}" for p in share.removed]
    return 200, {"FailedFiles": [], "Report": {"Warnings": [], "Added": added, "Removed": removed}}


# --- running work ----------------------------------------------------------------------------


def truthy(value: str | None) -> bool:
    """aptly's ``truthy`` of a query parameter."""
    if value is None:
        return False
    return value.strip().lower() not in ("n", "no", "f", "false", "0", "off")


async def read(fn: Callable[[], _T]) -> _T:
    """A read on the thread pool (the API's functions block)."""
    return await anyio.to_thread.run_sync(fn)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
        status,
        media_type="application/json; charset=utf-8",
    )


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def change(
    request: Request,
    name: str,
    resources: list[str],
    work: Callable[[Output], tuple[int, Any]],
    *,
    batch: tuple[tuple[str, ...], BatchRunner, Any] | None = None,
) -> Response:
    """Run a change as a task: ``_async=true`` answers 202 with the task at once; otherwise
    the answer is the task's result (the task keeps running if the client goes away)."""
    server: Server = request.app.state.server
    background = truthy(request.query_params.get("_async"))
    # The store's lock is store-wide today (one change at a time, failing at once if taken):
    # the server queues its own changes on it rather than answering 409 to a concurrent one.
    resources = [*resources, STORE_LOCK]
    task = server.tasks.submit(name, resources, work, keep=background, batch=batch)
    if background:
        return json_response(task.json(), 202)
    await server.tasks.wait(task)
    if task.error is not None:
        return error_response(task.code, task.error)
    return json_response(task.value, task.code)


Handler = Callable[[Request], Awaitable[Response]]


def not_implemented(what: str) -> Handler:
    """An endpoint of aptly's that mirrorkit does not serve: 501, saying so."""

    @endpoint("read")
    async def answer(request: Request) -> Response:
        return error_response(501, f"{what} is not implemented by mirrorkit (see docs/rest-api.md)")

    return answer


def endpoint(role: str) -> Callable[[Handler], Handler]:
    """A route that needs ``role`` (the user was authenticated by :class:`Authentication`),
    answering MirrorkitError as aptly answers errors: ``{"error": "..."}``."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def call(request: Request) -> Response:
            user: ApiUser | None = request.scope.get("mirrorkit.user")
            if user is not None and not role_allows(user.role, role):
                log.warning(
                    "403 %s %s: user %s has role %s, needs %s",
                    request.method,
                    request.url.path,
                    user.name,
                    user.role,
                    role,
                )
                return error_response(
                    403, f"user {user.name} (role {user.role}) may not do this: needs {role}"
                )
            try:
                return await handler(request)
            except MirrorkitError as exc:
                return error_response(http_status(exc), error_text(exc))
            except ClientDisconnect:
                # Gone before its request was read: nothing was started for it.
                log.info("%s %s: the client went away", request.method, request.url.path)
                return error_response(400, "the client went away")

        call.role = role  # type: ignore[attr-defined]
        return call

    return wrap


def body_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise HTTPError(400, "the JSON body must be an object")
    return data


async def body(request: Request) -> dict[str, Any]:
    return body_json(await request.body())


def field_of(data: dict[str, Any], name: str, kind: type[_T], default: _T) -> _T:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise HTTPError(400, f"field {name} must be a {kind.__name__}")
    return value


def required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise HTTPError(
            400, f"Key: '{name}' Error:Field validation for '{name}' failed on the 'required' tag"
        )
    return value


def str_list(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPError(400, f"field {name} must be a list of strings")
    return value


# --- authentication ------------------------------------------------------------------------------


class Authentication:
    """Every request but ``/api/version`` (unless configured otherwise) must carry valid
    credentials; a wrong or missing one is 401, logged without the secret."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.server.config.no_auth:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/api/version" and self.server.config.anonymous_version:
            await self.app(scope, receive, send)
            return
        header = ""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                header = value.decode("latin-1")
        creds = parse_authorization(header) if header else None
        user = None
        reason = "no credentials"
        if creds is not None:
            name, secret = creds
            user = await anyio.to_thread.run_sync(self.server.auth.check, name, secret)
            reason = f"wrong credentials for user {name!r}"
        elif header:
            reason = "unreadable Authorization header"
        if user is None:
            client = scope.get("client") or ("?", 0)
            log.warning("401 %s %s from %s: %s", scope.get("method"), path, client[0], reason)
            response = error_response(401, "authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="mirrorkit"'
            await response(scope, receive, send)
            return
        scope["mirrorkit.user"] = user
        await self.app(scope, receive, send)
