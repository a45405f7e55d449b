"""No test asserts how long something took: on a shared or loaded machine such a bound fails
for reasons that are not bugs. Speed is measured by scripts/bench; a test proves that something
did not wait structurally (a count of requests, the delays a retry policy chose, a server's
requests in flight). Waiting *until* a deadline (a polling loop) is fine; asserting on a
duration measured with time.monotonic() or time.perf_counter() is what this test refuses."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
_CLOCKS = frozenset({"monotonic", "perf_counter", "monotonic_ns", "perf_counter_ns"})


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in _CLOCKS and isinstance(func.value, ast.Name)
    return isinstance(func, ast.Name) and func.id in _CLOCKS


def _uses(node: ast.AST, names: set[str], *, clock: bool) -> bool:
    return any(
        (clock and _is_clock_call(n)) or (isinstance(n, ast.Name) and n.id in names)
        for n in ast.walk(node)
    )


def _fixpoint(scope: ast.AST, seed: Callable[[ast.AST, set[str]], bool]) -> set[str]:
    """Names assigned from an expression ``seed`` accepts (given the names so far), and inner
    functions that return one (``elapsed, peer = asyncio.run(main())``), until nothing new."""
    names: set[str] = set()
    assigns = [n for n in ast.walk(scope) if isinstance(n, ast.Assign | ast.AnnAssign)]
    inner = [
        n
        for n in ast.walk(scope)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n is not scope
    ]
    while True:
        before = len(names)
        for func in inner:
            returns = [n.value for n in ast.walk(func) if isinstance(n, ast.Return) and n.value]
            if any(seed(value, names) for value in returns):
                names.add(func.name)
        for node in assigns:
            if node.value is None or not seed(node.value, names):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        if len(names) == before:
            return names


def wall_clock_asserts(source: str) -> list[int]:
    """Line numbers of asserts on a duration (a difference of clock readings) measured in the
    same function. ``assert time.monotonic() < deadline`` inside a polling loop is a bound on
    waiting, not a measured duration, and is not counted."""
    tree = ast.parse(source)
    found: list[int] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        readings = _fixpoint(func, lambda node, names: _uses(node, names, clock=True))

        def is_duration(node: ast.AST, names: set[str], readings: set[str] = readings) -> bool:
            return any(
                isinstance(n, ast.BinOp)
                and isinstance(n.op, ast.Sub)
                and _uses(n, readings, clock=True)
                for n in ast.walk(node)
            ) or _uses(node, names, clock=False)

        durations = _fixpoint(func, is_duration)
        for node in ast.walk(func):
            if isinstance(node, ast.Assert) and is_duration(node.test, durations):
                found.append(node.lineno)
    return sorted(set(found))


# Landed before this check and left to their owners to prove structurally (issue 12 note).
KNOWN = {
    "tests/integration/test_index_bomb.py": 1,
    "tests/integration/test_signals.py": 1,
}


def test_no_test_asserts_on_a_measured_duration() -> None:
    offenders: dict[str, list[int]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        lines = wall_clock_asserts(path.read_text())
        name = str(path.relative_to(TESTS.parent))
        if lines and len(lines) > KNOWN.get(name, 0):
            offenders[name] = lines
    assert offenders == {}, f"duration asserted (measure it in scripts/bench instead): {offenders}"


def test_the_check_sees_the_usual_forms() -> None:
    timed = """
import time
def test_a():
    started = time.monotonic()
    work()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
def test_b():
    t0 = time.perf_counter()
    work()
    assert time.perf_counter() - t0 < 2
"""
    assert wall_clock_asserts(timed) == [7, 11]
    returned = """
import asyncio, time
def test_d():
    async def main():
        started = time.monotonic()
        await work()
        return time.monotonic() - started, 1
    elapsed, peer = asyncio.run(main())
    assert peer == 1
    assert elapsed < 3
"""
    # peer travels in the same tuple as the duration: counted too (measuring is the smell).
    assert wall_clock_asserts(returned) == [9, 10]
    polling = """
import time
def test_c():
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, "never done"
        time.sleep(0.05)
    assert done()
"""
    assert wall_clock_asserts(polling) == []
