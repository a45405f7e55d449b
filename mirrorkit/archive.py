"""The Debian repository format: Release/InRelease, Packages indices, compression, by-hash.

Spec: https://wiki.debian.org/DebianRepository/Format. Bytes in, data out: nothing here
fetches or stores (that lives elsewhere). Not everything is a plain function, though: for
speed, decompression (compression.py: bounded, one thread per block of a multi-block xz) runs
beside the parser in parse_compressed, and while an index is parsed the cyclic GC is paused and
the interpreter's switch interval shortened (see _gc_paused and _short_switch_interval for what
they change and restore).

One reader of control fields (``stanza_fields``, ``field``) and one version comparison
(``compare_versions``) serve every module; ``parse_packages`` keeps its own fast path over the
fields it needs, checked against python-debian.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import posixpath
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

# Decompression lives in compression.py; these names stay importable from here for the
# callers that read an index as part of the repository format.
from mirrorkit.compression import MAX_INDEX_SIZE as MAX_INDEX_SIZE
from mirrorkit.compression import XzBlock as XzBlock
from mirrorkit.compression import compress_xz as compress_xz
from mirrorkit.compression import decompress as decompress
from mirrorkit.compression import iter_decompressed as iter_decompressed
from mirrorkit.compression import usable_cpus as usable_cpus
from mirrorkit.compression import xz_blocks as xz_blocks
from mirrorkit.errors import FormatError
from mirrorkit.models import FileRef, Package

# Preference order when a Release lists several compressions of one index: smallest transfer
# first (what apt does too), plain last.
COMPRESSIONS: tuple[str, ...] = ("xz", "gz", "zst", "bz2", "")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True, slots=True)
class Release:
    """The fields of a verified Release payload that mirrorkit acts on."""

    suite: str
    codename: str
    date: datetime | None
    valid_until: datetime | None
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    by_hash: bool
    files: dict[str, FileRef]  # path relative to the dists/SUITE directory -> size + sha256
    no_arch_all_packages: bool


def _parse_date(value: str, what: str, field: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FormatError(f"{what}: {field}: not an RFC 2822 date: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_date(when: datetime) -> str:
    """Release-style date: ``Sat, 11 Jul 2026 10:16:37 UTC``."""
    return format_datetime(when.astimezone(UTC), usegmt=True).replace("GMT", "UTC")


def parse_release(payload: bytes, what: str = "Release") -> Release:
    """Parse a (verified) Release payload; malformed input raises FormatError naming ``what``."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what}: not UTF-8 text") from exc
    from debian import deb822  # 25 ms to import: only for what reads a Release

    try:
        rel = deb822.Release(text)
    except Exception as exc:  # python-debian raises assorted errors on garbage
        raise FormatError(f"{what}: cannot parse as a Release file ({exc})") from exc
    if "SHA256" not in rel:
        raise FormatError(
            f"{what}: no SHA256 field; mirrorkit only trusts SHA256-listed files",
            "the upstream is malformed or too old (MD5-only archives are not supported).",
        )
    files: dict[str, FileRef] = {}
    for entry in rel["SHA256"]:
        name = entry.get("name", "")
        sha = entry.get("sha256", "").lower()
        size = entry.get("size", "")
        # isascii(): str.isdigit() also takes '²' and other scripts' digits.
        if not name or not _HEX64.match(sha) or not (size.isascii() and size.isdigit()):
            raise FormatError(f"{what}: malformed SHA256 line for {name or '?'!r}")
        files[name] = FileRef(path=name, size=int(size), sha256=sha)
    date = _parse_date(rel["Date"], what, "Date") if "Date" in rel else None
    valid_until = (
        _parse_date(rel["Valid-Until"], what, "Valid-Until") if "Valid-Until" in rel else None
    )
    return Release(
        suite=rel.get("Suite", ""),
        codename=rel.get("Codename", ""),
        date=date,
        valid_until=valid_until,
        components=tuple(rel.get("Components", "").split()),
        architectures=tuple(rel.get("Architectures", "").split()),
        by_hash=rel.get("Acquire-By-Hash", "no").strip().lower() == "yes",
        files=files,
        no_arch_all_packages="Packages" in rel.get("No-Support-for-Architecture-all", "").split(),
    )


