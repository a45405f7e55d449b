"""Build real, signed Debian archives for tests with tools independent of mirrorkit.

Packages indices come from ``apt-ftparchive``; the Release file is written here, following the
layout of deb.debian.org (MD5Sum/SHA256 lists with right-aligned sizes, an entry for the
uncompressed ``Packages`` even when only compressed files are shipped, ``by-hash`` copies), and
signed with the gpg CLI. Nothing in here imports mirrorkit, so the archive is an independent
oracle for what mirrorkit must accept.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import hashlib
import lzma
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.debs import deb_filename
from tests.helpers.gpgkeys import TestKey, clearsign, detach_sign
from tests.helpers.sources import dsc_files

__all__ = [
    "Archive",
    "build_archive",
    "build_flat_archive",
    "build_index_archive",
    "deb_fields",
    "format_date",
    "resign",
    "write_release",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_KNOWN_COMPRESSIONS = ("plain", "gz", "xz", "bz2", "zst")


@dataclass
class Archive:
    root: Path
    suite: str
    components: list[str]  # names as users write them in sources.list (e.g. "main")
    architectures: list[str]
    key: TestKey
    debs: dict[str, Path]  # file name relative to root ("pool/main/h/hello/...") -> path
    codename: str = ""
    # component as users write it -> name in Release's Components and in pool/
    # ("main" -> "updates/main", as on security.debian.org)
    release_components: dict[str, str] = field(default_factory=dict)

    @property
    def dists(self) -> Path:
        return self.root / "dists" / self.suite

    @property
    def release(self) -> Path:
        return self.dists / "Release"

    @property
    def inrelease(self) -> Path:
        return self.dists / "InRelease"

    @property
    def release_gpg(self) -> Path:
        return self.dists / "Release.gpg"

    def component_dir(self, component: str) -> Path:
        """Directory of a component's indices: ``dists/<suite>/<component>``.

        Also for security-style archives: bookworm-security lists ``updates/main`` in
        Components but its index files are ``main/binary-amd64/...`` (that is what apt fetches).
        """
        return self.dists / component


def format_date(when: dt.datetime) -> str:
    """RFC 2822 date the way Debian writes it (``Sat, 10 Jun 2023 08:55:59 UTC``).

    Built by hand because strftime's %a/%b follow the process locale.
    """
    when = when.astimezone(dt.UTC)
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year} "
        f"{when:%H:%M:%S} UTC"
    )


def deb_fields(deb: Path) -> dict[str, str]:
    """Package, Version and Architecture of a .deb, read by dpkg-deb (not by mirrorkit)."""
    out = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _compress(data: bytes, kind: str) -> bytes:
    if kind == "gz":
        # mtime=0 keeps the bytes identical between runs (golden files, by-hash names).
        return gzip.compress(data, compresslevel=9, mtime=0)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    if kind == "bz2":
        return bz2.compress(data)
    if kind == "zst":
        # The zstd CLI is an independent implementation from the zstandard module mirrorkit uses.
        return subprocess.run(
            ["zstd", "-q", "-c", "-19"], input=data, capture_output=True, check=True
        ).stdout
    raise ValueError(f"unknown compression {kind!r}")


_SUFFIX = {"plain": "", "gz": ".gz", "xz": ".xz", "bz2": ".bz2", "zst": ".zst"}


def _write_index(
    directory: Path, basename: str, data: bytes, compressions: Sequence[str], by_hash: bool
) -> None:
    """Write ``basename`` in every asked compression, plus by-hash copies when asked.

    The plain file is always written (the Release needs its hashes); build_archive removes it
    again unless "plain" was asked for, as on deb.debian.org where only .xz/.gz are shipped.
    Earlier ``basename*`` files are removed first so a rebuild with other compressions leaves no
    stale index behind; old by-hash copies stay, as on a real mirror.
    """
    for kind in compressions:
        if kind not in _KNOWN_COMPRESSIONS:
            raise ValueError(f"unknown compression {kind!r}")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(basename + "*"):
        if old.is_file():
            old.unlink()
    (directory / basename).write_bytes(data)
    kept: list[bytes] = []
    for kind in compressions:
        if kind == "plain":
            kept.append(data)
            continue
        blob = _compress(data, kind)
        (directory / (basename + _SUFFIX[kind])).write_bytes(blob)
        kept.append(blob)
    if by_hash:
        hashdir = directory / "by-hash" / "SHA256"
        hashdir.mkdir(parents=True, exist_ok=True)
        for blob in kept:
            (hashdir / hashlib.sha256(blob).hexdigest()).write_bytes(blob)


def _size_and_digest(data: bytes | Path, algo: str) -> tuple[int, str]:
    if isinstance(data, bytes):
        return len(data), hashlib.new(algo, data).hexdigest()
    with data.open("rb") as fh:  # a large index: hashed as it is read
        return data.stat().st_size, hashlib.file_digest(fh, algo).hexdigest()


def _hash_lines(files: Sequence[tuple[str, bytes | Path]], algo: str) -> list[str]:
    entries = [(name, *_size_and_digest(data, algo)) for name, data in files]
    # Debian right-aligns sizes in 8 columns (longer numbers just widen their own line), so
    # parsers must cope with runs of spaces.
    return [f" {digest} {size:>8} {name}" for name, size, digest in entries]


def _collect_index_files(dists: Path) -> list[tuple[str, bytes]]:
    """Every file below ``dists/<something>/`` except by-hash copies, as (relative name, bytes)."""
    result: list[tuple[str, bytes]] = []
    for path in sorted(dists.rglob("*")):
        rel = path.relative_to(dists).as_posix()
        if not path.is_file() or "/by-hash/" in f"/{rel}" or "/" not in rel:
            continue
        result.append((rel, path.read_bytes()))
    return result


def write_release(
    dists: Path,
    files: Sequence[tuple[str, bytes | Path]],
    *,
    fields: dict[str, str],
    md5: bool = True,
) -> bytes:
    """Write ``dists/Release`` from header ``fields`` and the index ``files``: (name, bytes),
    or (name, path of a file) for one too large to hold in memory."""
    lines = [f"{k}: {v}" for k, v in fields.items()]
    ordered = sorted(files, key=lambda entry: entry[0])
    if md5:
        lines.append("MD5Sum:")
        lines.extend(_hash_lines(ordered, "md5"))
    lines.append("SHA256:")
    lines.extend(_hash_lines(ordered, "sha256"))
    text = ("\n".join(lines) + "\n").encode()
    (dists / "Release").write_bytes(text)
    return text


def _sign_release(dists: Path, key: TestKey) -> None:
    release = (dists / "Release").read_bytes()
    (dists / "InRelease").write_bytes(clearsign(key, release))
    (dists / "Release.gpg").write_bytes(detach_sign(key, release))


def _ftparchive_packages(
    root: Path, rel_dir: str, arch: str | None, only: set[str] | None = None, extension: str = ""
) -> bytes:
    """``apt-ftparchive packages rel_dir`` run in ``root``, optionally keeping only ``only``.

    Running from root makes ``Filename:`` relative to the archive root, as apt expects.
    ``only`` (Filename values) drops stanzas of pool files left over from an earlier build, so
    the index lists exactly the packages of this build.
    """
    cmd = ["apt-ftparchive"]
    if extension:
        cmd += ["-o", f"APT::FTPArchive::Packages::Extensions={extension}"]
    if arch is not None:
        # --arch keeps only *_<arch>.deb and *_all.deb, which is exactly Debian's split.
        cmd += ["--arch", arch]
    cmd += ["packages", rel_dir]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True).stdout
    if only is None:
        return out
    stanzas = [st for st in out.split(b"\n\n") if st.strip()]
    kept = [
        st
        for st in stanzas
        if any(
            line[len(b"Filename: ") :].decode() in only
            for line in st.splitlines()
            if line.startswith(b"Filename: ")
        )
    ]
    return b"".join(st + b"\n\n" for st in kept)


def build_archive(
    root: Path,
    key: TestKey,
    packages: dict[str, list[Path]],
    *,
    suite: str = "stable",
    codename: str | None = None,
    architectures: list[str] | None = None,
    compressions: tuple[str, ...] = ("xz", "gz"),
    by_hash: bool = True,
    valid_until: str | None = None,
    date: str | None = None,
    release_components: dict[str, str] | None = None,
    inrelease: bool = True,
    release_gpg: bool = True,
    md5sum: bool = True,
    origin: str = "Mirrorkit Test",
    label: str = "Mirrorkit Test",
    sources: dict[str, list[Path]] | None = None,
    udebs: dict[str, list[Path]] | None = None,
) -> Archive:
    """Build a signed archive at ``root`` from ``packages`` (component -> list of .deb paths).

    ``sources`` (component -> .dsc paths, their files beside them) adds
    ``<component>/source/Sources`` as ``apt-ftparchive sources`` writes it; ``udebs``
    (component -> .udeb paths) adds ``<component>/debian-installer/binary-<arch>/Packages``.

    Layout: ``pool/<component>/<first letter>/<name>/<file>`` and
    ``dists/<suite>/<component>/binary-<arch>/Packages{.xz,.gz,...}``.
    ``architectures`` defaults to ``["amd64"]``.

    ``release_components={"main": "updates/main"}`` reproduces deb.debian.org's bookworm-security:
    Release says ``Components: updates/main`` and the pool is ``pool/updates/main/...``, but the
    index files and their Release entries stay ``main/binary-amd64/...`` (checked against the
    real InRelease; apt requests ``dists/bookworm-security/main/...`` for ``main``).
    ``md5sum=False`` leaves out the MD5Sum list, as the security archive does.
    """
    archs = list(architectures) if architectures is not None else ["amd64"]
    rc = dict(release_components or {})
    root.mkdir(parents=True, exist_ok=True)
    dists = root / "dists" / suite
    # A rebuild (e.g. "upstream published a new version") must not leave old signatures behind.
    for stale in ("Release", "InRelease", "Release.gpg"):
        (dists / stale).unlink(missing_ok=True)
    debs: dict[str, Path] = {}

    plain_indices: list[tuple[str, bytes]] = []
    for component, deb_paths in packages.items():
        comp_name = rc.get(component, component)
        pool_rel = f"pool/{comp_name}"
        for deb in deb_paths:
            f = deb_fields(deb)
            name = f["Package"]
            filename = deb_filename(name, f["Version"], f["Architecture"])
            rel = f"{pool_rel}/{name[0]}/{name}/{filename}"
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(deb, dest)
            debs[rel] = dest
        (root / pool_rel).mkdir(parents=True, exist_ok=True)

        current = {rel for rel in debs if rel.startswith(pool_rel + "/")}
        for arch in archs:
            data = _ftparchive_packages(root, pool_rel, arch, current)
            bin_dir = dists / component / f"binary-{arch}"
            _write_index(bin_dir, "Packages", data, compressions, by_hash)
            plain_indices.append((f"{component}/binary-{arch}/Packages", data))
            # Per-directory Release file, as Debian ships it (apt ignores it, mirrors copy it).
            (bin_dir / "Release").write_text(
                f"Archive: {suite}\nOrigin: {origin}\nLabel: {label}\n"
                f"Component: {comp_name}\nArchitecture: {arch}\n"
            )

    for component, udeb_paths in (udebs or {}).items():
        pool_rel = f"pool/{rc.get(component, component)}"
        for udeb in udeb_paths:
            name = udeb.name.split("_", 1)[0]
            rel = f"{pool_rel}/{name[0]}/{name}/{udeb.name}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(udeb, root / rel)
            debs[rel] = root / rel
        current = {rel for rel in debs if rel.startswith(pool_rel + "/") and rel.endswith(".udeb")}
        for arch in archs:
            data = _ftparchive_packages(root, pool_rel, arch, current, extension=".udeb")
            rel_dir = f"{component}/debian-installer/binary-{arch}"
            _write_index(dists / rel_dir, "Packages", data, compressions, by_hash)
            plain_indices.append((f"{rel_dir}/Packages", data))
    for component, dscs in (sources or {}).items():
        pool_rel = f"pool/{rc.get(component, component)}"
        for dsc in dscs:
            name = dsc.name.split("_", 1)[0]
            dest = root / pool_rel / name[0] / name
            dest.mkdir(parents=True, exist_ok=True)
            for part in dsc_files(dsc):
                shutil.copyfile(part, dest / part.name)
        out = subprocess.run(["apt-ftparchive", "sources", pool_rel], cwd=root, check=True,
                             capture_output=True).stdout  # fmt: skip
        _write_index(dists / component / "source", "Sources", out, compressions, by_hash)
        plain_indices.append((f"{component}/source/Sources", out))

    files = dict(_collect_index_files(dists))
    files.update(dict(plain_indices))  # listed even when the plain file is not shipped
    if "plain" not in compressions:
        for name, _data in plain_indices:
            (dists / name).unlink()

    when = date if date is not None else format_date(dt.datetime.now(dt.UTC))
    header: dict[str, str] = {
        "Origin": origin,
        "Label": label,
        "Suite": suite,
        "Codename": codename if codename is not None else suite,
        "Date": when,
    }
    if valid_until is not None:
        header["Valid-Until"] = valid_until
    if by_hash:
        header["Acquire-By-Hash"] = "yes"
    header["Architectures"] = " ".join(archs)
    header["Components"] = " ".join(rc.get(c, c) for c in packages)
    header["Description"] = f"Mirrorkit test archive {suite}"
    write_release(dists, sorted(files.items()), fields=header, md5=md5sum)

    release = (dists / "Release").read_bytes()
    if inrelease:
        (dists / "InRelease").write_bytes(clearsign(key, release))
    if release_gpg:
        (dists / "Release.gpg").write_bytes(detach_sign(key, release))

    return Archive(
        root=root,
        suite=suite,
        components=list(packages),
        architectures=archs,
        key=key,
        debs=debs,
        codename=codename if codename is not None else suite,
        release_components=rc,
    )


# Command lines for build_index_archive: independent implementations, and xz's threads (two
# blocks or more on a large index, as Debian's own multi-threaded xz writes them) keep the
# compression of a 50 MB index to seconds.
_COMPRESS_CLI = {
    "xz": ["xz", "-6", "-T2", "-c"],
    "gz": ["gzip", "-9", "-n", "-c"],
    "bz2": ["bzip2", "-9", "-c"],
    "zst": ["zstd", "-q", "-19", "-T2", "-c"],
}


def _compress_files(plain: Path, outputs: dict[str, Path]) -> None:
    """``plain`` compressed into each ``outputs`` (kind -> path), every compressor at once."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for kind, out in outputs.items():
            with plain.open("rb") as src, out.open("wb") as dst:
                procs.append(subprocess.Popen(_COMPRESS_CLI[kind], stdin=src, stdout=dst))
    finally:
        failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        raise RuntimeError(f"compressing {plain} failed: {failed}")


