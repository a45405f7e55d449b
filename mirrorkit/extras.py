"""Per-component files beside the Packages indices: Translations and Contents.

``<component>/i18n/Translation-<lang>`` holds the long descriptions apt shows (Debian's
Packages carry only the first line and a ``Description-md5``); ``<component>/Contents-<arch>``
maps every file path to the packages that ship it (what apt-file searches). Both are held
uncompressed in the meta store (an :class:`ExtraRef` each), follow a snapshot's packages
through filters and merges, and are published beside the Packages indices.

Bytes in, data out: parsing (with the checks that turn bad input into a FormatError naming the
file), filtering to a set of packages, merging and rendering. Contents are rendered as
``apt-ftparchive contents`` writes them, so generated files are byte-compatible with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from mirrorkit import archive
from mirrorkit.errors import FormatError
from mirrorkit.models import ExtraRef, FileRef, Package

TRANSLATION: Final = "translation"
CONTENTS: Final = "contents"
KINDS: Final = (TRANSLATION, CONTENTS)

MAX_CONTENTS_SIZE: Final = 2 << 30
"""The most a Contents file may decompress to (bookworm main amd64: about 0.6 GiB; other
indices stop at archive.MAX_INDEX_SIZE). Past it, a FormatError and nothing is stored."""

_LANG = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?\Z")
_MD5 = re.compile(rb"[0-9a-f]{32}\Z")


def check_language(lang: str) -> str:
    """A language code as apt names Translation files (``en``, ``de``, ``pt_BR``)."""
    if not _LANG.match(lang):
        from mirrorkit.errors import UsageError

        raise UsageError(
            f"{lang!r} is not a language code",
            "give codes as apt names Translation files, e.g. --languages en,de,pt_BR.",
        )
    return lang


def release_path(kind: str, prefix: str, name: str) -> str:
    """Where the file is, relative to ``dists/SUITE`` (``prefix``: the component directory)."""
    if kind == TRANSLATION:
        return f"{prefix}/i18n/Translation-{name}"
    return f"{prefix}/Contents-{name}"


def published_path(ref: ExtraRef) -> str:
    return release_path(ref.kind, ref.component, ref.name)


def describe(refs: Iterable[ExtraRef]) -> list[str]:
    """What a mirror or snapshot holds beside its Packages, for show: ``translations (en, de)``,
    ``contents (amd64)``."""
    out = []
    for kind, title in ((TRANSLATION, "translations"), (CONTENTS, "contents")):
        names = sorted({r.name for r in refs if r.kind == kind})
        if names:
            out.append(f"{title} ({', '.join(names)})")
    return out


# --- Translations ----------------------------------------------------------------------------

_TR_PACKAGE = re.compile(rb"^Package:[ \t]*(\S+)[ \t]*$", re.M)
_TR_MD5 = re.compile(rb"^Description-md5:[ \t]*(\S+)[ \t]*$", re.M)
_TR_DESC = re.compile(rb"^Description-[A-Za-z_]+(\.[A-Za-z0-9-]+)?(@[a-z]+)?:", re.M)


def parse_translation(text: bytes, what: str) -> list[tuple[str, str, bytes]]:
    """(package, description md5, stanza) of every stanza, in order; a stanza without one
    Package, one well-formed Description-md5 and a Description-LANG is a FormatError."""
    entries = []
    for number, stanza in enumerate(archive.iter_stanzas(text), 1):
        names = _TR_PACKAGE.findall(stanza)
        md5s = _TR_MD5.findall(stanza)
        if len(names) != 1 or len(md5s) != 1 or not _TR_DESC.search(stanza):
            raise FormatError(
                f"{what}: stanza {number}: not a Translation entry (it needs one Package, one "
                "Description-md5 and a Description-LANG field)",
                "the upstream's Translation file is malformed; nothing was stored.",
            )
        md5 = md5s[0].lower()
        if not _MD5.match(md5):
            raise FormatError(
                f"{what}: stanza {number} ({names[0].decode('utf-8', 'replace')}): "
                f"malformed Description-md5 {md5s[0].decode('utf-8', 'replace')!r}",
                "the upstream's Translation file is malformed; nothing was stored.",
            )
        try:
            name = names[0].decode()
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what}: stanza {number}: Package is not UTF-8") from exc
        entries.append((name, md5.decode(), stanza))
    return entries


_DESCRIPTION = re.compile(rb"^Description:([^\n]*(?:\n[ \t][^\n]*)*)", re.M)
_DESCRIPTION_MD5 = re.compile(rb"^Description-md5:[ \t]*([0-9a-fA-F]{32})[ \t]*$", re.M)


def description_md5(p: Package) -> str | None:
    """The key apt looks a package's translation up by: its ``Description-md5``, or (an index
    with full descriptions) the MD5 of its Description as apt computes it, or None."""
    m = _DESCRIPTION_MD5.search(p.stanza)
    if m:
        return m[1].decode().lower()
    d = _DESCRIPTION.search(p.stanza)
    if d is None:
        return None
    # apt hashes the field's value after "Description: " with its continuation lines, and a
    # newline (debListParser::Description_md5).
    return hashlib.md5(d[1].lstrip(b" \t") + b"\n").hexdigest()


def translation_keys(packages: Iterable[Package]) -> set[tuple[str, str]]:
    return {(p.name, md5) for p in packages if (md5 := description_md5(p)) is not None}


def filter_translation(
    entries: Iterable[tuple[str, str, bytes]], keys: set[tuple[str, str]]
) -> list[tuple[str, str, bytes]]:
    """The entries of the packages ``keys`` names (Package, Description-md5), each once,
    sorted by package and md5 (the order dak writes)."""
    kept: dict[tuple[str, str], bytes] = {}
    for name, md5, stanza in entries:
        if (name, md5) in keys:
            kept.setdefault((name, md5), stanza)
    return [(n, m, kept[(n, m)]) for n, m in sorted(kept)]


def render_translation(entries: Iterable[tuple[str, str, bytes]]) -> bytes:
    return archive.join_stanzas(stanza for _, _, stanza in entries)


# --- Contents --------------------------------------------------------------------------------

# One line: a path, white space, and a comma list of [area/]section/package (or, as
# apt-ftparchive writes them, bare package names).
_LOCATION = re.compile(r"[^\s,/]+(?:/[^\s,/]+)*(?:,[^\s,/]+(?:/[^\s,/]+)*)*\Z")
_HEADER = re.compile(r"FILE\s+LOCATION\Z")


def parse_contents(text: bytes, what: str) -> list[tuple[str, list[str]]]:
    """(path, [qualified package names]) of every line; a line that is not ``path<space>
    section/pkg[,...]`` is a FormatError naming the file and the line. An old-style header (up
    to a ``FILE  LOCATION`` line) is skipped."""
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what}: not UTF-8 text ({exc})") from exc
    start = 0
    for i, line in enumerate(lines[:200]):
        if _HEADER.match(line.strip()):
            start = i + 1
            break
    out: list[tuple[str, list[str]]] = []
    for number, line in enumerate(lines[start:], start + 1):
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip() or not _LOCATION.match(parts[1]):
            raise FormatError(
                f"{what}: line {number}: not 'path section/package[,...]': {line[:120]!r}",
                "the upstream's Contents file is malformed; nothing was stored.",
            )
        out.append((parts[0].rstrip(), parts[1].split(",")))
    return out


def package_of(location: str) -> str:
    return location.rpartition("/")[2]


def filter_contents(
    lines: Iterable[tuple[str, list[str]]], names: set[str]
) -> list[tuple[str, list[str]]]:
    """The lines of the packages ``names``, each line's list cut to them."""
    out = []
    for path, locations in lines:
        kept = [loc for loc in locations if package_of(loc) in names]
        if kept:
            out.append((path, kept))
    return out


