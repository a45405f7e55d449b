"""A snapshot's published indices, rendered and compressed once and kept in the store.

Rendering Debian's 63,000-package index (sort, rewrite each Filename, gz, xz) takes seconds of
CPU, xz most of it. What it yields depends only on the indices a published ``Packages`` is made
of, so it is kept: the plain, gz and xz bytes and the list of pool files it names are meta
objects (content-addressed, verified when read), and ``STORE/cache/render/<key>.json`` maps
the digest of the inputs to them. Publishing the same snapshot again (another suite, a switch
back, a re-publish, another target) reads them instead of rendering: the same bytes, so a
client sees byte-identical indices for the same snapshot wherever it is published.

The cache is disposable: an entry whose objects are gone (gc), damaged or unreadable is
rendered again. ``gc`` keeps the objects of an entry while its inputs are kept, and removes the
entry with them (see garbage.py). ``RENDER_VERSION`` names what the bytes depend on besides the
inputs (the renderer, xz's preset and block size): changing either starts new entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.compression import XZ_BLOCK, XZ_PRESET
from mirrorkit.errors import MirrorkitError
from mirrorkit.models import IndexRef
from mirrorkit.publish.plan import PoolLink, RenderedIndex, fold_arch_all, render_index
from mirrorkit.store import Store, atomic_write

if TYPE_CHECKING:
    from mirrorkit.models import Package

log = logging.getLogger(__name__)

RENDER_VERSION = f"1 xz{XZ_PRESET}/{XZ_BLOCK}"
CACHE_DIR = ("cache", "render")
_OUTPUTS = ("plain", "gz", "xz", "links")


def cache_dir(store: Store) -> Path:
    return store.root.joinpath(*CACHE_DIR)


def cache_key(component: str, architecture: str, inputs: Sequence[str]) -> str:
    """The digest an index's render is kept under: where it goes and what it is made of."""
    text = f"{RENDER_VERSION}\n{component}\n{architecture}\n" + "\n".join(inputs)
    return hashlib.sha256(text.encode()).hexdigest()


def _render_links(links: Sequence[PoolLink]) -> bytes:
    return "".join(f"{li.sha256} {li.size} {li.path}\n" for li in links).encode()


def _parse_links(data: bytes) -> tuple[PoolLink, ...]:
    out = []
    for line in data.decode().splitlines():
        sha, size, path = line.split(" ", 2)
        out.append(PoolLink(path, sha, int(size)))
    return tuple(out)


def _read(store: Store, path: Path, inputs: Sequence[str]) -> RenderedIndex | None:
    try:
        entry = json.loads(path.read_bytes())
        if entry.get("inputs") != list(inputs):
            return None
        data = {name: store.meta.get(entry[name]) for name in _OUTPUTS}
        return RenderedIndex(data["plain"], data["gz"], data["xz"], _parse_links(data["links"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, MirrorkitError) as exc:
        log.debug("render cache %s unusable (%s): rendering again", path, exc)
        return None


def _write(store: Store, path: Path, inputs: Sequence[str], index: RenderedIndex) -> None:
    entry = {"inputs": list(inputs), "render": RENDER_VERSION}
    for name, data in (
        ("plain", index.plain),
        ("gz", index.gz),
        ("xz", index.xz),
        ("links", _render_links(index.links)),
    ):
        entry[name] = store.meta.put(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not durable: a lost entry is rendered again.
    atomic_write(path, json.dumps(entry, sort_keys=True).encode(), durable=False)


def entries(store: Store) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Every cache entry: (file, input digests, output digests); unreadable ones as no
    inputs and no outputs (gc removes them)."""
    root = cache_dir(store)
    for path in sorted(root.glob("*.json")) if root.is_dir() else ():
        try:
            entry = json.loads(path.read_bytes())
            inputs = [str(s) for s in entry["inputs"]]
            outputs = [str(entry[name]) for name in _OUTPUTS]
        except (OSError, ValueError, KeyError, TypeError):
            inputs, outputs = [], []
        yield path, inputs, outputs


def rendered_indexes(
    store: Store, indexes: Sequence[IndexRef]
) -> dict[tuple[str, str], RenderedIndex]:
    """Every published index of a snapshot's ``indexes``: from the cache where it holds it,
    else rendered (and kept)."""
    from mirrorkit import mirror
    from mirrorkit.publish.plan import with_arch_all

    grouped: dict[tuple[str, str], list[IndexRef]] = defaultdict(list)
    for ref in indexes:
        grouped[(ref.component, ref.architecture)].append(ref)
    folded = fold_arch_all(grouped)
    result: dict[tuple[str, str], RenderedIndex] = {}
    parsed: dict[tuple[str, str], list[Package]] = {}

    def packages(key: tuple[str, str]) -> list[Package]:
        if key not in parsed:
            parsed[key] = mirror.packages(store, grouped.get(key, []))
        return parsed[key]

    root = cache_dir(store)
    for (component, arch), refs in sorted(folded.items()):
        inputs = [ref.sha256 for ref in refs]
        path = root / f"{cache_key(component, arch, inputs)}.json"
        found = _read(store, path, inputs)
        if found is None:
            own = packages((component, arch))
            pkgs = own
            if arch != "all" and (component, "all") in grouped:
                pkgs = list(with_arch_all(own, packages((component, "all"))))
            found = render_index(pkgs)
            try:
                _write(store, path, inputs, found)
            except (OSError, MirrorkitError) as exc:
                log.debug("render cache %s not written (%s)", path, exc)
        result[(component, arch)] = found
    parsed.clear()
    return result
