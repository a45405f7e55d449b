"""Mirrors and the main job: mirror add/update/list/show/rm, sync (network-bound: these
have ``_async`` variants)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace as spec_with_changes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit.api._support import (
    StrPath,
    boundary,
    boundary_async,
    gnupghome_arg,
    keyring_path,
    log,
    normalise_fingerprint,
    open_store,
    reporter_or_null,
    run_sync,
    split_list,
    update_options,
)
from mirrorkit.errors import ConflictError, MirrorkitError, UsageError
from mirrorkit.models import MirrorEdited, MirrorsAdded, MirrorSpec, Package, Removed, UpdateResult
from mirrorkit.progress import Reporter

if TYPE_CHECKING:
    from mirrorkit.mirror import Mirror, UpdateOptions
    from mirrorkit.net.config import NetworkConfig
    from mirrorkit.store import Store
    from mirrorkit.syncjob import SyncResult


# --- mirrors -------------------------------------------------------------------------------------


@boundary
def mirror_add(
    name: str | None = None,
    url: str | None = None,
    suite: str | None = None,
    *,
    components: Sequence[str] = (),
    architectures: Sequence[str] = (),
    keyring: StrPath | None = None,
    fingerprints: Sequence[str] = (),
    profile: StrPath | None = None,
    filter: str | None = None,
    with_deps: bool = False,
    with_recommends: bool = False,
    with_sources: bool = False,
    with_udebs: bool = False,
    allow_empty: bool = False,
    languages: Sequence[str] | None = None,
    with_contents: bool = False,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    no_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
) -> MirrorsAdded:
    """Start following an upstream suite, verified with ``keyring``; or, with ``profile``,
    every upstream a profile names (replacing their specs, keeping their state).

    Unless ``no_check``, the upstream is asked first: its InRelease (or Release) must be
    signed by the keyring and list the suite, components and architectures (ReleaseError
    names what it lists; a FetchError subclass if it cannot be reached). ``proxy``,
    ``ca_bundle`` and ``auth_file`` are how the mirror is reached: used for that check and
    remembered for its updates (whose own options override them); a profile's mirrors take
    them from its ``[network]`` at each sync instead.

    ``with_sources`` adds the Sources indices and source packages (of what a filter keeps:
    the sources that built the binaries kept), ``with_udebs`` the debian-installer
    Packages indices and .udeb files; both are off by default, as in aptly.

    A ``filter`` that matches nothing fails the update (before it commits) with
    EmptyResultError unless ``allow_empty``. ``languages``: the i18n/Translation-LANG files
    to keep (long descriptions; default ``en``, as apt fetches; ``[]`` or ``none`` for none);
    ``with_contents``: the Contents-ARCH files too (for apt-file; default off)."""
    from mirrorkit import extras, mirror
    from mirrorkit import profile as profiles
    from mirrorkit.mirrors import add_locks

    _check_selection(filter, with_deps, with_recommends, allow_empty)
    base = None
    if profile is not None:
        given = [name, url, suite, keyring, components, architectures, fingerprints, filter,
                 with_sources, with_udebs]  # fmt: skip
        if any(given) or languages is not None or with_contents:
            raise UsageError(
                "mirror add --profile takes every upstream from the profile",
                "leave out NAME URL SUITE and the other options, or leave out --profile.",
            )
        loaded = profiles.load_profile(Path(profile))
        profiles.check_keyrings(loaded)
        specs = loaded.upstreams
        base = loaded.network
    else:
        if not (name and url and suite and keyring):
            raise UsageError(
                "mirror add needs NAME URL SUITE and --keyring (or --profile FILE)",
                "e.g. mirrorkit mirror add bookworm http://deb.debian.org/debian bookworm "
                "--keyring /usr/share/keyrings/debian-archive-keyring.gpg",
            )
        langs = ("en",) if languages is None else tuple(split_list(languages))
        langs = tuple(dict.fromkeys(extras.check_language(x) for x in langs if x != "none"))
        specs = (
            MirrorSpec(
                name=name,
                url=url.rstrip("/"),
                suite=suite,
                components=tuple(split_list(components)),
                architectures=tuple(split_list(architectures)),
                keyring=keyring_path(keyring),
                fingerprints=tuple(normalise_fingerprint(f) for f in fingerprints),
                filter=filter or "",
                with_deps=with_deps,
                with_recommends=with_recommends,
                allow_empty=allow_empty,
                languages=() if suite.endswith("/") else langs,
                with_contents=with_contents,
                **_network_fields(proxy, ca_bundle, auth_file),
                with_sources=with_sources,
                with_udebs=with_udebs,
            ),
        )
    st = open_store(store)
    unchecked = []
    for spec in specs:
        if mirror.record_path(st, spec.name).exists() and profile is None:
            raise ConflictError(
                f"mirror {spec.name} exists already",
                f"use 'mirrorkit mirror edit {spec.name}' to change it, or "
                f"'mirrorkit mirror rm {spec.name}' first, or pick another name.",
            )
        why = _check_upstream(spec, proxy, ca_bundle, auth_file, base, no_check, st)
        if why is not None:
            unchecked.append(f"{spec.name}: {why}")
    with st.locked(*add_locks(specs)):
        added = tuple(mirror.add(st, spec, replace=profile is not None) for spec in specs)
    for m in added:
        log().info("added mirror %s: %s %s", m.spec.name, m.spec.url, m.spec.suite)
    return MirrorsAdded(added, tuple(unchecked))


@boundary
def mirror_edit(
    name: str,
    *,
    url: str | None = None,
    suite: str | None = None,
    components: Sequence[str] | None = None,
    architectures: Sequence[str] | None = None,
    keyring: StrPath | None = None,
    fingerprints: Sequence[str] | None = None,
    filter: str | None = None,
    with_deps: bool | None = None,
    with_recommends: bool | None = None,
    allow_empty: bool | None = None,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    reset_network: bool = False,
    no_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
) -> MirrorEdited:
    """Change what mirror ``name`` follows (None: leave that part as it is; ``filter=""``
    drops the filter; ``reset_network`` forgets its proxy, CA bundle and auth files first).
    The new spec is checked as :func:`mirror_add` checks one, the upstream included unless
    ``no_check`` (an upstream that cannot be asked: ``result.unchecked`` says why); the
    next update follows it, reusing what it can (the state is dropped only
    when the URL, suite or keyring changed: another upstream)."""
    from dataclasses import replace

    from mirrorkit import mirror

    st = open_store(store)
    old = mirror.load(st, name).spec
    changes: dict[str, object] = {}
    if url is not None:
        changes["url"] = url.rstrip("/")
    if suite is not None:
        changes["suite"] = suite
    if components is not None:
        changes["components"] = tuple(split_list(components))
    if architectures is not None:
        changes["architectures"] = tuple(split_list(architectures))
    if keyring is not None:
        changes["keyring"] = keyring_path(keyring)
    if fingerprints is not None:
        changes["fingerprints"] = tuple(normalise_fingerprint(f) for f in fingerprints)
    flags = {"with_deps": with_deps, "with_recommends": with_recommends, "allow_empty": allow_empty}
    changes |= {k: v for k, v in flags.items() if v is not None}
    if filter is not None:
        changes["filter"] = filter
        if not filter:  # no filter: what only a filter means goes with it
            changes |= dict.fromkeys(flags, False)
    if reset_network:
        changes |= {"proxy": "", "ca_bundle": "", "auth_files": ()}
    changes |= _network_fields(proxy, ca_bundle, auth_file)
    spec = replace(old, **changes)  # type: ignore[arg-type]
    _check_selection(spec.filter or None, spec.with_deps, spec.with_recommends, spec.allow_empty)
    if spec == old:
        raise UsageError(
            f"mirror edit {name}: nothing to change",
            "give what to change, e.g. -c main,contrib or --filter QUERY "
            "('mirrorkit mirror edit --help').",
        )
    why = _check_upstream(spec, proxy, ca_bundle, auth_file, None, no_check, st)
    from mirrorkit.mirrors import add_locks

    with st.locked(*add_locks([spec])):
        # Read again under the lock: a 'mirror rm' may have run meanwhile (NotFoundError), or
        # another edit, whose changes stay (these apply on top of them).
        current = mirror.load(st, name).spec
        if current != old:
            spec = replace(current, **changes)  # type: ignore[arg-type]
            _check_selection(
                spec.filter or None, spec.with_deps, spec.with_recommends, spec.allow_empty
            )
        edited = mirror.edit(st, spec)
    log().info("edited mirror %s", name)
    return MirrorEdited(edited, why)


def _check_selection(
    filter: str | None, with_deps: bool, with_recommends: bool, allow_empty: bool
) -> None:
    from mirrorkit import query

    if allow_empty and not filter:
        raise UsageError("--allow-empty needs --filter QUERY")
    if (with_deps or with_recommends) and not filter:
        raise UsageError("--with-deps and --with-recommends need --filter QUERY")
    if filter:
        query.parse(filter)  # a typo fails here, with a caret, not at update time


def _network_fields(
    proxy: str | None, ca_bundle: StrPath | None, auth_file: StrPath | Sequence[StrPath] | None
) -> dict[str, Any]:
    """The spec fields for the network options given (absolute paths: later commands may run
    in another directory)."""
    fields: dict[str, Any] = {}
    if proxy is not None:
        fields["proxy"] = proxy
    if ca_bundle is not None:
        fields["ca_bundle"] = keyring_path(ca_bundle)
    if auth_file is not None:
        many = [auth_file] if isinstance(auth_file, str | os.PathLike) else list(auth_file)
        fields["auth_files"] = tuple(keyring_path(f) for f in many)
    return fields


def _check_upstream(
    spec: MirrorSpec,
    proxy: str | None,
    ca_bundle: StrPath | None,
    auth_file: StrPath | Sequence[StrPath] | None,
    base: NetworkConfig | None,
    no_check: bool,
    store: Store,
) -> str | None:
    """The checks of :func:`mirror_add` that read more than the arguments: the keyring holds
    keys, and (unless ``no_check``) the upstream serves the suite it names. Returns why the
    upstream could not be asked (mirror.check_upstream), if it could not."""
    from mirrorkit import gpg, mirror
    from mirrorkit.net.config import network_config

    given_url = spec.url
    spec, _moved = mirror.checked(spec)
    gpg.keyring_fingerprints(Path(spec.keyring))
    if no_check:
        return None
    if base is None:
        base = mirror.network_of(spec)
    network = spec_with_changes(
        network_config(proxy, ca_bundle, auth_file, base=base),
        extra_auth_files=(store.auth_file,),  # credentials moved out of URLs before
    )
    # The URL as given (user:password@ included): the store's auth file is not written yet.
    asked = spec_with_changes(spec, url=given_url)
    try:
        return run_sync(lambda: mirror.check_upstream(asked, network))
    except MirrorkitError as exc:
        exc.message = f"mirror {spec.name}: {exc.message}"
        hint = exc.hint or "check the URL, suite, components and architectures."
        exc.hint = f"{hint} (--no-check adds the mirror without asking the upstream.)"
        raise


async def _mirror_update(
    name: str, options: UpdateOptions, store: StrPath | None, reporter: Reporter | None
) -> UpdateResult:
    from mirrorkit import mirror

    return await mirror.update_async(open_store(store), name, options, reporter_or_null(reporter))


@boundary_async
async def mirror_update_async(
    name: str,
    *,
    jobs: int = 8,
    max_tries: int = 5,
    limit_rate: str | float | None = None,
    allow_expired: bool = False,
    allow_rollback: bool = False,
    allow_releaseinfo_change: bool = False,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    dry_run: bool = False,
    no_space_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
    reporter: Reporter | None = None,
) -> UpdateResult:
    """:func:`mirror_update` as a coroutine: the downloads run on the caller's event loop."""
    options = update_options(
        jobs,
        max_tries,
        limit_rate,
        allow_expired,
        allow_rollback,
        allow_releaseinfo_change,
        proxy,
        ca_bundle,
        auth_file,
        dry_run=dry_run,
        no_space_check=no_space_check,
    )
    return await _mirror_update(name, options, store, reporter)