def map_component(user_component: str, release_components: Iterable[str]) -> str:
    """The Release's name for a component the user wrote as in sources.list.

    Debian's security archive lists ``updates/main`` while users (and apt) write ``main``.
    """
    listed = list(release_components)
    if not listed or user_component in listed:
        return user_component
    suffixed = [c for c in listed if c.endswith("/" + user_component)]
    if len(suffixed) == 1:
        return suffixed[0]
    return user_component


def pick_index(release: Release, base: str) -> tuple[str, FileRef] | None:
    """The best listed variant of index ``base`` (e.g. ``main/binary-amd64/Packages``).

    Returns (compression, FileRef) or None when the Release lists no variant.
    """
    for comp in COMPRESSIONS:
        name = f"{base}.{comp}" if comp else base
        ref = release.files.get(name)
        if ref is not None:
            return comp, ref
    return None


def by_hash_path(path: str, sha256: str) -> str:
    return f"{posixpath.dirname(path)}/by-hash/SHA256/{sha256}"


_CONTENT_TYPES = {
    ".deb": "application/vnd.debian.binary-package",
    ".udeb": "application/vnd.debian.binary-package",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".bz2": "application/x-bzip2",
    ".zst": "application/zstd",
    ".lz4": "application/x-lz4",
    ".gpg": "application/pgp-keys",  # the public key published beside the tree
    ".asc": "application/pgp-keys",
    ".json": "application/json",
}
_TEXT_NAMES = frozenset({"InRelease", "Release", "Packages", "Sources", "Index"})


def content_type(path: str) -> str:
    """The media type a published file is served with (HTTP server, object metadata)."""
    name = posixpath.basename(path)
    if name in _TEXT_NAMES:
        return "text/plain; charset=utf-8"
    if name == "Release.gpg":
        return "application/pgp-signature"
    return _CONTENT_TYPES.get(posixpath.splitext(name)[1], "application/octet-stream")


