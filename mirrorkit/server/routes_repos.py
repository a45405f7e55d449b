"""``/api/repos``: aptly's local repos over mirrorkit's repos (a head over a chain of
immutable snapshots: every change through the API is a new snapshot in the repo's history)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from mirrorkit import api
from mirrorkit.server.app import (
    Server,
    body,
    change,
    endpoint,
    field_of,
    json_response,
    not_implemented,
    read,
    required,
    str_list,
)
from mirrorkit.server.batch import AddRequest
from mirrorkit.server.listing import packages_answer
from mirrorkit.server.tasks import HTTPError, Output
from mirrorkit.server.uploads import BINARY, SIGNATURES, SOURCE_PARTS

if TYPE_CHECKING:
    from mirrorkit.models import Package
    from mirrorkit.repo import Repo


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def repo_json(r: Repo) -> dict[str, Any]:
    return {
        "Name": r.name,
        "Comment": r.comment,
        "DefaultDistribution": r.distribution,
        "DefaultComponent": r.component,
    }


def _load(server: Server, name: str) -> Repo:
    return api.repo_show(name, store=server.store).repo


@endpoint("read")
async def repos_list(request: Request) -> Response:
    server = _server(request)
    repos = await read(lambda: api.repo_list(store=server.store))
    return json_response([repo_json(r) for r in repos])


@endpoint("read")
async def repo_show(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    return json_response(repo_json(await read(lambda: _load(server, name))))


@endpoint("publish")
async def repo_create(request: Request) -> Response:
    server = _server(request)
    data = await body(request)
    name = required(data, "Name")
    source = field_of(data, "FromSnapshot", str, "")
    if source:
        await read(lambda: api.snapshot_show(source, store=server.store))

    def work(out: Output) -> tuple[int, Any]:
        made = api.repo_create(
            name,
            component=field_of(data, "DefaultComponent", str, "") or "main",
            distribution=field_of(data, "DefaultDistribution", str, "") or None,
            comment=field_of(data, "Comment", str, "") or None,
            store=server.store,
        )
        if source:
            made = api.repo_copy(source, name, "Name", store=server.store).repo
        return 201, repo_json(made)

    return await change(request, f"Create repo {name}", [f"repo:{name}"], work)


@endpoint("publish")
async def repo_edit(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    data = await body(request)
    r = await read(lambda: _load(server, name))
    asked = {
        "Name": data.get("Name"),
        "Comment": data.get("Comment"),
        "DefaultDistribution": data.get("DefaultDistribution"),
        "DefaultComponent": data.get("DefaultComponent"),
    }
    now = repo_json(r)
    changed = [k for k, v in asked.items() if v is not None and v != now[k]]
    if changed:
        raise HTTPError(
            501,
            f"editing a repo's {', '.join(changed)} is not implemented by mirrorkit",
            "a repo's name, component and distribution are fixed when it is created",
        )
    return json_response(now)


@endpoint("admin")
async def repo_drop(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    await read(lambda: _load(server, name))

    def work(out: Output) -> tuple[int, Any]:
        api.repo_rm(name, store=server.store)
        return 200, {}

    return await change(request, f"Delete repo {name}", [f"repo:{name}"], work)


@endpoint("read")
async def repo_packages(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    await read(lambda: _load(server, name))

    def all_of() -> tuple[Package, ...]:
        return api.repo_show(name, packages=True, store=server.store).packages

    def search(q: str, with_deps: bool) -> tuple[Package, ...]:
        if not with_deps:
            return api.repo_search(name, q, store=server.store)
        head = api.repo_show(name, store=server.store).head
        if head is None:
            return ()
        return api.snapshot_search(head.name, q, with_deps=True, store=server.store)

    return await packages_answer(request, all_of, search)


def _query(packages: list[Package]) -> str:
    return " | ".join(sorted({p.ref for p in packages}))


@endpoint("upload")
async def repo_packages_add(request: Request) -> Response:
    """``PackageRefs`` (aptly keys of packages anywhere in the store) into the repo."""
    server, name = _server(request), str(request.path_params["name"])
    data = await body(request)
    keys = str_list(data, "PackageRefs")
    await read(lambda: _load(server, name))

    def work(out: Output) -> tuple[int, Any]:
        by_source: dict[str, list[Package]] = {}
        for key in keys:
            hit = server.keys.find(key)
            if hit is None:
                raise HTTPError(404, f"packages {key}: key not found")
            by_source.setdefault(hit[1], []).append(hit[0])
        r = _load(server, name)
        for source, pkgs in by_source.items():
            r = api.repo_copy(source, name, _query(pkgs), store=server.store).repo
            out.say(f"Added: {', '.join(p.ref for p in pkgs)}")
        return 200, repo_json(r)

    return await change(request, f"Add packages to repo {name}", [f"repo:{name}"], work)


@endpoint("upload")
async def repo_packages_delete(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    data = await body(request)
    keys = set(str_list(data, "PackageRefs"))
    await read(lambda: _load(server, name))

    def work(out: Output) -> tuple[int, Any]:
        held = api.repo_show(name, packages=True, store=server.store).packages
        gone = [p for p, k in zip(held, server.keys.keys_of(held), strict=True) if k in keys]
        if not gone:
            return 200, repo_json(_load(server, name))
        done = api.repo_remove(name, _query(gone), store=server.store)
        out.say(f"Removed: {', '.join(p.ref for p in done.removed)}")
        return 200, repo_json(done.repo)

    return await change(request, f"Delete packages from repo {name}", [f"repo:{name}"], work)


_TAKEN = (*BINARY, ".dsc", *SOURCE_PARTS, *SIGNATURES)  # what an add consumes from the dir
_ADDED = (".deb", ".udeb")  # what mirrorkit's repo add takes


@endpoint("upload")
async def repo_add_files(request: Request) -> Response:
    """``POST /api/repos/:name/file/:dir[/:file]``: add an upload directory (or one file of
    it); ``noRemove=1`` keeps the uploaded files, ``forceReplace=1`` replaces another build of
    the same name, version and architecture. All or nothing: a bad file fails the request
    and the repo is unchanged (aptly adds the good ones and lists the rest in FailedFiles)."""
    server, name = _server(request), str(request.path_params["name"])
    directory = str(request.path_params["dir"])
    file = request.path_params.get("file")
    no_remove = request.query_params.get("noRemove") == "1"
    force = request.query_params.get("forceReplace") == "1"
    root = server.uploads.path(directory)
    target = root if file is None else root / str(file)
    if file is not None and ("/" in str(file) or str(file) in ("", ".", "..")):
        raise HTTPError(400, "wrong file")
    await read(lambda: _load(server, name))
    if not target.exists():
        raise HTTPError(
            404, f"upload {directory}{'' if file is None else '/' + str(file)} not found"
        )

    if file is not None:
        files = [target]
    else:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(_ADDED))
    if not files:
        raise HTTPError(400, f"no package files (.deb, .udeb) in upload {directory}")

    def after() -> None:
        """What aptly does after an add unless noRemove=1: the files taken go, and the
        directory if that left it empty."""
        if no_remove:
            return
        taken = [target] if file is not None else sorted(root.iterdir())
        for path in taken:
            if path.is_file() and path.name.endswith(_TAKEN):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            root.rmdir()

    request_ = AddRequest(name, tuple(files), force, after)

    return await change(
        request,
        f"Add packages from dir {directory} to repo {name}",
        [f"repo:{name}", f"files:{directory}"],
        _batched,
        batch=(("repo-add", name, str(force)), server.add_runner, request_),
    )


def _batched(out: Output) -> tuple[int, Any]:
    raise AssertionError("an add task runs through the server's add runner")


@endpoint("publish")
async def snapshot_from_repo(request: Request) -> Response:
    server, name = _server(request), str(request.path_params["name"])
    data = await body(request)
    snap = required(data, "Name")
    await read(lambda: _load(server, name))

    def work(out: Output) -> tuple[int, Any]:
        from mirrorkit.server import aptly

        info = api.snapshot_create(snap, from_repo=name, store=server.store)
        return 201, aptly.snapshot_json(info)

    return await change(
        request, f"Create snapshot of repo {name}", [f"repo:{name}", f"snapshot:{snap}"], work
    )


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/repos", repos_list),
    ("POST", "/api/repos", repo_create),
    ("GET", "/api/repos/{name}", repo_show),
    ("PUT", "/api/repos/{name}", repo_edit),
    ("DELETE", "/api/repos/{name}", repo_drop),
    ("GET", "/api/repos/{name}/packages", repo_packages),
    ("POST", "/api/repos/{name}/packages", repo_packages_add),
    ("DELETE", "/api/repos/{name}/packages", repo_packages_delete),
    ("POST", "/api/repos/{name}/file/{dir}", repo_add_files),
    ("POST", "/api/repos/{name}/file/{dir}/{file}", repo_add_files),
    ("POST", "/api/repos/{name}/include/{dir}", not_implemented("including .changes files")),
    ("POST", "/api/repos/{name}/include/{dir}/{file}", not_implemented("including .changes")),
    ("POST", "/api/repos/{name}/copy/{src}/{file}", not_implemented("repo copy over the API")),
    ("POST", "/api/repos/{name}/snapshots", snapshot_from_repo),
]
