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
from mirrorkit.errors import MirrorkitError
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
    """Origin, Label, Architectures... as the published Release says them (directories only;
    an S3 suite would cost a request to the bucket)."""
    if loc.kind != "fs":
        return {}
    try:
        text = (Path(loc.where) / "dists" / distribution / "Release").read_text(errors="replace")
    except OSError:
        return {}
    head = text.split("\nMD5Sum:", 1)[0].split("\nSHA256:", 1)[0]
    fields = "Origin|Label|Suite|Codename|Architectures|Components"
    return dict(re.findall(rf"^({fields}): *(.*)$", head, re.M))


@dataclass(frozen=True)
class Sources:
    """What a suite is published from, in aptly's terms: ``kind`` ``snapshot`` or ``local``
    (repos), and (component, name) pairs; component "" means "as the source holds it"."""

    kind: str
    pairs: tuple[tuple[str, str], ...]

    def args(self) -> tuple[str | None, dict[str, str]]:
        """mirrorkit's publish arguments: one source, or one source per component."""
        if len(self.pairs) == 1 and self.pairs[0][0] == "":
            return self.pairs[0][1], {}
        return None, dict(self.pairs)

    @property
    def names(self) -> list[str]:
        return [n for _, n in self.pairs]


def _natural(server: Server, kind: str, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The components and architectures source ``name`` holds now."""
    if kind == "local":
        details = api.repo_show(name, store=server.store)
        archs = details.head.architectures if details.head is not None else ()
        return (details.repo.component,), archs
    info = api.snapshot_show(name, store=server.store).snapshot
    return info.components, info.architectures


def parse_sources(
    server: Server, kind: str, raw: Any, field_name: str, architectures: list[str] | None = None
) -> Sources:
    if kind not in ("snapshot", "local"):
        raise HTTPError(400, "unknown SourceKind")
    if not isinstance(raw, list) or not raw:
        raise HTTPError(400, f"unable to publish: {field_name} are empty")
    pairs: list[tuple[str, str]] = []
    for src in raw:
        if not isinstance(src, dict) or not isinstance(src.get("Name"), str):
            raise HTTPError(400, f"each of {field_name} needs a Name")
        name: str = src["Name"]
        component = src.get("Component") or ""
        if not isinstance(component, str):
            raise HTTPError(400, "Component must be a string")
        held, archs = _natural(server, kind, name)
        if architectures:
            missing = sorted(set(archs) - {"all"} - set(architectures))
            if missing:
                raise HTTPError(
                    501,
                    f"publishing a subset of {name}'s architectures is not implemented by "
                    f"mirrorkit (it also holds {', '.join(missing)})",
                    "filter the snapshot first",
                )
        if len(raw) == 1 and (not component or list(held) == [component]):
            return Sources(kind, (("", name),))
        if not component:
            raise HTTPError(400, f"{field_name}: each source needs a Component")
        if any(c == component for c, _ in pairs):
            raise HTTPError(400, f"{field_name}: component {component} is given twice")
        pairs.append((component, name))
    return Sources(kind, tuple(pairs))


def current_sources(server: Server, s: Suite) -> Sources:
    """What suite ``s`` is published from: the repo (or components) it follows, else the
    snapshot(s) its publish record names."""
    where = s.location.where
    for r in api.repo_list(store=server.store):
        for f in r.followers:
            if (f.get("kind"), f.get("target"), f.get("suite")) != (
                s.location.kind,
                where,
                s.distribution,
            ):
                continue
            if f.get("published") != s.snapshot:
                continue  # published from something else since
            if "source" in f:
                return Sources("local", (("", str(f["source"])),))
            comps = f.get("components") or {}
            return Sources("local", tuple(sorted((str(c), str(n)) for c, n in comps.items())))
    if "=" in s.snapshot:
        pairs = [part.split("=", 1) for part in s.snapshot.split(",")]
        return Sources("snapshot", tuple(sorted((c, n) for c, n in pairs)))
    return Sources("snapshot", (("", s.snapshot),))


def suite_json(server: Server, s: Suite) -> dict[str, Any]:
    sources = current_sources(server, s)
    release = _release_fields(s.location, s.distribution)
    listed = []
    archs: set[str] = set()
    for component, name in sources.pairs:
        try:
            kind = "local" if sources.kind == "local" and component == "" else "snapshot"
            held, held_archs = _natural(server, kind, name)
        except MirrorkitError:
            held, held_archs = (component or "main",), ()
        archs.update(held_archs)
        listed += [{"Component": c, "Name": name} for c in ([component] if component else held)]
    if release.get("Architectures"):
        archs = set(release["Architectures"].split())
    path = s.distribution if s.prefix == "." else f"{s.prefix}/{s.distribution}"
    return {
        "Architectures": sorted(archs - {"all"}) or sorted(archs),
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
        "SourceKind": sources.kind,
        "Sources": listed,
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
    sources: Sources,
    distribution: str,
    key: str | None,
    origin: str | None,
    label: str | None,
) -> None:
    source, components = sources.args()
    common: dict[str, Any] = {
        "suite": distribution,
        "key": key,
        "origin": origin or None,
        "label": label or None,
        "component": components,
        "store": server.store,
        "gnupghome": server.config.gnupghome,
    }
    if loc.kind == "fs":
        Path(loc.where).mkdir(parents=True, exist_ok=True)
        api.publish_fs(source, loc.where, **common)
    else:
        api.publish_s3(source, loc.where, endpoint_url=server.config.s3_endpoint_url, **common)


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
    kind = str(data.get("SourceKind") or "")
    loc = locate(server, storage, prefix)
    key = _signing(server, data)
    archs = data.get("Architectures") or None
    raw = data.get("Sources")
    sources = await read(lambda: parse_sources(server, kind, raw, "sources", archs))
    distribution = field_of(data, "Distribution", str, "")
    if not distribution:
        distribution = await read(lambda: _default_distribution(server, sources))
    origin = field_of(data, "Origin", str, "")
    label = field_of(data, "Label", str, "")

    def work(out: Output) -> tuple[int, Any]:
        if _find(server, storage, prefix, distribution) is not None:
            raise HTTPError(
                400,
                f"prefix/distribution already used by another published repo: "
                f"{storage}:{prefix}/{distribution}",
            )
        _publish(server, loc, sources, distribution, key, origin, label)
        found = _find(server, storage, prefix, distribution)
        assert found is not None
        return 201, suite_json(server, found)

    names = ", ".join(sources.names)
    return await change(
        request,
        f'Publish {kind} repository {storage}:{prefix}/{distribution} with sources "{names}"',
        [
            loc.resource,
            *(f"{'repo' if kind == 'local' else 'snapshot'}:{n}" for n in sources.names),
        ],
        work,
    )


def _default_distribution(server: Server, sources: Sources) -> str:
    """aptly guesses the distribution from the sources: a repo's DefaultDistribution, else
    the (first) source's name."""
    name = sources.names[0]
    if sources.kind == "local":
        r = api.repo_show(name, store=server.store).repo
        return r.distribution or name
    return name


@endpoint("publish")
async def publish_update(request: Request) -> Response:
    """Switch a published suite to other snapshots (``Snapshots``), or publish its sources
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
    current = await read(lambda: current_sources(server, found))
    snapshots = data.get("Snapshots")
    if snapshots:
        if current.kind == "local":
            raise HTTPError(400, "snapshots shouldn't be given when updating local repo")
        sources = await read(lambda: parse_sources(server, "snapshot", snapshots, "snapshots"))
    else:
        sources = current
    release = _release_fields(found.location, distribution)
    origin = field_of(data, "Origin", str, "") or release.get("Origin", "")
    label = field_of(data, "Label", str, "") or release.get("Label", "")

    def work(out: Output) -> tuple[int, Any]:
        _publish(server, found.location, sources, distribution, key, origin, label)
        now = _find(server, storage, prefix, distribution)
        assert now is not None
        return 200, suite_json(server, now)

    return await change(
        request,
        f"Update published {current.kind} repository {storage}:{prefix}/{distribution}",
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
