"""The command line: parse, call one core function, print. The only importer of typer and tqdm.

Exit codes: 0 success, 1 the operation failed, 2 usage error, 130 interrupted (143 on SIGTERM).
Results go to stdout (``--json`` where it lists or reports); progress and logs go to stderr.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from mirrorkit import __version__
from mirrorkit.errors import MirrorkitError, UsageError
from mirrorkit.models import MirrorSpec, Package, Provenance, UpdateResult
from mirrorkit.store import Store, default_store_path

if TYPE_CHECKING:
    from tqdm import tqdm

    from mirrorkit import (
        bundle,
        channel,
        fetch,
        gc,
        mirror,
        publish,
        query,
        refs,
        resolve,
        snapshot,
    )
    from mirrorkit import profile as profiles
    from mirrorkit import serve as serve_mod
    from mirrorkit import sync as sync_mod
else:
    # Each command needs one or two stages: load each on first use, so that start-up (paid
    # twice by "mirror add" + "mirror update") does not import all of them (0.2 s -> 0.1 s).
    def _lazy(name: str) -> ModuleType:
        module = sys.modules.get(name)
        if module is not None:
            return module
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        loader = importlib.util.LazyLoader(spec.loader)
        spec.loader = loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        loader.exec_module(module)
        return module

    bundle, channel, gc, mirror, publish, query, refs, resolve, snapshot, serve_mod, sync_mod = (
        _lazy(f"mirrorkit.{m}")
        for m in (
            "bundle", "channel", "gc", "mirror", "publish", "query", "refs", "resolve",
            "snapshot", "serve", "sync",
        )
    )  # fmt: skip
    fetch, profiles = _lazy("mirrorkit.fetch"), _lazy("mirrorkit.profile")

# httpx's __init__ tries to import its own command-line client (httpx._main), which imports
# rich when that is installed (typer installs it): 25 ms of every command that downloads, for
# a client this program never runs. A None in sys.modules makes that one import fail, and
# httpx then defines its fallback main() (what it does when rich is missing).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

app = typer.Typer(
    help="Verified offline snapshot mirrors of Debian/Ubuntu APT archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: "[default: ...]" must print as written, not be eaten as rich markup.
    rich_markup_mode=None,
)
mirror_app = typer.Typer(help="Mirrors: follow an upstream suite.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Snapshots: immutable, dated package sets.", no_args_is_help=True)
publish_app = typer.Typer(help="Publish a snapshot as a signed APT tree.", no_args_is_help=True)
app.add_typer(mirror_app, name="mirror")
app.add_typer(snapshot_app, name="snapshot")
channel_app = typer.Typer(help="Channels: dev/staging/prod pointers.", no_args_is_help=True)
app.add_typer(publish_app, name="publish")
app.add_typer(channel_app, name="channel")

JSON = typer.Option(False, "--json", help="Machine-readable output on stdout.")


@dataclass
class _Globals:
    store: Path
    quiet: bool = False
    verbose: bool = False
    gnupghome: str | None = None


_G = _Globals(store=Path())


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _info(message: str) -> None:
    """A log line on stderr: what happened, beside the results on stdout. Not with -q."""
    if not _G.quiet:
        _err(message)


def _fail(exc: MirrorkitError) -> NoReturn:
    _err(f"error: {exc.message}")
    if exc.hint:
        _err(f"hint: {exc.hint}")
    raise typer.Exit(exc.exit_code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the core's errors into a message, a hint and an exit code."""
    try:
        yield
    except MirrorkitError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if _TERMINATED.is_set() else "interrupted"
        _err(f"error: {how}; nothing was committed.")
        _err("hint: run the same command again (a mirror update resumes its downloads).")
        raise typer.Exit(143 if _TERMINATED.is_set() else 130) from None


