"""The mirrors a store follows: their records (``mirrors/NAME.json``: the spec, and the state
the last completed update committed) and the operations on them that fetch nothing (add, load,
list, remove). The update pipeline that changes a mirror's state is mirror.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirrorkit import archive
from mirrorkit.errors import ConflictError, NotFoundError, UsageError
from mirrorkit.models import ExtraRef, IndexRef, MirrorSpec, Package, index_json, index_label
from mirrorkit.net.auth import remember, split_credentials
from mirrorkit.net.config import NetworkConfig
from mirrorkit.net.redact import has_credentials, redact_url
from mirrorkit.store import MIRROR, Store, check_name, read_record, write_record

FORMAT = MIRROR.version


@dataclass(frozen=True, slots=True)
class MirrorState:
    """What the last completed update verified and stored."""

    inrelease_sha256: str
    signer: str
    release_date: str  # ISO 8601, UTC; "" if no Release accepted so far had a Date
    valid_until: str | None
    fetched_at: str
    spec_digest: str
    indexes: tuple[IndexRef, ...]  # what the mirror holds (filtered, if it has a filter)
    upstream: tuple[IndexRef, ...] = ()  # the upstream's indices as verified, in full
    selection: str = ""  # digest of the filter that chose ``indexes`` from ``upstream``
    codename: str = ""  # the Release's Codename: a suite that changes it is another release
    extras: tuple[ExtraRef, ...] = ()  # Translations and Contents held (cut to ``indexes``)
    upstream_extras: tuple[ExtraRef, ...] = ()  # the upstream's, as verified, in full

    @property
    def packages(self) -> int:
        return sum(i.packages for i in self.indexes)


@dataclass(frozen=True, slots=True)
class Mirror:
    spec: MirrorSpec
    created_at: str
    state: MirrorState | None


# Fields that say how the mirror is reached, not what it holds: out of the spec digest (a new
# proxy is no reason to fetch the indices again).
_NETWORK_FIELDS = ("proxy", "ca_bundle", "auth_files")


# Written only when set: records (and spec digests) written before them stay the same.
_ONLY_WHEN_SET = frozenset(
    {"allow_empty", "languages", "with_contents", *_NETWORK_FIELDS, "with_sources",
     "with_udebs", "with_installer", "installer_files"}
)  # fmt: skip


def _spec_json(spec: MirrorSpec) -> dict[str, Any]:
    return {k: v for k, v in asdict(spec).items() if k not in _ONLY_WHEN_SET or v}


def spec_digest(spec: MirrorSpec) -> str:
    what = {k: v for k, v in _spec_json(spec).items() if k not in _NETWORK_FIELDS}
    return hashlib.sha256(repr(what).encode()).hexdigest()


def record_path(store: Store, name: str) -> Path:
    return store.mirror_record(name)


def record_body(mirror: Mirror) -> dict[str, Any]:
    spec = _spec_json(mirror.spec)
    state = None
    if mirror.state is not None:
        state = asdict(mirror.state)
        state["indexes"] = [index_json(i) for i in mirror.state.indexes]
        state["upstream"] = [index_json(i) for i in mirror.state.upstream]
    return {"format": FORMAT, "spec": spec, "created_at": mirror.created_at, "state": state}


def _from_json(data: dict[str, Any]) -> Mirror:
    s = data["spec"]
    spec = MirrorSpec(
        name=s["name"],
        url=s["url"],
        suite=s["suite"],
        components=tuple(s["components"]),
        architectures=tuple(s["architectures"]),
        keyring=s["keyring"],
        fingerprints=tuple(s["fingerprints"]),
        filter=s.get("filter", ""),
        with_deps=s.get("with_deps", False),
        with_recommends=s.get("with_recommends", False),
        allow_empty=s.get("allow_empty", False),
        languages=tuple(s.get("languages", ())),
        with_contents=s.get("with_contents", False),
        proxy=s.get("proxy", ""),
        ca_bundle=s.get("ca_bundle", ""),
        auth_files=tuple(s.get("auth_files", ())),
        with_sources=s.get("with_sources", False),
        with_udebs=s.get("with_udebs", False),
        with_installer=s.get("with_installer", False),
        installer_files=tuple(s.get("installer_files", ())),
    )
    state = None
    if (st := data.get("state")) is not None:
        state = MirrorState(
            inrelease_sha256=st["inrelease_sha256"],
            signer=st["signer"],
            release_date=st["release_date"],
            valid_until=st["valid_until"],
            fetched_at=st["fetched_at"],
            spec_digest=st["spec_digest"],
            indexes=tuple(IndexRef(**i) for i in st["indexes"]),
            upstream=tuple(IndexRef(**i) for i in st.get("upstream", st["indexes"])),
            selection=st.get("selection", ""),
            codename=st.get("codename", ""),
            extras=tuple(ExtraRef(**e) for e in st.get("extras", ())),
            upstream_extras=tuple(ExtraRef(**e) for e in st.get("upstream_extras", ())),
        )
    return Mirror(spec=spec, created_at=data["created_at"], state=state)


def checked(spec: MirrorSpec) -> tuple[MirrorSpec, tuple[str, str, str] | None]:
    """``spec`` as a record keeps it (default component and architecture, credentials out of
    the URL), and the credentials taken out (url, login, password); refuses what cannot work.
    The same checks for 'mirror add', 'mirror edit' and a profile's upstreams."""
    if not spec.flat and not spec.components:
        spec = replace(spec, components=("main",))
    if not spec.architectures:
        spec = replace(spec, architectures=("amd64",))
    if not spec.url.startswith(("http://", "https://")):
        raise ConflictError(
            f"mirror {spec.name}: unsupported URL {spec.url!r}", "use an http:// or https:// URL."
        )
    moved = split_credentials(spec.url)
    if moved is not None:
        # user:password@ in the URL: kept in the store's auth file (0600), never in the record
        # (which mirror list, snapshots and bundles show).
        spec = replace(spec, url=moved[0])
    if not Path(spec.keyring).is_file():
        raise UsageError(
            f"mirror {spec.name}: keyring {spec.keyring}: no such file",
            "give the upstream's public keyring, e.g. "
            "/usr/share/keyrings/debian-archive-keyring.gpg.",
        )
    for fpr in spec.fingerprints:
        if not re.fullmatch(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}", fpr):
            raise UsageError(
                f"mirror {spec.name}: {fpr!r} is not a key fingerprint",
                "give the signer's full fingerprint, 40 hex digits ('gpg --show-keys KEYRING').",
            )
    if spec.proxy and has_credentials(spec.proxy):
        raise UsageError(
            f"mirror {spec.name}: the proxy {redact_url(spec.proxy)} carries credentials, "
            "which a mirror record never keeps",
            "give the proxy's credentials for each update instead (--proxy, or HTTPS_PROXY / "
            "HTTP_PROXY in the environment).",
        )
    for given in (spec.ca_bundle, *spec.auth_files):
        if given and not Path(given).is_file():
            raise UsageError(
                f"mirror {spec.name}: {given}: no such file",
                "give an existing file with --ca-bundle / --auth-file.",
            )
    return spec, moved


