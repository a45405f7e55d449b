"""The full-size synthetic archive of the ``scale`` section, built once and cached.

The real bookworm main/amd64 index (apt's lists; 63,440 stanzas), or an evenly spread part
of it, with a tiny real ``.deb`` at every ``Filename``: each one a genuine Debian binary
package (ar archive of ``debian-binary``, ``control.tar.gz`` with the stanza's Package,
Version and Architecture, and an empty ``data.tar.gz``), the format ``build_deb``
(tests/helpers/debs.py) makes with dpkg-deb. dpkg-deb costs ~20 ms a package, 20 minutes for
the whole index on two cores; written here it is 63,440 in seconds, and one of them is checked
with ``dpkg-deb --info`` each build. Every stanza's Size, MD5sum and SHA256 are rewritten with
the digests of its tiny file, and the archive is signed by a throwaway key
(tests/helpers: ``make_key``, ``build_index_archive``).

Two suites: ``day1`` (the index) and ``day2`` (the next day: 1 stanza in 100 at a new version,
with a new file), for "switch a suite to the next snapshot" and for merge and diff.

Cache: ``$MIRRORKIT_BENCH_CACHE`` or ``~/.cache/mirrorkit-bench``, one directory per size and
builder version; a directory is used only once complete (built in a temp dir, renamed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import APT_INDEX, SEEDS, BenchError
from tests.helpers.archive import build_index_archive
from tests.helpers.debs import FIXED_MTIME, MAINTAINER, deb_filename
from tests.helpers.gpgkeys import TestKey, make_key

BUILDER_VERSION = 1  # bump when what is built changes: old cache directories are then unused
SUITES = ("day1", "day2")
CHANGED_EVERY = 100  # day2: one stanza in this many at a new version

_FIELD = {
    name: re.compile(rb"^" + name.encode() + rb": (\S+)$", re.MULTILINE)
    for name in ("Package", "Version", "Architecture", "Filename")
}
_SIZE = re.compile(rb"^Size: \d+$", re.MULTILINE)
_MD5 = re.compile(rb"^MD5sum: [0-9a-f]+$", re.MULTILINE)
_SHA256 = re.compile(rb"^SHA256: [0-9a-f]+$", re.MULTILINE)
_OTHER_SUMS = re.compile(rb"^SHA(?:1|512): [0-9a-f]+(?:\n|\Z)", re.MULTILINE)


def cache_root() -> Path:
    env = os.environ.get("MIRRORKIT_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mirrorkit-bench"


@dataclass(frozen=True)
class ScaleArchive:
    """A complete cached archive: ``www`` is served, ``key`` signed it."""

    root: Path
    fraction: float
    packages: int  # stanzas in day1
    changed: int  # stanzas of day2 at a new version

    @property
    def www(self) -> Path:
        return self.root / "www"

    @property
    def key(self) -> TestKey:
        base = self.root / "key"
        fingerprint = (base / "fingerprint").read_text().strip()
        return TestKey(
            gnupghome=base / "gnupg",
            fingerprint=fingerprint,
            uid="mirrorkit bench <bench@example.org>",
            public_keyring=base / "keyring.gpg",
            public_armored=base / "key.asc",
        )


# --- tiny real .deb files ------------------------------------------------------------------


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        top = tarfile.TarInfo("./")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
        top.uname = top.gname = "root"
        tar.addfile(top)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


_EMPTY_DATA = _tar_gz({})


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{FIXED_MTIME:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += [header.encode(), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def tiny_deb(name: str, version: str, arch: str) -> bytes:
    """A real .deb of a few hundred bytes: the control data of ``name`` and nothing to unpack."""
    control = (
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
        "Installed-Size: 1\nSection: misc\nPriority: optional\n"
        f"Description: stand-in for {name}\n Built by mirrorkit's scale benchmark.\n"
    )
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", _tar_gz({"./control": control.encode()})),
        ("data.tar.gz", _EMPTY_DATA),
    ]
    return _ar(members)


# --- the archive ---------------------------------------------------------------------------


def _field(stanza: bytes, name: str) -> str:
    match = _FIELD[name].search(stanza)
    if match is None:
        raise BenchError(f"a stanza without {name}: {stanza[:200]!r}")
    return match.group(1).decode()


def _subset(stanzas: list[bytes], fraction: float) -> list[bytes]:
    """Every k-th stanza (nested: a quarter is part of the half), and the bench's filter seeds
    always, so that ``filter --with-deps`` finds them at every size."""
    if fraction >= 1:
        return stanzas
    step = round(1 / fraction)
    seeds = {s.encode() for s in SEEDS}
    return [
        s
        for n, s in enumerate(stanzas)
        if n % step == 0 or ((m := _FIELD["Package"].search(s)) is not None and m[1] in seeds)
    ]


def _place(www: Path, stanza: bytes, version: str | None = None) -> bytes:
    """Write the tiny .deb of ``stanza`` (at a new ``version`` and file name, if given) and
    return the stanza with its Filename, Size and checksums rewritten to match."""
    name, arch = _field(stanza, "Package"), _field(stanza, "Architecture")
    filename = _field(stanza, "Filename")
    if version is not None:
        stanza = _FIELD["Version"].sub(b"Version: " + version.encode(), stanza, count=1)
        filename = posixpath.join(posixpath.dirname(filename), deb_filename(name, version, arch))
        stanza = _FIELD["Filename"].sub(b"Filename: " + filename.encode(), stanza, count=1)
    data = tiny_deb(name, version or _field(stanza, "Version"), arch)
    path = www / filename
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    stanza = _SIZE.sub(b"Size: %d" % len(data), stanza, count=1)
    stanza = _MD5.sub(b"MD5sum: " + hashlib.md5(data).hexdigest().encode(), stanza, count=1)
    stanza = _SHA256.sub(b"SHA256: " + hashlib.sha256(data).hexdigest().encode(), stanza, count=1)
    return _OTHER_SUMS.sub(b"", stanza).rstrip(b"\n")


def _check_deb(path: Path) -> None:
    proc = subprocess.run(["dpkg-deb", "--info", str(path)], capture_output=True, check=False)
    if proc.returncode != 0 or b"Package:" not in proc.stdout:
        raise BenchError(f"dpkg-deb refuses the stand-in {path}: {proc.stderr[-500:]!r}")


def _build(work: Path, fraction: float, log: Callable[[str], None]) -> tuple[int, int]:
    started = time.perf_counter()
    plain = subprocess.run(["lz4", "-dc", str(APT_INDEX)], capture_output=True, check=True).stdout
    stanzas = _subset(plain.rstrip(b"\n").split(b"\n\n"), fraction)
    www = work / "www"
    day1 = [_place(www, s) for s in stanzas]
    day2 = list(day1)
    changed = 0
    for n in range(CHANGED_EVERY // 2, len(day2), CHANGED_EVERY):
        day2[n] = _place(www, day2[n], _field(day2[n], "Version") + "+bench1")
        changed += 1
    log(f"  wrote {len(day1) + changed} tiny .debs in {time.perf_counter() - started:.1f} s")
    _check_deb(www / _field(day1[0], "Filename"))
    key = make_key(work / "key", "mirrorkit bench <bench@example.org>")
    (work / "key" / "fingerprint").write_text(key.fingerprint + "\n")
    try:
        for suite, index in zip(SUITES, (day1, day2), strict=True):
            text = work / f"Packages-{suite}"
            text.write_bytes(b"\n\n".join(index) + b"\n")
            build_index_archive(
                www,
                key,
                text,
                suite=suite,
                compressions=("xz", "gz"),
                origin="mirrorkit-bench",
                label="mirrorkit-bench",
                description="mirrorkit scale benchmark archive",
            )
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(key.gnupghome), "--kill", "all"],
            capture_output=True,
            check=False,
        )
    log(f"  archive built in {time.perf_counter() - started:.1f} s")
    return len(day1), changed


def scale_archive(fraction: float, log: Callable[[str], None]) -> ScaleArchive:
    """The cached archive for ``fraction`` of the index, built first if it is missing."""
    if not APT_INDEX.exists():
        raise BenchError(f"{APT_INDEX} is absent (run 'apt-get update' to get it)")
    stamp = APT_INDEX.stat()
    name = f"archive-v{BUILDER_VERSION}-{int(fraction * 100)}pct-{stamp.st_size}"
    root = cache_root() / name
    meta = root / "sizes"
    if meta.exists():
        packages, changed = (int(x) for x in meta.read_text().split())
        return ScaleArchive(root, fraction, packages, changed)
    log(f"  building the synthetic archive ({fraction:g} of the index) in {root} ...")
    cache_root().mkdir(parents=True, exist_ok=True)
    work = cache_root() / f".{name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        packages, changed = _build(work, fraction, log)
        (work / "sizes").write_text(f"{packages} {changed}\n")
        shutil.rmtree(root, ignore_errors=True)
        work.rename(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ScaleArchive(root, fraction, packages, changed)