_TERMINATED = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (systemd, kill, a CI timeout) unwinds like Ctrl-C: temp files and staging
    directories are removed on the way out, which the default action (exit at once) skips."""
    _TERMINATED.set()
    raise KeyboardInterrupt


def open_store() -> Store:
    if _G.store.exists() and not _G.store.is_dir():
        raise UsageError(
            f"store {_G.store}: not a directory", "give --store (or $MIRRORKIT_HOME) a directory."
        )
    return Store(_G.store)


class TqdmReporter:
    """Progress bars on a terminal (files and bytes); log lines unless --quiet."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None
        self._files = 0
        self._total_files = 0

    def info(self, message: str) -> None:
        if not _G.quiet:
            _err(message)

    def debug(self, message: str) -> None:
        if _G.verbose and not _G.quiet:
            _err(message)

    def start(self, label: str, files: int, total_bytes: int) -> None:
        self._files, self._total_files = 0, files
        if _G.quiet or not sys.stderr.isatty() or files == 0:
            return
        from tqdm import tqdm  # here, not at start-up: most runs have no terminal to draw on

        self._bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(f"0/{files} files")

    def advance(self, files: int, nbytes: int) -> None:
        if self._bar is None:
            return
        if nbytes:
            self._bar.update(nbytes)
        if files:
            self._files += files
            self._bar.set_postfix_str(f"{self._files}/{self._total_files} files", refresh=False)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _plain(value: Any) -> str:
    """A record's value for people: lists one item per line, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "".join(f"\n      {_plain(v)}" for v in value) or "-"
    return "-" if value is None else str(value)


def _field_line(indent: str, key: str, value: Any) -> str:
    text = _plain(value)
    return f"{indent}{key}:{text}" if text.startswith("\n") else f"{indent}{key}: {text}"


def _source_label(source: Provenance) -> str:
    if source.kind == "debs":
        return f"{len(source.files or ())} .deb files"
    return source.mirror or source.snapshot or source.kind or "?"


def _emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mirrorkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    store: Path | None = typer.Option(
        None, "--store", help="Store directory [default: $MIRRORKIT_HOME or XDG data dir]."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and results."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More detail on stderr."),
    gnupghome: str | None = typer.Option(
        None, "--gnupghome", help="GnuPG home for signing [default: $GNUPGHOME]."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    _G.store = store or default_store_path()
    _G.quiet, _G.verbose, _G.gnupghome = quiet, verbose, gnupghome


def _summary_line(result: UpdateResult) -> str:
    s = result.summary
    if not result.changed:
        return (
            f"{result.mirror}: unchanged ({result.packages} packages, "
            f"Release of {result.release_date or 'no Date'}); fetched 0 files"
        )
    return (
        f"{result.mirror}: {result.packages} packages; fetched {s.fetched} files, reused "
        f"{s.reused}, {s.bytes / 1e6:.1f} MB in {s.seconds:.1f} s ({s.mb_per_s:.1f} MB/s)"
    )


# --- mirror -----------------------------------------------------------------------------------

_NOT_YET = "is not implemented yet"


@mirror_app.command("add")
def mirror_add(
    name: str | None = typer.Argument(None, help="Mirror name."),
    url: str | None = typer.Argument(None, help="Upstream URL, e.g. http://deb.debian.org/debian"),
    suite: str | None = typer.Argument(None, help="Suite (codename); 'path/' for a flat repo."),
    component: list[str] = typer.Option([], "-c", "--component", help="Component [main]."),
    architecture: list[str] = typer.Option([], "-a", "--architecture", help="Arch [amd64]."),
    keyring: Path | None = typer.Option(None, "--keyring", help="Keyring that signs upstream."),
    fingerprint: list[str] = typer.Option(
        [], "--fingerprint", help="Allowed signer fingerprint (repeatable)."
    ),
    profile: Path | None = typer.Option(None, "--profile", help="Add every upstream of a profile."),
    filter_query: str | None = typer.Option(
        None, "--filter", help="Keep only the packages this query matches (aptly syntax)."
    ),
    with_deps: bool = typer.Option(
        False, "--with-deps", help="With the filter: add the dependency closure."
    ),
    with_recommends: bool = typer.Option(
        False, "--with-recommends", help="With --with-deps: follow Recommends too."
    ),
    with_sources: bool = typer.Option(False, "--with-sources", help="(not yet)"),
    with_udebs: bool = typer.Option(False, "--with-udebs", help="(not yet)"),
) -> None:
    """Start following an upstream suite (verified with KEYRING)."""
    with user_errors():
        if (with_deps or with_recommends) and not filter_query:
            raise UsageError("--with-deps and --with-recommends need --filter QUERY")
        if filter_query:
            query.parse(filter_query)  # a typo fails here, with a caret, not at update time
        if with_sources or with_udebs:
            raise MirrorkitError(f"mirroring sources and udebs {_NOT_YET}")
        store = open_store()
        if profile is not None:
            given = [name, url, suite, keyring, component, architecture, fingerprint, filter_query]
            if any(given):
                raise UsageError(
                    "mirror add --profile takes every upstream from the profile",
                    "leave out NAME URL SUITE and the other options, or leave out --profile.",
                )
            loaded = profiles.load_profile(profile)
            profiles.check_keyrings(loaded)
            specs = loaded.upstreams
        else:
            if not (name and url and suite and keyring):
                raise UsageError(
                    "mirror add needs NAME URL SUITE and --keyring (or --profile FILE)",
                    "e.g. mirrorkit mirror add bookworm http://deb.debian.org/debian bookworm "
                    "--keyring /usr/share/keyrings/debian-archive-keyring.gpg",
                )
            specs = (
                MirrorSpec(
                    name=name,
                    url=url.rstrip("/"),
                    suite=suite,
                    components=tuple(component),
                    architectures=tuple(architecture),
                    keyring=str(keyring.resolve()),
                    fingerprints=tuple(f.replace(" ", "").upper() for f in fingerprint),
                    filter=filter_query or "",
                    with_deps=with_deps,
                    with_recommends=with_recommends,
                ),
            )
        with store.locked():
            for spec in specs:
                added = mirror.add(store, spec, replace=profile is not None)
                typer.echo(f"added mirror {added.spec.name}: {added.spec.url} {added.spec.suite}")


def _update_options(
    jobs: int,
    max_tries: int,
    limit_rate: str | None,
    allow_expired: bool,
    allow_rollback: bool,
    allow_releaseinfo_change: bool = False,
) -> mirror.UpdateOptions:
    if jobs < 1 or max_tries < 1:
        raise UsageError("--jobs and --max-tries must be at least 1")
    return mirror.UpdateOptions(
        jobs=jobs,
        max_tries=max_tries,
        limit_rate=_parse_rate(limit_rate) if limit_rate else None,
        allow_expired=allow_expired,
        allow_rollback=allow_rollback,
        allow_releaseinfo_change=allow_releaseinfo_change,
        retry=fetch.RetryPolicy(max_tries=max_tries),
    )


def _parse_rate(text: str) -> float:
    units = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
    t = text.strip().lower().removesuffix("/s").removesuffix("b")
    unit = t[-1] if t and t[-1] in "kmg" else ""
    try:
        value = float(t[: len(t) - len(unit)]) * units[unit]
    except ValueError as exc:
        raise UsageError(
            f"invalid rate {text!r}", "use e.g. 500k, 10M (bytes per second)."
        ) from exc
    if value <= 0:
        raise UsageError(f"invalid rate {text!r}: must be positive")
    return value


JOBS = typer.Option(8, "--jobs", "-j", help="Concurrent downloads.")
MAX_TRIES = typer.Option(5, "--max-tries", help="Attempts per file before giving up.")
LIMIT_RATE = typer.Option(None, "--limit-rate", help="Bandwidth cap, e.g. 10M (bytes/s).")
ALLOW_EXPIRED = typer.Option(
    False, "--allow-expired", help="Accept a Release past its Valid-Until (replay risk)."
)
ALLOW_ROLLBACK = typer.Option(
    False, "--allow-rollback", help="Accept a Release older than the last accepted one."
)
ALLOW_RELEASEINFO_CHANGE = typer.Option(
    False, "--allow-releaseinfo-change", help="Follow a suite whose Codename changed (as apt)."
)


@mirror_app.command("update")
def mirror_update(
    name: str,
    jobs: int = JOBS,
    max_tries: int = MAX_TRIES,
    limit_rate: str | None = LIMIT_RATE,
    allow_expired: bool = ALLOW_EXPIRED,
    allow_rollback: bool = ALLOW_ROLLBACK,
    allow_releaseinfo_change: bool = ALLOW_RELEASEINFO_CHANGE,
) -> None:
    """Fetch and verify the upstream's current state."""
    with user_errors():
        options = _update_options(
            jobs, max_tries, limit_rate, allow_expired, allow_rollback, allow_releaseinfo_change
        )
        result = mirror.update(open_store(), name, options, TqdmReporter())
    typer.echo(_summary_line(result))


