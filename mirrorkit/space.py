"""Know before you fetch: what an update would download, and whether it fits on the disk.

An update plans its downloads from the verified indices (files the pool lacks, minus what a
partial download already holds), then, before the first pool GET, compares the bytes with the
free space of the store's filesystem. The margin on top covers what the plan does not count
(the indices written to the meta store, the mirror record, filesystem overhead) and leaves the
disk usable afterwards: ``MARGIN_FRACTION`` of the download plus ``MARGIN_BYTES``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mirrorkit.errors import InsufficientSpaceError
from mirrorkit.models import DownloadPlan, FileRef
from mirrorkit.store import Store

MARGIN_FRACTION = 0.05
MARGIN_BYTES = 64 * 1024 * 1024


def plan(store: Store, refs: Sequence[FileRef]) -> DownloadPlan:
    """What downloading ``refs`` into the pool would fetch: files the pool lacks, and their
    bytes less what partial downloads hold already (the fetcher resumes those)."""
    unique: dict[str, FileRef] = {}
    for ref in refs:
        unique.setdefault(ref.sha256, ref)
    files = nbytes = 0
    for sha, ref in unique.items():
        if store.pool.has(sha):
            continue
        files += 1
        try:
            held = (store.partial / sha).stat().st_size
        except OSError:
            held = 0
        nbytes += ref.size - held if 0 <= held <= ref.size else ref.size
    return DownloadPlan(files, nbytes, len(unique) - files)


def needed(download: int) -> int:
    """The free space an update of ``download`` bytes asks for (the download plus margin)."""
    return download + int(download * MARGIN_FRACTION) + MARGIN_BYTES


def free_bytes(store: Store) -> int:
    """Bytes an unprivileged writer may still use on the store's filesystem."""
    st = os.statvfs(store.root)
    return st.f_bavail * st.f_frsize


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check(store: Store, plans: Sequence[DownloadPlan], what: str) -> None:
    """Refuse, before any download, an update that would not fit (``what`` names it)."""
    download = sum(p.bytes for p in plans)
    if download == 0:
        return
    want, free = needed(download), free_bytes(store)
    if want <= free:
        return
    raise InsufficientSpaceError(
        f"{what}: needs {_size(want)} ({download} bytes to download + "
        f"{int(MARGIN_FRACTION * 100)}% + {MARGIN_BYTES // 2**20} MiB margin) but the store's "
        f"filesystem ({store.root}) has {_size(free)} ({free} bytes) free; nothing was downloaded",
        "free space or move the store (--store DIR), filter the mirror (--filter), or pass "
        "--no-space-check to try anyway.",
    )
