"""Publishing as one transaction, whatever the target: the order of the writes, the pool
record, pruning and the lock. A target (fs.py: a directory, s3.py: a bucket prefix) only
puts, compares, lists, deletes and locks; it never decides what is written when.

The order keeps a suite consistent for a client reading at any moment:

1. pool objects (and the public key): only ever added with the content their name promises;
2. the indices' by-hash copies, then the indices under their names;
3. ``Release``, ``Release.gpg`` and ``InRelease`` last, then the target's switch (one symlink
   rename on a filesystem; on S3 the ``InRelease`` write is the switch).

apt reads ``InRelease`` first, fetches the indices it names by hash and then pool files by name:
until the new ``InRelease`` is in place, everything the old one names is still there. A
publish that fails anywhere before it leaves the old suite usable; run again, it writes only
what is still missing (what is already there with the same content is reused).

The pool record, ``.mirrorkit/pool.sha256`` (the sha256sum format), lists every pool file
mirrorkit placed in the tree or prefix. Pruning, only after the switch, removes pool files in
the record that no suite lists any more, never another tool's files.

The intent, ``.mirrorkit/pool.intent`` (same format), is written durably before the first pool
file is placed: every pool file this publish may place that the record does not list yet. A
publish killed while placing (SIGKILL, power loss: no ``finally`` runs) leaves it behind, and
the next publish into the target (or ``gc``, for a directory) claims each file it lists that
holds exactly the intended bytes (:func:`reclaim_intent`), so the record again lists every
file mirrorkit placed and pruning can remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from mirrorkit import archive
from mirrorkit.errors import FormatError, MirrorkitError, PublishError
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.publish.plan import SuitePlan
from mirrorkit.store import Pool

POOL_RECORD = ".mirrorkit/pool.sha256"
_MAX_FOLDERS = 256  # pruning lists up to this many pool directories, else the whole pool
POOL_INTENT = ".mirrorkit/pool.intent"
SIGNED_FILES = ("Release", "Release.gpg", "InRelease")  # in write order: InRelease last

# What an item is decides how a target stores it (S3: Cache-Control and Content-Type) and
# whether a name's content may ever change ("pool" and "by-hash" never do).
Kind = Literal["pool", "key", "by-hash", "index", "signed", "state", "intent"]


def parse_pool_record(text: str) -> dict[str, str]:
    """Pool path -> SHA256 from a POOL_RECORD; malformed lines are skipped."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        sha, sep, path = line.partition("  ")
        if sep and len(sha) == 64:
            record[path] = sha
    return record


def render_pool_record(record: Mapping[str, str]) -> bytes:
    return "".join(f"{sha}  {path}\n" for path, sha in sorted(record.items())).encode()


@dataclass(frozen=True, slots=True)
class Item:
    """One file to place: its name below the tree root, size, SHA256, and bytes or a file."""

    rel: str
    size: int
    sha256: str
    data: bytes | None = None
    path: Path | None = None
    kind: Kind = "index"

    @classmethod
    def from_bytes(cls, rel: str, data: bytes, **kw: Any) -> Self:
        return cls(rel, len(data), hashlib.sha256(data).hexdigest(), data=data, **kw)

    def blocks(self, size: int) -> Iterator[bytes]:
        if self.data is not None:
            for start in range(0, max(len(self.data), 1), size):
                yield self.data[start : start + size]
        elif self.path is not None:
            with self.path.open("rb") as fh:
                while block := fh.read(size):
                    yield block