def _mirror_json(m: mirror.Mirror) -> dict[str, Any]:
    return {
        "spec": asdict(m.spec),
        "created_at": m.created_at,
        "state": None if m.state is None else {**asdict(m.state), "packages": m.state.packages},
    }


@mirror_app.command("list")
def mirror_list(json_out: bool = JSON) -> None:
    """List mirrors."""
    with user_errors():
        mirrors = mirror.list_all(open_store())
    if json_out:
        _emit_json([_mirror_json(m) for m in mirrors])
        return
    for m in mirrors:
        when = (m.state.release_date or "no Date") if m.state else "never updated"
        count = m.state.packages if m.state else 0
        typer.echo(f"{m.spec.name}\t{m.spec.url} {m.spec.suite}\t{count} packages\t{when}")


@mirror_app.command("show")
def mirror_show(name: str, json_out: bool = JSON) -> None:
    """Show a mirror's spec and last verified state."""
    with user_errors():
        m = mirror.load(open_store(), name)
    if json_out:
        _emit_json(_mirror_json(m))
        return
    s = m.spec
    typer.echo(f"Name: {s.name}\nURL: {s.url}\nSuite: {s.suite}")
    typer.echo(f"Components: {' '.join(s.components)}\nArchitectures: {' '.join(s.architectures)}")
    typer.echo(f"Keyring: {s.keyring}")
    if s.fingerprints:
        typer.echo(f"Fingerprints: {' '.join(s.fingerprints)}")
    if s.filter:
        deps = " --with-deps" if s.with_deps else ""
        deps += " --with-recommends" if s.with_recommends else ""
        typer.echo(f"Filter: {s.filter}{deps}")
    if m.state is None:
        typer.echo("State: never updated")
        return
    st = m.state
    typer.echo(f"Release date: {st.release_date or '-'}\nValid until: {st.valid_until or '-'}")
    typer.echo(f"Signer: {st.signer}\nInRelease SHA256: {st.inrelease_sha256}")
    typer.echo(f"Fetched at: {st.fetched_at}\nPackages: {st.packages}")
    for i in st.indexes:
        typer.echo(f"  {i.component}/binary-{i.architecture}: {i.packages} packages")


@mirror_app.command("rm")
def mirror_rm(name: str) -> None:
    """Forget a mirror (its snapshots stay; pool files stay until gc)."""
    with user_errors():
        store = open_store()
        with store.locked():
            mirror.remove(store, name)
    typer.echo(f"removed mirror {name}")


# --- snapshot ---------------------------------------------------------------------------------


def _package_json(p: Package) -> dict[str, Any]:
    return {
        "name": p.name,
        "version": p.version,
        "architecture": p.architecture,
        "component": p.component,
        "sha256": p.sha256,
        "size": p.size,
    }


