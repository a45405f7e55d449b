"""The routes of aptly's REST API that mirrorkit serves: version, files, tasks, packages,
snapshots, mirrors and the graph (publish: ``routes_publish``; local repos: ``routes_repos``).
Each parses the request, calls :mod:`mirrorkit.api` (reads on the thread pool, changes as
tasks) and renders aptly's JSON. What is not implemented answers 501 with a clear message
(``docs/rest-api.md`` lists it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mirrorkit import __version__, api
from mirrorkit.models import Package
from mirrorkit.server import aptly
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
from mirrorkit.server.listing import packages_answer
from mirrorkit.server.tasks import HTTPError, Output


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def _param(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


# --- status --------------------------------------------------------------------------------------


async def version(request: Request) -> Response:
    return json_response({"Version": __version__})


@endpoint("read")
async def healthy(request: Request) -> Response:
    return json_response({"Status": "Aptly is healthy"})


# --- files ---------------------------------------------------------------------------------------


@endpoint("read")
async def files_dirs(request: Request) -> Response:
    return json_response(await read(_server(request).uploads.list_dirs))


@endpoint("read")
async def files_list(request: Request) -> Response:
    uploads = _server(request).uploads
    directory = _param(request, "dir")
    return json_response(await read(lambda: uploads.list_files(directory)))


@endpoint("upload")
async def files_upload(request: Request) -> Response:
    uploads = _server(request).uploads
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > uploads.limit:
        raise HTTPError(
            413,
            f"upload larger than the limit of {uploads.limit} bytes",
            "nothing was stored; the server's --max-upload sets the limit",
        )
    stored = await uploads.receive_multipart(
        _param(request, "dir"), request.headers.get("content-type", ""), request.stream()
    )
    return json_response(stored)


@endpoint("upload")
async def files_upload_one(request: Request) -> Response:
    uploads = _server(request).uploads
    stored = await uploads.receive_one(
        _param(request, "dir"), _param(request, "file"), request.stream()
    )
    return json_response(stored)


@endpoint("upload")
async def files_delete_dir(request: Request) -> Response:
    uploads = _server(request).uploads
    directory = _param(request, "dir")
    await read(lambda: uploads.delete_dir(directory))
    return json_response({})


@endpoint("upload")
async def files_delete_file(request: Request) -> Response:
    uploads = _server(request).uploads
    directory, name = _param(request, "dir"), _param(request, "file")
    await read(lambda: uploads.delete_file(directory, name))
    return json_response({})


# --- tasks ---------------------------------------------------------------------------------------


def _task_id(request: Request) -> int:
    text = _param(request, "id")
    try:
        return int(text)
    except ValueError:
        raise HTTPError(500, f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


@endpoint("read")
async def tasks_list(request: Request) -> Response:
    return json_response([t.json() for t in _server(request).tasks.all()])


@endpoint("read")
async def task_show(request: Request) -> Response:
    return json_response(_server(request).tasks.get(_task_id(request)).json())


@endpoint("read")
async def task_wait(request: Request) -> Response:
    tasks = _server(request).tasks
    try:
        task = tasks.get(_task_id(request))
    except HTTPError as exc:
        raise HTTPError(400, exc.message) from None
    await tasks.wait(task)
    return json_response(task.json())


@endpoint("read")
async def task_output(request: Request) -> Response:
    return json_response(_server(request).tasks.get(_task_id(request)).output.text())


@endpoint("read")
async def task_detail(request: Request) -> Response:
    _server(request).tasks.get(_task_id(request))
    return json_response({})


@endpoint("read")
async def task_return_value(request: Request) -> Response:
    task = _server(request).tasks.get(_task_id(request))
    if not task.finished:
        return json_response(None)
    return json_response({"Code": task.code, "Value": task.value})


@endpoint("upload")
async def task_delete(request: Request) -> Response:
    return json_response(_server(request).tasks.delete(_task_id(request)).json())


@endpoint("read")
async def tasks_wait(request: Request) -> Response:
    await _server(request).tasks.wait_all()
    return json_response({})


@endpoint("upload")
async def tasks_clear(request: Request) -> Response:
    _server(request).tasks.clear()
    return json_response({})


# --- packages ------------------------------------------------------------------------------------


@endpoint("read")
async def package_show(request: Request) -> Response:
    server = _server(request)
    key = _param(request, "key")
    hit = await read(lambda: server.keys.find(key))
    if hit is None:
        raise HTTPError(404, f"key not found: {key}")
    return json_response(aptly.package_json(hit[0], server.checksums))


# --- snapshots -----------------------------------------------------------------------------------


@endpoint("read")
async def snapshots_list(request: Request) -> Response:
    server = _server(request)
    order = request.query_params.get("sort") or "name"
    if order not in ("name", "time"):
        raise HTTPError(400, f"unknown sort method {order!r}: use name or time")
    listed = await read(server.snapshots.current)
    infos = sorted(
        (i for i in listed if not aptly.is_repo_history(i)),
        key=(lambda i: (i.created_at, i.name)) if order == "time" else (lambda i: i.name),
    )
    return json_response([aptly.snapshot_json(i) for i in infos])


@endpoint("read")
async def snapshot_show(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    details = await read(lambda: api.snapshot_show(name, store=server.store))
    return json_response(aptly.snapshot_json(details.snapshot))


@endpoint("read")
async def snapshot_packages(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")

    def all_of() -> tuple[Package, ...]:
        return api.snapshot_show(name, packages=True, store=server.store).packages

    def search(q: str, with_deps: bool) -> tuple[Package, ...]:
        return api.snapshot_search(name, q, with_deps=with_deps, store=server.store)

    return await packages_answer(request, all_of, search)


@endpoint("read")
async def snapshot_diff(request: Request) -> Response:
    server = _server(request)
    a, b = _param(request, "name"), _param(request, "other")
    only_matching = request.query_params.get("onlyMatching") == "1"

    def work() -> list[dict[str, str | None]]:
        diff = api.snapshot_diff(a, b, store=server.store)
        left = api.snapshot_show(a, packages=True, store=server.store).packages
        right = api.snapshot_show(b, packages=True, store=server.store).packages

        def key(pkgs: tuple[Package, ...], name: str, arch: str, version: str | None) -> str | None:
            if version is None:
                return None
            p = next(
                (p for p in pkgs if (p.name, p.architecture, p.version) == (name, arch, version)),
                None,
            )
            return None if p is None else aptly.package_key(p, server.checksums)

        out = []
        for c in diff.changes:
            entry = {
                "Left": key(left, c.name, c.architecture, c.old),
                "Right": key(right, c.name, c.architecture, c.new),
            }
            if only_matching and (entry["Left"] is None or entry["Right"] is None):
                continue
            out.append(entry)
        return out

    return json_response(await read(work))


def _created(info_json: dict[str, Any]) -> tuple[int, Any]:
    return 201, info_json


@endpoint("publish")
async def snapshot_from_mirror(request: Request) -> Response:
    server, mirror = _server(request), _param(request, "name")
    data = await body(request)
    name = required(data, "Name")
    await read(lambda: api.mirror_show(mirror, store=server.store))  # 404 before the task

    def work(out: Output) -> tuple[int, Any]:
        info = api.snapshot_create(name, from_mirror=mirror, store=server.store)
        return _created(aptly.snapshot_json(info))

    return await change(
        request,
        f"Create snapshot of mirror {mirror}",
        [f"mirror:{mirror}", f"snapshot:{name}"],
        work,
    )


@endpoint("publish")
async def snapshot_create(request: Request) -> Response:
    """``POST /api/snapshots``: ``PackageRefs`` (aptly keys) taken from ``SourceSnapshots``:
    the new snapshot holds exactly the packages named (aptly 1.5's rule, which the clients
    rely on); without PackageRefs, the sources merged."""
    server = _server(request)
    data = await body(request)
    name = required(data, "Name")
    sources = str_list(data, "SourceSnapshots")
    refs = str_list(data, "PackageRefs")
    if not sources and not refs:
        raise HTTPError(501, "empty snapshots are not implemented by mirrorkit")
    for s in sources:
        await read(lambda s=s: api.snapshot_show(s, store=server.store))  # type: ignore[misc]

    def work(out: Output) -> tuple[int, Any]:
        if not refs:
            merged = api.snapshot_merge(name, sources, store=server.store)
            return _created(aptly.snapshot_json(merged.snapshot))
        chosen: list[tuple[Package, str]] = []
        for key in refs:
            hit = server.keys.find(key)
            if hit is None:
                raise HTTPError(404, f"package {key}: key not found")
            chosen.append(hit)
        # Take them from one source that holds them all: the first of SourceSnapshots that
        # does, else the snapshot they were found in.
        candidates = sources or list(dict.fromkeys(s for _, s in chosen))
        query = " | ".join(sorted({p.ref for p, _ in chosen}))
        for source in candidates:
            held = api.snapshot_show(source, packages=True, store=server.store).packages
            keys = set(server.keys.keys_of(held))
            if all(k in keys for k in refs):
                made = api.snapshot_filter(source, name, query, store=server.store)
                return _created(aptly.snapshot_json(made.snapshot))
        raise HTTPError(
            501,
            "PackageRefs from several snapshots at once are not implemented by mirrorkit",
            "create one snapshot per source and merge them",
        )

    return await change(request, f"Create snapshot {name}", [f"snapshot:{name}"], work)


@endpoint("publish")
async def snapshot_update(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    data = await body(request)
    new = field_of(data, "Name", str, "")
    await read(lambda: api.snapshot_show(name, store=server.store))
    if not new or new == name:
        if data.get("Description"):
            raise HTTPError(
                501,
                "changing a snapshot's Description is not implemented by mirrorkit",
                "the description is derived from the snapshot's provenance",
            )
        raise HTTPError(400, "nothing to change: give a new Name")

    def work(out: Output) -> tuple[int, Any]:
        info = api.snapshot_rename(name, new, store=server.store)
        return 200, aptly.snapshot_json(info)

    return await change(
        request, f"Update snapshot {name}", [f"snapshot:{name}", f"snapshot:{new}"], work
    )


@endpoint("publish")
async def snapshot_drop(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    force = request.query_params.get("force") == "1"
    await read(lambda: api.snapshot_show(name, store=server.store))

    def work(out: Output) -> tuple[int, Any]:
        api.snapshot_rm(name, force=force, store=server.store)
        return 200, {}

    return await change(request, f"Delete snapshot {name}", [f"snapshot:{name}"], work)


@endpoint("publish")
async def snapshot_merge(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    data = await body(request)
    sources = str_list(data, "Sources")
    if not sources:
        raise HTTPError(400, "minimum one source snapshot is required")
    latest = request.query_params.get("latest") == "1"
    no_remove = request.query_params.get("no-remove") == "1"
    if latest and no_remove:
        raise HTTPError(400, "no-remove and latest are mutually exclusive")
    for s in sources:
        await read(lambda s=s: api.snapshot_show(s, store=server.store))  # type: ignore[misc]

    def work(out: Output) -> tuple[int, Any]:
        made = api.snapshot_merge(
            name, sources, latest=latest, all_versions=no_remove, store=server.store
        )
        return _created(aptly.snapshot_json(made.snapshot))

    return await change(
        request, f"Merge snapshot {name}", [f"snapshot:{s}" for s in [name, *sources]], work
    )


# --- mirrors -------------------------------------------------------------------------------------


@endpoint("read")
async def mirrors_list(request: Request) -> Response:
    server = _server(request)
    mirrors = await read(lambda: api.mirror_list(store=server.store))
    return json_response([aptly.mirror_json(m) for m in mirrors])


@endpoint("read")
async def mirror_show(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    m = await read(lambda: api.mirror_show(name, store=server.store))
    return json_response(aptly.mirror_json(m))


@endpoint("read")
async def mirror_packages(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    m = await read(lambda: api.mirror_show(name, store=server.store))
    if m.state is None:
        raise HTTPError(404, "unable to show package list, mirror hasn't been downloaded yet")

    def all_of() -> tuple[Package, ...]:
        return api.mirror_search(name, None, store=server.store)

    def search(q: str, with_deps: bool) -> tuple[Package, ...]:
        return api.mirror_search(name, q, with_deps=with_deps, store=server.store)

    return await packages_answer(request, all_of, search)


_MIRROR_UNSUPPORTED = {
    "DownloadInstaller": "installer files",
    "DownloadAppStream": "AppStream metadata",
    "SkipComponentCheck": "skipping the component check",
    "SkipArchitectureCheck": "skipping the architecture check",
}


@endpoint("admin")
async def mirror_create(request: Request) -> Response:
    server = _server(request)
    data = await body(request)
    name = required(data, "Name")
    url = required(data, "ArchiveURL")
    suite = field_of(data, "Distribution", str, "")
    keyrings = str_list(data, "Keyrings")
    if data.get("IgnoreSignatures"):
        raise HTTPError(
            400,
            "unable to create mirror: mirrorkit verifies every upstream's signature",
            "give Keyrings: the path of the upstream's keyring on the server",
        )
    for fld, what in _MIRROR_UNSUPPORTED.items():
        if data.get(fld):
            raise HTTPError(501, f"mirrors with {what} ({fld}) are not implemented by mirrorkit")
    if len(keyrings) != 1:
        raise HTTPError(
            400,
            "unable to create mirror: give exactly one keyring in Keyrings",
            "a path on the server to the upstream's keyring (.gpg or .asc)",
        )
    if suite in ("", "./"):
        suite = "./"

    def work(out: Output) -> tuple[int, Any]:
        added = api.mirror_add(
            name,
            url,
            suite,
            components=str_list(data, "Components"),
            architectures=str_list(data, "Architectures"),
            keyring=keyrings[0],
            filter=field_of(data, "Filter", str, "") or None,
            with_deps=bool(data.get("FilterWithDeps")),
            with_sources=bool(data.get("DownloadSources")),
            with_udebs=bool(data.get("DownloadUdebs")),
            store=server.store,
        )
        return 201, aptly.mirror_json(added.mirrors[0])

    return await change(request, f"Create mirror {name}", [f"mirror:{name}"], work)


@endpoint("admin")
async def mirror_edit(request: Request) -> Response:
    """aptly's mirror edit: ArchiveURL, Architectures, Keyrings, Filter, FilterWithDeps."""
    server, name = _server(request), _param(request, "name")
    data = await body(request)
    if data.get("IgnoreSignatures"):
        raise HTTPError(400, "unable to edit: mirrorkit verifies every upstream's signature")
    for fld, what in _MIRROR_UNSUPPORTED.items():
        if data.get(fld):
            raise HTTPError(501, f"mirrors with {what} ({fld}) are not implemented by mirrorkit")
    keyrings = str_list(data, "Keyrings")
    if len(keyrings) > 1:
        raise HTTPError(400, "unable to edit: give at most one keyring in Keyrings")
    archs = data.get("Architectures")
    changes: dict[str, Any] = {
        "url": field_of(data, "ArchiveURL", str, "") or None,
        "architectures": str_list(data, "Architectures") if archs is not None else None,
        "keyring": keyrings[0] if keyrings else None,
        "filter": data["Filter"] if isinstance(data.get("Filter"), str) else None,
        "with_deps": data.get("FilterWithDeps")
        if isinstance(data.get("FilterWithDeps"), bool)
        else None,
    }
    await read(lambda: api.mirror_show(name, store=server.store))

    def work(out: Output) -> tuple[int, Any]:
        edited = api.mirror_edit(name, **changes, store=server.store)
        if edited.unchecked:
            out.say(f"Warning: the upstream was not checked: {edited.unchecked}")
        return 200, aptly.mirror_json(edited.mirror)

    return await change(request, f"Edit mirror {name}", [f"mirror:{name}"], work)


