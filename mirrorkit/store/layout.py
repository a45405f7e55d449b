"""The store as a whole: where everything lives, its format, and the lock.

```
STORE/
  format                    the store's format version (JSON); checked whenever a store is opened
  lock                      flock'ed by every command that changes the store (shared or whole)
  locks/<kind>/<name>.lock  one resource's lock (mirror/NAME, snapshot/NAME, publish/DIGEST...)
  tmp/                      temp files (same filesystem, so rename is atomic); tmp/partial/ resumes
  pool/ab/<sha256>          .deb files, by SHA256 of their bytes, write-once, read-only
  meta/ab/<sha256>.zst      indices and InRelease files, by SHA256 of their *uncompressed* bytes
  mirrors/NAME.json         a mirror's spec and last committed state
  snapshots/NAME/snapshot.json
  channels/NAME.json        a channel's pointer and history
  published/<digest>.json   where the store published what (one per target)
  bundles/imported.json     the bundles imported into the store
  auth.conf                 credentials given in mirror URLs (apt's auth.conf format, 0600)
```
``docs/store-format.md`` describes every file and what other tools may rely on.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from mirrorkit.errors import StorageError, StoreFormatError
from mirrorkit.store import records
from mirrorkit.store.files import atomic_write, canonical_json, check_name, storage_error
from mirrorkit.store.locks import StoreLocks
from mirrorkit.store.objects import MetaStore, Pool

STORE_FORMAT = 1  # what this mirrorkit writes, and the newest it opens
# A store written before the format file existed is format 1: every store then was (the
# records it holds carried "format": 1, or no version at all for channels, published trees and
# imported bundles, which format 1 reads as version 1).
UNVERSIONED_STORE = 1
# The first mirrorkit that wrote each store format: named when a store is too new, if its
# format file does not say which mirrorkit wrote it.
FIRST_WRITTEN_BY = {1: "0.1.0"}
_FORMAT_HINT = (
    "the store was modified by hand or damaged; if it holds only what mirrorkit 0.1.0 or later "
    "wrote, remove this file and the next command that changes the store writes it again."
)
_FORMAT_SCHEMA = records.Obj({"mirrorkit_version": str})


class Store:
    """A store at ``root``. Opening one checks its format: a store in a format this mirrorkit
    does not know is refused here, before anything reads or writes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.partial = self.tmp / "partial"
        self.pool = Pool(root / "pool", self.tmp)
        self.meta = MetaStore(root / "meta", self.tmp)
        self.mirrors = root / "mirrors"
        self.snapshots = root / "snapshots"
        self.channels = root / "channels"
        self.published = root / "published"
        self.imported_bundles = root / "bundles" / "imported.json"
        self.auth_file = root / "auth.conf"  # credentials from mirror URLs, apt's format
        self.format_file = root / "format"
        self._locks = StoreLocks(root, self.init)
        # None: no store here yet (the first command that writes creates one).
        self.format = self._check_format()

    # --- where each record lives (the one place these paths are built) ---------------------

    def mirror_record(self, name: str) -> Path:
        return self.mirrors / f"{check_name(name, 'mirror')}.json"

    def snapshot_dir(self, name: str) -> Path:
        return self.snapshots / check_name(name, "snapshot")

    def snapshot_record(self, name: str) -> Path:
        return self.snapshot_dir(name) / "snapshot.json"

    def channel_record(self, name: str, what: str = "channel") -> Path:
        """``channels/NAME.json``; ``what`` names the kind of name in the error for a bad one
        (publish takes a snapshot or a channel)."""
        return self.channels / f"{check_name(name, what)}.json"

    # --- format --------------------------------------------------------------------------

    def _check_format(self) -> int | None:
        """The store's format; refuses one this mirrorkit does not know, writing nothing."""
        path = self.format_file
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return self._unversioned()
        except NotADirectoryError:
            return None  # root is a file: whatever uses the store says so
        except OSError as exc:
            raise StorageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        what = "store format file"
        data = records.load_object(raw, path, what, _FORMAT_HINT)
        found = records.version_of(data, path, what, _FORMAT_HINT)
        if found > STORE_FORMAT:
            from mirrorkit._version import __version__

            writer = data.get("mirrorkit_version")
            needed = writer if isinstance(writer, str) else FIRST_WRITTEN_BY.get(found)
            raise StoreFormatError(
                f"store {self.root} is in format {found} ({path}), but this mirrorkit "
                f"({__version__}) knows store formats up to {STORE_FORMAT}",
                f"a newer mirrorkit{f' ({needed})' if needed else ''} wrote it: upgrade "
                f"mirrorkit{f' to {needed} or later' if needed else ''} "
                "('pip install --upgrade mirrorkit'), or give another --store. "
                "Nothing was changed.",
            )
        body = {k: v for k, v in data.items() if k != "format"}
        if reason := records.problem(body, _FORMAT_SCHEMA, ""):
            raise records.damaged(path, what, reason, _FORMAT_HINT)
        return found

    def _unversioned(self) -> int | None:
        """A store without a format file: none yet (no directory, or an empty one), or one
        written before the file existed."""
        try:
            with os.scandir(self.root) as entries:
                empty = next(entries, None) is None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"{self.root}: cannot read ({exc.strerror or exc})") from exc
        return None if empty else UNVERSIONED_STORE

    def init(self) -> None:
        """Create the store's directories and its format file, as far as they are missing:
        a store written before the format file existed gets it here, on its first write."""
        self.format = self._check_format()  # another process may have created it since
        try:
            for d in (
                self.tmp,
                self.partial,
                self.pool.root,
                self.meta.root,
                self.mirrors,
                self.snapshots,
                self.channels,
            ):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        if not self.format_file.exists():
            from mirrorkit._version import __version__

            body = {"format": STORE_FORMAT, "mirrorkit_version": __version__}
            atomic_write(self.format_file, canonical_json(body) + b"\n", mode=0o644)
            self.format = STORE_FORMAT

    def locked(self, *resources: str, wait: float | None = None) -> AbstractContextManager[None]:
        """Hold locks for a command that changes the store (``locks.py`` says how).

        ``locked()``: the whole store, exclusively (gc, and whatever changes more than it can
        name). ``locked("mirror/web", "snapshot/new")``: the store shared, and each resource
        exclusively, so commands on other resources run at the same time. ``wait=None`` fails
        at once with StoreLockedError naming the resource and its holder; ``wait=N`` waits up to
        N seconds first. Re-entrant within a thread; threads exclude each other like processes.
        Read what the command changes after this returns, never before (issue 14, item 6)."""
        return self._locks.locked(*resources, wait=wait)
