"""The update pipeline: follow an upstream suite, verify it, keep its packages in the pool.

A mirror's record (``mirrors/NAME.json``, read and written by mirrors.py) holds what it
follows and the last *committed* state: the verified InRelease, the indices (in the meta store)
and provenance. ``update`` changes that state only at its very end, after every file is
verified and durable; an interrupted update leaves the previous state as it was and the next
run resumes the partial downloads.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import replace as with_changes
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit import archive, extras, gpg, keylist, merge, resolve, space
from mirrorkit.errors import (
    FetchError,
    FormatError,
    HTTPStatusError,
    NotFoundError,
    ReleaseError,
    SignatureError,
    UsageError,
)
from mirrorkit.mirrors import (
    FORMAT,
    Mirror,
    MirrorState,
    add,
    checked,
    dists_url,
    edit,
    list_all,
    load,
    migrate_credentials,
    network_of,
    packages,
    parse_index,
    record_body,
    record_path,
    remove,
    spec_digest,
    store_auth_file,
    would_add,
)
from mirrorkit.models import (
    INDEX_KINDS,
    DownloadPlan,
    ExtraRef,
    FetchSummary,
    FileRef,
    IndexRef,
    MirrorSpec,
    Package,
    Provenance,
    UpdateResult,
    index_label,
)
from mirrorkit.net.config import NetworkConfig, network_config
from mirrorkit.net.redact import redact_url
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.resolve import Selection
from mirrorkit.store import MIRROR, Packed, Store, syncfs, write_record
from mirrorkit.targets import LoadedIndex, Target, index_targets, load_index

# The mirror records (mirrors.py) are re-exported: callers say mirror.add, mirror.load, ...
__all__ = [
    "FORMAT",
    "LoadedIndex",
    "Mirror",
    "MirrorState",
    "Prepared",
    "UpdateOptions",
    "add",
    "check_upstream",
    "checked",
    "complete",
    "dists_url",
    "download_plan",
    "edit",
    "index_label",
    "list_all",
    "load",
    "migrate_credentials",
    "network_of",
    "packages",
    "parse_index",
    "prepare",
    "provenance",
    "record_path",
    "remove",
    "start_packing",
    "store_auth_file",
    "stored_extras",
    "stored_indexes",
    "update",
    "update_async",
    "update_group",
    "update_group_async",
    "would_add",
]

if TYPE_CHECKING:
    from mirrorkit.fetch import Fetcher, RetryPolicy


@dataclass(frozen=True, slots=True)
class UpdateOptions:
    jobs: int = 8
    max_tries: int = 5
    limit_rate: float | None = None
    allow_expired: bool = False
    allow_rollback: bool = False
    allow_releaseinfo_change: bool = False  # follow a suite to another Codename
    retry: RetryPolicy | None = None  # tests shorten the backoff
    network: NetworkConfig = field(default_factory=NetworkConfig)  # proxies, CA, auth files
    dry_run: bool = False  # verify down to the indices, plan the downloads, then stop
    space_check: bool = True  # refuse an update the store's filesystem cannot hold


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def update(
    store: Store,
    name: str,
    options: UpdateOptions | None = None,
    reporter: Reporter | None = None,
) -> UpdateResult:
    """Bring mirror ``name`` up to date with its upstream. See the module docstring.

    A mirror added with a filter keeps (and downloads) only what its filter selects."""
    return asyncio.run(update_async(store, name, options, reporter))


async def update_async(
    store: Store,
    name: str,
    options: UpdateOptions | None = None,
    reporter: Reporter | None = None,
) -> UpdateResult:
    """:func:`update` as a coroutine, for a caller that runs its own event loop."""
    load(store, name)  # fail fast, before the lock creates a store
    with store.locked(f"mirror/{name}"):
        # Read after the lock: a 'mirror rm' or 'mirror add --profile' that ran between an
        # earlier read and the lock would be undone by the state this update writes.
        mirror = load(store, name)
        options = options or UpdateOptions()
        given = options.network
        network = network_config(
            given.proxy, given.ca_bundle, given.auth_files, base=network_of(mirror.spec)
        )
        options = with_changes(options, network=with_changes(network, trust_env=given.trust_env))
        selection = None
        if mirror.spec.filter:
            selection = Selection(
                mirror.spec.filter,
                with_deps=mirror.spec.with_deps,
                with_recommends=mirror.spec.with_recommends,
                allow_empty=mirror.spec.allow_empty,
            )
        return (await update_group_async(store, [name], options, reporter, selection))[0]


def update_group(
    store: Store,
    names: Sequence[str],
    options: UpdateOptions | None = None,
    reporter: Reporter | None = None,
    selection: Selection | None = None,
    policy: str = "later",
) -> list[UpdateResult]:
    """Update several mirrors; with ``selection``, the filter and its dependency closure are
    resolved over all of them together (merged with ``policy`` first, so a security update
    wins over the release's version), and each mirror downloads only its share."""
    return asyncio.run(update_group_async(store, names, options, reporter, selection, policy))


async def update_group_async(
    store: Store,
    names: Sequence[str],
    options: UpdateOptions | None = None,
    reporter: Reporter | None = None,
    selection: Selection | None = None,
    policy: str = "later",
    planned: Sequence[MirrorSpec] | None = None,
) -> list[UpdateResult]:
    """:func:`update_group` as a coroutine, for a caller that runs its own event loop.

    ``planned`` (a dry run only): the specs of ``names`` to plan with instead of their
    records, which are neither read for their spec nor written (a profile's changed or new
    upstreams)."""
    options = options or UpdateOptions()
    reporter = reporter or NullReporter()
    if planned is None:
        for n in names:
            load(store, n)  # fail fast, before the lock creates a store
    elif not options.dry_run:
        raise ValueError("planned specs are for a dry run")
    return await _update_group(store, names, options, reporter, selection, policy, planned)


async def check_upstream(spec: MirrorSpec, network: NetworkConfig) -> str | None:
    """What 'mirror add' and 'mirror edit' ask of an upstream before recording it: a Release
    signed by the mirror's keyring, for its suite, listing its components and architectures
    (the errors name what it does list). A suite the server does not have (404) is refused
    too. An upstream that cannot be asked (unreachable, refusing credentials or the TLS
    certificate, failing) is no proof that the spec is wrong: the reason is returned instead,
    and the first update checks it all again. One try, a short timeout: nothing is stored."""
    from mirrorkit.fetch import Fetcher, RetryPolicy

    base = dists_url(spec)
    try:
        async with Fetcher(
            jobs=1, retry=RetryPolicy(max_tries=1), network=network, timeout=15.0
        ) as fetcher:
            _raw, verified = await _fetch_release(fetcher, spec)
    except HTTPStatusError as exc:
        if exc.status not in (404, 410):
            return f"{exc.url}: {exc.reason.removesuffix(' (gave up after 1 tries)')}"
        raise
    except FetchError as exc:
        return f"{exc.url}: {exc.reason.removesuffix(' (gave up after 1 tries)')}"
    release = archive.parse_release(verified.payload, f"{base}/Release")
    # Not its freshness: an archived release (Valid-Until long past) is followed with
    # 'mirror update --allow-expired'.
    _check_release(spec, release, None, UpdateOptions(allow_expired=True), base)
    index_targets(spec, release, base)
    return None


async def _fetch_release(fetcher: Fetcher, spec: MirrorSpec) -> tuple[bytes, gpg.Verified]:
    """(raw signed file, verified payload). InRelease first, then Release + Release.gpg."""
    base = dists_url(spec)
    keyring = Path(spec.keyring)
    raw = await fetcher.get_bytes(f"{base}/InRelease", max_size=64 << 20, missing_ok=True)
    if raw is not None:
        verified = await asyncio.to_thread(
            gpg.verify_clearsigned, raw, keyring, spec.fingerprints, f"{base}/InRelease"
        )
        return raw, verified
    release = await fetcher.get_bytes(f"{base}/Release", max_size=64 << 20)
    assert release is not None
    signature = await fetcher.get_bytes(f"{base}/Release.gpg", max_size=1 << 20, missing_ok=True)
    if signature is None:
        raise SignatureError(
            f"{base}: neither InRelease nor Release.gpg exists: the archive is unsigned",
            "mirrorkit only mirrors signed archives; ask the publisher to sign it.",
        )
    verified = await asyncio.to_thread(
        gpg.verify_detached, release, signature, keyring, spec.fingerprints, f"{base}/Release"
    )
    return release, verified


def _check_release(
    spec: MirrorSpec,
    release: archive.Release,
    previous: MirrorState | None,
    options: UpdateOptions,
    where: str,
) -> None:
    now = _now()
    if not spec.flat and spec.suite not in (release.suite, release.codename):
        raise ReleaseError(
            f"{where}: signed Release is for suite {release.suite!r} "
            f"(codename {release.codename!r}), not {spec.suite!r}",
            "the server answered with another suite's files; check the mirror's suite.",
        )
    if release.valid_until is not None and release.valid_until < now and not options.allow_expired:
        raise ReleaseError(
            f"{where}: Release expired at {release.valid_until.isoformat()} (Valid-Until)",
            "the upstream is stale or an attacker replays old files; try another upstream, or "
            "pass --allow-expired if you know why.",
        )
    if (
        previous is not None
        and previous.codename
        and release.codename
        and release.codename != previous.codename
        and not options.allow_releaseinfo_change
    ):
        raise ReleaseError(
            f"{where}: suite {spec.suite} is now codename {release.codename!r}, not "
            f"{previous.codename!r}: another release",
            "apt, too, stops here: pass --allow-releaseinfo-change to follow it (a new major "
            "release), or point the mirror at the codename you want.",
        )
    if previous is not None and previous.release_date and not options.allow_rollback:
        last = datetime.fromisoformat(previous.release_date)
        if release.date is None:
            # apt refuses this too: a Release without a Date after one with a Date is an
            # attacker's cheapest rollback (strip the field, replay an old signed payload).
            raise ReleaseError(
                f"{where}: Release has no Date, but the last accepted one was dated "
                f"{last.isoformat()}: refusing a possible rollback",
                "the upstream may be a stale or broken mirror; pass --allow-rollback to "
                "accept it anyway.",
            )
        if release.date < last:
            raise ReleaseError(
                f"{where}: Release Date {release.date.isoformat()} is older than the last "
                f"accepted one ({last.isoformat()}): refusing a rollback",
                "the upstream may be a stale mirror; pass --allow-rollback to accept it anyway.",
            )


async def _fetch_index(
    fetcher: Fetcher, base: str, release: archive.Release, ref: FileRef
) -> bytes:
    """The verified (still compressed) bytes of one index file."""
    what = f"{base}/{ref.path}"
    data: bytes | None = None
    if release.by_hash:
        # by-hash names never change under a client's feet; fall back as apt does.
        hashed = f"{base}/{archive.by_hash_path(ref.path, ref.sha256)}"
        try:
            data = await fetcher.get_verified(hashed, ref, what)
        except FetchError as exc:
            if not exc.reason.startswith("HTTP 404"):
                raise
    if data is None:
        data = await fetcher.get_verified(f"{base}/{ref.path}", ref, what)
    return data


@dataclass
class Prepared:
    """An upstream verified down to its indices, before any .deb is downloaded."""

    mirror: Mirror
    raw: bytes
    verified: gpg.Verified
    release: archive.Release
    unchanged: bool
    indexes: list[LoadedIndex]
    extras: list[extras.Loaded] = field(default_factory=list)  # Translations, Contents


async def prepare(
    fetcher: Fetcher,
    store: Store,
    mirror: Mirror,
    options: UpdateOptions,
    reporter: Reporter,
    selection_digest: str = "",
) -> Prepared:
    """Fetch and verify InRelease and the indices (unless nothing changed since the last
    update, in which case ``unchanged`` is set and no index is fetched)."""
    spec = mirror.spec
    base = dists_url(spec)
    raw, verified = await _fetch_release(fetcher, spec)
    reporter.debug(f"{base}: signature good, signed by {', '.join(verified.signers)}")
    release = archive.parse_release(verified.payload, f"{base}/Release")
    _check_release(spec, release, mirror.state, options, base)
    previous = mirror.state
    if (
        previous is not None
        and previous.inrelease_sha256 == hashlib.sha256(raw).hexdigest()
        and previous.spec_digest == spec_digest(spec)
        and previous.selection == selection_digest
        and all(store.meta.has(i.sha256) for i in (*previous.upstream, *previous.indexes))
        and all(store.meta.has(e.sha256) for e in (*previous.upstream_extras, *previous.extras))
    ):
        return Prepared(mirror, raw, verified, release, True, [])
    targets = index_targets(spec, release, base)
    unique = {ref.sha256: ref for t in targets for _, ref in t.found}
    blobs = await asyncio.gather(
        *(_fetch_index(fetcher, base, release, ref) for ref in unique.values())
    )
    verified_indexes = dict(zip(unique, blobs, strict=True))
    indexes = [
        await asyncio.to_thread(load_index, spec, target, verified_indexes, base)
        for target in targets
    ]
    for index in indexes:
        label = index_label(index.ref)
        reporter.debug(f"{base} {label}: verified, {len(index.packages)} packages")
    loaded = await _fetch_extras(fetcher, spec, release, base, targets)
    return Prepared(mirror, raw, verified, release, False, indexes, loaded)


async def _fetch_extras(
    fetcher: Fetcher,
    spec: MirrorSpec,
    release: archive.Release,
    base: str,
    targets: list[Target],
) -> list[extras.Loaded]:
    """The Translations and Contents the spec asks for and the Release lists, verified."""
    if spec.flat or not (spec.languages or spec.with_contents):
        return []
    prefixes = {
        t.component: t.found[0][1].path.split("/binary-", 1)[0] for t in targets if t.kind == "deb"
    }
    wanted = extras.targets(
        release, prefixes, spec.languages, spec.architectures, spec.with_contents
    )
    blobs = await asyncio.gather(*(_fetch_index(fetcher, base, release, t.ref) for t in wanted))
    return [
        await asyncio.to_thread(extras.load_verified, t, blob, f"{base}/{t.ref.path}")
        for t, blob in zip(wanted, blobs, strict=True)
    ]


def stored_extras(store: Store, refs: Sequence[ExtraRef]) -> list[extras.Loaded]:
    """Extras verified by an earlier update, from the store (no network)."""
    return [
        extras.Loaded(r.component, r.kind, r.name, store.meta.get(r.sha256), r.entries)
        for r in refs
    ]


def stored_indexes(store: Store, refs: Sequence[IndexRef]) -> list[LoadedIndex]:
    """Indices verified by an earlier update, from the store (no network)."""
    loaded = []
    for ref in refs:
        text = store.meta.get(ref.sha256)
        loaded.append(
            LoadedIndex(ref.component, ref.architecture, text, parse_index(text, ref), ref.kind)
        )
    return loaded


def download_plan(indexes: Sequence[LoadedIndex], where: str) -> list[FileRef]:
    """Every file the indices list (checked for one name, one content)."""
    refs = [f for i in indexes for p in i.packages for f in p.pool_files]
    _check_consistent(refs, where)
    return refs


def _keep_only(
    indexes: Sequence[LoadedIndex], keys: set[tuple[str, str, str]]
) -> list[LoadedIndex]:
    kept = []
    for index in indexes:
        pkgs = [p for p in index.packages if (p.name, p.version, p.architecture) in keys]
        text = archive.render_packages(pkgs)
        kept.append(LoadedIndex(index.component, index.architecture, text, pkgs, index.kind))
    return kept


def start_packing(store: Store, indexes: Sequence[LoadedIndex]) -> asyncio.Task[list[Packed]]:
    """Hash and compress ``indexes`` for the store on one thread (0.15 s of CPU for bookworm's
    index; hashlib and zstd release the GIL), writing nothing. One: it runs beside the
    resolver or the downloads, which need the other cores (zstd's own workers on top made a
    filtered update of bookworm 0.02 s slower on 2 cores)."""

    def pack(index: LoadedIndex) -> Packed:
        packed = store.meta.pack(index.text, threads=0)
        # Its key list too, for snapshot merge and diff (a cache, keyed by the digest).
        if index.kind in keylist.KINDS and not keylist.exists(store, packed.sha256):
            keylist.save(store, packed.sha256, index.text, index.packages)
        return packed

    packs = asyncio.to_thread(lambda: [pack(i) for i in indexes])
    return asyncio.create_task(packs)


async def complete(
    fetcher: Fetcher,
    store: Store,
    prepared: Prepared,
    keep: list[LoadedIndex],
    selection_digest: str,
    packing: asyncio.Task[list[Packed]] | None = None,
) -> UpdateResult:
    """Download what ``keep`` lists into the pool, make it durable, commit the new state.
    ``packing``: :func:`start_packing` of ``prepared.indexes``, if the caller started it."""
    mirror, spec = prepared.mirror, prepared.mirror.spec
    plan = download_plan(keep, dists_url(spec))
    # The indices are hashed and compressed for the store while the .debs download (if the
    # caller did not start that earlier); nothing is written to the store until they all are.
    packing = packing or start_packing(store, prepared.indexes)
    kept = [] if keep is prepared.indexes else keep
    packing_kept = start_packing(store, kept)
    try:
        # The .dsc files first, each checked against its Sources entry before the files it
        # lists are downloaded: an index and .dsc that disagree stop the update here.
        dscs = await _fetch_dscs(fetcher, store, spec, keep)
        summary: FetchSummary = await fetcher.fetch_to_pool(
            spec.url, plan, store.pool, store.partial, spec.name
        )
        summary = with_changes(
            summary,
            fetched=summary.fetched + dscs.fetched,
            reused=summary.reused - dscs.fetched,
            bytes=summary.bytes + dscs.bytes,
        )
    except BaseException:
        packing.cancel()
        packing_kept.cancel()
        raise
    everything = [*prepared.indexes, *kept]
    packed = [*await packing, *await packing_kept]

    # Everything verified: write the metadata, make it all durable with one syncfs (hence no
    # fsync per file), then (and only then) commit the new state.
    refs = tuple(
        IndexRef(
            i.component,
            i.architecture,
            store.meta.put_packed(p, durable=False),
            len(i.packages),
            i.kind,
        )
        for i, p in zip(everything, packed, strict=True)
    )
    upstream = refs[: len(prepared.indexes)]
    held = upstream if keep is prepared.indexes else refs[len(prepared.indexes) :]
    store.meta.put_packed(store.meta.pack(prepared.raw), durable=False)
    upstream_extras, held_extras = await asyncio.to_thread(
        _store_extras, store, prepared.extras, None if keep is prepared.indexes else keep
    )
    await asyncio.to_thread(syncfs, store.root)
    release = prepared.release
    state = MirrorState(
        inrelease_sha256=hashlib.sha256(prepared.raw).hexdigest(),
        signer=prepared.verified.signer,
        # Without a Date there is no floor ("", not the time of this fetch, which would refuse
        # a genuine Release dated before it). An undated Release after a dated one got here
        # only through --allow-rollback, which lowers the floor as for an older Date.
        release_date=release.date.astimezone(UTC).isoformat() if release.date is not None else "",
        valid_until=release.valid_until.isoformat() if release.valid_until else None,
        fetched_at=_now().isoformat(),
        spec_digest=spec_digest(spec),
        indexes=held,
        upstream=upstream,
        selection=selection_digest,
        codename=release.codename,
        extras=held_extras,
        upstream_extras=upstream_extras,
    )
    write_record(
        record_path(store, spec.name),
        MIRROR,
        record_body(Mirror(spec=spec, created_at=mirror.created_at, state=state)),
        tmp_dir=store.tmp,
    )
    return UpdateResult(spec.name, True, state.packages, state.release_date, summary)


def _store_extras(
    store: Store, loaded: Sequence[extras.Loaded], kept: Sequence[LoadedIndex] | None
) -> tuple[tuple[ExtraRef, ...], tuple[ExtraRef, ...]]:
    """Store the verified extras (not yet durable: the caller syncs); with ``kept`` (a
    filter's indices), also their share for those packages. Returns (upstream, held)."""
    upstream = tuple(
        ExtraRef(
            x.component,
            x.kind,
            x.name,
            store.meta.put_packed(store.meta.pack(x.text), durable=False),
            x.entries,
        )
        for x in loaded
    )
    if kept is None or not upstream:
        return upstream, upstream

    def put(text: bytes) -> str:
        return store.meta.put_packed(store.meta.pack(text), durable=False)

    # Translations and Contents follow the debs (a udeb index has the same key).
    packages = {(i.component, i.architecture): i.packages for i in kept if i.kind == "deb"}
    held = extras.for_packages(store.meta.get, put, [upstream], packages)
    return upstream, tuple(held)


async def _fetch_dscs(
    fetcher: Fetcher, store: Store, spec: MirrorSpec, keep: Sequence[LoadedIndex]
) -> FetchSummary:
    """Download the .dsc of every source package ``keep`` lists and check that each lists
    exactly the files its Sources entry lists (FormatError naming the .dsc otherwise)."""
    sources = [p for i in keep if i.kind == "source" for p in i.packages]
    if not sources:
        return FetchSummary()
    from mirrorkit import sourcepkg

    refs = [FileRef(p.filename, p.size, p.sha256) for p in sources]
    summary = await fetcher.fetch_to_pool(spec.url, refs, store.pool, store.partial, spec.name)

    def check() -> None:
        for p in sources:
            with store.pool.path(p.sha256).open("rb") as fh:
                sourcepkg.check_dsc_against(p, fh.read(sourcepkg.MAX_DSC_SIZE + 1))

    await asyncio.to_thread(check)
    return summary


async def _update_group(
    store: Store,
    names: Sequence[str],
    options: UpdateOptions,
    reporter: Reporter,
    selection: Selection | None,
    policy: str,
    planned: Sequence[MirrorSpec] | None = None,
) -> list[UpdateResult]:
    digest = selection.digest() + policy + ",".join(names) if selection else ""
    # httpx is imported only by what downloads: snapshots, publish and bundles do not need it.
    from mirrorkit.fetch import Fetcher, RetryPolicy

    retry = options.retry or RetryPolicy(max_tries=options.max_tries)
    network = with_changes(options.network, extra_auth_files=(store_auth_file(store),))
    with store.locked(*mirror_locks(names)), _gc_spared() as spare_from_gc:
        # The records this update rewrites are read only now, under the lock (see update_async).
        if planned is not None:
            mirrors = [would_add(store, spec) for spec in planned]
        else:
            mirrors = [load(store, n) for n in names]
        if not options.dry_run:  # records written before credentials left the URL
            mirrors = [migrate_credentials(store, m) for m in mirrors]
        async with Fetcher(
            jobs=options.jobs,
            retry=retry,
            reporter=reporter,
            limit_rate=options.limit_rate,
            network=network,
        ) as fetcher:
            prepared = [
                await prepare(fetcher, store, m, options, reporter, digest) for m in mirrors
            ]
            if all(p.unchanged for p in prepared):
                return [
                    with_changes(_unchanged(p.mirror), dry_run=options.dry_run) for p in prepared
                ]
            spare_from_gc()
            # The new indices are packed for the store from now on: beside the resolver, which
            # keeps one core busy (filtered bookworm: 0.14 s), and then the downloads.
            packing = {id(p): start_packing(store, p.indexes) for p in prepared if not p.unchanged}
            try:
                keep: list[list[LoadedIndex]] = [p.indexes for p in prepared]
                if selection is not None:
                    for p in prepared:
                        if p.unchanged:  # another upstream changed: resolve over all again
                            assert p.mirror.state is not None
                            p.indexes = stored_indexes(store, p.mirror.state.upstream)
                            p.extras = stored_extras(store, p.mirror.state.upstream_extras)
                    keys = await asyncio.to_thread(_select, prepared, selection, policy, reporter)
                    keep = [_keep_only(p.indexes, keys) for p in prepared]
                plans = [
                    None
                    if p.unchanged and selection is None
                    else space.plan(store, download_plan(kept, dists_url(p.mirror.spec)))
                    for p, kept in zip(prepared, keep, strict=True)
                ]
                if options.dry_run:
                    outcome = zip(prepared, keep, plans, strict=True)
                    return [_planned(p, kept, plan) for p, kept, plan in outcome]
                if options.space_check:  # before the first download, for all of them at once
                    what = ", ".join(m.spec.name for m in mirrors)
                    space.check(store, [x for x in plans if x], what)
                results = []
                for p, kept, plan in zip(prepared, keep, plans, strict=True):
                    if plan is None:
                        results.append(_unchanged(p.mirror))
                    else:
                        task = packing.pop(id(p), None)
                        done = await complete(fetcher, store, p, kept, digest, task)
                        results.append(with_changes(done, plan=plan))
                return results
            finally:
                for task in packing.values():  # any left: an error ended the update early
                    task.cancel()


def mirror_locks(names: Sequence[str]) -> list[str]:
    """The locks an update of mirrors ``names`` holds: each mirror's (never none: no resources
    would mean the whole store)."""
    if not names:
        raise UsageError("no mirror to update")
    return [f"mirror/{n}" for n in names]


@contextmanager
def _gc_spared() -> Iterator[Callable[[], None]]:
    """Yields what takes the objects that exist now out of the cyclic GC's sight until the
    block ends (nothing, when the host program freezes objects itself: its policy wins).

    For the parsed indices (63,000 packages for bookworm): they live to the end of the update
    and hold no reference cycles, yet every later collection would walk all of them, 0.2 s of
    a filtered update (resolve 0.39 -> 0.19 s). Refcounting still frees what is dropped."""
    if gc.get_freeze_count():
        yield lambda: None
        return
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


def _unchanged(mirror: Mirror) -> UpdateResult:
    assert mirror.state is not None
    return UpdateResult(mirror.spec.name, False, mirror.state.packages, mirror.state.release_date)


def _planned(p: Prepared, kept: list[LoadedIndex], plan: DownloadPlan | None) -> UpdateResult:
    """A dry run's result: what the verified indices list, nothing downloaded or committed."""
    if plan is None:
        return with_changes(_unchanged(p.mirror), dry_run=True)
    date = p.release.date.astimezone(UTC).isoformat() if p.release.date is not None else ""
    packages = sum(len(i.packages) for i in kept)
    return UpdateResult(p.mirror.spec.name, True, packages, date, plan=plan, dry_run=True)


def _select(
    prepared: Sequence[Prepared], selection: Selection, policy: str, reporter: Reporter
) -> set[tuple[str, str, str]]:
    """The (name, version, arch) the selection keeps, resolved over all upstreams at once."""
    merged: list[Package] = []
    for kind in INDEX_KINDS:
        sources = [
            [pkg for i in p.indexes if i.kind == kind for pkg in i.packages] for p in prepared
        ]
        # One source needs no merge (and a merge of 63,000 packages costs a tenth of a second).
        merged += sources[0] if len(sources) == 1 else merge.merge_packages(sources, policy)
    archs = [a for p in prepared for a in p.mirror.spec.architectures]
    picked = resolve.apply(resolve.Universe(merged, list(dict.fromkeys(archs))), selection)
    kept = list(picked.packages)
    if any(i.kind == "source" for p in prepared for i in p.indexes):
        from mirrorkit.sourcepkg import sources_of

        # The sources that built what is kept, found across every upstream (a security
        # update's binary brings the security archive's source).
        kept += sources_of(picked.packages, (s for s in merged if s.architecture == "source"))
    reporter.info(
        f"filter {selection.query!r}: {len(picked.matched)} matched, "
        f"{len(picked.packages)} with dependencies"
    )
    return {(p.name, p.version, p.architecture) for p in kept}


def _check_consistent(refs: list[FileRef], where: str) -> None:
    """One file name, one content: an index that says otherwise is broken."""
    seen: dict[str, FileRef] = {}
    for ref in refs:
        other = seen.setdefault(ref.path, ref)
        if other.sha256 != ref.sha256:
            raise FormatError(
                f"{where}: {ref.path} is listed with two different SHA256 sums",
                "the upstream's indices disagree with each other; try again later.",
            )


def provenance(mirror: Mirror) -> Provenance:
    """Where a snapshot of the mirror's committed state comes from, as verified."""
    if mirror.state is None:
        raise NotFoundError(
            f"mirror {mirror.spec.name} has never been updated",
            f"run 'mirrorkit mirror update {mirror.spec.name}' first.",
        )
    spec, state = mirror.spec, mirror.state
    selection: dict[str, Any] = {}
    if spec.filter:
        selection = {
            "filter": spec.filter,
            "with_deps": spec.with_deps,
            "with_recommends": spec.with_recommends,
        }
    return Provenance(
        "mirror",
        mirror=spec.name,
        url=redact_url(spec.url),  # records written before credentials left the URL
        suite=spec.suite,
        inrelease_sha256=state.inrelease_sha256,
        signer=state.signer,
        release_date=state.release_date,
        fetched_at=state.fetched_at,
        **selection,
    )