def _snapshot_json(
    info: snapshot.SnapshotInfo, problems: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": info.name,
        "created_at": info.created_at,
        "mirrorkit_version": info.mirrorkit_version,
        "sources": [s.to_json() for s in info.sources],
        "indexes": [asdict(i) for i in info.indexes],
        "packages": info.packages,
        "digest": info.digest,
    }
    if problems is not None:
        out["intact"] = not problems
        out["problems"] = problems
    return out


@snapshot_app.command("create")
def snapshot_create(
    name: str | None = typer.Argument(
        None, metavar="[NAME]", help="Snapshot name [MIRROR-YYYYMMDD]."
    ),
    more_debs: list[Path] = typer.Argument(
        None, metavar="[FILE_OR_DIR]...", help="More paths for --from-debs.", show_default=False
    ),
    from_mirror: str | None = typer.Option(None, "--from-mirror", help="Mirror to freeze."),
    from_debs: list[Path] = typer.Option(
        [], "--from-debs", help="Your own .deb files or directories of them (repeatable)."
    ),
    component: str | None = typer.Option(None, "--component", help="Component [main]."),
) -> None:
    """Freeze a mirror's current state (or your own .deb files) into an immutable snapshot.

    With --from-debs, paths may follow it: --from-debs a.deb b.deb dir/."""
    with user_errors():
        if from_debs and from_mirror:
            raise UsageError("snapshot create takes --from-mirror or --from-debs, not both")
        if not from_debs and not from_mirror:
            raise UsageError("snapshot create needs --from-mirror MIRROR or --from-debs PATH")
        if name is not None and not name:
            raise UsageError("the snapshot name is empty", "leave it out for the default name.")
        if from_debs:
            if not name:
                raise UsageError("snapshot create --from-debs needs a NAME")
            paths = [*from_debs, *(more_debs or [])]
            store = open_store()
            with refs.creating_snapshot(store, name):
                info = snapshot.create_from_debs(store, name, paths, component or "main")
        else:
            assert from_mirror is not None
            if more_debs:
                raise UsageError(f"unexpected extra argument(s): {' '.join(map(str, more_debs))}")
            if component is not None:
                raise UsageError(
                    "--component is for --from-debs; a mirror's snapshot keeps its components"
                )
            store = open_store()
            mirror.load(store, from_mirror)  # named before the snapshot's name
            if name:
                with refs.creating_snapshot(store, name):
                    info = snapshot.create_from_mirror(store, from_mirror, name)
            else:
                with store.locked():
                    name = refs.default_snapshot_name(store, from_mirror)
                    info = snapshot.create_from_mirror(store, from_mirror, name)
    typer.echo(f"created snapshot {info.name} ({info.packages} packages)")


@snapshot_app.command("list")
def snapshot_list(json_out: bool = JSON) -> None:
    """List snapshots (exit 1 if a record cannot be read; the others are listed)."""
    damaged: list[MirrorkitError] = []
    with user_errors():
        infos = snapshot.list_all(open_store(), damaged)
    if json_out:
        _emit_json([_snapshot_json(i) for i in infos])
    else:
        for i in infos:
            sources = ", ".join(_source_label(s) for s in i.sources)
            typer.echo(f"{i.name}\t{i.created_at}\t{i.packages} packages\tfrom {sources}")
    for exc in damaged:
        _err(f"error: {exc.message}")
        if exc.hint:
            _err(f"hint: {exc.hint}")
    if damaged:
        raise typer.Exit(1)


@snapshot_app.command("show")
def snapshot_show(
    name: str,
    packages: bool = typer.Option(False, "--packages", help="List every package."),
    json_out: bool = JSON,
) -> None:
    """Show a snapshot's provenance and check it is intact on disk (exit 1 if not)."""
    with user_errors():
        store = open_store()
        info = snapshot.load(store, name)
        problems = snapshot.check(store, info)
        pkgs = snapshot.packages(store, info) if packages else []
    if json_out:
        out = _snapshot_json(info, problems)
        if packages:
            out["package_list"] = [
                _package_json(p)
                for p in sorted(pkgs, key=lambda p: (p.name, p.version, p.architecture))
            ]
        _emit_json(out)
    else:
        typer.echo(f"Name: {info.name}\nCreated: {info.created_at}")
        typer.echo(f"mirrorkit version: {info.mirrorkit_version}\nDigest: {info.digest}")
        typer.echo(f"Packages: {info.packages}")
        for s in info.sources:
            typer.echo("Source:")
            for k, v in sorted(s.to_json().items()):
                typer.echo(_field_line("  ", k, v))
        for i in info.indexes:
            typer.echo(f"Index: {i.component}/binary-{i.architecture} ({i.packages} packages)")
        typer.echo("Integrity: intact" if not problems else "Integrity: MODIFIED OR DAMAGED")
        for problem in problems:
            typer.echo(f"  {problem}")
        seen: set[tuple[str, str]] = set()
        for p in sorted(pkgs, key=lambda p: (p.name, p.version, p.architecture)):
            if (p.ref, p.sha256) not in seen:
                seen.add((p.ref, p.sha256))
                typer.echo(f"{p.ref}\t{p.sha256}")
    if problems:
        raise typer.Exit(1)


