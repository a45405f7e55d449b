"""The measured work, each run in a fresh child process (``scripts/bench _child MODE ...``)
that prints one JSON line: timers inside the process, so start-up is told apart from work."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.common import FILTER, JOBS, SEEDS


def child_parse_deb822(path: str) -> dict[str, Any]:
    from debian import deb822

    started = time.perf_counter()
    with open(path, "rb") as fh:
        paragraphs = list(deb822.Packages.iter_paragraphs(fh, use_apt_pkg=False))
    return {"seconds": time.perf_counter() - started, "count": len(paragraphs)}


def child_parse_mirrorkit(path: str, profile_out: str | None) -> dict[str, Any]:
    from mirrorkit import archive

    profiler = cProfile.Profile() if profile_out else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    text = Path(path).read_bytes()
    packages = archive.parse_packages(text, "main")
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler and profile_out:
        _write_profile([profiler], Path(profile_out))
    return {"seconds": seconds, "count": len(packages)}


def _write_profile(profilers: Sequence[cProfile.Profile], out: Path, top: int = 22) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(profilers[0], stream=buf)
    for extra in profilers[1:]:
        stats.add(extra)
    stats.sort_stats("tottime").print_stats(top + len(_IDLE))
    text = buf.getvalue()
    # Keep the table, drop pstats' preamble and the idle threads' waits (not work).
    start = text.find("   ncalls")
    lines = text[start if start >= 0 else 0 :].rstrip().splitlines()
    kept = [line for line in lines if not any(idle in line for idle in _IDLE)]
    out.write_text("\n".join(kept[: top + 1]) + "\n(idle waits in epoll/queues/locks omitted)\n")


_IDLE = ("'poll' of 'select.epoll'", "'get' of '_queue.SimpleQueue'", "'acquire' of '_thread")


def child_httpx(url_file: str, ours: bool = False) -> dict[str, Any]:
    """httpx's AsyncClient, eight at once, and nothing else: what the transfers alone cost in
    Python, before any hashing, writing or bookkeeping. With ``ours``, on mirrorkit's HTTP/1.1
    transport (what mirrorkit uses); else on httpx's default one (httpcore)."""
    import httpx

    from mirrorkit.transport import StreamTransport

    urls = Path(url_file).read_text().split()
    total = 0

    async def fetch_all() -> None:
        nonlocal total
        limits = httpx.Limits(max_connections=JOBS, max_keepalive_connections=JOBS)
        headers = {"Accept-Encoding": "identity"}
        transport = StreamTransport(max_idle=JOBS) if ours else None
        async with httpx.AsyncClient(
            limits=limits, headers=headers, trust_env=False, transport=transport
        ) as client:
            queue = iter(urls)

            async def worker() -> None:
                nonlocal total
                for url in queue:
                    async with client.stream("GET", url) as resp:
                        resp.raise_for_status()
                        async for chunk in resp.aiter_raw(1 << 18):
                            total += len(chunk)

            await asyncio.gather(*(worker() for _ in range(JOBS)))

    started = time.perf_counter()
    asyncio.run(fetch_all())
    return {"seconds": time.perf_counter() - started, "bytes": total}


def _profile_new_threads(profilers: list[cProfile.Profile]) -> None:
    """Profile every thread started from now on (asyncio's executor, the decompressor): the
    first event of a new thread swaps this one-shot hook for a cProfile of its own."""

    def hook(frame: FrameType, event: str, arg: object) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()

    threading.setprofile(hook)


def _profiled(profile_out: str | None, work: Callable[[], None]) -> None:
    """Run ``work``; with ``profile_out``, under cProfile in this thread and every thread it
    starts, the table written to ``profile_out``."""
    if not profile_out:
        work()
        return
    profilers: list[cProfile.Profile] = []
    _profile_new_threads(profilers)
    main_profiler = cProfile.Profile()
    main_profiler.enable()
    try:
        work()
    finally:
        main_profiler.disable()
        threading.setprofile(None)
    # The worker threads have exited (asyncio.run joined them); main thread first, as
    # collecting a profile disables the calling thread's hook.
    _write_profile([main_profiler, *profilers], Path(profile_out))


