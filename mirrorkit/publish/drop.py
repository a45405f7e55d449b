"""Dropping a published suite: its indices and signed files go, then the pool files mirrorkit
placed that no other suite of the tree (or bucket prefix) lists, and the store forgets it.

The suite's files go first, so a client never finds a Release whose files are missing: it
finds the suite whole, or not at all. Pool files another suite lists, and files mirrorkit did
not place (other tools may share the tree), stay.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mirrorkit.errors import NotFoundError, PublishError
from mirrorkit.publish.executor import POOL_RECORD, Item, Target, read_record, render_pool_record
from mirrorkit.publish.fs import STATE_DIR, DirectoryTarget
from mirrorkit.publish.records import forget_published
from mirrorkit.store import Store, check_name, storage_error


@dataclass(frozen=True, slots=True)
class Dropped:
    """``publish_drop``: where, which suite, and the pool files removed with it."""

    location: str
    suite: str
    pool_removed: tuple[str, ...]


def _remove_suite(target: Target, suite: str) -> None:
    if isinstance(target, DirectoryTarget):
        link = target.root / "dists" / suite
        if link.exists() and not link.is_symlink():
            raise PublishError(
                f"{link}: was not published by mirrorkit", "remove it by hand if it must go."
            )
        generation = re.compile(rf"^{re.escape(suite)}\.[0-9a-f]{{16}}$")
        try:
            link.unlink(missing_ok=True)
            gens = target.root / STATE_DIR / "dists"
            for gen in sorted(gens.iterdir()) if gens.is_dir() else []:
                if generation.match(gen.name):
                    shutil.rmtree(gen)
        except OSError as exc:
            raise storage_error(link, exc) from exc
        return
    target.delete(sorted(target.list(f"dists/{suite}/")))


def drop(
    store: Store, target: Target, where: Path | str, suite: str, endpoint_url: str | None
) -> Dropped:
    """Drop ``suite`` from ``target`` (``where``: its directory or ``s3://`` URL)."""
    check_name(suite, "suite")
    with store.locked(), target.lock(suite):
        if not any(target.get(f"dists/{suite}/{n}") for n in ("InRelease", "Release")):
            raise NotFoundError(
                f"{target.label.removeprefix('publish into ')}: no published suite {suite}",
                "see 'mirrorkit publish list'.",
            )
        _remove_suite(target, suite)
        keep = target.listed_pool()
        record = read_record(target)
        stale = sorted(rel for rel in target.list("pool/") if rel in record and rel not in keep)
        target.delete(stale)
        kept = {rel: sha for rel, sha in record.items() if rel in keep}
        if kept != record:
            target.put(Item.from_bytes(POOL_RECORD, render_pool_record(kept), kind="state"))
        forget_published(store, where, suite, endpoint_url=endpoint_url)
    return Dropped(str(where), suite, tuple(stale))
