"""``/api/repos``: aptly's local repos over mirrorkit's repos (issue 16)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from mirrorkit.server.app import not_implemented
from mirrorkit.server.tasks import HTTPError

if TYPE_CHECKING:
    from mirrorkit.server.app import Server


async def publish_repo(
    request: Request, storage: str, prefix: str, data: dict[str, Any]
) -> Response:
    raise HTTPError(501, "publishing local repos (SourceKind local) is not implemented yet")


def source_of(server: Server, snapshot: str) -> str:
    """What a published suite is published from again on an update without Snapshots."""
    return snapshot


def _not_yet(what: str) -> Any:
    return not_implemented(what)


ROUTES: list[tuple[str, str, Any]] = [
    (method, path, _not_yet("local repos"))
    for method, path in [
        ("GET", "/api/repos"),
        ("POST", "/api/repos"),
        ("GET", "/api/repos/{name}"),
        ("PUT", "/api/repos/{name}"),
        ("DELETE", "/api/repos/{name}"),
        ("GET", "/api/repos/{name}/packages"),
        ("POST", "/api/repos/{name}/packages"),
        ("DELETE", "/api/repos/{name}/packages"),
        ("POST", "/api/repos/{name}/file/{dir}"),
        ("POST", "/api/repos/{name}/file/{dir}/{file}"),
        ("POST", "/api/repos/{name}/include/{dir}"),
        ("POST", "/api/repos/{name}/include/{dir}/{file}"),
        ("POST", "/api/repos/{name}/snapshots"),
    ]
]
