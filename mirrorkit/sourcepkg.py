"""Source packages: the Sources index, the Source: rule, and .dsc files.

A source package is a :class:`~mirrorkit.models.Package` of architecture ``source`` (as aptly
has it, so ``$Architecture (source)`` and ``$PackageType (source)`` select them): ``filename``,
``size`` and ``sha256`` name its .dsc, ``files`` the other files the .dsc lists, each under the
stanza's ``Directory``. The stanza is kept verbatim, as for binary packages.

Bytes in, data out: nothing here fetches or stores. Every name a .dsc or a Sources stanza lists
is a plain file name (no ``/``, no ``..``), and the sizes read are bounded (MAX_DSC_SIZE,
MAX_FILES), so a hostile index or .dsc cannot name a file outside its directory or make a
reader hold more than a few megabytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirrorkit import archive
from mirrorkit.errors import FormatError, IntegrityError, NotFoundError
from mirrorkit.models import FileRef, Package

# A .dsc is a few kilobytes; Debian's largest lists some hundred files (components tarballs).
MAX_DSC_SIZE = 1 << 20
MAX_FILES = 1000

# Debian's file names in a source package: no directory part, nothing that could climb out.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.~_-]*\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SOURCE_VERSION = re.compile(rb"(?:^|\n)Source:[^\n(]*\(([^)\n]*)\)")


def parse_sources(text: bytes, component: str, what: str = "Sources") -> list[Package]:
    """Every source package of a Sources index (``what`` names it in errors)."""
    return [
        _source_package(stanza, component, what, n)
        for n, stanza in enumerate(archive.iter_stanzas(text), 1)
    ]


def _source_package(stanza: bytes, component: str, what: str, number: int) -> Package:
    fields = archive.stanza_fields(stanza)
    name = fields.get("Package", "")
    where = f"{what}: stanza {number} ({name or '?'})"
    missing = [
        f for f in ("Package", "Version", "Directory", "Checksums-Sha256") if not fields.get(f)
    ]
    if missing:
        raise FormatError(
            f"{where}: missing field(s) {', '.join(missing)}",
            "the Sources index is malformed (mirrorkit only trusts SHA256-listed files); "
            "nothing was stored.",
        )
    directory = archive.safe_relpath(fields["Directory"], f"{where}: Directory")
    listed = checksums(fields["Checksums-Sha256"], where)
    return _package(name, fields["Version"], directory, listed, component, stanza, where)


def _package(
    name: str,
    version: str,
    directory: str,
    listed: Sequence[FileRef],
    component: str,
    stanza: bytes,
    where: str,
) -> Package:
    dscs = [f for f in listed if f.path.endswith(".dsc")]
    if len(dscs) != 1:
        raise FormatError(
            f"{where}: lists {len(dscs)} .dsc files, not one",
            "the Sources index is malformed; nothing was stored.",
        )
    dsc = dscs[0]
    return Package(
        name=name,
        version=version,
        architecture="source",
        filename=f"{directory}/{dsc.path}",
        size=dsc.size,
        sha256=dsc.sha256,
        source=name,
        component=component,
        stanza=stanza,
        files=tuple(
            FileRef(f"{directory}/{f.path}", f.size, f.sha256) for f in listed if f is not dsc
        ),
    )


def checksums(value: str, where: str) -> list[FileRef]:
    """The ``Checksums-Sha256`` lines (``sha256 size name``) as FileRefs named by file name
    only; a name with a directory part, ``..``, a malformed line or a name given twice with
    other contents is a FormatError naming ``where``."""
    found: dict[str, FileRef] = {}
    for line in value.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not _HEX64.match(parts[0].lower()) or not parts[1].isdigit():
            raise FormatError(f"{where}: malformed Checksums-Sha256 line {line.strip()!r}")
        sha, size, name = parts[0].lower(), int(parts[1]), parts[2]
        if not _FILE_NAME.match(name) or ".." in name:
            raise FormatError(
                f"{where}: refusing unsafe file name {name!r}",
                "a source package lists plain file names only; the index or .dsc is broken "
                "or hostile. Nothing was stored.",
            )
        other = found.setdefault(name, FileRef(name, size, sha))
        if other != FileRef(name, size, sha):
            raise FormatError(f"{where}: {name} is listed twice with different checksums")
        if len(found) > MAX_FILES:
            raise FormatError(f"{where}: lists more than {MAX_FILES} files")
    return list(found.values())


def is_source(pkg: Package) -> bool:
    return pkg.architecture == "source"


def source_version(binary: Package) -> str:
    """The version of the source package that built ``binary``: the one in
    ``Source: name (version)`` when it differs (a binNMU), else the binary's own."""
    if b"Source:" in binary.stanza and (m := _SOURCE_VERSION.search(binary.stanza)):
        return m[1].decode("utf-8", "replace").strip()
    return binary.version


def _no_epoch(version: str) -> str:
    return version.split(":", 1)[1] if ":" in version else version


def sources_of(binaries: Iterable[Package], candidates: Iterable[Package]) -> list[Package]:
    """The source packages among ``candidates`` that built ``binaries`` (the ``Source:``
    field, with its own version when it differs from the binary's), each once, in the
    order of ``candidates``. Versions match with or without an epoch (indices differ in
    whether ``Source:`` repeats it)."""
    wanted = {(b.source, _no_epoch(source_version(b))) for b in binaries if not is_source(b)}
    kept: list[Package] = []
    seen: set[tuple[str, str, str]] = set()
    for s in candidates:
        key = (s.name, s.version, s.sha256)
        if is_source(s) and (s.name, _no_epoch(s.version)) in wanted and key not in seen:
            seen.add(key)
            kept.append(s)
    return kept


