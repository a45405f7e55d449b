"""Channels: named pointers (dev, staging, prod) to snapshots, with their history.

A channel is one JSON file, ``channels/NAME.json``, rewritten atomically on every change; its
history records who moved it, when, and to what, so ``rollback`` can walk back and ``history``
can show an audit trail. Snapshots never change; only these pointers move.

Channels build on snapshots (this module imports snapshot, never the other way round); the
rules that span both, a name held by one kind only and who still needs a snapshot, are
mirrorkit.refs': set a channel through ``refs.set_channel``.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirrorkit import snapshot
from mirrorkit.errors import ConflictError, NotFoundError
from mirrorkit.store import CHANNEL, Store, check_name, read_record, write_record


@dataclass(frozen=True, slots=True)
class Event:
    action: str  # "set" or "rollback"
    snapshot: str
    at: str
    by: str
    digest: str = ""  # the snapshot's digest then ("" in histories written before it was kept)


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    snapshot: str
    history: tuple[Event, ...]

    @property
    def updated_at(self) -> str:
        return self.history[-1].at if self.history else ""

    @property
    def digest(self) -> str:
        """The digest of the snapshot the channel points at, as it was when pointed at."""
        return self.history[-1].digest if self.history else ""

    def stack(self) -> list[str]:
        """The snapshots ``rollback`` can return to, oldest first: every ``set`` pushes,
        every ``rollback`` pops."""
        return [snapshot for snapshot, _ in self._stack()]

    def _stack(self) -> list[tuple[str, str]]:
        stack: list[tuple[str, str]] = []
        for event in self.history:
            if event.action == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append((event.snapshot, event.digest))
        return stack


def _path(store: Store, name: str) -> Path:
    return store.channel_record(name)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _from_json(data: dict[str, Any]) -> Channel:
    return Channel(
        name=data["name"],
        snapshot=data["snapshot"],
        history=tuple(Event(**e) for e in data["history"]),
    )


def _write(store: Store, channel: Channel) -> None:
    write_record(
        _path(store, channel.name),
        CHANNEL,
        {
            "name": channel.name,
            "snapshot": channel.snapshot,
            "history": [_event(e) for e in channel.history],
        },
        tmp_dir=store.tmp,
    )


def _event(e: Event) -> dict[str, str]:
    out = {"action": e.action, "snapshot": e.snapshot, "at": e.at, "by": e.by}
    if e.digest:
        out["digest"] = e.digest
    return out


def load(store: Store, name: str) -> Channel:
    path = _path(store, name)
    if not path.exists():
        raise NotFoundError(f"no channel named {name!r}", "see 'mirrorkit channel list'.")
    return _from_json(read_record(path, CHANNEL))


def exists(store: Store, name: str) -> bool:
    return _path(store, name).exists()


def list_all(store: Store) -> list[Channel]:
    if not store.channels.is_dir():
        return []
    return [_from_json(read_record(p, CHANNEL)) for p in sorted(store.channels.glob("*.json"))]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def set_channel(store: Store, name: str, snapshot_name: str, *, via: str = "") -> Channel:
    """Point channel ``name`` at ``snapshot_name`` (creating the channel if needed). ``via``:
    how, for the history (e.g. the bundle that carried the pin).

    Whether a snapshot holds the name is refs' rule: call :func:`mirrorkit.refs.set_channel`."""
    _path(store, name)  # a bad channel name is named as such, before the snapshot checks
    check_name(snapshot_name, "snapshot")
    # The snapshot's lock too: 'snapshot rm' sees this channel, or this sees the snapshot gone.
    with store.locked(f"channel/{name}", f"snapshot/{snapshot_name}"):
        digest = snapshot.load(store, snapshot_name).digest
        current = load(store, name) if exists(store, name) else None
        if current is not None and (current.snapshot, current.digest) == (snapshot_name, digest):
            return current  # no event: a rollback must go to the snapshot before this one
        history = current.history if current is not None else ()
        by = f"{_who()}{f' via {via}' if via else ''}"
        event = Event("set", snapshot_name, _now(), by, digest)
        channel = Channel(name, snapshot_name, (*history, event))
        _write(store, channel)
        return channel


def rollback(store: Store, name: str) -> Channel:
    """Point the channel back at the snapshot it had before the current one."""
    _path(store, name)
    with store.locked(f"channel/{name}"):
        current = load(store, name)
        stack = current._stack()
        if len(stack) < 2:
            raise ConflictError(
                f"channel {name} has no earlier snapshot to roll back to",
                f"see 'mirrorkit channel history {name}'.",
            )
        target, digest = stack[-2]
        # Known only now; its lock keeps a 'snapshot rm --force' from removing it meanwhile.
        with store.locked(f"snapshot/{target}"):
            if not snapshot.exists(store, target):
                raise NotFoundError(
                    f"channel {name} would roll back to snapshot {target}, which was removed",
                    f"point it at an existing snapshot with 'mirrorkit channel set {name} "
                    "SNAPSHOT'.",
                )
            event = Event("rollback", target, _now(), _who(), digest)
            channel = Channel(name, target, (*current.history, event))
            _write(store, channel)
            return channel


def resolve(store: Store, name: str) -> tuple[Channel, snapshot.SnapshotInfo]:
    """The channel and the snapshot it points at, which must be the one it was pointed at: a
    snapshot removed (--force) and created again under that name is other contents."""
    channel = load(store, name)
    if not snapshot.exists(store, channel.snapshot):
        raise NotFoundError(
            f"channel {name} points at snapshot {channel.snapshot}, which was removed",
            f"point it at an existing snapshot with 'mirrorkit channel set {name} SNAPSHOT'.",
        )
    info = snapshot.load(store, channel.snapshot)
    if channel.digest and info.digest != channel.digest:
        raise ConflictError(
            f"channel {name} points at snapshot {channel.snapshot} as it was (digest "
            f"{channel.digest[:12]}…), but {channel.snapshot} now has other contents (digest "
            f"{info.digest[:12]}…): it was removed and created again",
            f"if the new {channel.snapshot} is meant, say so: 'mirrorkit channel set {name} "
            f"{channel.snapshot}'.",
        )
    return channel, info