@snapshot_app.command("rm")
def snapshot_rm(
    name: str, force: bool = typer.Option(False, "--force", help="Even if something needs it.")
) -> None:
    """Remove a snapshot (refused while a channel or snapshot needs it)."""
    with user_errors():
        refs.remove_snapshot(open_store(), name, force=force)
    typer.echo(f"removed snapshot {name}")


@snapshot_app.command("merge")
def snapshot_merge(
    dest: str,
    sources: list[str],
    latest: bool = typer.Option(False, "--latest", help="Highest version wins."),
    all_versions: bool = typer.Option(False, "--all-versions", help="Keep every version."),
) -> None:
    """Merge snapshots into a new one (default: for each package the later SRC wins)."""
    with user_errors():
        if latest and all_versions:
            raise UsageError("--latest and --all-versions exclude each other")
        policy = "latest" if latest else "all-versions" if all_versions else "later"
        store = open_store()
        with refs.creating_snapshot(store, dest):
            info = snapshot.merge(store, dest, sources, policy)
    typer.echo(f"created snapshot {info.name} ({info.packages} packages, policy {policy})")


@snapshot_app.command("diff")
def snapshot_diff(a: str, b: str, json_out: bool = JSON) -> None:
    """Packages added, removed, upgraded, downgraded and changed (same version, other
    contents) from snapshot A to B (exit 0 either way)."""
    with user_errors():
        changes = snapshot.diff(open_store(), a, b)
    if json_out:
        _emit_json(
            {
                kind: [
                    {"name": c.name, "architecture": c.architecture, "old": c.old, "new": c.new}
                    for c in changes
                    if c.kind == kind
                ]
                for kind in snapshot.CHANGE_KINDS
            }
        )
        return
    counts = {k: sum(c.kind == k for c in changes) for k in snapshot.CHANGE_KINDS}
    typer.echo(", ".join(f"{n} {k}" for k, n in counts.items()) + f"  ({a} -> {b})")
    rows = [(c.kind, c.name, c.architecture, c.old or "-", c.new or "-") for c in changes]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    for kind in counts:
        for row in (r for r in rows if r[0] == kind):
            typer.echo(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )


WITH_DEPS = typer.Option(False, "--with-deps", help="Add the dependency closure.")
WITH_RECOMMENDS = typer.Option(False, "--with-recommends", help="Follow Recommends too.")


@snapshot_app.command("filter")
def snapshot_filter(
    source: str,
    dest: str,
    query_text: str = typer.Argument(..., metavar="QUERY"),
    with_deps: bool = WITH_DEPS,
    with_recommends: bool = WITH_RECOMMENDS,
    with_essential: bool = typer.Option(
        False, "--with-essential", help="Add the Essential/required set, to bootstrap a system."
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Create it even if dependencies are unmet (listed)."
    ),
) -> None:
    """New snapshot DEST: the packages of SOURCE that QUERY matches (and what they need)."""
    with user_errors():
        if with_recommends and not with_deps:
            raise UsageError("--with-recommends needs --with-deps (it widens the closure)")
        selection = resolve.Selection(
            query_text, with_deps, with_recommends, with_essential, allow_missing
        )
        store = open_store()
        with refs.creating_snapshot(store, dest):
            info, picked = snapshot.filter_snapshot(store, source, dest, selection)
    if picked.closure is not None:
        for unmet in picked.closure.unmet:
            _err(f"warning: unmet: {unmet}")
    typer.echo(
        f"created snapshot {info.name}: {len(picked.matched)} matched, "
        f"{len(picked.packages)} packages in all"
    )


@snapshot_app.command("search")
def snapshot_search(
    name: str, query_text: str = typer.Argument(..., metavar="QUERY"), json_out: bool = JSON
) -> None:
    """Packages of snapshot NAME that QUERY matches, as name_version_arch (sorted).

    QUERY is aptly's language: 'nginx', 'nginx (>= 1.22)', 'Priority (required)',
    '$Source (openssl)', 'Name (% lib*)', 'a | b', 'a, b', '!a', parentheses."""
    with user_errors():
        found = snapshot.search(open_store(), name, query_text)
    if json_out:
        _emit_json([_package_json(p) for p in found])
        return
    for ref in dict.fromkeys(p.ref for p in found):
        typer.echo(ref)


@snapshot_app.command("verify")
def snapshot_verify(
    name: str,
    with_: list[str] = typer.Option([], "--with", help="Also consider this snapshot's packages."),
    json_out: bool = JSON,
) -> None:
    """List unmet dependencies of NAME's packages; exit 1 if there are any."""
    with user_errors():
        unmet = snapshot.verify(open_store(), name, with_)
    if json_out:
        _emit_json(
            [{"package": u.package.ref, "dependency": u.dependency, "why": u.why} for u in unmet]
        )
    else:
        for u in unmet:
            typer.echo(str(u))
        _info(f"{name}: {len(unmet)} unmet dependencies" if unmet else f"{name}: all satisfied")
    if unmet:
        raise typer.Exit(1)