def add(store: Store, spec: MirrorSpec, *, replace: bool = False) -> Mirror:
    """Record a new mirror. With ``replace``, change an existing mirror's spec (profiles do
    this), keeping its state so the next update reuses everything it can."""
    path = record_path(store, spec.name)
    spec, moved = checked(spec)
    state = None
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    if path.exists():
        if not replace:
            raise ConflictError(
                f"mirror {spec.name} exists already",
                f"use 'mirrorkit mirror edit {spec.name}' to change it, or "
                f"'mirrorkit mirror rm {spec.name}' first, or pick another name.",
            )
        old = load(store, spec.name)
        state, created = _kept_state(old, spec), old.created_at
    return _write(store, Mirror(spec=spec, created_at=created, state=state), moved)


def would_add(store: Store, spec: MirrorSpec) -> Mirror:
    """What ``add(store, spec, replace=True)`` would record, writing nothing (a dry run's
    view of a profile's upstreams). Credentials stay in the URL: nothing is stored."""
    stored, _moved = checked(spec)
    if not record_path(store, spec.name).exists():
        return Mirror(replace(stored, url=spec.url), "", None)
    old = load(store, spec.name)
    return Mirror(replace(stored, url=spec.url), old.created_at, _kept_state(old, stored))


def edit(store: Store, spec: MirrorSpec) -> Mirror:
    """Change an existing mirror's spec (checked as :func:`add` checks it); the next update
    follows it. Its state stays where it still describes this upstream, so that update
    reuses everything it can (and its Release Date still guards against a rollback)."""
    old = load(store, spec.name)
    spec, moved = checked(spec)
    return _write(store, Mirror(spec, old.created_at, _kept_state(old, spec)), moved)


