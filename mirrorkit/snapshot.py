"""Snapshots: immutable, dated, self-verifying records of a set of packages.

A snapshot is one JSON file, ``snapshots/NAME/snapshot.json``, written once (temp dir + rename)
and never changed. It names its Packages indices in the meta store by SHA256 (so a snapshot
costs only metadata, and two snapshots of an unchanged mirror share every byte), records where
its packages came from, and carries a digest of its own contents so that a change on disk is
detected.

This module knows nothing of channels: whether a name is free of them, and whether something
still needs a snapshot, are refs' rules (mirrorkit.refs), asked before calling in here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirrorkit import archive, debfile, extras, keylist, mirror, resolve, sourcepkg
from mirrorkit import merge as merge_rule
from mirrorkit._version import __version__
from mirrorkit.errors import (
    ConflictError,
    FormatError,
    MirrorkitError,
    NotFoundError,
    StorageError,
    StoreFormatError,
    UsageError,
)
from mirrorkit.models import (
    INDEX_KINDS,
    ExtraRef,
    IndexRef,
    MergePolicy,
    Package,
    Provenance,
    index_json,
)
from mirrorkit.store import (
    SNAPSHOT,
    Store,
    canonical_json,
    check_name,
    decode_record,
    encode_record,
    fsync_dir,
    held_dir,
    read_record,
    reclaim_dirs,
    storage_error,
    work_dir,
)

FORMAT = SNAPSHOT.version


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    created_at: str
    mirrorkit_version: str
    sources: tuple[Provenance, ...]
    indexes: tuple[IndexRef, ...]
    digest: str
    extras: tuple[ExtraRef, ...] = ()  # Translations and Contents (record version 2)

    @property
    def packages(self) -> int:
        return sum(i.packages for i in self.indexes)

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(sorted({i.component for i in self.indexes}))

    @property
    def architectures(self) -> tuple[str, ...]:
        """The binary architectures (of debs and udebs; not ``source``)."""
        return tuple(sorted({i.architecture for i in self.indexes if i.kind in ("deb", "udeb")}))

    @property
    def kinds(self) -> tuple[str, ...]:
        """What the snapshot holds, in INDEX_KINDS order: deb, udeb, source, installer."""
        held = {i.kind for i in self.indexes}
        return tuple(k for k in INDEX_KINDS if k in held)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _dir(store: Store, name: str) -> Path:
    return store.snapshot_dir(name)


def _body(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": info.name,
        "created_at": info.created_at,
        "mirrorkit_version": info.mirrorkit_version,
        "sources": [s.to_json() for s in info.sources],
        "indexes": [index_json(i) for i in info.indexes],
        # Only when there are some: a record without them reads as version 1 wrote it.
        **({"extras": [_extra_json(e) for e in info.extras]} if info.extras else {}),
    }


def _extra_json(e: ExtraRef) -> dict[str, Any]:
    return {
        "component": e.component,
        "kind": e.kind,
        "name": e.name,
        "sha256": e.sha256,
        "entries": e.entries,
    }


def _index_order(ref: IndexRef) -> tuple[str, int, str]:
    # Debs first as they always were, then udebs, sources and installer images.
    return (ref.component, INDEX_KINDS.index(ref.kind), ref.architecture)


def record_digest(body: dict[str, Any]) -> str:
    """The digest a snapshot record carries: the SHA256 of its canonical JSON without the
    ``digest`` key (a bundle checks a record it carries with it)."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def exists(store: Store, name: str) -> bool:
    return (_dir(store, name) / "snapshot.json").exists()


def _write(
    store: Store,
    name: str,
    sources: Sequence[Provenance],
    indexes: Sequence[IndexRef],
    extra_refs: Sequence[ExtraRef] = (),
) -> SnapshotInfo:
    check_name(name, "snapshot")
    draft = SnapshotInfo(
        name=name,
        created_at=_now().isoformat(),
        mirrorkit_version=__version__,
        sources=tuple(sources),
        indexes=tuple(sorted(indexes, key=_index_order)),
        digest="",
        extras=tuple(sorted(extra_refs, key=lambda e: (e.component, e.kind, e.name))),
    )
    body = _body(draft)
    digest = record_digest(body)
    info = replace(draft, digest=digest)
    _commit(store, info, encode_record(SNAPSHOT, {**body, "digest": digest}))
    return info


