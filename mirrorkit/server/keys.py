"""aptly package keys -> packages, over every snapshot of the store (``GET /api/packages/:key``,
``PackageRefs`` of ``POST /api/snapshots``).

Snapshots never change, so the keys of a snapshot's packages are computed once per snapshot
digest and kept; a key not found sends the index to look for snapshots made since.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from mirrorkit import api
from mirrorkit.server import aptly

if TYPE_CHECKING:
    from mirrorkit.models import Package


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