def build_index_archive(
    root: Path,
    key: TestKey,
    index: Path,
    *,
    suite: str = "stable",
    codename: str | None = None,
    component: str = "main",
    architecture: str = "amd64",
    compressions: tuple[str, ...] = ("xz", "gz"),
    origin: str = "Mirrorkit Test",
    label: str = "Mirrorkit Test",
    description: str | None = None,
) -> Archive:
    """A signed archive at ``root`` whose one index is ``index``, an existing Packages file
    (a large one: Debian's real bookworm index, a generated one); the pool files it names are
    the caller's business. Layout and Release as build_archive makes them (the plain index is
    listed even when only compressed ones are shipped; by-hash copies, as hard links), but
    compressed by the command-line tools, side by side, and hashed as files are read."""
    if unknown := set(compressions) - set(_KNOWN_COMPRESSIONS):
        raise ValueError(f"unknown compressions {sorted(unknown)}")
    dists = root / "dists" / suite
    rel_dir = f"{component}/binary-{architecture}"
    bin_dir = dists / rel_dir
    bin_dir.mkdir(parents=True)
    outputs = {kind: bin_dir / f"Packages{_SUFFIX[kind]}" for kind in compressions}
    packed = {kind: out for kind, out in outputs.items() if kind != "plain"}
    _compress_files(index, packed)
    if "plain" in outputs:
        try:
            outputs["plain"].hardlink_to(index)
        except OSError:  # another file system
            shutil.copyfile(index, outputs["plain"])
    files: dict[str, Path] = {f"{rel_dir}/Packages": index}
    files.update({f"{rel_dir}/{out.name}": out for out in outputs.values()})
    hashdir = bin_dir / "by-hash" / "SHA256"
    hashdir.mkdir(parents=True)
    for out in outputs.values():
        with out.open("rb") as fh:
            (hashdir / hashlib.file_digest(fh, "sha256").hexdigest()).hardlink_to(out)
    header = {
        "Origin": origin,
        "Label": label,
        "Suite": suite,
        "Codename": codename if codename is not None else suite,
        "Date": format_date(dt.datetime.now(dt.UTC)),
        "Acquire-By-Hash": "yes",
        "Architectures": architecture,
        "Components": component,
        "Description": description or f"Mirrorkit test archive {suite}",
    }
    write_release(dists, sorted(files.items()), fields=header)
    _sign_release(dists, key)
    return Archive(
        root=root,
        suite=suite,
        components=[component],
        architectures=[architecture],
        key=key,
        debs={},
        codename=header["Codename"],
    )