@endpoint("publish")
async def mirror_update(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    data = await body(request)
    if data.get("IgnoreSignatures") or data.get("IgnoreChecksums"):
        raise HTTPError(400, "mirrorkit verifies signatures and checksums on every update")
    new = field_of(data, "Name", str, "")
    if new and new != name:
        raise HTTPError(501, "renaming a mirror is not implemented by mirrorkit")
    await read(lambda: api.mirror_show(name, store=server.store))

    def work(out: Output) -> tuple[int, Any]:
        result = api.mirror_update(name, store=server.store)
        out.say(
            f"Mirror {name}: {'updated' if result.changed else 'unchanged'}, "
            f"{result.packages} packages"
        )
        return 200, aptly.mirror_json(api.mirror_show(name, store=server.store))

    return await change(request, f"Update mirror {name}", [f"mirror:{name}"], work)


@endpoint("admin")
async def mirror_drop(request: Request) -> Response:
    server, name = _server(request), _param(request, "name")
    await read(lambda: api.mirror_show(name, store=server.store))

    def work(out: Output) -> tuple[int, Any]:
        api.mirror_rm(name, store=server.store)
        return 200, {}

    return await change(request, f"Delete mirror {name}", [f"mirror:{name}"], work)


@endpoint("read")
async def s3_endpoints(request: Request) -> Response:
    return json_response(sorted(_server(request).config.s3_endpoints))


# --- graph ---------------------------------------------------------------------------------------


@endpoint("read")
async def graph(request: Request) -> Response:
    server = _server(request)
    ext = _param(request, "ext")
    if ext != "dot":
        raise HTTPError(501, f"graph.{ext} is not implemented by mirrorkit: use graph.dot")
    from mirrorkit.server.graph import render_dot

    text = await read(lambda: render_dot(server))
    return Response(text, 200, media_type="text/vnd.graphviz")


def table() -> list[tuple[str, str, Callable[[Request], Any]]]:
    from mirrorkit.server import routes_publish, routes_repos

    core: list[tuple[str, str, Callable[[Request], Any]]] = [
        ("GET", "/api/version", version),
        ("GET", "/api/healthy", healthy),
        ("GET", "/api/files", files_dirs),
        ("GET", "/api/files/{dir}", files_list),
        ("POST", "/api/files/{dir}", files_upload),
        ("PUT", "/api/files/{dir}/{file}", files_upload_one),
        ("DELETE", "/api/files/{dir}", files_delete_dir),
        ("DELETE", "/api/files/{dir}/{file}", files_delete_file),
        ("GET", "/api/tasks", tasks_list),
        ("POST", "/api/tasks-clear", tasks_clear),
        ("GET", "/api/tasks-wait", tasks_wait),
        ("GET", "/api/tasks/{id}/wait", task_wait),
        ("GET", "/api/tasks/{id}/output", task_output),
        ("GET", "/api/tasks/{id}/detail", task_detail),
        ("GET", "/api/tasks/{id}/return_value", task_return_value),
        ("GET", "/api/tasks/{id}", task_show),
        ("DELETE", "/api/tasks/{id}", task_delete),
        ("GET", "/api/packages/{key}", package_show),
        ("GET", "/api/packages", not_implemented("GET /api/packages (search over all)")),
        ("GET", "/api/snapshots", snapshots_list),
        ("POST", "/api/snapshots", snapshot_create),
        ("GET", "/api/snapshots/{name}", snapshot_show),
        ("PUT", "/api/snapshots/{name}", snapshot_update),
        ("DELETE", "/api/snapshots/{name}", snapshot_drop),
        ("GET", "/api/snapshots/{name}/packages", snapshot_packages),
        ("GET", "/api/snapshots/{name}/diff/{other}", snapshot_diff),
        ("POST", "/api/snapshots/{name}/merge", snapshot_merge),
        ("POST", "/api/snapshots/{name}/pull", not_implemented("snapshot pull")),
        ("GET", "/api/mirrors", mirrors_list),
        ("POST", "/api/mirrors", mirror_create),
        ("GET", "/api/mirrors/{name}", mirror_show),
        ("POST", "/api/mirrors/{name}", mirror_edit),
        ("PUT", "/api/mirrors/{name}", mirror_update),
        ("DELETE", "/api/mirrors/{name}", mirror_drop),
        ("GET", "/api/mirrors/{name}/packages", mirror_packages),
        ("POST", "/api/mirrors/{name}/snapshots", snapshot_from_mirror),
        ("GET", "/api/graph.{ext}", graph),
        ("GET", "/api/gpg/keys", not_implemented("gpg key management")),
        ("POST", "/api/gpg/key", not_implemented("gpg key management")),
        ("DELETE", "/api/gpg/key", not_implemented("gpg key management")),
        ("POST", "/api/db/cleanup", not_implemented("db cleanup (use 'mirrorkit gc')")),
        ("GET", "/api/s3", s3_endpoints),
    ]
    return core + routes_publish.ROUTES + routes_repos.ROUTES
