"""Which bundles a store imported, and the channel pins they move.

``bundles/imported.json`` is an audit trail (when, signed by whom, what each bundle carried)
and what keeps channel pins from moving backwards: a pin is applied only when no bundle made
at the same time or later set that channel, so an old bundle replayed cannot roll prod back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirrorkit import channel, refs
from mirrorkit.bundle.manifest import Manifest, parse_time
from mirrorkit.errors import StorageError
from mirrorkit.store import IMPORTED_BUNDLES, Store, read_record, write_record


@dataclass(frozen=True, slots=True)
class ChannelMove:
    name: str
    old: str | None
    new: str
    applied: bool
    reason: str = ""


def _imported_log(store: Store) -> Path:
    return store.imported_bundles


def apply_pins(
    store: Store, manifest: Manifest, manifest_sha: str, signers: Sequence[str]
) -> list[ChannelMove]:
    """Move channels as the bundle says, but never backwards: a pin from a bundle made before
    the one that last set the channel is not applied (an old bundle replayed must not roll
    prod back to an old snapshot)."""
    log = _read_log(store)
    made = parse_time(manifest.created_at)
    moves = []
    for pin in manifest.channels:
        exists = channel.exists(store, pin.name)
        current = channel.load(store, pin.name).snapshot if exists else None
        setters = [e for e in log if pin.name in e["channels"]]
        if current == pin.snapshot:
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, "already there"))
        elif any(e["manifest_sha256"] == manifest_sha for e in setters):
            reason = "this bundle set it before"
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, reason))
        elif newer := [e for e in setters if made is None or e["when"] >= made]:
            latest = max(newer, key=lambda e: e["when"])
            reason = f"a newer bundle (made {latest['created_at']}) set it"
            moves.append(ChannelMove(pin.name, current, pin.snapshot, False, reason))
        else:
            via = f"bundle made {manifest.created_at}, signed by {', '.join(signers)}"
            refs.set_channel(store, pin.name, pin.snapshot, via=via)
            moves.append(ChannelMove(pin.name, current, pin.snapshot, True))
    return moves


def check_log(store: Store) -> None:
    """Refuse, before an import writes anything, a log it could not read or rewrite later (a
    newer version, or damaged)."""
    _read_log(store)


def _read_log(store: Store) -> list[dict[str, Any]]:
    path = _imported_log(store)
    if not path.exists():
        return []
    data = read_record(path, IMPORTED_BUNDLES)
    entries = data.get("bundles") if isinstance(data, dict) else None
    checked = []
    for e in entries if isinstance(entries, list) else [None]:
        when = parse_time(e["created_at"]) if isinstance(e, dict) and "created_at" in e else None
        if (
            when is None
            or not isinstance(e, dict)
            or not isinstance(e.get("channels"), dict)
            or not isinstance(e.get("manifest_sha256"), str)
        ):
            raise StorageError(
                f"{path}: not a valid bundle import log", "the store was modified by hand."
            )
        checked.append({**e, "when": when})
    return checked


def log_import(
    store: Store, manifest: Manifest, manifest_sha: str, signers: tuple[str, ...]
) -> None:
    """Remember which bundles were imported, when, signed by whom: an audit trail, and what
    keeps channel pins from moving backwards."""
    log = [{k: v for k, v in e.items() if k != "when"} for e in _read_log(store)]
    log.append(
        {
            "manifest_sha256": manifest_sha,
            "created_at": manifest.created_at,
            "imported_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "signers": list(signers),
            "snapshots": [s.name for s in manifest.snapshots],
            "since": manifest.since.name if manifest.since else None,
            "channels": {c.name: c.snapshot for c in manifest.channels},
        }
    )
    path = _imported_log(store)
    write_record(path, IMPORTED_BUNDLES, {"bundles": log}, tmp_dir=store.tmp)