def files_by_package(lines: Iterable[tuple[str, list[str]]]) -> dict[str, list[tuple[str, str]]]:
    """package name -> [(path, qualified name)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path, locations in lines:
        for loc in locations:
            out.setdefault(package_of(loc), []).append((path, loc))
    return out


def _pad(length: int) -> str:
    # apt-ftparchive's column: tabs up to column 56, then four spaces (to column 60); a longer
    # path gets spaces up to column 60, and at least one.
    if length < 56:
        return "\t" * ((56 - length + 7) // 8) + "    "
    return " " * max(60 - length, 1)


def render_contents(entries: Iterable[tuple[str, str]]) -> bytes:
    """A Contents file from (path, qualified package name) pairs, as ``apt-ftparchive
    contents`` writes it: sorted by path (bytewise), one line per path, no header. Where
    several packages ship a path, their names are sorted (apt-ftparchive's order there follows
    the directory it read)."""
    by_path: dict[str, set[str]] = {}
    for path, loc in entries:
        by_path.setdefault(path, set()).add(loc)
    out = []
    for path in sorted(by_path, key=lambda p: p.encode()):
        encoded = len(path.encode())
        out.append(f"{path}{_pad(encoded)}{','.join(sorted(by_path[path]))}\n")
    return "".join(out).encode()


def render_contents_lines(lines: Iterable[tuple[str, list[str]]]) -> bytes:
    return render_contents((path, loc) for path, locs in lines for loc in locs)


# --- a set of extras following a set of packages ---------------------------------------------


def for_packages(
    load: Callable[[str], bytes],
    put: Callable[[bytes], str],
    sources: Sequence[Sequence[ExtraRef]],
    packages: Mapping[tuple[str, str], Sequence[Package]],
    held: Sequence[set[tuple[str, str, str]]] | None = None,
) -> list[ExtraRef]:
    """The extras of a snapshot holding ``packages`` ((component, arch) -> packages), made
    from those of its ``sources`` (one list per source snapshot or mirror): Translations of
    every source merged and cut to the packages (by Package and Description-md5); Contents cut
    to the packages, each package's lines from a source that holds it (``held``: per source,
    its packages' (name, version, architecture); else the first with lines for the name). A
    (component, kind, name) is there only where a source has it; one source's file that the
    packages keep whole is reused as it is. ``load`` reads an object, ``put`` stores one and
    returns its SHA256."""
    result: list[ExtraRef] = []
    for component in sorted({c for c, _ in packages}):
        in_component = [p for (c, _), pkgs in packages.items() if c == component for p in pkgs]
        mine = [r for refs in sources for r in refs if r.component == component]
        keys = translation_keys(in_component)
        for lang in sorted({r.name for r in mine if r.kind == TRANSLATION}):
            refs = [r for r in mine if (r.kind, r.name) == (TRANSLATION, lang)]
            entries = [e for r in refs for e in parse_translation(load(r.sha256), _label(r))]
            kept = filter_translation(entries, keys)
            if len(refs) == 1 and len(kept) == len(entries):
                result.append(refs[0])
                continue
            text = render_translation(kept)
            result.append(ExtraRef(component, TRANSLATION, lang, put(text), len(kept)))
    for (component, arch), pkgs in sorted(packages.items()):
        if arch == "all":
            continue
        per_source = [
            next((r for r in refs if (r.component, r.kind, r.name) == (component, CONTENTS, arch)),
                 None)
            for refs in sources
        ]  # fmt: skip
        if not any(per_source):
            continue
        # A component's "all" packages are in every architecture's Contents, as in Debian's.
        everything = [*pkgs, *packages.get((component, "all"), ())]
        names = {p.name for p in everything}
        if len(sources) == 1 and (ref := per_source[0]) is not None:
            lines = parse_contents(load(ref.sha256), _label(ref))
            if all(package_of(loc) in names for _, locs in lines for loc in locs):
                result.append(ref)
                continue
            kept_lines = filter_contents(lines, names)
            text = render_contents_lines(kept_lines)
            result.append(ExtraRef(component, CONTENTS, arch, put(text), len(kept_lines)))
            continue
        parsed = [
            files_by_package(parse_contents(load(r.sha256), _label(r))) if r else {}
            for r in per_source
        ]
        chosen: list[tuple[str, str]] = []
        for p in everything:
            key = (p.name, p.version, p.architecture)
            order = [i for i in range(len(parsed)) if held is not None and key in held[i]]
            for i in [*order, *range(len(parsed))]:
                if p.name in parsed[i]:
                    chosen += parsed[i][p.name]
                    break
        text = render_contents(dict.fromkeys(chosen))
        result.append(ExtraRef(component, CONTENTS, arch, put(text), text.count(b"\n")))
    return result


def _label(ref: ExtraRef) -> str:
    return published_path(ref)


# --- what an update fetches ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One extra file a Release lists: where it goes, and its best listed variant."""

    component: str
    kind: str
    name: str
    compression: str
    ref: FileRef