def write_renamed(store: Store, info: SnapshotInfo, new_name: str) -> SnapshotInfo:
    """A copy of snapshot ``info`` named ``new_name`` (same time, sources and indices; the
    digest covers the name, so it is a new record). The caller removes the old one."""
    check_name(new_name, "snapshot")
    body = _body(replace(info, name=new_name))
    digest = record_digest(body)
    renamed = replace(info, name=new_name, digest=digest)
    _commit(store, renamed, encode_record(SNAPSHOT, {**body, "digest": digest}))
    return renamed


def write(
    store: Store, name: str, sources: Sequence[Provenance], indexes: Sequence[IndexRef]
) -> SnapshotInfo:
    """Write a new snapshot ``name`` (refused if it exists); the caller holds the locks that
    keep its name and objects safe (a repo's history snapshots: the repo's)."""
    return _write(store, name, sources, indexes)


def commit_record(store: Store, raw: bytes, where: str) -> SnapshotInfo:
    """Add a snapshot made elsewhere (a bundle's), its record kept byte for byte: the record
    must be valid and its digest hold; its indices and pool objects must be in the store
    already (the caller verified them). ``where`` names the record in errors."""
    info = parse_record(raw, where)
    _commit(store, info, raw)
    return info


def _commit(store: Store, info: SnapshotInfo, data: bytes) -> None:
    """Make the record visible at once, whole or not at all: written in a temp dir, then the
    dir renamed into place (a rename never replaces a snapshot that exists)."""
    final = _dir(store, info.name)
    if final.exists():
        raise ConflictError(
            f"snapshot {info.name} exists already; snapshots never change",
            "pick another name, or remove it first with 'mirrorkit snapshot rm'.",
        )
    store.init()
    reclaim_debris(store)
    with work_dir(store.tmp, f"snapshot-{info.name}-", final) as staging:
        try:
            path = staging / "snapshot.json"
            with path.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(path, 0o444)
            os.rename(staging, final)
            fsync_dir(store.snapshots)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if final.exists():
                raise ConflictError(f"snapshot {info.name} was created by another process") from exc
            raise StorageError(f"{final}: cannot write snapshot ({exc.strerror})") from exc


# What snapshot commands stage under tmp/: a record being written, a snapshot being removed.
_STAGING = ("snapshot-", "rm-")


def reclaim_debris(store: Store) -> list[Path]:
    """Remove what killed snapshot commands left in tmp/ (a staging or trash directory no
    live process holds): every snapshot command does, not only gc."""
    return reclaim_dirs(store.tmp, _STAGING)


def parse_record(raw: bytes, where: str) -> SnapshotInfo:
    """A snapshot record's contents, refused (FormatError naming ``where``) unless it is a
    valid record whose own digest holds (a record of a newer version: StoreFormatError)."""
    try:
        data = decode_record(raw, SNAPSHOT, where)
    except StoreFormatError:
        raise
    except MirrorkitError as exc:
        raise FormatError(exc.message) from exc
    try:
        info = _from_json(data)
        data.pop("digest")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{where}: not a valid snapshot record ({exc})") from exc
    check_name(info.name, "snapshot")
    if record_digest(data) != info.digest:
        raise FormatError(f"{where}: contents do not match the record's digest")
    return info


def create_from_mirror(store: Store, mirror_name: str, name: str) -> SnapshotInfo:
    """Freeze the mirror's last committed state."""
    return create_from_mirrors(store, name, [mirror_name])


