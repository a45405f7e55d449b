"""``/api/publish``: aptly's published repositories over mirrorkit's publish.

aptly addresses a published suite as ``[storage:]prefix`` + distribution: the storage is ""
(the server's public directory), ``filesystem:NAME`` or ``s3:NAME`` (endpoints named on the
command line), split from the prefix at the last ``:``; in a URL path segment ``_`` stands for
``/`` and ``__`` for ``_``, and ``:.`` is the root. mirrorkit publishes the suite to the
endpoint's directory (or S3 prefix) joined with the prefix, with the distribution as suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mirrorkit import api
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
)
from mirrorkit.server.tasks import HTTPError, Output


@dataclass(frozen=True)
class Location:
    storage: str
    prefix: str
    kind: str  # "fs" | "s3"
    where: str  # a directory, or an s3:// URL

    @property
    def resource(self) -> str:
        # One pool per prefix: every suite under it is published in turn (as aptly's
        # PrefixPoolLockKey).
        return f"publish:{self.storage}:{self.prefix}"


@dataclass(frozen=True)
class Suite:
    storage: str
    prefix: str
    distribution: str
    snapshot: str
    location: Location


def locate(server: Server, storage: str, prefix: str) -> Location:
    cfg = server.config
    if storage == "":
        root = str(cfg.default_public)
        kind = "fs"
    elif storage.startswith("filesystem:") and storage[11:] in cfg.fs_endpoints:
        root, kind = str(cfg.fs_endpoints[storage[11:]]), "fs"
    elif storage.startswith("s3:") and storage[3:] in cfg.s3_endpoints:
        root, kind = cfg.s3_endpoints[storage[3:]].rstrip("/"), "s3"
    else:
        raise HTTPError(
            404,
            f"published storage {storage!r} is not configured",
            "the server names its endpoints with --fs-endpoint and --s3-endpoint",
        )
    if prefix == ".":
        return Location(storage, prefix, kind, root)
    where = str(Path(root) / prefix) if kind == "fs" else f"{root}/{prefix}"
    return Location(storage, prefix, kind, where)


def _place(server: Server, kind: str, target: str) -> tuple[str, str] | None:
    """(storage, prefix) of a published target, if it lies under one of the endpoints."""
    cfg = server.config
    roots: list[tuple[str, str]] = []
    if kind == "fs":
        roots.append(("", str(Path(cfg.default_public).resolve())))
        roots += [(f"filesystem:{n}", str(Path(p).resolve())) for n, p in cfg.fs_endpoints.items()]
    else:
        roots += [(f"s3:{n}", url.rstrip("/")) for n, url in cfg.s3_endpoints.items()]
    for storage, root in roots:
        if target == root:
            return storage, "."
        if target.startswith(root + "/"):
            return storage, target[len(root) + 1 :]
    return None


def published_suites(server: Server) -> list[Suite]:
    out = []
    for p in api.publish_list(store=server.store):
        place = _place(server, p.kind, p.target)
        if place is None:
            continue  # published by the CLI somewhere no endpoint names
        storage, prefix = place
        out.append(
            Suite(storage, prefix, p.suite, p.snapshot, Location(storage, prefix, p.kind, p.target))
        )
    return out


def _find(server: Server, storage: str, prefix: str, distribution: str) -> Suite | None:
    return next(
        (
            s
            for s in published_suites(server)
            if (s.storage, s.prefix, s.distribution) == (storage, prefix, distribution)
        ),
        None,
    )


def _release_fields(loc: Location, distribution: str) -> dict[str, str]:
    """Origin and Label as the published Release says them (directories only)."""
    if loc.kind != "fs":
        return {}
    try:
        text = (Path(loc.where) / "dists" / distribution / "Release").read_text(errors="replace")
    except OSError:
        return {}
    head = text.split("\nMD5Sum:", 1)[0].split("\nSHA256:", 1)[0]
    return dict(re.findall(r"^(Origin|Label|Suite|Codename): *(.*)$", head, re.M))


def suite_json(server: Server, s: Suite) -> dict[str, Any]:
    info = api.snapshot_show(s.snapshot, store=server.store).snapshot
    release = _release_fields(s.location, s.distribution)
    components = list(info.components) or ["main"]
    path = s.distribution if s.prefix == "." else f"{s.prefix}/{s.distribution}"
    return {
        "Architectures": [a for a in info.architectures if a != "all"] or list(info.architectures),
        "Distribution": s.distribution,
        "Label": release.get("Label", ""),
        "Origin": release.get("Origin", ""),
        "Suite": release.get("Suite", ""),
        "Codename": release.get("Codename", ""),
        "Version": "",
        "NotAutomatic": "",
        "ButAutomaticUpgrades": "",
        "Prefix": s.prefix,
        "Path": path,
        "SourceKind": "snapshot",
        "Sources": [{"Component": c, "Name": s.snapshot} for c in components],
        "Storage": s.storage,
        "SkipContents": False,
        "AcquireByHash": True,
        "SignedBy": "",
        "MultiDist": False,
    }


def _address(request: Request) -> tuple[str, str]:
    raw = request.path_params.get("prefix")
    if raw is None:
        return "", "."
    return aptly.parse_prefix(aptly.slash_unescape(str(raw)))


def _distribution(request: Request) -> str:
    return aptly.slash_unescape(str(request.path_params["distribution"]))


def _signing(server: Server, data: dict[str, Any]) -> str | None:
    """The key to sign with: Signing.GpgKey, else the server's --key (else gpg's only key).
    mirrorkit always signs (``Skip`` is not honoured: see docs/rest-api.md)."""
    signing = data.get("Signing") or {}
    if not isinstance(signing, dict):
        raise HTTPError(400, "field Signing must be an object")
    for fld in ("Keyring", "SecretKeyring", "Passphrase", "PassphraseFile"):
        if signing.get(fld):
            raise HTTPError(
                501,
                f"Signing.{fld} is not implemented by mirrorkit",
                "the server signs with the keys of its GNUPGHOME (--key picks one)",
            )
    key = signing.get("GpgKey") or None
    if key is not None and not isinstance(key, str):
        raise HTTPError(400, "Signing.GpgKey must be a string")
    return key or server.config.key


def _publish(
    server: Server,
    loc: Location,
    source: str,
    distribution: str,
    key: str | None,
    origin: str | None,
    label: str | None,
) -> None:
    common: dict[str, Any] = {
        "suite": distribution,
        "key": key,
        "origin": origin or None,
        "label": label or None,
        "store": server.store,
        "gnupghome": server.config.gnupghome,
    }
    if loc.kind == "fs":
        Path(loc.where).mkdir(parents=True, exist_ok=True)
        api.publish_fs(source, loc.where, **common)
    else:
        api.publish_s3(source, loc.where, endpoint_url=server.config.s3_endpoint_url, **common)


def _one_source(
    server: Server, sources: Any, field_name: str, architectures: list[str] | None = None
) -> str:
    """The snapshot of a one-source publish; what mirrorkit cannot publish as asked is 501."""
    if not isinstance(sources, list) or not sources:
        raise HTTPError(400, f"unable to publish: {field_name} are empty")
    if len(sources) > 1:
        raise HTTPError(
            501,
            "publishing several components from several sources is not implemented by "
            "mirrorkit's REST API yet",
            "merge the snapshots into one and publish that",
        )
    src = sources[0]
    if not isinstance(src, dict) or not isinstance(src.get("Name"), str):
        raise HTTPError(400, f"each of {field_name} needs a Name")
    name: str = src["Name"]
    info = api.snapshot_show(name, store=server.store).snapshot
    component = src.get("Component") or ""
    if component and list(info.components) != [component]:
        raise HTTPError(
            501,
            f"publishing snapshot {name} (components {', '.join(info.components)}) as "
            f"component {component} is not implemented by mirrorkit",
            "a snapshot is published with the components it holds",
        )
    if architectures:
        missing = sorted(set(info.architectures) - {"all"} - set(architectures))
        if missing:
            raise HTTPError(
                501,
                f"publishing a subset of snapshot {name}'s architectures is not implemented "
                f"by mirrorkit (it also holds {', '.join(missing)})",
                "filter the snapshot first",
            )
    return name


@endpoint("read")
async def publish_list(request: Request) -> Response:
    server = _server(request)
    return json_response(
        await read(lambda: [suite_json(server, s) for s in published_suites(server)])
    )


@endpoint("read")
async def publish_show(request: Request) -> Response:
    server = _server(request)
    storage, prefix = _address(request)
    distribution = _distribution(request)
    found = await read(lambda: _find(server, storage, prefix, distribution))
    if found is None:
        raise HTTPError(
            404,
            f"unable to show: published repo with storage:prefix/distribution "
            f"{storage}:{prefix}/{distribution} not found",
        )
    return json_response(await read(lambda: suite_json(server, found)))


@endpoint("publish")
async def publish_create(request: Request) -> Response:
    server = _server(request)
    storage, prefix = _address(request)
    data = await body(request)
    kind = data.get("SourceKind")
    if kind == "local":
        from mirrorkit.server import routes_repos

        return await routes_repos.publish_repo(request, storage, prefix, data)
    if kind != "snapshot":
        raise HTTPError(400, "unknown SourceKind")
    loc = locate(server, storage, prefix)
    key = _signing(server, data)
    archs = data.get("Architectures") or None
    source = await read(lambda: _one_source(server, data.get("Sources"), "sources", archs))
    distribution = field_of(data, "Distribution", str, "") or source
    origin = field_of(data, "Origin", str, "")
    label = field_of(data, "Label", str, "")

    def work(out: Output) -> tuple[int, Any]:
        if _find(server, storage, prefix, distribution) is not None:
            raise HTTPError(
                400,
                f"prefix/distribution already used by another published repo: "
                f"{storage}:{prefix}/{distribution}",
            )
        _publish(server, loc, source, distribution, key, origin, label)
        found = _find(server, storage, prefix, distribution)
        assert found is not None
        return 201, suite_json(server, found)

    return await change(
        request,
        f'Publish snapshot repository {storage}:{prefix}/{distribution} with sources "{source}"',
        [loc.resource, f"snapshot:{source}"],
        work,
    )


@endpoint("publish")
async def publish_update(request: Request) -> Response:
    """Switch a published suite to other snapshots (``Snapshots``), or publish its source
    again (a repo's current state)."""
    server = _server(request)
    storage, prefix = _address(request)
    distribution = _distribution(request)
    data = await body(request)
    key = _signing(server, data)
    found = await read(lambda: _find(server, storage, prefix, distribution))
    if found is None:
        raise HTTPError(
            404, f"unable to update: published repo {storage}:{prefix}/{distribution} not found"
        )
    snapshots = data.get("Snapshots")
    if snapshots:
        source = await read(lambda: _one_source(server, snapshots, "snapshots"))
    else:
        from mirrorkit.server import routes_repos

        source = await read(lambda: routes_repos.source_of(server, found.snapshot))
    release = _release_fields(found.location, distribution)
    origin = field_of(data, "Origin", str, "") or release.get("Origin", "")
    label = field_of(data, "Label", str, "") or release.get("Label", "")

    def work(out: Output) -> tuple[int, Any]:
        _publish(server, found.location, source, distribution, key, origin, label)
        now = _find(server, storage, prefix, distribution)
        assert now is not None
        return 200, suite_json(server, now)

    return await change(
        request,
        f"Update published repository {storage}:{prefix}/{distribution}",
        [found.location.resource],
        work,
    )


@endpoint("publish")
async def publish_drop(request: Request) -> Response:
    """Drop a published suite: its files, and the pool files only it used."""
    server = _server(request)
    storage, prefix = _address(request)
    distribution = _distribution(request)
    found = await read(lambda: _find(server, storage, prefix, distribution))
    if found is None:
        raise HTTPError(
            404, f"unable to drop: published repo {storage}:{prefix}/{distribution} not found"
        )

    def work(out: Output) -> tuple[int, Any]:
        loc = found.location
        endpoint_url = server.config.s3_endpoint_url if loc.kind == "s3" else None
        dropped = api.publish_drop(
            loc.where, distribution, endpoint_url=endpoint_url, store=server.store
        )
        out.say(f"Removed {len(dropped.pool_removed)} pool files no other suite lists")
        return 200, {}

    return await change(
        request,
        f"Delete published repository {storage}:{prefix}/{distribution}",
        [found.location.resource],
        work,
    )


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/publish", publish_list),
    ("POST", "/api/publish", publish_create),
    ("POST", "/api/publish/{prefix}", publish_create),
    ("GET", "/api/publish/{prefix}/{distribution}", publish_show),
    ("PUT", "/api/publish/{prefix}/{distribution}", publish_update),
    ("DELETE", "/api/publish/{prefix}/{distribution}", publish_drop),
    *[
        (method, "/api/publish/{prefix}/{distribution}/sources" + tail, not_implemented(what))
        for method, tail, what in [
            ("GET", "", "staged publish sources"),
            ("POST", "", "staged publish sources"),
            ("PUT", "", "staged publish sources"),
            ("DELETE", "", "staged publish sources"),
            ("PUT", "/{component}", "staged publish sources"),
            ("DELETE", "/{component}", "staged publish sources"),
        ]
    ],
    (
        "POST",
        "/api/publish/{prefix}/{distribution}/update",
        not_implemented("staged publish update"),
    ),
]