def targets(
    release: archive.Release,
    prefixes: Mapping[str, str],
    languages: Sequence[str],
    architectures: Sequence[str],
    with_contents: bool,
) -> list[Target]:
    """The Translations and Contents to fetch: per component (``prefixes``: component -> its
    directory under dists/SUITE), what the Release lists. A language or Contents the suite
    does not have is skipped, as apt skips it (Debian's own Packages of a suite without
    Translations carry the long descriptions)."""
    found = []
    for component, prefix in prefixes.items():
        wanted = [(TRANSLATION, lang) for lang in languages]
        if with_contents:
            wanted += [(CONTENTS, arch) for arch in architectures if arch != "all"]
        for kind, name in wanted:
            picked = archive.pick_index(release, release_path(kind, prefix, name))
            if picked is not None:
                found.append(Target(component, kind, name, *picked))
    return found


@dataclass(frozen=True, slots=True)
class Loaded:
    """An extra file verified, decompressed and checked, ready for the store."""

    component: str
    kind: str
    name: str
    text: bytes
    entries: int


def load_verified(target: Target, blob: bytes, what: str) -> Loaded:
    """Decompress (bounded) and check one verified file; FormatError naming ``what``."""
    limit = MAX_CONTENTS_SIZE if target.kind == CONTENTS else archive.MAX_INDEX_SIZE
    text = archive.decompress(blob, target.compression, what, limit)
    if target.kind == TRANSLATION:
        entries = len(parse_translation(text, what))
    else:
        entries = len(parse_contents(text, what))
    return Loaded(target.component, target.kind, target.name, text, entries)