@snapshot_app.command("why")
def snapshot_why(
    name: str,
    package: str,
    from_query: str | None = typer.Option(
        None, "--from", help="Start from this query [the snapshot's own filter]."
    ),
    json_out: bool = JSON,
) -> None:
    """The dependency chain that pulled PACKAGE into snapshot NAME."""
    with user_errors():
        chain = snapshot.why(open_store(), name, package, from_query)
    if json_out:
        # From the filter's match down to PACKAGE; "dependency" is what pulled each one in.
        _emit_json([{"package": pkg.ref, "dependency": dep or None} for pkg, dep in chain])
        return
    for depth, (pkg, dep) in enumerate(chain):
        via = f"  (for: {dep})" if dep else "  (matches the filter)"
        typer.echo(f"{'  ' * depth}{pkg.ref}{via}")


# --- publish ----------------------------------------------------------------------------------


def _print_published(pub: publish.Published) -> None:
    r = pub.result
    if isinstance(r, publish.fs.PublishResult):
        done = f"{r.linked} pool files linked, {r.reused} already there"
        removed = f"{r.removed} pool files" if r.removed else ""
    else:
        if r.broken_lock is not None:
            _info(f"removed the lock of {r.broken_lock.describe()} (--break-lock)")
        done = f"{len(r.uploaded)} objects uploaded, {r.reused} already there"
        removed = f"{len(r.removed)} objects" if r.removed else ""
    _info(f"published {pub.snapshot} as suite {r.suite} in {pub.location} ({done})")
    if removed:
        _info(f"removed {removed} no suite needs any more")
    _info(f"public key: {pub.key_location} (copy it to the clients, e.g. /etc/apt/keyrings/)")
    _info("client source (/etc/apt/sources.list.d/mirrorkit.sources):")
    typer.echo(pub.client_stanza())


@publish_app.command("fs")
def publish_fs(
    name: str = typer.Argument(..., metavar="SNAPSHOT_OR_CHANNEL"),
    directory: Path = typer.Argument(..., metavar="DIR"),
    suite: str | None = typer.Option(None, "--suite", help="Suite name [the snapshot's name]."),
    key: str | None = typer.Option(
        None,
        "--key",
        help="Signing key (id, fingerprint, uid); default: the only secret key in the GnuPG home.",
    ),
    origin: str | None = typer.Option(None, "--origin", help="Release Origin field."),
    label: str | None = typer.Option(None, "--label", help="Release Label field."),
    valid_for: str | None = typer.Option(
        None, "--valid-for", help="Set Valid-Until this far ahead, e.g. 14d."
    ),
) -> None:
    """Publish a snapshot as a signed APT tree in DIR (suite switched atomically)."""
    with user_errors():
        pub = publish.publish_fs(
            open_store(),
            name,
            directory,
            key=key,
            suite=suite,
            gnupghome=_G.gnupghome,
            origin=origin,
            label=label,
            valid_for=valid_for,
        )
    _print_published(pub)


@publish_app.command("s3")
def publish_s3(
    name: str = typer.Argument(..., metavar="SNAPSHOT_OR_CHANNEL"),
    url: str = typer.Argument(..., metavar="s3://BUCKET/PREFIX"),
    # No square brackets in these helps: rich would take them for markup.
    suite: str | None = typer.Option(
        None, "--suite", help="Suite name (default: the snapshot's or channel's name)."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        help="Signing key (id, fingerprint, uid); default: the only secret key in the GnuPG home.",
    ),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="S3-compatible server, e.g. http://minio:9000 (default: AWS)."
    ),
    region: str | None = typer.Option(
        None, "--region", help="Region (default: from the AWS configuration)."
    ),
    jobs: int = typer.Option(8, "--jobs", "-j", help="Concurrent uploads."),
    prune: bool = typer.Option(
        False, "--prune", help="Then delete the pool objects mirrorkit placed that no suite lists."
    ),
    break_lock: bool = typer.Option(
        False, "--break-lock", help="Remove a stale lock a killed publish left behind."
    ),
    origin: str | None = typer.Option(None, "--origin", help="Release Origin field."),
    label: str | None = typer.Option(None, "--label", help="Release Label field."),
    valid_for: str | None = typer.Option(
        None, "--valid-for", help="Set Valid-Until this far ahead, e.g. 14d."
    ),
) -> None:
    """Publish a snapshot as a signed APT tree to S3 (InRelease last: never a half suite).

    Credentials come from the standard AWS chain (environment, ~/.aws, instance role)."""
    with user_errors():
        pub = publish.publish_s3(
            open_store(),
            name,
            url,
            key=key,
            suite=suite,
            gnupghome=_G.gnupghome,
            origin=origin,
            label=label,
            valid_for=valid_for,
            endpoint_url=endpoint_url,
            region=region,
            jobs=jobs,
            prune=prune,
            break_lock=break_lock,
            reporter=TqdmReporter(),
        )
    _print_published(pub)


