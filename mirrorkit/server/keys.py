"""aptly package keys -> packages, over every snapshot of the store (``GET /api/packages/:key``,
``PackageRefs`` of ``POST /api/snapshots``).

Snapshots never change, so the keys of a snapshot's packages are computed once per snapshot
digest and kept; a key not found sends the index to look for snapshots made since.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit import api
from mirrorkit.errors import MirrorkitError
from mirrorkit.server import aptly

if TYPE_CHECKING:
    from mirrorkit.models import Package
    from mirrorkit.snapshot import SnapshotInfo


class SnapshotCache:
    """The store's snapshots, each read once: a snapshot never changes, and a new one under
    an old name is a new directory (a new inode), so the directory listing says exactly which
    records are still current."""

    def __init__(self, store: str) -> None:
        self._store = store
        self._dir = Path(store) / "snapshots"
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int], SnapshotInfo] = {}

    def current(self) -> list[SnapshotInfo]:
        try:
            entries = [(e.name, e.inode()) for e in os.scandir(self._dir) if e.is_dir()]
        except FileNotFoundError:
            return []
        with self._lock:
            known = dict(self._known)
        out, fresh = [], {}
        for entry in entries:
            info = known.get(entry)
            if info is None:
                try:
                    info = api.snapshot_show(entry[0], store=self._store).snapshot
                except MirrorkitError:
                    continue  # being written or removed, or damaged: 'snapshot list' says
            fresh[entry] = info
            out.append(info)
        with self._lock:
            self._known = fresh
        return out


class KeyIndex:
    def __init__(self, store: str, checksums: aptly.Checksums) -> None:
        self._store = store
        self._checksums = checksums
        self._lock = threading.Lock()
        self._done: set[str] = set()  # snapshot digests indexed
        self._keys: dict[str, tuple[Package, str]] = {}  # key -> (package, a snapshot name)

    def keys_of(self, packages: tuple[Package, ...]) -> list[str]:
        return [aptly.package_key(p, self._checksums) for p in packages]

    def _refresh(self) -> None:
        listed = api.snapshot_list(store=self._store)
        for info in listed.snapshots:
            with self._lock:
                if info.digest in self._done:
                    continue
            details = api.snapshot_show(info.name, packages=True, store=self._store)
            found = {
                key: (p, info.name)
                for p, key in zip(details.packages, self.keys_of(details.packages), strict=True)
            }
            with self._lock:
                for key, hit in found.items():
                    self._keys.setdefault(key, hit)
                self._done.add(info.digest)

    def find(self, key: str) -> tuple[Package, str] | None:
        """The package with aptly key ``key`` and a snapshot that holds it, or None."""
        with self._lock:
            hit = self._keys.get(key)
        if hit is None:
            self._refresh()
            with self._lock:
                hit = self._keys.get(key)
        return hit