class Target(Protocol):
    """Where a plan is written. Implementations: fs.DirectoryTarget, s3.BucketTarget."""

    @property
    def label(self) -> str:
        """For progress: what is written where ("upload to s3://apt/debian")."""

    @property
    def jobs(self) -> int:
        """How many puts may run at once."""

    @property
    def replaces_unlisted(self) -> bool:
        """Whether a pool file of other content that no suite lists may be replaced (a bucket
        prefix: debris of a failed upload) or is refused (a directory other tools share)."""

    def lock(self, suite: str) -> AbstractContextManager[None]:
        """Keep other publishers out for the duration."""

    def check_lock(self) -> None:
        """Raise if the lock was taken from us meanwhile (before the switch and pruning)."""

    def get(self, rel: str) -> bytes | None:
        """The bytes of a published name (None if it does not exist)."""

    def compare(self, item: Item, recorded: str | None) -> bool | None:
        """Whether ``item.rel`` holds ``item``'s bytes: True, False (other or unknown content),
        None (absent). ``recorded``: the SHA256 the pool record has for it."""

    def put(self, item: Item) -> None:
        """Place ``item`` (a name under ``dists/SUITE/`` into the suite being staged)."""

    def list(self, rel_prefix: str) -> Iterator[str]:
        """The names of the files under ``rel_prefix``."""

    def delete(self, rels: Sequence[str]) -> None:
        """Remove these names (missing ones are no error)."""

    def listed_pool(self) -> dict[str, str]:
        """Pool path -> SHA256 of every file a suite published here lists; raises when a
        suite cannot be read (pruning on a partial picture could delete what it needs)."""

    def conflict(self, item: Item, listed: str | None, recorded: str | None) -> PublishError:
        """The error for a pool name that holds other content than ``item``."""

    def begin_suite(self, suite: str, carry: set[str]) -> None:
        """Start writing suite ``suite``; ``carry``: by-hash names (below ``dists/SUITE/``)
        of the generation now published, which must stay readable after the switch."""

    def prepare_switch(self, suite: str) -> None:
        """Before the signed files: whatever makes them newer than the old ones for clients."""

    def switch(self, suite: str) -> None:
        """Make the new suite the published one (after its signed files are written)."""

    def abort_suite(self, suite: str) -> None:
        """Forget a suite whose writing failed before the switch."""


@dataclass(frozen=True, slots=True)
class SignedPlan:
    """A suite's plan with its signatures and the public key: what the executor writes."""

    plan: SuitePlan
    inrelease: bytes
    release_gpg: bytes
    public_key: tuple[bytes, bytes]  # binary, armored
    key_name: str


@dataclass(frozen=True, slots=True)
class SuiteState:
    """The suite's current Release and InRelease (parsed, not verified: only used for the Date
    and for what the generation now published names)."""

    release: archive.Release | None
    inrelease: archive.Release | None

    @property
    def date(self) -> datetime | None:
        dates = [r.date for r in (self.release, self.inrelease) if r is not None and r.date]
        return max(dates) if dates else None

    def by_hash_paths(self) -> set[str]:
        return {
            archive.by_hash_path(name, ref.sha256)
            for rel in (self.release, self.inrelease)
            if rel is not None
            for name, ref in rel.files.items()
        }


def _parse_release_or_none(data: bytes | None, what: str) -> archive.Release | None:
    if data is None:
        return None
    try:
        return archive.parse_release(data, what)  # strips an InRelease's signature armor
    except FormatError:
        return None  # an unreadable old Release is replaced, not trusted