@app.command("serve")
def serve_cmd(
    directory: Path = typer.Argument(..., metavar="DIR"),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free port)."),
) -> None:
    """Serve a published tree over HTTP, for tests and small sites.

    GET/HEAD, Range, If-Modified-Since; never outside DIR, no directory listings. Not a
    replacement for nginx or Apache in production (no TLS, no access control)."""
    with user_errors():
        server = serve_mod.make_server(directory, bind, port, log=None if _G.quiet else _err)
    typer.echo(f"serving {directory} at {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- channels and gc --------------------------------------------------------------------------


@channel_app.command("set")
def channel_set(name: str = typer.Argument(..., metavar="CHANNEL"), snapshot_name: str =
                typer.Argument(..., metavar="SNAPSHOT")) -> None:  # fmt: skip
    """Point CHANNEL (e.g. prod) at SNAPSHOT; publish the channel to make it live."""
    with user_errors():
        ch = refs.set_channel(open_store(), name, snapshot_name)
    typer.echo(f"channel {ch.name} -> {ch.snapshot}")


@channel_app.command("list")
def channel_list(json_out: bool = JSON) -> None:
    """Channels and the snapshots they point at."""
    with user_errors():
        channels = channel.list_all(open_store())
    if json_out:
        _emit_json([{"name": c.name, "snapshot": c.snapshot, "updated_at": c.updated_at}
                    for c in channels])  # fmt: skip
        return
    for c in channels:
        typer.echo(f"{c.name}\t{c.snapshot}\t{c.updated_at}")


@channel_app.command("history")
def channel_history(
    name: str = typer.Argument(..., metavar="CHANNEL"), json_out: bool = JSON
) -> None:
    """Who moved CHANNEL, when, and to what (oldest first)."""
    with user_errors():
        ch = channel.load(open_store(), name)
    if json_out:
        _emit_json([{"action": e.action, "snapshot": e.snapshot, "at": e.at, "by": e.by,
                     "digest": e.digest or None} for e in ch.history])  # fmt: skip
        return
    for e in ch.history:
        typer.echo(f"{e.at}\t{e.action:<8}\t{e.snapshot}\t{e.by}")


@channel_app.command("rollback")
def channel_rollback(name: str = typer.Argument(..., metavar="CHANNEL")) -> None:
    """Point CHANNEL back at the snapshot it had before; publish the channel to make it live."""
    with user_errors():
        ch = channel.rollback(open_store(), name)
    typer.echo(f"channel {ch.name} -> {ch.snapshot} (rolled back)")


@app.command("gc")
def gc_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
    json_out: bool = JSON,
) -> None:
    """Remove pool objects no mirror, snapshot or published suite references."""
    with user_errors():
        result = gc.collect(open_store(), dry_run=dry_run)
    if json_out:
        _emit_json({"dry_run": dry_run, **asdict(result)})
        return
    if _G.verbose:
        for path in result.removed:
            _err(f"{'would remove' if dry_run else 'removed'} {path}")
    verb = "would free" if dry_run else "freed"
    typer.echo(
        f"{verb} {result.bytes / 1e6:.1f} MB: {result.pool_files} pool files, "
        f"{result.meta_files} metadata objects, {result.temp_files} temporary files"
    )


# --- sync -------------------------------------------------------------------------------------


@app.command("sync")
def sync_cmd(
    profile: Path = typer.Argument(..., metavar="PROFILE.toml"),
    jobs: int = JOBS,
    max_tries: int = MAX_TRIES,
    limit_rate: str | None = LIMIT_RATE,
    no_publish: bool = typer.Option(False, "--no-publish", help="Update and snapshot only."),
    allow_expired: bool = ALLOW_EXPIRED,
    allow_rollback: bool = ALLOW_ROLLBACK,
    allow_releaseinfo_change: bool = ALLOW_RELEASEINFO_CHANGE,
) -> None:
    """The main job: update the profile's mirrors, snapshot them, publish."""
    with user_errors():
        options = _update_options(
            jobs, max_tries, limit_rate, allow_expired, allow_rollback, allow_releaseinfo_change
        )
        result = sync_mod.sync(
            open_store(),
            profile,
            options=options,
            no_publish=no_publish,
            gnupghome=_G.gnupghome,
            reporter=TqdmReporter(),
        )
    for update in result.updates:
        _info(_summary_line(update))
    typer.echo(f"snapshot: {result.snapshot.name} ({result.snapshot.packages} packages)")
    if result.published is not None:
        _print_published(result.published)


# --- bundles ----------------------------------------------------------------------------------

bundle_app = typer.Typer(
    help="Air-gap bundles: signed, verifiable, incremental, split into volumes.",
    no_args_is_help=True,
)
app.add_typer(bundle_app, name="bundle")
BUNDLE_KEYRING = typer.Option(
    ..., "--keyring", metavar="FILE", help="Public key(s) of who may sign bundles (.gpg/.asc)."
)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@bundle_app.command("export")
def bundle_export(
    snapshots: list[str] = typer.Argument(..., metavar="SNAPSHOT..."),
    output: Path = typer.Option(
        ..., "-o", "--output", metavar="FILE", help="The bundle file to write."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        metavar="KEYID",
        help="Signing key (id, fingerprint, uid); default: the only secret key in the GnuPG home.",
    ),
    channels: list[str] = typer.Option(
        [],
        "--channel",
        metavar="CHANNEL",
        help="Pin this channel to its snapshot on the other side (repeatable).",
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="BASE", help="Incremental: only pool objects BASE lacks."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        metavar="SIZE",
        help="Write FILE.001, FILE.002, ... of at most SIZE each, e.g. 700M, 4G, 25G "
        "(K/M/G decimal, KiB/MiB/GiB binary), plus FILE.index.json.",
    ),
) -> None:
    """Write snapshots and the packages they need as one signed, verifiable bundle."""
    with user_errors():
        result = bundle.export(
            open_store(),
            snapshots,
            output,
            key=key,
            gnupghome=_G.gnupghome,
            channels=channels,
            since=since,
            split=bundle.parse_size(split) if split else None,
            reporter=TqdmReporter(),
        )
    m = result.manifest
    rate = m.total_bytes / 1e6 / result.seconds if result.seconds > 0 else 0.0
    _info(
        f"bundled {', '.join(s.name for s in m.snapshots)}"
        + (f" (since {m.since.name})" if m.since else "")
        + f": {len(m.pool)} pool objects, {_mb(m.total_bytes)} -> "
        f"{_mb(result.compressed_bytes)} in {result.seconds:.1f} s ({rate:.0f} MB/s), "
        f"signed by {result.signer}"
    )
    for part in result.files:
        typer.echo(str(part.path))
    if result.index is not None:
        typer.echo(str(result.index))