def _kept_state(old: Mirror, spec: MirrorSpec) -> MirrorState | None:
    if (old.spec.url, old.spec.suite, old.spec.keyring) != (spec.url, spec.suite, spec.keyring):
        # Another upstream under this name (two profiles, say): its state, and its Release
        # Date as the rollback floor, say nothing about this one.
        return None
    return old.state


def _write(store: Store, mirror: Mirror, moved: tuple[str, str, str] | None) -> Mirror:
    if moved is not None:
        # The auth file is the store's, not this mirror's: its own lock (held already by
        # mirror add and edit, see add_locks; taken here by an update migrating an old record).
        with store.locked("auth"):
            remember(store_auth_file(store), mirror.spec.url, moved[1], moved[2])
    write_record(
        record_path(store, mirror.spec.name), MIRROR, record_body(mirror), tmp_dir=store.tmp
    )
    return mirror


def migrate_credentials(store: Store, mirror: Mirror) -> Mirror:
    """A record written before credentials left mirror URLs: they move to the store's auth
    file now (the caller holds the store's lock); any other record is returned as it is."""
    moved = split_credentials(mirror.spec.url)
    if moved is None:
        return mirror
    spec = replace(mirror.spec, url=moved[0])
    return _write(store, Mirror(spec, mirror.created_at, mirror.state), moved)


def network_of(spec: MirrorSpec) -> NetworkConfig:
    """How the mirror is reached, as its record says (under the command line's options)."""
    return NetworkConfig(
        proxy=spec.proxy or None,
        ca_bundle=Path(spec.ca_bundle) if spec.ca_bundle else None,
        auth_files=tuple(Path(p) for p in spec.auth_files) or None,
    )


def add_locks(specs: Sequence[MirrorSpec]) -> list[str]:
    """The locks adding (or replacing) mirrors ``specs`` holds: each mirror's, and the store's
    auth file's (``auth``) when a URL carries credentials that go into it."""
    locks = [f"mirror/{check_name(spec.name, 'mirror')}" for spec in specs]
    return [*locks, "auth"] if any(split_credentials(s.url) for s in specs) else locks


def store_auth_file(store: Store) -> Path:
    """The store's own auth file (apt's format): credentials given in mirror URLs."""
    return store.auth_file


def load(store: Store, name: str) -> Mirror:
    path = record_path(store, name)
    if not path.exists():
        raise NotFoundError(f"no mirror named {name!r}", "see 'mirrorkit mirror list'.")
    return _from_json(read_record(path, MIRROR))


def list_all(store: Store) -> list[Mirror]:
    if not store.mirrors.is_dir():
        return []
    return [_from_json(read_record(p, MIRROR)) for p in sorted(store.mirrors.glob("*.json"))]


def remove(store: Store, name: str) -> None:
    """Forget a mirror. Its pool files stay until ``gc``; snapshots taken from it are
    unaffected (they hold their own references)."""
    path = record_path(store, name)
    if not path.exists():
        raise NotFoundError(f"no mirror named {name!r}", "see 'mirrorkit mirror list'.")
    path.unlink()


def packages(store: Store, indexes: Sequence[IndexRef]) -> list[Package]:
    """The packages of stored indices, of every kind (binary, udeb, source, installer)."""
    result: list[Package] = []
    for ref in indexes:
        result.extend(parse_index(store.meta.get(ref.sha256), ref))
    return result


def parse_index(text: bytes, ref: IndexRef, what: str | None = None) -> list[Package]:
    """The packages of one stored index, read as its kind says."""
    what = what or index_label(ref)
    if ref.kind == "source":
        from mirrorkit import sourcepkg

        return sourcepkg.parse_sources(text, ref.component, what)
    return archive.parse_packages(text, ref.component, what)


def dists_url(spec: MirrorSpec) -> str:
    if spec.flat:
        return spec.url.rstrip("/") + "/" + spec.suite.strip("/")
    return f"{spec.url.rstrip('/')}/dists/{spec.suite}"