@boundary
def mirror_update(
    name: str,
    *,
    jobs: int = 8,
    max_tries: int = 5,
    limit_rate: str | float | None = None,
    allow_expired: bool = False,
    allow_rollback: bool = False,
    allow_releaseinfo_change: bool = False,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    dry_run: bool = False,
    no_space_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
    reporter: Reporter | None = None,
) -> UpdateResult:
    """Fetch and verify the upstream's current state (``limit_rate``: bytes/s or ``"10M"``).

    ``dry_run``: verify InRelease and the indices, return what would be downloaded
    (``result.plan``) and change nothing. Unless ``no_space_check``, an update that would not
    fit on the store's filesystem (with a margin: mirrorkit.space) raises
    InsufficientSpaceError before downloading anything.

    ``proxy`` (a URL, ``"apt"``, ``"none"``), ``ca_bundle`` and ``auth_file`` (one path or
    several, apt's auth.conf format) as ``--proxy``, ``--ca-bundle``, ``--auth-file``; unset,
    the environment's proxies and CA store and apt's auth files."""
    options = update_options(
        jobs,
        max_tries,
        limit_rate,
        allow_expired,
        allow_rollback,
        allow_releaseinfo_change,
        proxy,
        ca_bundle,
        auth_file,
        dry_run=dry_run,
        no_space_check=no_space_check,
    )
    return run_sync(lambda: _mirror_update(name, options, store, reporter))


