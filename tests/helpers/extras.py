"""Translations and Contents for a test archive, the way Debian ships them, independent of
mirrorkit: Packages keep the first line of each Description and a ``Description-md5`` (as dak
writes them), ``i18n/Translation-LANG`` holds the long descriptions, ``Contents-ARCH.gz`` comes
from ``apt-ftparchive contents``. The Release is rewritten to list every file (uncompressed
names too) and signed again.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.helpers.archive import Archive, resign, write_release

__all__ = ["add_extras", "ftparchive_contents", "rewrite_release", "split_description"]


def split_description(stanza: str) -> tuple[str, str, str]:
    """(stanza with the short description and a Description-md5, package, md5)."""
    m = re.search(r"^Description: ([^\n]*(?:\n [^\n]*)*)", stanza, re.M)
    assert m is not None, stanza
    full = m[1]
    md5 = hashlib.md5((full + "\n").encode()).hexdigest()
    short = full.split("\n", 1)[0]
    name = re.search(r"^Package: (\S+)", stanza, re.M)
    assert name is not None
    new = stanza[: m.start()] + f"Description: {short}\nDescription-md5: {md5}" + stanza[m.end() :]
    return new, name[1], md5


def ftparchive_contents(root: Path, rel_dir: str, arch: str) -> bytes:
    """``apt-ftparchive --arch ARCH contents DIR`` run in ``root``: the oracle."""
    return subprocess.run(
        ["apt-ftparchive", "--arch", arch, "contents", rel_dir],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout


def _compress(data: bytes, kind: str) -> bytes:
    if kind == "gz":
        return gzip.compress(data, mtime=0)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if kind == "bz2":
        return bz2.compress(data)
    return data


def _write(directory: Path, name: str, data: bytes, kinds: tuple[str, ...]) -> list[str]:
    """Compressed copies (and by-hash copies) of ``data``; returns the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        blob = _compress(data, kind)
        fname = name if kind == "plain" else f"{name}.{kind}"
        (directory / fname).write_bytes(blob)
        hashdir = directory / "by-hash" / "SHA256"
        hashdir.mkdir(parents=True, exist_ok=True)
        (hashdir / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
        written.append(fname)
    return written


def add_extras(
    archive: Archive,
    translations: Mapping[str, Mapping[str, str]] | None = None,
    *,
    contents: bool = True,
    translation_bytes: Mapping[str, bytes] | None = None,
) -> None:
    """Split the descriptions out of the Packages indices into ``i18n/Translation-LANG``
    (``translations``: lang -> package -> long description text, one paragraph; packages
    without one get their original text in English), add ``Contents-ARCH.gz`` per component,
    rewrite the Release and sign it. ``translation_bytes`` (lang -> raw file) replaces a
    generated Translation (bad input tests)."""
    translations = translations or {"en": {}}
    dists = archive.dists
    plain: dict[str, bytes] = {}
    for component in archive.components:
        originals: dict[tuple[str, str], str] = {}
        for arch in archive.architectures:
            bindir = dists / component / f"binary-{arch}"
            text = lzma.decompress((bindir / "Packages.xz").read_bytes()).decode()
            stanzas = [s for s in text.split("\n\n") if s.strip()]
            new = []
            for stanza in stanzas:
                m = re.search(r"^Description: ([^\n]*(?:\n [^\n]*)*)", stanza, re.M)
                assert m is not None
                changed, name, md5 = split_description(stanza)
                originals[(name, md5)] = m[1]
                new.append(changed)
            data = "".join(s + "\n\n" for s in new).encode()
            for old in bindir.glob("Packages*"):
                old.unlink()
            _write(bindir, "Packages", data, ("xz", "gz"))
            plain[f"{component}/binary-{arch}/Packages"] = data
            if contents:
                listing = ftparchive_contents(archive.root, f"pool/{component}", arch)
                _write(dists / component, f"Contents-{arch}", listing, ("gz",))
                plain[f"{component}/Contents-{arch}"] = listing
        for lang, texts in translations.items():
            entries = []
            for (name, md5), full in sorted(originals.items()):
                short = full.split("\n", 1)[0]
                body = texts.get(name)
                if body is None and lang != "en":
                    continue
                long = f" {body}" if body is not None else "\n".join(full.split("\n")[1:])
                entries.append(
                    f"Package: {name}\nDescription-md5: {md5}\n"
                    f"Description-{lang}: {short}\n{long}\n"
                )
            data = "\n".join(entries).encode()
            if translation_bytes and lang in translation_bytes:
                data = translation_bytes[lang]
            _write(dists / component / "i18n", f"Translation-{lang}", data, ("bz2", "xz"))
            plain[f"{component}/i18n/Translation-{lang}"] = data
    rewrite_release(archive, plain)


def rewrite_release(archive: Archive, plain: Mapping[str, bytes]) -> None:
    dists = archive.dists
    header: dict[str, str] = {}
    for line in (dists / "Release").read_text().splitlines():
        if line.startswith(("MD5Sum:", "SHA256:", " ")):
            break
        key, _, value = line.partition(": ")
        header[key] = value
    files: dict[str, bytes] = {}
    for path in sorted(dists.rglob("*")):
        rel = path.relative_to(dists).as_posix()
        if path.is_file() and "/by-hash/" not in f"/{rel}" and "/" in rel:
            files[rel] = path.read_bytes()
    files.update(plain)  # listed even where only compressed files are shipped, as Debian does
    write_release(dists, sorted(files.items()), fields=header)
    resign(archive)
