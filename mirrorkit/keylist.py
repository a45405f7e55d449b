"""Key lists: what merge and diff need of a stored index, without parsing it.

A key list holds, for every stanza of one stored Packages index in its order, the package's
name, version, architecture, SHA256 and size: about a tenth of the index, read in milliseconds where
parsing Debian's 63,000 stanzas takes most of a second. Merge and diff decide on the keys; a
merge then copies the kept stanzas from the index text by position (``iter_stanzas`` splits
the text exactly as the parser did when the list was made).

A key list is a cache keyed by the index's digest, ``STORE/cache/keys/ab/<sha256>.zst``: made
when an index is stored (mirror update, snapshot merge and filter have it parsed anyway) or on
first use, and never needed: one that is missing, damaged or of another version is made again
from the index. Its first line names the index and the SHA256 of the rest, checked on every
read. An index whose parsed stanzas differ from its text (field names in another case, which
the parser folds) gets no list: merge parses it as before.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from itertools import count as count_from
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import zstandard

from mirrorkit import archive
from mirrorkit.errors import MirrorkitError
from mirrorkit.models import IndexRef, Package
from mirrorkit.store import Store, atomic_write

log = logging.getLogger(__name__)

VERSION = 2  # 2: the size column
KINDS = ("deb", "udeb")  # the binary indices: one pool object per stanza
_MAGIC = b"mirrorkit-keys"


class Key(NamedTuple):
    """One stanza of a stored index, as merge and diff see it (duck-types the fields of
    models.Package that merge.Winners reads). A tuple: 63,000 of them are made in C."""

    name: str
    version: str
    architecture: str
    sha256: str
    size: int
    component: str
    digest: str  # of the stored index holding the stanza
    n: int  # the stanza's position in that index


def _path(store: Store, digest: str) -> Path:
    return store.root / "cache" / "keys" / digest[:2] / f"{digest}.zst"


def save(store: Store, digest: str, text: bytes, packages: Sequence[Package]) -> bool:
    """Keep the key list of index ``digest`` (``text``, parsed as ``packages``). False when
    the index has none (its parsed stanzas are not its text, see the module docstring)."""
    chunks = split_stanzas(text)
    if len(chunks) != len(packages) or any(
        p.stanza != c for p, c in zip(packages, chunks, strict=True)
    ):
        return False
    write(store, digest, packages)
    return True


def exists(store: Store, digest: str) -> bool:
    return _path(store, digest).exists()


def write(store: Store, digest: str, rows: Sequence[Package | Key]) -> None:
    """Keep ``rows`` (each stanza of index ``digest``, in order) as its key list."""
    body = "".join(
        f"{p.name} {p.version} {p.architecture} {p.sha256} {p.size}\n" for p in rows
    ).encode()
    head = b"%s %d %s %d %s\n" % (
        _MAGIC,
        VERSION,
        digest.encode(),
        len(rows),
        hashlib.sha256(body).hexdigest().encode(),
    )
    path = _path(store, digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = zstandard.ZstdCompressor(level=3).compress(head + body)
        atomic_write(path, data, tmp_dir=store.tmp, durable=False)  # a cache: lost, remade
    except (OSError, MirrorkitError) as exc:
        log.debug("key list %s not written (%s)", path, exc)


def _read(store: Store, ref: IndexRef) -> list[Key] | None:
    path = _path(store, ref.sha256)
    try:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
        head, _, body = raw.partition(b"\n")
        magic, version, digest, count, body_sha = head.split(b" ")
        if (magic, int(version), digest.decode()) != (_MAGIC, VERSION, ref.sha256):
            return None
        if hashlib.sha256(body).hexdigest().encode() != body_sha:
            return None
        words = body.decode().split()
        if len(words) != 5 * int(count) or body.count(b"\n") != int(count):
            return None
        columns = (words[0::5], words[1::5], words[2::5], words[3::5], map(int, words[4::5]))
        rows = zip(*columns, repeat(ref.component), repeat(ref.sha256), count_from(0))
        return list(map(Key._make, rows))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zstandard.ZstdError) as exc:
        log.debug("key list %s unusable (%s): made again", path, exc)
        return None


def keys(store: Store, ref: IndexRef) -> list[Key] | None:
    """The key list of stored index ``ref``, made from the index if missing; None when the
    index has none (not a binary index, or see :func:`save`): callers parse it then."""
    if ref.kind not in KINDS:
        return None
    found = _read(store, ref)
    if found is not None:
        return found
    text = store.meta.get(ref.sha256)
    what = f"{ref.component}/binary-{ref.architecture}"
    packages = archive.parse_packages(text, ref.component, what)
    if not save(store, ref.sha256, text, packages):
        return None
    return [
        Key(p.name, p.version, p.architecture, p.sha256, p.size, ref.component, ref.sha256, n)
        for n, p in enumerate(packages)
    ]


class Stanzas:
    """The stanzas of stored indices by position, each index read and split once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._split: dict[str, list[bytes]] = {}

    def __getitem__(self, key: Key) -> bytes:
        chunks = self._split.get(key.digest)
        if chunks is None:
            chunks = split_stanzas(self.store.meta.get(key.digest))
            self._split[key.digest] = chunks
        return chunks[key.n]


_UNUSUAL = re.compile(rb"\r|\n\n\n|\n[ \t]+\n")


def split_stanzas(text: bytes) -> list[bytes]:
    """``list(archive.iter_stanzas(text))``, in one split where the text is as mirrorkit and
    Debian write indices (stanzas between single blank lines)."""
    if _UNUSUAL.search(text) is None:
        return [c for c in text.strip(b"\n").split(b"\n\n") if c]
    return list(archive.iter_stanzas(text))