@boundary
def mirror_list(*, store: StrPath | None = None) -> tuple[Mirror, ...]:
    """Every mirror, by name."""
    from mirrorkit import mirror

    return tuple(_shown(m) for m in mirror.list_all(open_store(store)))


@boundary
def mirror_show(name: str, *, store: StrPath | None = None) -> Mirror:
    """A mirror's spec and last verified state."""
    from mirrorkit import mirror

    return _shown(mirror.load(open_store(store), name))


def _shown(m: Mirror) -> Mirror:
    """``m`` with its URL redacted: a record written before credentials left mirror URLs
    may hold some (its next update moves them to the store's auth file)."""
    from mirrorkit.net.redact import redact_url

    return spec_with_changes(m, spec=spec_with_changes(m.spec, url=redact_url(m.spec.url)))


@boundary
def mirror_search(
    name: str, query: str | None, *, with_deps: bool = False, store: StrPath | None = None
) -> tuple[Package, ...]:
    """The packages of mirror ``name`` as its last update committed them that ``query``
    matches (None: all), sorted by ``name_version_arch``; with ``with_deps``, also what they
    depend on, as far as the mirror satisfies it."""
    from mirrorkit import mirror, resolve

    st = open_store(store)
    m = mirror.load(st, name)
    indexes = [i for i in m.state.indexes if i.kind != "installer"] if m.state else []
    pkgs = mirror.packages(st, indexes)
    if query is None:
        return tuple(sorted(pkgs, key=lambda p: p.ref))
    archs = sorted({i.architecture for i in indexes if i.kind in ("deb", "udeb")} - {"all"})
    universe = resolve.Universe(pkgs, archs)
    if with_deps:
        selection = resolve.Selection(query, with_deps=True, allow_missing=True, allow_empty=True)
        found = resolve.apply(universe, selection).packages
    else:
        found = resolve.search(universe, query)
    return tuple(sorted(found, key=lambda p: p.ref))