def suite_state(target: Target, suite: str) -> SuiteState:
    base = f"dists/{suite}"
    return SuiteState(
        _parse_release_or_none(target.get(f"{base}/Release"), f"{base}/Release"),
        _parse_release_or_none(target.get(f"{base}/InRelease"), f"{base}/InRelease"),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    signed: SignedPlan
    written: tuple[str, ...]  # names placed, in the order they were written
    reused: int  # items that were there already with the same content
    pool_written: int
    removed: tuple[str, ...] = ()  # pruned: pool files no suite lists, older generations' files


@dataclass
class _Run:
    """One publish's bookkeeping: what was written or found in place, the record."""

    target: Target
    record: dict[str, str]
    reporter: Reporter
    written: list[str] = field(default_factory=list)
    reused: int = 0
    placed: dict[str, str] = field(default_factory=dict)  # pool names now holding our bytes
    _listed: dict[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def listed(self) -> dict[str, str]:
        with self._lock:
            if self._listed is None:
                self._listed = self.target.listed_pool()
            return self._listed

    def place(self, item: Item) -> None:
        recorded = self.record.get(item.rel) if item.kind == "pool" else None
        same = self.target.compare(item, recorded)
        if same:
            with self._lock:
                self.reused += 1
                if item.kind == "pool":
                    self.placed[item.rel] = item.sha256
            self.reporter.advance(1, 0)
            return
        if same is False and item.kind == "pool":
            if not self.target.replaces_unlisted:
                raise self.target.conflict(item, None, recorded)
            # Replacing is safe only where no published suite lists other content under this
            # name: that suite would then point at a file with the wrong hash.
            listed = self.listed().get(item.rel)
            if listed is not None and listed != item.sha256:
                raise self.target.conflict(item, listed, recorded)
        self.target.put(item)
        with self._lock:
            self.written.append(item.rel)
            if item.kind == "pool":
                self.placed[item.rel] = item.sha256
        self.reporter.advance(1, item.size)

    def run(self, items: Sequence[Item]) -> None:
        """Place ``items`` concurrently (bounded); returns when all are in place, raises the
        first failure after the puts already running have ended."""
        workers = max(1, min(self.target.jobs, len(items)))
        if workers == 1:
            for item in items:
                self.place(item)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mk-publish") as pool:
            futures = [pool.submit(self.place, item) for item in items]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def save_record(self) -> None:
        """Add what this publish placed to the record (written only when it changes)."""
        if all(self.record.get(rel) == sha for rel, sha in self.placed.items()):
            return
        self.record.update(self.placed)
        _write_record(self.target, self.record)


def _write_record(target: Target, record: Mapping[str, str]) -> None:
    target.put(Item.from_bytes(POOL_RECORD, render_pool_record(record), kind="state"))


def read_record(target: Target) -> dict[str, str]:
    """Every pool file mirrorkit placed in the target, with its SHA256."""
    data = target.get(POOL_RECORD)
    if data is None:
        # A tree or prefix published before the record existed: what its suites list now
        # counts as placed by mirrorkit (or checked against the same SHA256 back then).
        return dict(target.listed_pool())
    return parse_pool_record(data.decode("utf-8", "replace"))


def reclaim_intent(
    target: Target, record: dict[str, str], pool: Pool, *, dry_run: bool = False
) -> list[str]:
    """Claim what a killed publish placed: each file the intent it left lists that holds the
    intended bytes joins ``record`` (written back), then the intent goes. A file with other
    bytes is not ours (it was there before, or another tool's) and stays unclaimed. Call under
    the target's lock. ``dry_run``: ``record`` grows, nothing is written. Returns the names
    claimed."""
    data = target.get(POOL_INTENT)
    if data is None:
        return []
    claimed = []
    for rel, sha in sorted(parse_pool_record(data.decode("utf-8", "replace")).items()):
        if record.get(rel) == sha or not pool.has(sha):
            # Without the object its bytes cannot be compared; only gc removes an object, and
            # gc reclaims a directory's intent before it removes any.
            continue
        src = pool.path(sha)
        item = Item(rel, src.stat().st_size, sha, path=src, kind="pool")
        if target.compare(item, None):
            record[rel] = sha
            claimed.append(rel)
    if dry_run:
        return claimed
    if claimed:
        _write_record(target, record)
    target.delete([POOL_INTENT])
    return claimed


def _write_intent(target: Target, record: Mapping[str, str], items: Sequence[Item]) -> bool:
    """Before placing ``items``: record durably which pool files may appear (those the record
    does not list with that content yet). Returns whether there were any."""
    intent = {i.rel: i.sha256 for i in items if i.kind == "pool" and record.get(i.rel) != i.sha256}
    if intent:
        target.put(Item.from_bytes(POOL_INTENT, render_pool_record(intent), kind="intent"))
    return bool(intent)


def _items(signed: SignedPlan, pool: Pool) -> tuple[list[Item], list[Item], list[Item], list[Item]]:
    plan = signed.plan
    first = [
        Item(li.path, li.size, li.sha256, path=pool.path(li.sha256), kind="pool")
        for li in plan.pool
    ]
    binary, armored = signed.public_key
    first += [
        Item.from_bytes(f"{signed.key_name}.gpg", binary, kind="key"),
        Item.from_bytes(f"{signed.key_name}.asc", armored, kind="key"),
    ]
    dists = f"dists/{plan.suite}"
    files = sorted(plan.files.items())
    by_hash = [
        Item.from_bytes(f"{dists}/{rel}", data, kind="by-hash")
        for rel, data in files
        if "/by-hash/" in rel
    ]
    by_name = [
        Item.from_bytes(f"{dists}/{rel}", data, kind="index")
        for rel, data in files
        if "/by-hash/" not in rel
    ]
    signed_items = [
        Item.from_bytes(f"{dists}/{name}", data, kind="signed")
        for name, data in zip(
            SIGNED_FILES, (plan.release, signed.release_gpg, signed.inrelease), strict=True
        )
    ]
    return first, by_hash, by_name, signed_items


def publish(
    target: Target,
    suite: str,
    pool: Pool,
    sign: Callable[[datetime | None], SignedPlan],
    *,
    prune: bool,
    reporter: Reporter | None = None,
) -> Outcome:
    """Publish suite ``suite`` to ``target`` under its lock. ``sign`` makes the signed plan,
    given the Date of the suite's Release now published (the new one must not be older)."""
    reporter = reporter or NullReporter()
    with target.lock(suite):
        # Read under the lock: the Date must be later than the Release published now.
        previous = suite_state(target, suite)
        signed = sign(previous.date)
        plan = signed.plan
        for link in plan.pool:
            if not pool.has(link.sha256):
                raise PublishError(
                    f"{link.path}: the store has no pool object {link.sha256}",
                    "the store is incomplete; run 'mirrorkit mirror update' for its mirror.",
                )
        first, by_hash, by_name, signed_items = _items(signed, pool)
        everything = [*first, *by_hash, *by_name, *signed_items]
        run = _Run(target, read_record(target), reporter)
        reclaim_intent(target, run.record, pool)  # what a killed publish placed
        intent = _write_intent(target, run.record, first)
        reporter.start(target.label, len(everything), sum(i.size for i in everything))
        try:
            try:
                run.run(first)  # 1. pool objects (and the key)
            except BaseException:
                # What is in place now is ours to remove later, also after a failure; but a
                # failure to write the record must not hide the failure that stopped us.
                with contextlib.suppress(MirrorkitError):
                    run.save_record()
                    if intent:
                        target.delete([POOL_INTENT])
                raise
            run.save_record()  # before anything refers to the new pool files
            if intent:
                target.delete([POOL_INTENT])
            target.begin_suite(suite, previous.by_hash_paths())
            try:
                run.run(by_hash)  # 2. indices, by hash first: the old InRelease keeps working
                run.run(by_name)
                target.prepare_switch(suite)
                target.check_lock()
                for item in signed_items:  # 3. Release, Release.gpg and, last, InRelease
                    run.place(item)
                target.switch(suite)
            except BaseException:
                target.abort_suite(suite)
                raise
        finally:
            reporter.finish()

        removed: list[str] = []
        if prune:
            try:
                target.check_lock()
                removed = _prune(target, signed, previous)
            except MirrorkitError as exc:
                exc.message = f"suite {suite} is published, but pruning stopped: {exc.message}"
                exc.hint = exc.hint or "run the same command again to finish pruning."
                raise
    return Outcome(
        signed=signed,
        written=tuple(run.written),
        reused=run.reused,
        pool_written=sum(1 for rel in run.written if rel in run.placed),
        removed=tuple(removed),
    )


def _prune(target: Target, signed: SignedPlan, previous: SuiteState) -> list[str]:
    """After the switch: remove the pool files mirrorkit placed that no suite lists, and the
    files of this suite's older generations (keeping the by-hash files of the generation just
    replaced, for clients that read its InRelease a moment ago)."""
    dists = f"dists/{signed.plan.suite}/"
    keep_dists = {f"{dists}{rel}" for rel in signed.plan.files}
    keep_dists |= {f"{dists}{name}" for name in SIGNED_FILES}
    keep_dists |= {f"{dists}{rel}" for rel in previous.by_hash_paths()}
    stale_dists = sorted(rel for rel in target.list(dists) if rel not in keep_dists)
    return _prune_pool(target, read_record(target)) + stale_dists


def _prune_pool(target: Target, record: dict[str, str], *, dry_run: bool = False) -> list[str]:
    """Remove the pool files in ``record`` (mirrorkit placed them) that no suite lists, and
    rewrite the record to what stays. Returns the names removed."""
    keep_pool = target.listed_pool()
    candidates = {rel for rel in record if rel not in keep_pool}
    # Only the directories that may hold one are listed: a walk of a whole pool (34,000
    # directories for Debian) costs more than the rest of a re-publish.
    folders = {posixpath.dirname(rel) for rel in candidates}
    if len(folders) > _MAX_FOLDERS:
        folders = {"pool"}
    stale = sorted(
        {rel for folder in folders for rel in target.list(f"{folder}/") if rel in candidates}
    )
    if dry_run:
        return stale
    target.delete(stale)
    kept = {rel: sha for rel, sha in record.items() if rel in keep_pool}
    if stale or kept != record:
        _write_record(target, kept)
    return stale


def tidy(target: Target, pool: Pool, *, dry_run: bool = False) -> list[str]:
    """Between publishes (``gc``): return the target to what its records say. What a killed
    publish placed is claimed (its intent), then every pool file mirrorkit placed that no
    suite lists is removed, as a publish's pruning would. Call under the target's lock.
    ``dry_run``: only say what would go. Returns the names removed."""
    record = read_record(target)
    reclaim_intent(target, record, pool, dry_run=dry_run)
    return _prune_pool(target, record, dry_run=dry_run)
