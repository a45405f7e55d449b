"""Imports inside mirrorkit/ point one way: no module imports, directly or through others, a
module that imports it back (design.md: cli/api -> refs -> channel -> snapshot -> stages).

Every import counts, at module level and inside functions (an import "at use" only hides a
cycle from Python, not from the reader); imports under ``if TYPE_CHECKING:`` do not, since
they never run. Importing ``mirrorkit.a.b`` runs ``mirrorkit/a/__init__.py`` first, but that
implicit edge is left out: a package whose ``__init__`` imports its own submodules is not a
cycle. An explicit ``from mirrorkit.a import name`` of something ``__init__`` defines is an
edge to the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "mirrorkit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, except those in the body of an ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                visit(stmt)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = []
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    # `from pkg import sub` needs the submodule; `from pkg import name`, pkg.
                    targets.append(sub if sub in modules else source)
            for target in targets:
                # `import mirrorkit.a.b` binds mirrorkit but needs mirrorkit.a.b: the deepest
                # mirrorkit module named.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each given as
    one cycle through it, so that the failure names the modules to untangle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(graph, set(c), c[0]) for c in components]


def _cycle_through(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert graph.get("mirrorkit.snapshot")  # the parser sees them
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in mirrorkit/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_finds_a_cycle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import x\n"
        "def f():\n    import y\n"
    )
    assert [a.name for node in _imports(tree) for a in node.names] == ["TYPE_CHECKING", "y"]


def _reach(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not: module -> the module importing it."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        v = todo.pop()
        for w in sorted(graph[v]):
            if w not in via and w != start:
                via[w] = v
                todo.append(w)
    return via


# cli/api -> refs -> channel -> snapshot -> (mirror, resolve, merge, archive, store, ...):
# each module, and what it imports, stays below the layers named beside it.
_BELOW = {
    "mirrorkit.channel": ("mirrorkit.refs",),
    "mirrorkit.snapshot": ("mirrorkit.refs", "mirrorkit.channel"),
    **dict.fromkeys(
        ("mirrorkit.mirror", "mirrorkit.resolve", "mirrorkit.merge", "mirrorkit.query",
         "mirrorkit.archive", "mirrorkit.models", "mirrorkit.errors"),
        ("mirrorkit.refs", "mirrorkit.channel", "mirrorkit.snapshot"),
    ),
}  # fmt: skip


def test_imports_point_one_way() -> None:
    graph = import_graph()
    wrong = []
    for module, above in _BELOW.items():
        via = _reach(graph, module)
        for target in above:
            if target in via:
                chain = [target]
                while chain[-1] != module:
                    chain.append(via.get(chain[-1], module))
                wrong.append(" -> ".join(reversed(chain)))
    assert not wrong, "imports pointing up the layers: " + "; ".join(wrong)