@bundle_app.command("show")
def bundle_show(
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path | None = typer.Option(
        None, "--keyring", help="Also check the manifest's signature against this keyring."
    ),
    json_out: bool = JSON,
) -> None:
    """What a bundle holds (snapshots, provenance, counts, sizes), from its manifest alone."""
    with user_errors():
        info = bundle.show(file, keyring)
    if json_out:
        _emit_json(info.to_json())
        return
    m = info.manifest
    files = info.files
    where = f"{len(files.parts)} parts, index {files.index}" if files.index else "1 file"
    typer.echo(f"Bundle: {files.what} ({where}, {_mb(files.size)})")
    typer.echo(f"Created: {m.created_at} by mirrorkit {m.mirrorkit_version}")
    typer.echo(f"Manifest SHA256: {info.manifest_sha256}")
    if info.signers is None:
        typer.echo("Signature: not checked (give --keyring, or run 'mirrorkit bundle verify')")
    else:
        typer.echo(f"Signature: good, by {', '.join(info.signers)}")
    since = f"incremental, since {m.since.name} ({m.since.digest})" if m.since else "full"
    typer.echo(f"Kind: {since}")
    for s in m.snapshots:
        typer.echo(f"Snapshot: {s.name} ({s.packages} packages, created {s.created_at})")
        typer.echo(f"  digest: {s.digest}")
        for source in s.sources:
            typer.echo("  source:")
            for k, v in sorted(source.to_json().items()):
                typer.echo(_field_line("    ", k, v))
        for i in s.indexes:
            typer.echo(f"  index: {i.component}/binary-{i.architecture} ({i.packages} packages)")
    for c in m.channels:
        typer.echo(f"Channel: {c.name} -> {c.snapshot}")
    pool = m.pool
    typer.echo(
        f"Members: {len(m.members) + 2}; pool objects: {len(pool)} "
        f"({_mb(sum(p.size for p in pool))}); metadata objects: {len(m.meta)}; "
        f"{_mb(m.total_bytes)} uncompressed"
    )


@bundle_app.command("verify")
def bundle_verify(
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path = BUNDLE_KEYRING,
    json_out: bool = JSON,
) -> None:
    """Check the signature, then every member's size and SHA256; exit 1 on any problem."""
    with user_errors():
        report = bundle.verify(file, keyring, TqdmReporter())
    if json_out:
        _emit_json(report.to_json())
    else:
        for problem in report.problems:
            _err(f"problem: {problem.message}")
        if report.ok:
            typer.echo(
                f"{report.what}: OK: manifest signed by {', '.join(report.signers)}; "
                f"{report.members} members verified against it"
            )
        else:
            _err(f"{report.what}: {len(report.problems)} problem(s): do not import this bundle")
            # The signature's own hint names --keyring; member problems share DAMAGED's.
            hints = dict.fromkeys(p.hint for p in report.problems if p.hint) or {bundle.DAMAGED: 0}
            for hint in hints:
                _err(f"hint: {hint}")
    if not report.ok:
        raise typer.Exit(1)


@bundle_app.command("import")
def bundle_import(
    file: Path = typer.Argument(..., metavar="FILE"),
    keyring: Path = BUNDLE_KEYRING,
) -> None:
    """Verify a bundle (signature first) and add its snapshots and channel pins to the store.

    FILE is the bundle, or the first part or the index of a split one."""
    with user_errors():
        result = bundle.import_bundle(open_store(), file, keyring, TqdmReporter())
    for name in result.added:
        typer.echo(f"imported snapshot {name}")
    for name in result.present:
        typer.echo(f"snapshot {name} was here already (same digest)")
    for move in result.channels:
        if move.applied:
            typer.echo(f"channel {move.name} -> {move.new}")
        elif move.old == move.new:
            typer.echo(f"channel {move.name} -> {move.new} (unchanged)")
        else:
            _err(f"channel {move.name} not moved to {move.new}: {move.reason}")
    _info(
        f"signed by {', '.join(result.signers)}; {result.pool_added} pool objects added, "
        f"{result.pool_present} were here already; {_mb(result.bytes)} read in "
        f"{result.seconds:.1f} s"
    )


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    app()
