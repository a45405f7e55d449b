"""The file(s) a bundle is in: one file, or parts of at most N bytes named by an index.

* ``PartsWriter`` cuts the compressed stream into parts of at most N bytes, under temporary
  names until the whole bundle is written (a failed export leaves nothing that looks like one).
* ``write_index`` writes the split bundle's index; ``locate`` finds a bundle's files from any
  of them (the file, a part, the index) and checks that every part is there before anything is
  read.
* ``JoinedReader`` reads parts back as one stream, checking each part's size and SHA256 as its
  end passes, so no joined copy is ever written to disk.
* ``parse_size`` reads a part size as people write it (``--split 4G``, ``700MiB``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mirrorkit.bundle.container import CHUNK
from mirrorkit.bundle.manifest import VERSION, JsonShape
from mirrorkit.errors import BundleError, NotFoundError, StorageError, UsageError
from mirrorkit.store import atomic_write, canonical_json, fsync_dir, storage_error, temp_file

INDEX_FORMAT = "mirrorkit-bundle-index"
_MAX_INDEX = 1 << 20
_PART = re.compile(r"^(.+)\.(\d{3,})$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """``4G``, ``700M``, ``25G``, ``4GiB`` or plain bytes. K/M/G/T are decimal, as disk and
    media makers count (so ``4G`` parts fit FAT32's 4 GiB - 1 limit and ``700M`` a CD); KiB,
    MiB, GiB, TiB are binary."""
    m = _SIZE.match(text)
    if not m or int(m.group(1)) <= 0 or (m.group(3) and not m.group(2)):
        raise UsageError(
            f"invalid size {text!r}",
            "use a positive number of bytes, or with a unit: 700M, 4G, 25G (decimal) or "
            "4GiB (binary).",
        )
    multiplier = 1
    for _ in range(_POWERS[m.group(2).lower()]):
        multiplier *= 1024 if m.group(3) else 1000
    return int(m.group(1)) * multiplier


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a bundle: a whole bundle, or one part of a split one."""

    path: Path
    size: int
    sha256: str | None  # None: a single-file bundle (its members carry the checksums)


def part_name(output: Path, number: int) -> Path:
    return output.with_name(f"{output.name}.{number:03d}")


class PartsWriter:
    """A write-only stream that lands in ``output`` (or ``output.001``, ``.002``, ... of at
    most ``split`` bytes each). Files are written under temporary names in the same directory
    and renamed only by :meth:`commit`, so a failed export leaves nothing that looks like a
    bundle; :meth:`abort` removes them."""

    MAX_PARTS = 999

    def __init__(self, output: Path, split: int | None) -> None:
        self.output = output
        self.split = split
        self.directory = output.parent if str(output.parent) else Path(".")
        self._temps: list[Path] = []
        self._parts: list[tuple[int, str]] = []
        self._fh: BinaryIO | None = None
        self._written = 0
        self._hash = hashlib.sha256()  # of the current part, when split
        self.size = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(self.directory, exc) from exc

    def _open_next(self) -> BinaryIO:
        if self.split is not None and len(self._temps) >= self.MAX_PARTS:
            raise UsageError(
                f"--split {self.split} would need more than {self.MAX_PARTS} parts",
                "pick a larger part size.",
            )
        fd, name = temp_file(self.directory, f".{self.output.name}.", self.output, ".partial")
        self._temps.append(name)
        # A bundle is carried to others (a USB disk, a share): world-readable whatever the
        # umask, as published trees are (temp files are made 0600). It holds no secret.
        os.fchmod(fd, 0o644)
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._written = 0
        self._hash = hashlib.sha256()
        return self._fh

    def _close_current(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        try:
            os.fsync(fh.fileno())  # the user may unplug the disk as soon as we say "done"
        finally:
            fh.close()
        self._parts.append((self._written, self._hash.hexdigest()))

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        try:
            while view:
                fh = self._fh or self._open_next()
                room = len(view) if self.split is None else self.split - self._written
                if room == 0:
                    self._close_current()
                    continue
                piece = view[:room]
                fh.write(piece)
                if self.split is not None:
                    self._hash.update(piece)
                self._written += len(piece)
                self.size += len(piece)
                view = view[len(piece) :]
        except OSError as exc:
            raise storage_error(self.output, exc) from exc
        return len(data)

    def flush(self) -> None:
        pass

    def commit(self) -> list[Part]:
        """Make the files durable under their final names; returns them in order."""
        try:
            if self._fh is None and not self._temps:
                self._open_next()
            self._close_current()
            finals: list[Part] = []
            for n, (temp, (size, digest)) in enumerate(zip(self._temps, self._parts, strict=True)):
                if self.split is None:
                    final = Part(self.output, size, None)
                else:
                    final = Part(part_name(self.output, n + 1), size, digest)
                os.replace(temp, final.path)
                finals.append(final)
            self._temps = []
            if self.split is not None:
                # Parts of an earlier, longer export under the same name would only confuse.
                n = len(finals) + 1
                while (stale := part_name(self.output, n)).exists():
                    stale.unlink()
                    n += 1
            fsync_dir(self.directory)
        except OSError as exc:
            self.abort()
            raise storage_error(self.output, exc) from exc
        return finals

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for temp in self._temps:
            temp.unlink(missing_ok=True)
        self._temps = []


# --- reading --------------------------------------------------------------------------------


class JoinedReader:
    """Reads ``parts`` one after another as one stream. Each part's size and SHA256 (when
    known) are checked as its end passes: a damaged part is named as soon as it has been read,
    and :meth:`blame` names it at once when a problem shows up in its middle."""

    def __init__(self, parts: Sequence[Part], *, collect: bool = False) -> None:
        self.parts = list(parts)
        self.collect = collect  # note a damaged part in ``problems`` and read on (verify)
        self.problems: list[BundleError] = []
        self.failed = False
        self._index = 0
        self._fh: BinaryIO | None = None
        self._pos = 0
        self._hash = hashlib.sha256()
        self.consumed = 0

    def __enter__(self) -> JoinedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def current(self) -> Part | None:
        return self.parts[self._index] if self._index < len(self.parts) else None

    def _open(self, part: Part) -> BinaryIO:
        try:
            fh = part.path.open("rb")
        except FileNotFoundError as exc:
            raise BundleError(
                f"{part.path}: part is missing",
                f"copy it next to the others (into {part.path.parent}) and run the command again.",
            ) from exc
        except OSError as exc:
            raise BundleError(f"{part.path}: cannot read ({exc.strerror})") from exc
        self._fh, self._pos, self._hash = fh, 0, hashlib.sha256()
        return fh

    def _finish_part(self, part: Part) -> None:
        self.close()
        self._index += 1
        problem = None
        if self._pos != part.size and part.sha256 is None:
            problem = BundleError(
                f"{part.path}: changed while being read ({self._pos} bytes, {part.size} "
                "when opened)",
                "let whatever writes to it finish, then run the command again.",
            )
        elif self._pos != part.size:
            problem = BundleError(
                f"{part.path}: part is damaged: {self._pos} bytes, the index says {part.size}",
                "it was truncated or changed in transit; copy this part again.",
            )
        elif part.sha256 is not None and self._hash.hexdigest() != part.sha256:
            problem = BundleError(
                f"{part.path}: part is damaged: SHA256 mismatch (expected {part.sha256}, "
                f"got {self._hash.hexdigest()})",
                "it was changed in transit; copy this part again.",
            )
        if problem is not None:
            if not self.collect:
                self.failed = True
                raise problem
            self.problems.append(problem)

    def read(self, size: int = -1, /) -> bytes:
        while (part := self.current) is not None:
            fh = self._fh or self._open(part)
            want = CHUNK if size < 0 else max(size, 1)
            if part.sha256 is not None:
                # Never hand out bytes beyond the size the index gives: they are damage.
                want = min(want, part.size - self._pos)
            try:
                data = fh.read(want) if want > 0 else b""
                if not data and want <= 0:
                    while extra := fh.read(CHUNK):
                        self._pos += len(extra)
            except OSError as exc:
                raise BundleError(f"{part.path}: cannot read ({exc.strerror})") from exc
            if data:
                self._pos += len(data)
                self.consumed += len(data)
                if part.sha256 is not None:
                    self._hash.update(data)
                return data
            self._finish_part(part)
        return b""

    def blame(self) -> BundleError | None:
        """Read the current part to its end and check it: the error naming it if damaged."""
        part = self.current
        if part is None or part.sha256 is None or self.failed:
            return None
        try:
            while self.current is part:
                self.read(CHUNK)
        except BundleError as exc:
            return exc
        return None

    def drain(self) -> int:
        """Read everything left (checking every part); returns how many bytes that was."""
        n = 0
        while data := self.read(CHUNK):
            n += len(data)
        return n


# --- the index of a split bundle, and finding a bundle's files ------------------------------


@dataclass(frozen=True, slots=True)
class BundleFiles:
    """The file(s) a bundle is in: one file, or parts named by an index."""

    what: str  # how messages name the bundle
    parts: tuple[Part, ...]
    index: Path | None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


_PART = re.compile(r"^(.+)\.(\d{3,})$")


def index_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.index.json")


def locate(path: Path, *, complete: bool = True) -> BundleFiles:
    """A bundle file, the first (or any) part of a split bundle, or its index. Parts are
    looked for next to the index; every part must be there, with the size the index gives,
    before anything is read (unless not ``complete``: ``show`` needs only the first part)."""
    index: Path | None = None
    if path.name.endswith(".index.json"):
        index = path
    elif m := _PART.match(path.name):
        index = path.with_name(f"{m.group(1)}.index.json")
        if not index.exists() and not complete:
            index = None  # the manifest is at the start of the first part
        elif not index.exists():
            raise BundleError(
                f"{index}: the index of split bundle {m.group(1)} is missing",
                f"copy {index.name} next to the parts; or join the parts yourself "
                f"(cat {m.group(1)}.[0-9][0-9][0-9] > {m.group(1)}) and use the joined file.",
            )
    elif not path.exists() and index_path(path).exists():
        index = index_path(path)
    if index is None:
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"{path}: no such bundle file") from exc
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        return BundleFiles(str(path), (Part(path, size, None),), None)
    return _read_index(index, complete)


def _read_index(index: Path, complete: bool = True) -> BundleFiles:
    j = JsonShape(str(index))
    try:
        raw = index.read_bytes()[: _MAX_INDEX + 1]
    except FileNotFoundError as exc:
        raise NotFoundError(f"{index}: no such bundle index") from exc
    except OSError as exc:
        raise StorageError(f"{index}: cannot read ({exc.strerror})") from exc
    if len(raw) > _MAX_INDEX:
        raise j.fail("too large for a bundle index")
    try:
        top = j.obj(json.loads(raw), "index")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise j.fail(f"not valid JSON ({exc})") from exc
    if top.get("format") != INDEX_FORMAT or top.get("version") != VERSION:
        raise j.fail(f"not a {INDEX_FORMAT} version {VERSION} file")
    bundle = j.text(top, "bundle", "index")
    if "/" in bundle or bundle in ("", ".", "..") or index.name != f"{bundle}.index.json":
        raise j.fail(f"bundle name {bundle!r} does not fit the index's file name")
    parts: list[Part] = []
    missing: list[str] = []
    for n, raw_part in enumerate(j.items(top.get("parts"), "parts"), 1):
        p = j.obj(raw_part, f"parts[{n - 1}]")
        name = j.text(p, "name", f"parts[{n - 1}]")
        if name != f"{bundle}.{n:03d}":
            raise j.fail(f"part {n} must be named {bundle}.{n:03d}, not {name!r}")
        part = Part(index.parent / name, j.number(p, "size", name), j.sha(p, "sha256", name))
        parts.append(part)
        if not complete:
            continue
        try:
            size = part.path.stat().st_size
        except FileNotFoundError:
            missing.append(name)
            continue
        if size != part.size:
            raise BundleError(
                f"{part.path}: part is damaged: {size} bytes, the index says {part.size}",
                "it was truncated or changed in transit; copy this part again.",
            )
    if not parts:
        raise j.fail("names no parts")
    if missing:
        raise BundleError(
            f"{index.parent}: part{'s' if len(missing) > 1 else ''} {', '.join(missing)} of "
            f"bundle {bundle} {'are' if len(missing) > 1 else 'is'} missing "
            f"({len(parts)} parts in all)",
            f"copy every part next to {index.name} and run the command again.",
        )
    if top.get("size") != sum(p.size for p in parts):
        raise j.fail("the parts' sizes do not add up to the bundle's size")
    return BundleFiles(str(index.parent / bundle), tuple(parts), index)


def write_index(index: Path, bundle: str, split: int, parts: Sequence[Part]) -> None:
    """The index of a split bundle. It is not signed and need not be: the signed manifest
    inside the stream vouches for every member. The index only says which files make up the
    stream, so that a missing or damaged part can be named."""
    body = {
        "format": INDEX_FORMAT,
        "version": VERSION,
        "bundle": bundle,
        "split": split,
        "size": sum(p.size for p in parts),
        "parts": [{"name": p.path.name, "size": p.size, "sha256": p.sha256} for p in parts],
    }
    atomic_write(index, canonical_json(body) + b"\n", mode=0o644)  # readable like the parts
