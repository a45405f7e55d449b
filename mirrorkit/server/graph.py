"""``GET /api/graph.dot``: mirrors, snapshots and published suites and what was made from what,
in Graphviz's language, as aptly draws it (nodes named by kind and name, edges source ->
derived)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorkit import api

if TYPE_CHECKING:
    from mirrorkit.server.app import Server


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node(node: str, label: str, color: str) -> str:
    return f"  {_quote(node)} [label={_quote(label)}, style=filled, fillcolor={color}];"


def _edge(a: str, b: str) -> str:
    return f"  {_quote(a)} -> {_quote(b)};"


def render_dot(server: Server) -> str:
    store = server.store
    lines = ["digraph aptly {", "  rankdir=LR;", "  node [shape=record];"]
    for m in api.mirror_list(store=store):
        label = f"{{Mirror {m.spec.name}|url: {m.spec.url}|distribution: {m.spec.suite}}}"
        lines.append(_node("mirror:" + m.spec.name, label, "darkgoldenrod1"))
    snapshots = api.snapshot_list(store=store).snapshots
    for info in snapshots:
        label = f"{{Snapshot {info.name}|packages: {info.packages}|created: {info.created_at}}}"
        lines.append(_node("snapshot:" + info.name, label, "cadetblue1"))
        for s in info.sources:
            if s.kind == "mirror" and s.mirror:
                lines.append(_edge("mirror:" + s.mirror, "snapshot:" + info.name))
            elif s.snapshot:
                lines.append(_edge("snapshot:" + s.snapshot, "snapshot:" + info.name))
    from mirrorkit.server.routes_publish import published_suites

    for p in published_suites(server):
        node = _quote(f"publish:{p.storage}:{p.prefix}/{p.distribution}")
        label = f"{{Published {p.prefix}/{p.distribution}|storage: {p.storage or 'default'}}}"
        lines.append(f"  {node} [label={_quote(label)}, style=filled, fillcolor=darkolivegreen1];")
        lines.append(f"  {_quote('snapshot:' + p.snapshot)} -> {node};")
    lines.append("}")
    return "\n".join(lines) + "\n"
