"""Garbage collection: remove pool and metadata objects nothing references any more.

What is still referenced (every object of a mirror's committed state, of a snapshot, and of a
suite published from this store) is refs.gc_roots' to say. ``gc`` holds the store lock, so it
never runs beside another command, and removes objects one by one: interrupted, it leaves a
store in which everything still referenced is present.

Partial downloads (``tmp/partial``) are garbage too: an update resumes them only while it runs
or when it runs again, and under gc's lock no update runs, so every partial file left is of an
abandoned update (an interrupted one that nobody re-ran). A 100 GB mirror abandoned at 80% would
otherwise hold 80 GB forever. Removing them costs a re-run of that update its resume, nothing
else.

(Not ``gc.py``: ``mirrorkit.gc`` is the public API function, and importing a submodule of
that name would replace it on the package.)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mirrorkit import refs
from mirrorkit.errors import FormatError, PublishError
from mirrorkit.publish import render
from mirrorkit.publish.fs import tidy_tree
from mirrorkit.publish.records import published_trees
from mirrorkit.store import Store


@dataclass
class GcResult:
    pool_files: int = 0
    meta_files: int = 0
    temp_files: int = 0
    partial_files: int = 0  # partial downloads of abandoned updates (with their validators)
    bytes: int = 0
    removed: list[str] = field(default_factory=list)
    tree_files: int = 0  # in published directories: unlisted pool files, debris of killed publishes


def collect(store: Store, *, dry_run: bool = False) -> GcResult:
    result = GcResult()
    # gc removes what nothing refers to, so it runs alone: the whole store, exclusively. A dry
    # run removes nothing: it runs beside other commands (its counts are of that moment).
    with store.locked("gc") if dry_run else store.locked():
        # First the published directories: what a killed publish placed is claimed there
        # (while the pool objects it compares against are still here), then pruned.
        for tree in published_trees(store):
            if tree.is_dir():
                result.tree_files += _tidy(tree, store, dry_run, result)
        roots = refs.gc_roots(store)

        def remove(path: Path, counter: str) -> None:
            result.bytes += path.stat().st_size
            setattr(result, counter, getattr(result, counter) + 1)
            result.removed.append(str(path.relative_to(store.root)))
            if not dry_run:
                path.unlink()

        for path in sorted(store.pool.root.glob("*/*")):
            if path.name not in roots.pool:
                remove(path, "pool_files")
        # Rendered indices (publish/render.py) stay while what they were made of stays.
        keep_meta = set(roots.meta)
        for entry, inputs, outputs in render.entries(store):
            if inputs and all(i in roots.meta for i in inputs):
                keep_meta.update(outputs)
            elif not dry_run:
                entry.unlink(missing_ok=True)
        if not dry_run:  # key lists (keylist.py) of indices no longer kept
            for path in store.root.glob("cache/keys/*/*.zst"):
                if path.name.removesuffix(".zst") not in keep_meta:
                    path.unlink(missing_ok=True)
        for path in sorted(store.meta.root.glob("*/*.zst")):
            if path.name.removesuffix(".zst") not in keep_meta:
                remove(path, "meta_files")
        # Under the lock no command is running: what is left in tmp/ is debris of an
        # interrupted one, partial downloads included (see the module docstring).
        for path in sorted(store.tmp.iterdir()) if store.tmp.is_dir() else []:
            if path == store.partial:
                continue
            if path.is_dir():
                result.temp_files += 1
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
            else:
                remove(path, "temp_files")
        for path in sorted(store.partial.glob("*")) if store.partial.is_dir() else []:
            if path.is_file():  # a download (named by its SHA256) or its .validator
                remove(path, "temp_files" if "." in path.name else "partial_files")
        if not dry_run:
            for d in (store.pool.root, store.meta.root):
                for sub in d.glob("*"):
                    if sub.is_dir() and not any(sub.iterdir()):
                        os.rmdir(sub)
            # The resource locks of names long gone would pile up. Only now may they go: no
            # other command holds one, or has one open (each is opened under the store lock,
            # which gc holds exclusively); the next command creates what it needs again.
            shutil.rmtree(store.root / "locks", ignore_errors=True)
    return result


def _tidy(tree: Path, store: Store, dry_run: bool, result: GcResult) -> int:
    try:
        names = tidy_tree(tree, store.pool, dry_run=dry_run)
    except PublishError:
        if not dry_run:
            raise
        return 0  # a dry run runs beside publishes: one holds this tree now (and tidies it)
    except FormatError as exc:
        raise FormatError(
            f"gc stopped: published tree {tree}: {exc.message}",
            "gc prunes what published trees no longer list and cannot read this one; publish "
            "into it again (or remove it if it is not used), then run gc again.",
        ) from exc
    result.removed += [str(tree / name) for name in names]
    return len(names)