def load(store: Store, name: str) -> SnapshotInfo:
    path = _dir(store, name) / "snapshot.json"
    if not path.exists():
        raise NotFoundError(f"no snapshot named {name!r}", "see 'mirrorkit snapshot list'.")
    data = read_record(path, SNAPSHOT)
    if not isinstance(data, dict) or data.get("name") != name:
        raise StorageError(
            f"{path}: the record is not snapshot {name}'s (it names "
            f"{data.get('name') if isinstance(data, dict) else None!r})",
            "the store was modified by hand; restore the record from a backup (or remove "
            f"{path.parent} if the snapshot is not needed).",
        )
    try:
        return _from_json(data)
    except (KeyError, TypeError) as exc:
        raise StorageError(
            f"{path}: not a valid snapshot record ({exc})", "the store was modified by hand."
        ) from exc


def _from_json(data: dict[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(
        name=data["name"],
        created_at=data["created_at"],
        mirrorkit_version=data["mirrorkit_version"],
        sources=tuple(Provenance.from_json(s) for s in data["sources"]),
        indexes=tuple(IndexRef(**i) for i in data["indexes"]),
        digest=data["digest"],
        extras=tuple(ExtraRef(**e) for e in data.get("extras", ())),
    )


def list_all(store: Store, damaged: list[MirrorkitError] | None = None) -> list[SnapshotInfo]:
    """Every snapshot. A record that cannot be read raises, unless ``damaged`` collects it
    (for listing; what must know every snapshot, such as gc, lets it raise)."""
    if not store.snapshots.is_dir():
        return []
    infos = []
    for p in sorted(store.snapshots.iterdir()):
        if not (p / "snapshot.json").exists():
            continue
        try:
            infos.append(load(store, p.name))
        except MirrorkitError as exc:
            if damaged is None:
                raise
            damaged.append(exc)
    return infos


def packages(store: Store, info: SnapshotInfo) -> list[Package]:
    return mirror.packages(store, info.indexes)


def check(store: Store, info: SnapshotInfo) -> list[str]:
    """Problems with the snapshot as it is on disk: an empty list means intact.

    Checks the record's digest, every index's SHA256, and that every package's pool object is
    present with the right size (hashing every .deb is the bundle verifier's job)."""
    problems: list[str] = []
    path = _dir(store, info.name) / "snapshot.json"
    data = read_record(path, SNAPSHOT)
    recorded = data.pop("digest", "")
    if record_digest(data) != recorded:
        problems.append(f"{path}: contents do not match the recorded digest (modified on disk)")
    for ref in info.indexes:
        try:
            text = store.meta.get(ref.sha256)
        except Exception as exc:  # report every problem, not only the first
            problems.append(f"index {mirror.index_label(ref)}: {exc}")
            continue
        for p in mirror.parse_index(text, ref):
            for f in p.pool_files:
                obj = store.pool.path(f.sha256)
                try:
                    size = obj.stat().st_size
                except FileNotFoundError:
                    problems.append(f"{p.ref}: pool object {f.sha256} is missing")
                    continue
                if size != f.size:
                    problems.append(
                        f"{p.ref}: pool object {f.sha256} has {size} bytes, not {f.size}"
                    )
    for extra in info.extras:
        try:
            store.meta.get(extra.sha256)
        except Exception as exc:  # report every problem, not only the first
            problems.append(f"{extras.published_path(extra)}: {exc}")
    return problems


def new_name_locks(name: str) -> tuple[str, str]:
    """The locks a command holds while it makes snapshot ``name``: the snapshot's, and the
    channel's of the same name (snapshots and channels share one namespace; see refs)."""
    return (f"snapshot/{name}", f"channel/{name}")


def remove(store: Store, name: str) -> None:
    """Remove snapshot ``name``, needed or not: what may still need it (channels, snapshots
    made from it) is refs' question; ``mirrorkit.refs.remove_snapshot`` asks it first."""
    with store.locked(f"snapshot/{name}"):
        load(store, name)
        final = _dir(store, name)
        # Rename first so the snapshot disappears atomically, then delete at leisure. A rename
        # needs no new inode or block, so removing works on a full disk (where it is the
        # user's way out); gc clears a trash directory a killed rm left.
        # Held while it is deleted, so that another command's reclaim_debris leaves it alone.
        reclaim_debris(store)
        trash = store.tmp / f"rm-{name}-{secrets.token_hex(8)}"
        try:
            store.tmp.mkdir(parents=True, exist_ok=True)
            with held_dir(final):
                os.rename(final, trash)
                fsync_dir(store.snapshots)
                shutil.rmtree(trash, ignore_errors=True)
        except OSError as exc:
            raise storage_error(final, exc) from exc


def merge_indexes(
    store: Store, sources: Sequence[Sequence[IndexRef]], policy: MergePolicy | str = "later"
) -> list[IndexRef]:
    """Merge the indices of several sources with ``policy`` (see :mod:`mirrorkit.merge`, the
    one merge rule) and store the merged indices."""
    policy = MergePolicy.parse(policy)
    result: list[IndexRef] = []
    for kind in INDEX_KINDS:  # each kind merges apart: a udeb never displaces a deb
        refs = [[ref for ref in indexes if ref.kind == kind] for indexes in sources]
        if not any(refs):
            continue
        # On the indices' key lists (keylist.py): no index is parsed, the kept stanzas copied.
        keyed = [[(ref, keylist.keys(store, ref)) for ref in indexes] for indexes in refs]
        if all(keys is not None for indexes in keyed for _, keys in indexes):
            stanzas = keylist.Stanzas(store)
            on_keys = [[(r.component, r.architecture, k or []) for r, k in idx] for idx in keyed]
            for (component, arch), kept in merge_rule.merge_indexes(on_keys, policy).items():
                digest = store.meta.put(archive.join_stanzas(stanzas[k] for k in kept))
                keylist.write(store, digest, kept)
                result.append(IndexRef(component, arch, digest, len(kept), kind))
            continue
        loaded = [
            [(ref.component, ref.architecture, mirror.packages(store, [ref])) for ref in indexes]
            for indexes in refs
        ]
        for (component, arch), pkgs in merge_rule.merge_indexes(loaded, policy).items():
            text = archive.render_packages(pkgs)
            result.append(IndexRef(component, arch, store.meta.put(text), len(pkgs), kind))
    return result


def merge(
    store: Store, dest: str, sources: Sequence[str], policy: MergePolicy | str = "later"
) -> SnapshotInfo:
    """A new snapshot DEST from snapshots SOURCES (see :mod:`mirrorkit.merge` for policies)."""
    policy = MergePolicy.parse(policy)
    if not sources:
        raise UsageError("merge needs at least one source snapshot")
    with store.locked(*new_name_locks(dest), *(f"snapshot/{s}" for s in sources)):
        infos = [load(store, s) for s in sources]
        indexes = merge_indexes(store, [i.indexes for i in infos], policy)
        merged_extras = _extras_for(store, [(i.indexes, i.extras) for i in infos], indexes)
        provenance = [
            Provenance("snapshot", snapshot=i.name, digest=i.digest, policy=policy.value)
            for i in infos
        ]
        return _write(store, dest, provenance, indexes, merged_extras)


def _extras_for(
    store: Store,
    sources: Sequence[tuple[Sequence[IndexRef], Sequence[ExtraRef]]],
    indexes: Sequence[IndexRef],
) -> list[ExtraRef]:
    """The Translations and Contents of a snapshot holding ``indexes``, made from those of
    its sources ((indexes, extras) each): see extras.for_packages."""
    if not any(refs for _, refs in sources):
        return []
    packages: dict[tuple[str, str], list[Package]] = {}
    for ref in (i for i in indexes if i.kind == "deb"):  # udebs and sources have none
        packages.setdefault((ref.component, ref.architecture), []).extend(
            mirror.packages(store, [ref])
        )
    held = None
    if len(sources) > 1:
        held = [
            {
                (p.name, p.version, p.architecture)
                for p in mirror.packages(store, [i for i in idx if i.kind == "deb"])
            }
            for idx, _ in sources
        ]
    return extras.for_packages(
        store.meta.get, store.meta.put, [refs for _, refs in sources], packages, held
    )


def create_from_mirrors(
    store: Store,
    name: str,
    mirror_names: Sequence[str],
    policy: MergePolicy | str = "later",
    selection: resolve.Selection | None = None,
) -> SnapshotInfo:
    """One snapshot of several mirrors' committed states, merged with ``policy``; its
    provenance lists every upstream (and the filter that chose the packages, if any). With one
    mirror this is a plain snapshot of it."""
    with store.locked(*new_name_locks(name), *(f"mirror/{m}" for m in mirror_names)):
        mirrors = [mirror.load(store, m) for m in mirror_names]
        sources = _mirror_sources(mirrors, policy, selection)
        states = [m.state for m in mirrors if m.state is not None]
        if len(states) == 1:
            indexes: Sequence[IndexRef] = states[0].indexes
            held_extras: Sequence[ExtraRef] = states[0].extras
        else:
            indexes = merge_indexes(store, [s.indexes for s in states], policy)
            held_extras = _extras_for(store, [(s.indexes, s.extras) for s in states], indexes)
        return _write(store, name, sources, indexes, held_extras)


def _mirror_sources(
    mirrors: Sequence[mirror.Mirror],
    policy: MergePolicy | str,
    selection: resolve.Selection | None,
) -> list[Provenance]:
    sources = [mirror.provenance(m) for m in mirrors]
    if selection is not None:
        sources = [replace(s, **selection_record(selection)) for s in sources]
    if len(sources) > 1:
        merged_with = MergePolicy.parse(policy).value
        sources = [replace(s, policy=merged_with) for s in sources]
    return sources


def made_from_mirrors(
    store: Store,
    mirror_names: Sequence[str],
    policy: MergePolicy | str = "later",
    selection: resolve.Selection | None = None,
) -> SnapshotInfo | None:
    """The newest snapshot :func:`create_from_mirrors` made of exactly these mirrors' current
    committed states, merged and filtered the same way, if one still exists: its provenance
    (each upstream's verified InRelease SHA256, signer, Release date and fetch time, and the
    filter and merge policy) equals what a new snapshot would record. ``sync`` uses it to make
    no new snapshot of an unchanged upstream."""
    mirrors = [mirror.load(store, m) for m in mirror_names]
    if any(m.state is None for m in mirrors):
        return None
    wanted = tuple(_mirror_sources(mirrors, policy, selection))
    found = [info for info in list_all(store, damaged=[]) if info.sources == wanted]
    return max(found, key=lambda info: (info.created_at, info.name), default=None)


def universe(store: Store, infos: Sequence[SnapshotInfo]) -> resolve.Universe:
    """What queries and the resolver see: debs, udebs and source packages (installer image
    files are no packages)."""
    pkgs = [
        p
        for info in infos
        for p in mirror.packages(store, [i for i in info.indexes if i.kind != "installer"])
    ]
    archs = [a for info in infos for a in info.architectures if a != "all"]
    return resolve.Universe(pkgs, list(dict.fromkeys(archs)))


def filter_snapshot(
    store: Store, source: str, dest: str, selection: resolve.Selection
) -> tuple[SnapshotInfo, resolve.Selected]:
    """A new snapshot DEST with the packages of SOURCE that ``selection`` keeps."""
    with store.locked(*new_name_locks(dest), f"snapshot/{source}"):
        info = load(store, source)
        u = universe(store, [info])
        picked = resolve.apply(u, selection)
        keys = {(p.name, p.version, p.architecture) for p in picked.packages}
        if "source" in info.kinds:
            # The sources that built the binaries kept (the Source: rule).
            built = sourcepkg.sources_of(picked.packages, u.packages)
            keys |= {(p.name, p.version, p.architecture) for p in built}
        indexes = []
        stanzas = keylist.Stanzas(store)
        for ref in info.indexes:
            # The kept stanzas by their key lists: each index is parsed once (the universe).
            listed = keylist.keys(store, ref)
            chosen: Sequence[keylist.Key | Package]
            if listed is not None:
                picked_keys = [k for k in listed if (k.name, k.version, k.architecture) in keys]
                chosen, text = picked_keys, archive.join_stanzas(stanzas[k] for k in picked_keys)
            else:
                kept = [
                    p
                    for p in mirror.packages(store, [ref])
                    if (p.name, p.version, p.architecture) in keys
                ]
                chosen, text = kept, archive.render_packages(kept)
            digest = store.meta.put(text)
            if ref.kind in keylist.KINDS:
                keylist.write(store, digest, chosen)
            count = len(chosen)
            indexes.append(IndexRef(ref.component, ref.architecture, digest, count, ref.kind))
        provenance = Provenance(
            "filter", snapshot=info.name, digest=info.digest, **selection_record(selection)
        )
        kept_extras = _extras_for(store, [(info.indexes, info.extras)], indexes)
        return _write(store, dest, [provenance], indexes, kept_extras), picked


def selection_record(selection: resolve.Selection) -> dict[str, Any]:
    """The Provenance fields that say how a selection chose packages."""
    return {
        "filter": selection.query,
        "with_deps": selection.with_deps,
        "with_recommends": selection.with_recommends,
        "with_essential": selection.with_essential,
    }


def search(store: Store, name: str, text: str) -> list[Package]:
    """The packages of snapshot ``name`` that query ``text`` matches, one per reference."""
    u = universe(store, [load(store, name)])
    return sorted(resolve.search(u, text), key=lambda p: p.ref)


def verify(store: Store, name: str, others: Sequence[str] = ()) -> list[resolve.Unmet]:
    """Dependencies of snapshot ``name``'s packages that nothing in it (or in ``others``)
    can satisfy."""
    info = load(store, name)
    u = universe(store, [info, *(load(store, o) for o in others)])
    own = {(p.name, p.version, p.architecture) for p in packages(store, info)}
    return resolve.unmet_dependencies(
        u, [p for p in u.packages if (p.name, p.version, p.architecture) in own]
    )


def why(
    store: Store, name: str, package: str, text: str | None = None
) -> list[tuple[Package, str]]:
    """The dependency chain from a filter match to ``package`` (a name or name_version_arch).

    Seeds are ``text`` or the filter the snapshot was made with."""
    info = load(store, name)
    record = next((s for s in info.sources if s.filter), None)
    if text is None and record is not None:
        text = record.filter
    if text is None:
        raise UsageError(
            f"snapshot {name} was not made with a filter",
            f"say where chains start: 'mirrorkit snapshot why {name} {package} --from QUERY'.",
        )
    u = universe(store, [info])
    # The closure as the snapshot was made: with Recommends and the Essential set if it was.
    seeds = resolve.search(u, text)
    if record is not None and record.with_essential:
        seeds += resolve.essential_set(u)
    recommends = record is not None and bool(record.with_recommends)
    closure = resolve.resolve_closure(u, seeds, recommends=recommends)
    for p in closure.packages:
        if package in (p.name, p.ref):
            return closure.why(p)
    raise NotFoundError(
        f"{package} is not in the dependency closure of {text!r} in snapshot {name}",
        f"check the name with 'mirrorkit snapshot search {name} {package}'.",
    )


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # added | removed | upgraded | downgraded | changed (same version, other bytes)
    name: str
    architecture: str
    old: str | None
    new: str | None


CHANGE_KINDS = ("added", "removed", "upgraded", "downgraded", "changed")


def _keys(store: Store, info: SnapshotInfo) -> list[keylist.Key] | list[Package]:
    """The snapshot's packages as merge and diff see them: its indices' key lists, or its
    parsed packages where an index has none."""
    found: list[keylist.Key] = []
    for ref in info.indexes:
        keys = keylist.keys(store, ref)
        if keys is None:
            return packages(store, info)
        found += keys
    return found


def diff(store: Store, a: str, b: str) -> list[Change]:
    """What changed from snapshot A to B, per name and architecture: a single version on each
    side is upgraded, downgraded or, with other bytes under the same version, changed; where
    a side has several versions (an --all-versions merge, two components), each version is
    added, removed or changed. Versions compare as dpkg does ("0:1.0" is "1.0")."""

    def builds(info: SnapshotInfo) -> dict[tuple[str, str], dict[str, set[str]]]:
        out: dict[tuple[str, str], dict[str, set[str]]] = {}
        for p in _keys(store, info):
            out.setdefault((p.name, p.architecture), {}).setdefault(p.version, set()).add(p.sha256)
        return out

    def same(x: str, y: str) -> bool:
        return x == y or archive.compare_versions(x, y) == 0

    old, new = builds(load(store, a)), builds(load(store, b))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, {}), new.get(key, {})
        if len(before) <= 1 and len(after) <= 1:
            (vb, sb), (va, sa) = (next(iter(d.items()), (None, None)) for d in (before, after))
            if vb is None or va is None:
                kind = "added" if vb is None else "removed"
            elif same(vb, va):
                if sb == sa:
                    continue
                kind = "changed"
            else:
                kind = "upgraded" if archive.compare_versions(va, vb) > 0 else "downgraded"
            changes.append(Change(kind, key[0], key[1], vb, va))
            continue
        for v, shas in sorted(before.items()):
            match = next((w for w in after if same(v, w)), None)
            if match is None:
                changes.append(Change("removed", key[0], key[1], v, None))
            elif after[match] != shas:
                changes.append(Change("changed", key[0], key[1], v, match))
        for w in sorted(after):
            if not any(same(v, w) for v in before):
                changes.append(Change("added", key[0], key[1], None, w))
    return changes


def _deb_stanza(path: Path, component: str) -> tuple[Package, Path]:
    """Read and check a .deb's control data (see :mod:`mirrorkit.debfile`); returns its
    package record and the file."""
    checked = debfile.read_package(path, component)
    return checked.package, checked.path


def create_from_debs(
    store: Store, name: str, paths: Sequence[Path], component: str = "main"
) -> SnapshotInfo:
    """A snapshot of your own packages: every .deb given (directories are searched), checked,
    copied into the pool, and indexed per architecture (``all`` goes into every one)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.rglob("*.deb"))
        elif path.exists():
            files.append(path)
        else:
            raise NotFoundError(f"{path}: no such file or directory")
    if not files:
        raise UsageError("no .deb files found in the given paths")
    check_name(component, "component")
    with store.locked(*new_name_locks(name)):
        pkgs = []
        seen: dict[tuple[str, str, str], tuple[Package, Path]] = {}
        for f in files:
            pkg, path = _deb_stanza(f, component)
            key = (pkg.name, pkg.version, pkg.architecture)
            if key in seen:
                other, other_path = seen[key]
                if other.sha256 == pkg.sha256:
                    continue  # the same file twice (a file and its directory, say)
                raise ConflictError(
                    f"{path} and {other_path}: two different builds of {pkg.ref}",
                    "a snapshot (and an APT suite) holds one build per name, version and "
                    "architecture: leave one out, or give the rebuild a new version.",
                )
            seen[key] = (pkg, path)
            pkgs.append((pkg, path))
        for pkg, path in pkgs:
            if not store.pool.has(pkg.sha256):
                store.pool.put_file(path, pkg.sha256)
        archs = sorted({p.architecture for p, _ in pkgs} - {"all"}) or ["all"]
        indexes = []
        for arch in archs:
            chosen = sorted(
                (p for p, _ in pkgs if p.architecture in (arch, "all")),
                key=lambda p: (p.name, p.version, p.architecture),
            )
            text = archive.render_packages(chosen)
            indexes.append(IndexRef(component, arch, store.meta.put(text), len(chosen)))
        sources = [Provenance("debs", files=tuple(f"{p.ref} {p.sha256}" for p, _ in pkgs))]
        return _write(store, name, sources, indexes)