# --- .dsc files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dsc:
    """A .dsc read from disk: its fields (PGP armour removed, the signature unchecked), its
    own size and SHA256, and the files it lists."""

    path: Path
    fields: dict[str, str]
    size: int
    sha256: str
    files: tuple[FileRef, ...]

    @property
    def name(self) -> str:
        return self.fields["Source"]

    @property
    def version(self) -> str:
        return self.fields["Version"]


def _unarmour(text: str) -> str:
    """The signed text of a clearsigned .dsc (dpkg-source reads the same), else the text."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    _, _, rest = text.partition("\n\n")
    body = rest.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body.split("\n"))


def parse_dsc_bytes(raw: bytes, where: str) -> tuple[dict[str, str], list[FileRef]]:
    """The fields of a .dsc and the files its ``Checksums-Sha256`` lists (FormatError naming
    ``where`` if it is not one)."""
    if len(raw) > MAX_DSC_SIZE:
        raise FormatError(f"{where}: larger than {MAX_DSC_SIZE} bytes: not a .dsc")
    try:
        text = _unarmour(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: not UTF-8 text: not a .dsc") from exc
    stanzas = list(archive.iter_stanzas(text.encode()))
    if not stanzas:
        raise FormatError(f"{where}: empty: not a .dsc")
    fields = archive.stanza_fields(stanzas[0])
    missing = [f for f in ("Source", "Version", "Checksums-Sha256") if not fields.get(f)]
    if missing:
        raise FormatError(
            f"{where}: not a source package description (no {', '.join(missing)})",
            "give the .dsc that dpkg-source -b wrote (with its files beside it).",
        )
    if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", fields["Source"]):
        raise FormatError(f"{where}: malformed Source name {fields['Source']!r}")
    return fields, checksums(fields["Checksums-Sha256"], where)


def read_dsc(path: Path) -> Dsc:
    """Read a .dsc and check that every file it lists is beside it with the listed size and
    SHA256 (as dpkg-source checks them): IntegrityError or NotFoundError naming the file."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_DSC_SIZE + 1)
    except OSError as exc:
        raise NotFoundError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    fields, files = parse_dsc_bytes(raw, str(path))
    for ref in files:
        beside = path.parent / ref.path
        try:
            with beside.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                size = fh.tell()
        except FileNotFoundError:
            raise NotFoundError(
                f"{beside}: listed by {path.name} but missing",
                "keep every file the .dsc lists beside it (as dpkg-source -b writes them); "
                "nothing was added.",
            ) from None
        except OSError as exc:
            raise NotFoundError(f"{beside}: cannot read ({exc.strerror or exc})") from exc
        if size != ref.size:
            raise IntegrityError(
                str(beside),
                str(ref.size),
                str(size),
                kind="size",
                hint=f"it is not the file {path.name} lists; nothing was added.",
            )
        if digest != ref.sha256:
            raise IntegrityError(
                str(beside),
                ref.sha256,
                digest,
                hint=f"it is not the file {path.name} lists; nothing was added.",
            )
    return Dsc(path, fields, len(raw), hashlib.sha256(raw).hexdigest(), tuple(files))


# The fields a Sources stanza takes from the .dsc, in the order dak writes them.
_DSC_FIELDS = (
    "Binary",
    "Version",
    "Maintainer",
    "Uploaders",
    "Build-Depends",
    "Build-Depends-Indep",
    "Build-Depends-Arch",
    "Build-Conflicts",
    "Build-Conflicts-Indep",
    "Architecture",
    "Standards-Version",
    "Format",
    "Files",
    "Vcs-Browser",
    "Vcs-Git",
    "Homepage",
    "Checksums-Sha256",
    "Testsuite",
    "Package-List",
)


def sources_stanza(dsc: Dsc, directory: str, section: str = "misc") -> bytes:
    """The Sources stanza for a .dsc published under ``directory`` (as apt-ftparchive
    sources writes it, with the .dsc itself added to Files and Checksums-Sha256)."""
    base = dsc.path.name
    lines = [f"Package: {dsc.name}"]
    md5_own = hashlib.md5(dsc.path.read_bytes()).hexdigest()
    for name in _DSC_FIELDS:
        value = dsc.fields.get(name)
        if value is None:
            continue
        if name == "Files":
            value = f"\n {md5_own} {dsc.size} {base}\n" + value.strip("\n")
        elif name == "Checksums-Sha256":
            value = f"\n {dsc.sha256} {dsc.size} {base}\n" + value.strip("\n")
        lines.append(_field_line(name, value))
    lines.append(f"Directory: {directory}")
    lines.append("Priority: source")
    lines.append(f"Section: {section}")
    return "\n".join(lines).encode()


def _field_line(name: str, value: str) -> str:
    """A field as deb822 writes it: continuation lines start with a space."""
    first, *rest = value.split("\n")
    out = f"{name}: {first}".rstrip()
    for line in rest:
        line = line.strip()
        out += "\n " + (line or ".")
    return out


def check_dsc_against(pkg: Package, raw: bytes) -> None:
    """A .dsc fetched for source package ``pkg`` (its bytes verified against the index) must
    list exactly the files the index lists: FormatError naming the .dsc otherwise."""
    _, listed = parse_dsc_bytes(raw, pkg.filename)
    directory = pkg.filename.rpartition("/")[0]
    said = {f.path.rpartition("/")[2]: f for f in pkg.files}
    found = {f.path: FileRef(f"{directory}/{f.path}", f.size, f.sha256) for f in listed}
    if said != found:
        differ = sorted(n for n in said.keys() | found.keys() if said.get(n) != found.get(n))
        raise FormatError(
            f"{pkg.filename}: the .dsc and the Sources index disagree about {', '.join(differ)}",
            "the upstream is broken or mid-sync (or tampered with); nothing was committed. "
            "Try the update again later.",
        )
