"""No test asserts how long something took: on a shared or loaded machine such a bound fails
for reasons that are not bugs. Speed is measured by scripts/bench; a test proves that something
did not wait structurally (a count of requests, the delays a retry policy chose, a server's
requests in flight). Waiting *until* a deadline (a polling loop) is fine; asserting on a
duration measured with time.monotonic() or time.perf_counter() is what this test refuses."""

from __future__ import annotations

import ast
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


def _timed_names(scope: ast.AST) -> set[str]:
    """Names assigned from a clock reading, or from another such name, and inner functions
    that return one (``elapsed, peer = asyncio.run(main())``), until nothing new."""
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
            if any(_uses_clock(value, names) for value in returns):
                names.add(func.name)
        for node in assigns:
            if node.value is None or not _uses_clock(node.value, names):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        if len(names) == before:
            return names


def _uses_clock(node: ast.AST, names: set[str]) -> bool:
    return any(
        _is_clock_call(n) or (isinstance(n, ast.Name) and n.id in names) for n in ast.walk(node)
    )


def wall_clock_asserts(source: str) -> list[int]:
    """Line numbers of asserts that compare a duration measured in the same function."""
    tree = ast.parse(source)
    found: list[int] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        names = _timed_names(func)
        for node in ast.walk(func):
            if isinstance(node, ast.Assert) and _uses_clock(node.test, names):
                found.append(node.lineno)
    return sorted(set(found))


def test_no_test_asserts_on_a_measured_duration() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line in wall_clock_asserts(path.read_text())
    ]
    assert offenders == [], "duration asserted (measure it in scripts/bench instead): " + ", ".join(
        offenders
    )


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
    while time.monotonic() < deadline and not done():
        time.sleep(0.05)
    assert done()
"""
    assert wall_clock_asserts(polling) == []