# Where child_plan stands in for mirrorkit's own update: if these calls move, the replica is
# stale and the bench says so instead of measuring fiction.
_REPLICA_CALLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mirror", "_update_group", ("store.locked()", "Fetcher(", "prepare(", "complete(")),
    ("mirror", "complete", ("fetch_to_pool(", "download_plan(")),
    ("fetch", "Fetcher.fetch_to_pool", ("pool.has(",)),
)


def _stale_replica_warnings() -> list[str]:
    import inspect

    from mirrorkit import fetch, mirror

    modules = {"mirror": mirror, "fetch": fetch}
    warnings = []
    for module, qualname, calls in _REPLICA_CALLS:
        obj: Any = modules[module]
        try:
            for part in qualname.split("."):
                obj = getattr(obj, part)
            source = inspect.getsource(obj)
        except (AttributeError, OSError, TypeError):
            warnings.append(f"{module}.{qualname} is gone: the plan replica may be stale")
            continue
        warnings += [
            f"{module}.{qualname} no longer calls {call}: the plan replica may be stale"
            for call in calls
            if call not in source
        ]
    return warnings


def child_plan(
    store_dir: str, url: str, suite: str, keyring: str, profile_out: str | None
) -> dict[str, Any]:
    """``mirror add`` then ``mirror update`` up to its download plan, with mirrorkit's own code.

    mirrorkit has no plan-only switch, so this is ``mirror._update_group`` with its public
    phases: ``prepare`` (InRelease, signature, indices, decompress + parse), ``download_plan``,
    and the first step of ``Fetcher.fetch_to_pool`` (which files the pool lacks), which ends
    the run.
    """
    t0 = time.perf_counter()
    from mirrorkit import mirror
    from mirrorkit.fetch import Fetcher, RetryPolicy
    from mirrorkit.models import FileRef, MirrorSpec
    from mirrorkit.progress import NullReporter
    from mirrorkit.store import Store

    phases: dict[str, float] = {"import": time.perf_counter() - t0}
    warnings = _stale_replica_warnings()
    started = last = time.perf_counter()

    def mark(phase: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[phase] = now - last
        last = now

    store = Store(Path(store_dir))
    spec = MirrorSpec(
        name="bench",
        url=url.rstrip("/"),
        suite=suite,
        components=("main",),
        architectures=("amd64",),
        keyring=str(Path(keyring).resolve()),
    )
    with store.locked():  # as the CLI's "mirror add" does
        mirror.add(store, spec)
    mark("mirror add")

    plan: list[FileRef] = []
    counts: dict[str, int] = {}

    async def update_until_plan() -> None:
        # --- mirror.update() and mirror._update_group(), up to fetch_to_pool ----------------
        m = mirror.load(store, "bench")
        options = mirror.UpdateOptions()
        reporter = NullReporter()
        retry = options.retry or RetryPolicy(max_tries=options.max_tries)
        with store.locked():
            async with Fetcher(
                jobs=options.jobs, retry=retry, reporter=reporter, limit_rate=options.limit_rate
            ) as fetcher:
                prepared = await mirror.prepare(fetcher, store, m, options, reporter)
                if prepared.unchanged:
                    raise RuntimeError("the new mirror has a state: the store was not empty")
                mark("prepare (InRelease + gpg + indices + decompress + parse)")
                refs = mirror.download_plan(prepared.indexes, mirror.dists_url(m.spec))
                # --- Fetcher.fetch_to_pool, up to its first download ------------------------
                unique: dict[str, FileRef] = {}
                for ref in refs:
                    unique.setdefault(ref.sha256, ref)
                plan.extend(r for r in unique.values() if not store.pool.has(r.sha256))
                counts["packages"] = sum(len(i.packages) for i in prepared.indexes)
                mark("download plan")

    _profiled(profile_out, lambda: asyncio.run(update_until_plan()))
    return {
        "seconds": time.perf_counter() - started,
        "phases": phases,
        "packages": counts.get("packages", 0),
        "to_fetch": len(plan),
        "to_fetch_bytes": sum(r.size for r in plan),
        "warnings": warnings,
    }


def child_closure(path: str) -> dict[str, Any]:
    """The dependency closure of SEEDS over an index: the index loaded (parsed, then the
    ``Universe`` built), a first closure (which builds the Provides index and parses relation
    fields as it goes), the same closure again (caches warm), and ``resolve.apply`` of the
    FILTER with its dependencies on a fresh ``Universe``, as ``mirror update`` does it."""
    from mirrorkit import archive, resolve

    text = Path(path).read_bytes()
    times: dict[str, float] = {}
    last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        times[name] = now - last
        last = now

    packages = archive.parse_packages(text, "main")
    lap("parse")
    universe = resolve.Universe(packages, ["amd64"])
    lap("load")
    seeds = []
    for name in SEEDS:
        found = [p for p in universe.by_name.get(name, []) if universe.is_candidate(p)]
        if not found:
            raise SystemExit(f"the index has no package {name}")
        seeds.append(found[0])
    last = time.perf_counter()
    first = resolve.resolve_closure(universe, seeds)
    lap("first")
    second = resolve.resolve_closure(universe, seeds)
    lap("second")
    fresh = resolve.Universe(packages, ["amd64"])
    last = time.perf_counter()
    matched = resolve.search(fresh, FILTER)
    lap("search")
    fresh = resolve.Universe(packages, ["amd64"])
    last = time.perf_counter()
    picked = resolve.apply(fresh, resolve.Selection(FILTER, with_deps=True))
    lap("apply")

    def refs(found: Sequence[Any]) -> list[str]:
        return sorted(p.ref for p in found)

    return {
        "times": times,
        "packages": len(packages),
        "matched": len(picked.matched),
        "unmet": [str(u) for u in first.unmet],
        "same": refs(first.packages) == refs(second.packages) == refs(picked.packages)
        and refs(matched) == refs(picked.matched),
        "closure": [[p.name, p.version, p.architecture, p.filename] for p in picked.packages],
    }


class _ClockReporter:
    """mirrorkit's Reporter protocol, noting when each report comes: the phases of a real
    ``mirror.update`` without a replica of it."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    def _note(self, kind: str, message: str = "") -> None:
        self.events.append((time.perf_counter(), kind, message))

    def info(self, message: str) -> None:
        self._note("info", message)

    def debug(self, message: str) -> None:
        self._note("debug", message)

    def start(self, label: str, files: int, total_bytes: int) -> None:
        self._note("start", f"{files} files, {total_bytes} bytes")

    def advance(self, files: int, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        self._note("finish")


def child_filtered(
    store_dir: str, url: str, keyring: str, profile_out: str | None
) -> dict[str, Any]:
    """``mirror add`` with FILTER and its dependencies, then ``mirror.update``, in one process
    through mirrorkit's API; the phases from when update reports what."""
    t0 = time.perf_counter()
    from mirrorkit import mirror
    from mirrorkit.models import MirrorSpec, UpdateResult
    from mirrorkit.store import Store

    phases: dict[str, float] = {"import": time.perf_counter() - t0}
    started = time.perf_counter()
    store = Store(Path(store_dir))
    spec = MirrorSpec(
        name="bench",
        url=url.rstrip("/"),
        suite="bookworm",
        components=("main",),
        architectures=("amd64",),
        keyring=str(Path(keyring).resolve()),
        filter=FILTER,
        with_deps=True,
    )
    with store.locked():  # as the CLI's "mirror add" does
        mirror.add(store, spec)
    added = time.perf_counter()
    phases["mirror add"] = added - started
    clock = _ClockReporter()
    results: list[UpdateResult] = []
    options = mirror.UpdateOptions(jobs=JOBS)
    _profiled(profile_out, lambda: results.append(mirror.update(store, "bench", options, clock)))
    ended = time.perf_counter()
    # prepare() reports each verified index (debug), the filter reports its result (info),
    # fetch_to_pool starts and finishes the transfer; then syncfs and the commit.
    at: dict[str, float] = {}
    for t, kind, _ in clock.events:
        if kind == "debug" and "info" not in at:
            at["prepared"] = t
        at.setdefault(kind, t)
    marks = [
        ("prepare (InRelease + gpg + index + decompress + parse)", at.get("prepared")),
        ("resolve the filter (Universe + search + closure)", at.get("info")),
        ("keep the selection + download plan", at.get("start")),
        ("download + verify", at.get("finish")),
        ("syncfs + commit", ended),
    ]
    last = added
    for name, mark in marks:
        if mark is not None:
            phases[name] = mark - last
            last = mark
    result = results[0]
    return {
        "seconds": ended - started,
        "phases": phases,
        "packages": result.packages,
        "fetched": result.summary.fetched,
        "bytes": result.summary.bytes,
        "messages": [m for _, kind, m in clock.events if kind == "info"],
    }


def child_main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    result: dict[str, Any]
    if mode == "parse-deb822":
        result = child_parse_deb822(rest[0])
    elif mode == "parse-mirrorkit":
        result = child_parse_mirrorkit(rest[0], rest[1] if len(rest) > 1 else None)
    elif mode in ("httpx", "httpx-ours"):
        result = child_httpx(rest[0], ours=mode == "httpx-ours")
    elif mode == "closure":
        result = child_closure(rest[0])
    elif mode == "filtered":
        store, url, keyring = rest[:3]
        result = child_filtered(store, url, keyring, rest[3] if len(rest) > 3 else None)
    elif mode == "plan":
        store, url, suite, keyring = rest[:4]
        result = child_plan(store, url, suite, keyring, rest[4] if len(rest) > 4 else None)
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print(json.dumps(result))
    return 0