@boundary
def mirror_rm(name: str, *, wait: float | None = None, store: StrPath | None = None) -> Removed:
    """Forget a mirror (its snapshots stay; pool files stay until gc)."""
    from mirrorkit import mirror

    st = open_store(store)
    with st.locked(f"mirror/{name}"):
        mirror.remove(st, name)
    return Removed("mirror", name)


async def _sync(
    profile: StrPath,
    options: UpdateOptions,
    no_publish: bool,
    force_snapshot: bool,
    store: StrPath | None,
    gnupghome: StrPath | None,
    reporter: Reporter | None,
) -> SyncResult:
    from mirrorkit import syncjob

    return await syncjob.sync_async(
        open_store(store),
        Path(profile),
        options=options,
        no_publish=no_publish,
        force_snapshot=force_snapshot,
        gnupghome=gnupghome_arg(gnupghome),
        reporter=reporter_or_null(reporter),
    )


@boundary_async
async def sync_async(
    profile: StrPath,
    *,
    jobs: int = 8,
    max_tries: int = 5,
    limit_rate: str | float | None = None,
    no_publish: bool = False,
    force_snapshot: bool = False,
    allow_expired: bool = False,
    allow_rollback: bool = False,
    allow_releaseinfo_change: bool = False,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    dry_run: bool = False,
    no_space_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    reporter: Reporter | None = None,
) -> SyncResult:
    """:func:`sync` as a coroutine: the downloads run on the caller's event loop, the rest
    (snapshot, publish) on a worker thread."""
    options = update_options(
        jobs,
        max_tries,
        limit_rate,
        allow_expired,
        allow_rollback,
        allow_releaseinfo_change,
        proxy,
        ca_bundle,
        auth_file,
        dry_run=dry_run,
        no_space_check=no_space_check,
    )
    return await _sync(profile, options, no_publish, force_snapshot, store, gnupghome, reporter)


@boundary
def sync(
    profile: StrPath,
    *,
    jobs: int = 8,
    max_tries: int = 5,
    limit_rate: str | float | None = None,
    no_publish: bool = False,
    force_snapshot: bool = False,
    allow_expired: bool = False,
    allow_rollback: bool = False,
    allow_releaseinfo_change: bool = False,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    dry_run: bool = False,
    no_space_check: bool = False,
    wait: float | None = None,
    store: StrPath | None = None,
    gnupghome: StrPath | None = None,
    reporter: Reporter | None = None,
) -> SyncResult:
    """The main job: update the profile's mirrors, snapshot them into one snapshot (filtered
    and merged as the profile says), publish it and move its channel.

    When no upstream changed since the snapshot an earlier sync made (the same verified
    InRelease files, filter and merge policy: its provenance says so), no new snapshot is made
    and ``result.unchanged`` is set; that snapshot is published only where it is not yet
    (or the profile sets ``valid_for``). ``force_snapshot`` makes a new one anyway.
    ``dry_run``: verify and plan only (``result.updates[i].plan``; ``result.snapshot`` None)."""
    options = update_options(
        jobs,
        max_tries,
        limit_rate,
        allow_expired,
        allow_rollback,
        allow_releaseinfo_change,
        proxy,
        ca_bundle,
        auth_file,
        dry_run=dry_run,
        no_space_check=no_space_check,
    )
    return run_sync(
        lambda: _sync(profile, options, no_publish, force_snapshot, store, gnupghome, reporter)
    )