def build_flat_archive(root: Path, key: TestKey, debs: list[Path], subdir: str = "flat") -> Path:
    """Build a flat repository (``deb URI flat/``) in ``root/<subdir>`` and return that dir.

    ``Filename:`` entries are relative to ``root`` (``flat/foo_1.0_all.deb``), which is how apt
    resolves them for a flat source whose URI is ``root``.
    """
    flat = root / subdir
    flat.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        f = deb_fields(deb)
        shutil.copyfile(deb, flat / deb_filename(f["Package"], f["Version"], f["Architecture"]))
    data = _ftparchive_packages(root, subdir, None)
    (flat / "Packages").write_bytes(data)
    gz = gzip.compress(data, compresslevel=9, mtime=0)
    (flat / "Packages.gz").write_bytes(gz)
    header = {
        "Origin": "Mirrorkit Test Flat",
        "Label": "Mirrorkit Test Flat",
        # apt compares the source's "flat/" (minus the slash) with Suite/Codename and warns
        # "Conflicting distribution" when neither matches.
        "Suite": subdir.rstrip("/"),
        "Date": format_date(dt.datetime.now(dt.UTC)),
        "Description": "Mirrorkit flat test repository",
    }
    write_release(flat, [("Packages", data), ("Packages.gz", gz)], fields=header)
    _sign_release(flat, key)
    return flat


def resign(archive: Archive) -> None:
    """Re-sign ``Release`` into ``InRelease`` and ``Release.gpg`` after a test edited it."""
    _sign_release(archive.dists, archive.key)