def parse_compressed(
    data: bytes, compression: str, component: str, what: str = "Packages"
) -> tuple[bytes, list[Package]]:
    """Decompress and parse an index at once: (text, packages).

    Decompression runs in a thread (lzma and zlib release the GIL) while this thread parses
    what has come out so far, cutting at stanza boundaries; on Debian's 63,000-package index
    that hides most of the 0.4 s xz takes.
    """
    pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

    def produce() -> None:
        try:
            for piece in iter_decompressed(data, compression, what):
                pieces.put(piece)
            pieces.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            pieces.put(exc)

    # The decompressor takes the GIL back each time its output buffer grows; with the default
    # 5 ms switch interval it then waits behind the parser, and the overlap is lost (1.04 s
    # serial, 0.92 s pipelined, 0.64 s pipelined at 1 ms on the bookworm index).
    worker = threading.Thread(target=produce, name="decompress", daemon=True)
    worker.start()
    parts: list[bytes] = []
    packages: list[Package] = []
    pending: list[bytes] = []  # the pieces since the last stanza boundary
    try:
        with _short_switch_interval(), _gc_paused():
            while (item := pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                parts.append(item)
                # Joined only at a boundary: joining every piece onto a growing tail made an
                # index without blank lines quadratic (256 MiB: 10 s, twice the memory).
                spans = bool(pending) and pending[-1].endswith(b"\n") and item[:1] == b"\n"
                if item.rfind(b"\n\n") < 0 and not spans:
                    pending.append(item)
                    continue
                buf = b"".join([*pending, item])
                cut = buf.rfind(b"\n\n")
                packages += _parse_packages(buf[:cut], component, what, len(packages) + 1)
                pending = [buf[cut + 2 :]]
            tail = b"".join(pending)
            packages += _parse_packages(tail, component, what, len(packages) + 1)
    finally:
        # Unblock and finish the producer even when parsing failed half-way.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                pieces.get(timeout=0.05)
        worker.join()
    return b"".join(parts), packages


def _is_normal(path: str) -> bool:
    """Already normal and safe (every path of a real index, 63,000 times per update): no
    empty, "." or ".." part can hide in it. A False sends the path to :func:`safe_relpath`.
    isprintable() is False for every character _UNSAFE_CHARS names but the backslash (and for
    some that are safe, which then take the slow path): 28 -> 12 ms for bookworm's index."""
    return (
        bool(path)
        and "//" not in path
        and "/." not in path
        and not path.startswith((".", "/"))
        and not path.endswith("/")
        and path.isprintable()
        and "\\" not in path
    )


_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def _short_switch_interval() -> Iterator[None]:
    """A 1 ms GIL switch interval while indices are parsed, then the host program's again.

    The interval is process-wide and parsers may run in several threads at once: the first one
    in saves the interval, the last one out restores it (restoring per call would leave 1 ms
    behind when two calls overlap and end in the order they started)."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, 0.001))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing an index makes some 200,000 objects and no reference cycles: the cyclic GC
    would run dozens of times over a growing heap for nothing (0.08 s of bookworm's parse)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def safe_relpath(path: str, what: str) -> str:
    """Normalize an archive-relative path and refuse anything that could leave the tree."""
    if _is_normal(path):
        return path
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts or _UNSAFE_CHARS.search(path):
        raise FormatError(
            f"{what}: refusing unsafe path {path!r}",
            "the index names a file outside the archive; the upstream is broken or hostile.",
        )
    return "/".join(parts)


# Only the fields mirrorkit needs are pulled out of each stanza; the rest stays as text.
# (A lazy match with a trailing-space group is 4x slower on the 63,000-stanza index: strip later.)
# Lines after the first are found from their newline: a pattern that starts with a literal lets
# the regex engine jump from newline to newline, where "^" in MULTILINE mode tries a match at
# every byte (0.24 -> 0.14 s on bookworm's index, the first line matched on its own).
_FIELD_NAMES = rb"(Package|Version|Architecture|Filename|Size|SHA256|Source):[ \t]*([^\n]*)"
_FIELD_RE = re.compile(rb"\n" + _FIELD_NAMES)
_FIRST_FIELD_RE = re.compile(_FIELD_NAMES)
_REQUIRED = (b"Package", b"Version", b"Architecture", b"Filename", b"Size", b"SHA256")


def compare_versions(a: str, b: str) -> int:
    """Debian's version order (negative, 0, positive), the one comparison of mirrorkit (merge,
    diff, queries, the resolver), by dpkg's rules on any two strings (a query on Maintainer
    compares so, as aptly does). The tests check it against python-debian (the oracle) over
    the real bookworm index's versions."""
    if a == b:
        return 0
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


_VersionKey = tuple[tuple[tuple[tuple[int, ...], int], ...], ...]
_RUN = re.compile(r"([^0-9]*)([0-9]*)")
_END = ((0,), 0)  # an empty part: no characters, number 0


@lru_cache(maxsize=1 << 17)
def version_key(version: str) -> _VersionKey:
    """A key whose tuple order is dpkg's version order: epoch, upstream version and revision,
    each a sequence of (non-digit run, number) pairs. A non-digit run is its characters'
    weights (``~`` first, then the end of the run, letters, everything else) ending with the
    end's 0; a part is closed by an empty pair, which is what dpkg compares a shorter part's
    missing pairs as (so ``1.0`` sorts after ``1.0~rc1`` and before ``1.0.1``); only a part's
    first pair can be empty, so an empty part is one empty pair before the closing one. Made
    once per version (cached) instead of walking both strings at every comparison
    (python-debian's pure-Python comparison was most of a merge's time)."""
    rest, _, revision = version.rpartition("-") if "-" in version else (version, "", "")
    epoch, colon, upstream = rest.partition(":")
    if not colon:
        epoch, upstream = "", rest
    return (_part_key(epoch), _part_key(upstream), _part_key(revision))


def _part_key(part: str) -> tuple[tuple[tuple[int, ...], int], ...]:
    pairs = [
        ((*map(_order, letters), 0), int(digits or 0))
        for letters, digits in _RUN.findall(part)
        if letters or digits
    ] or [_END]  # "" as "0": a missing epoch or revision is 0
    pairs.append(_END)
    return tuple(pairs)


