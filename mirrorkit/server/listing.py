"""Package lists as aptly answers them (``showPackages``): keys, or with ``format=details``
every field; ``q=`` a query, ``withDeps=1`` with what the matches depend on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mirrorkit.models import Package
from mirrorkit.server import aptly
from mirrorkit.server.app import Server, json_response, read
from mirrorkit.server.tasks import HTTPError


def render_packages(
    server: Server, packages: tuple[Package, ...] | list[Package], details: bool
) -> Any:
    """aptly's package list: keys, or with ``format=details`` each package's fields."""
    if details:
        return [aptly.package_json(p, server.checksums) for p in packages]
    return sorted(aptly.package_key(p, server.checksums) for p in packages)


async def packages_answer(
    request: Request,
    all_of: Callable[[], tuple[Package, ...]],
    search: Callable[[str, bool], tuple[Package, ...]],
) -> Response:
    """``?q=QUERY&withDeps=1&format=details`` over a package list (aptly's showPackages)."""
    server = request.app.state.server
    q = request.query_params.get("q", "")
    with_deps = request.query_params.get("withDeps") == "1"
    details = request.query_params.get("format") == "details"
    if request.query_params.get("maximumVersion") == "1":
        raise HTTPError(501, "maximumVersion=1 is not implemented by mirrorkit")

    def work() -> Any:
        found = search(q, with_deps) if q else all_of()
        return render_packages(server, found, details)

    return json_response(await read(work))