def _dpkg_compare(a: str, b: str) -> int:
    """dpkg's comparison on any two strings (aptly's CompareVersions): epoch before the first
    ``:``, revision after the last ``-``, each part compared as dpkg does."""

    def split(v: str) -> tuple[str, str, str]:
        v, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
        epoch, colon, upstream = v.partition(":")
        return (epoch, upstream, revision) if colon else ("", v, revision)

    for x, y in zip(split(a), split(b), strict=True):
        if c := _compare_part(x, y):
            return c
    return 0


def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        si, sj = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        na, nb = int(a[si:i] or 0), int(b[sj:j] or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def iter_stanzas(text: bytes) -> Iterator[bytes]:
    """Split a deb822 file into stanzas (without trailing newlines), skipping blank runs."""
    if b"\r" in text:  # a scan for one byte costs a tenth of the copy replace() makes
        text = text.replace(b"\r\n", b"\n")
    for chunk in re.split(rb"\n[ \t]*\n", text):
        chunk = chunk.strip(b"\n")
        if chunk:
            yield chunk


def field(stanza: bytes, name: str) -> str | None:
    """One field of a stanza, as :func:`stanza_fields` reads it, or None."""
    return stanza_fields(stanza).get(name)


def stanza_fields(stanza: bytes) -> dict[str, str]:
    """Every field of one stanza, the one reader of control fields beside parse_packages' fast
    path: names are case-insensitive (known ones come back spelled the usual way, as apt reads
    "depends:" as "Depends:"), continuation lines are joined with newlines, and of a field
    given twice the last counts (parse_packages refuses that for the fields it reads)."""
    fields: dict[str, str] = {}
    last = ""
    for line in stanza.decode("utf-8", "replace").split("\n"):
        if line[:1] in (" ", "\t"):
            if last:
                fields[last] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip()
            if last not in _CANONICAL_NAMES:  # one set lookup for the usual spelling
                last = _CANONICAL_TEXT.get(last.lower(), last)
            fields[last] = value.strip()
    return fields


def join_stanzas(stanzas: Iterable[bytes]) -> bytes:
    return b"".join(s + b"\n\n" for s in stanzas)


def parse_packages(
    text: bytes, component: str, what: str = "Packages", first: int = 1
) -> list[Package]:
    """Parse a Packages index fast, on bytes, keeping every stanza verbatim.

    python-debian's parser is the oracle in the tests; this one is several times faster on
    the 63,000-stanza Debian index, which matters because ``mirror update`` parses it each time.
    ``first`` numbers the stanzas in error messages when ``text`` is a later part of an index.
    """
    with _gc_paused():
        return _parse_packages(text, component, what, first)


def _parse_packages(text: bytes, component: str, what: str, first: int) -> list[Package]:
    packages: list[Package] = []
    for number, stanza in enumerate(iter_stanzas(text), first):
        found = _FIELD_RE.findall(stanza)
        fields = dict(found)
        m = _FIRST_FIELD_RE.match(stanza)
        if len(fields) != len(found) or (m and m[1] in fields):
            # Which Filename would count? We would download one and publish the other.
            raise _repeated_field(what, number, found + ([(m[1], m[2])] if m else []))
        if m:
            fields[m[1]] = m[2]
        if any(not fields.get(k) for k in _REQUIRED):
            stanza, fields = _fold_field_case(stanza, fields, what, number)
        try:
            name = fields[b"Package"].rstrip().decode()
            sha = fields[b"SHA256"].rstrip().decode().lower()
            size_text = fields[b"Size"].rstrip()
            if not size_text.isdigit():  # int() would take "+1_0" and " 10"; apt would not
                raise ValueError(f"Size {size_text.decode('utf-8', 'replace')!r}")
            size = int(size_text)
            filename = fields[b"Filename"].rstrip().decode()
            source = (fields.get(b"Source") or fields[b"Package"]).decode().split(None, 1)[0]
            version = fields[b"Version"].rstrip().decode()
            arch = fields[b"Architecture"].rstrip().decode()
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"{what}: stanza {number}: malformed field ({exc})") from exc
        if not _HEX64.match(sha) or size < 0:
            raise FormatError(f"{what}: stanza {number} ({name}): malformed SHA256 or Size")
        packages.append(
            Package(
                name=name,
                version=version,
                architecture=arch,
                filename=filename
                if _is_normal(filename)
                else safe_relpath(filename, f"{what}: {name}"),
                size=size,
                sha256=sha,
                source=source,
                component=component,
                stanza=stanza,
            )
        )
    return packages


def _repeated_field(what: str, number: int, found: list[tuple[bytes, bytes]]) -> FormatError:
    names = [k for k, _ in found]
    repeated = sorted({k.decode() for k in names if names.count(k) > 1})
    package = dict(found).get(b"Package", b"?").decode("utf-8", "replace")
    return FormatError(
        f"{what}: stanza {number} ({package}): field(s) {', '.join(repeated)} given twice",
        "the index is malformed (a field may appear once per stanza); nothing was stored.",
    )


# deb822 field names are case-insensitive (apt reads "filename:" as "Filename:"). Every archive
# tool writes them capitalized, so the fast path matches those only; a stanza that seems to
# lack a required field is read again ignoring case, and its field names are then written
# the usual way, so that every later reader (resolver, queries, publish) sees one spelling.
_ANY_FIELD_RE = re.compile(rb"^([A-Za-z0-9][^:\s]*):", re.M)
_CANONICAL = {
    name.lower(): name
    for name in (
        b"Package", b"Version", b"Architecture", b"Filename", b"Size", b"SHA256", b"MD5sum",
        b"SHA1", b"SHA512", b"Source", b"Depends", b"Pre-Depends", b"Recommends", b"Suggests",
        b"Enhances", b"Breaks", b"Conflicts", b"Replaces", b"Provides", b"Built-Using",
        b"Multi-Arch", b"Essential", b"Priority", b"Section", b"Installed-Size", b"Maintainer",
        b"Description", b"Description-md5", b"Homepage", b"Tag", b"Protected",
    )
}  # fmt: skip
_CANONICAL_TEXT = {k.decode(): v.decode() for k, v in _CANONICAL.items()}
_CANONICAL_NAMES = frozenset(_CANONICAL_TEXT.values())


def _fold_field_case(
    stanza: bytes, fields: dict[bytes, bytes], what: str, number: int
) -> tuple[bytes, dict[bytes, bytes]]:
    """``stanza`` with its known field names capitalized, and its fields, or FormatError if
    required fields are missing or given twice in any spelling."""

    def canonical(m: re.Match[bytes]) -> bytes:
        return _CANONICAL.get(m[1].lower(), m[1]) + b":"

    folded = _ANY_FIELD_RE.sub(canonical, stanza)
    found = _FIELD_RE.findall(b"\n" + folded)
    fields = dict(found)
    if len(fields) != len(found):
        raise _repeated_field(what, number, found)
    missing = [k.decode() for k in _REQUIRED if not fields.get(k)]
    if missing:
        name = fields.get(b"Package", b"?").decode("utf-8", "replace")
        raise FormatError(
            f"{what}: stanza {number} ({name}): missing field(s) {', '.join(missing)}",
            "the index is malformed; nothing was stored.",
        )
    return folded, fields


def rewrite_filename(stanza: bytes, filename: str) -> bytes:
    return re.sub(
        rb"^Filename:[^\n]*$", b"Filename: " + filename.encode(), stanza, count=1, flags=re.M
    )


def render_packages(packages: Iterable[Package]) -> bytes:
    return join_stanzas(p.stanza for p in packages)


def compress_gz(data: bytes) -> bytes:
    # mtime=0 and no file name: the same input gives the same bytes.
    return gzip.compress(data, compresslevel=9, mtime=0)


def render_release(fields: list[tuple[str, str]], files: dict[str, tuple[int, str, str]]) -> bytes:
    """A Release file: ``fields`` in order, then MD5Sum and SHA256 of ``files``
    (path -> (size, md5, sha256)), sorted by path. Sizes are right-aligned like dak does."""
    lines = [f"{k}: {v}" for k, v in fields]
    width = max((len(str(size)) for size, _, _ in files.values()), default=1)
    for title, idx in (("MD5Sum", 1), ("SHA256", 2)):
        lines.append(f"{title}:")
        for path in sorted(files):
            size, md5, sha = files[path]
            digest = md5 if idx == 1 else sha
            lines.append(f" {digest} {size:>{width}} {path}")
    return ("\n".join(lines) + "\n").encode()
