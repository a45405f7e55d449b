"""The archives the benchmarks serve, made with the test suite's own builders (tests/helpers):
real .deb files from ``build_deb``, signed archives from ``build_archive`` and
``build_index_archive``. What is left here is only what is particular to a benchmark: which
packages, how many, how big."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import BenchError
from tests.helpers.archive import build_archive, build_index_archive
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey

ORIGIN = "mirrorkit-bench"

_FIELD = {
    name: re.compile(rb"^" + name.encode() + rb": (\S+)$", re.MULTILINE)
    for name in ("Package", "Version", "Architecture", "Filename")
}
_SIZE = re.compile(rb"^Size: \d+$", re.MULTILINE)
_MD5 = re.compile(rb"^MD5sum: [0-9a-f]+$", re.MULTILINE)
_SHA256 = re.compile(rb"^SHA256: [0-9a-f]+$", re.MULTILINE)
_OTHER_SUMS = re.compile(rb"^SHA(?:1|512): [0-9a-f]+(?:\n|\Z)", re.MULTILINE)


def index_archive(
    root: Path,
    index: Path,
    suite: str,
    key: TestKey,
    log: Callable[[str], None],
    *,
    compressions: tuple[str, ...] = ("xz", "gz"),
) -> None:
    """dists/SUITE/main/binary-amd64/Packages.{xz,gz} from ``index`` (the plain file listed in
    Release but not served, as on deb.debian.org), signed, with by-hash copies."""
    started = time.perf_counter()
    build_index_archive(
        root,
        key,
        index,
        suite=suite,
        compressions=compressions,
        origin=ORIGIN,
        label=ORIGIN,
        description="mirrorkit benchmark archive",
    )
    if compressions != ("plain",):
        took = time.perf_counter() - started
        log(f"  compressed ({', '.join(compressions)}) and signed the index in {took:.1f} s")


def _build_debs(outdir: Path, specs: Iterable[tuple[str, str, str, int]]) -> list[Path]:
    """build_deb for each (name, version, architecture, payload size), a few at a time:
    dpkg-deb is a child process, so threads overlap them."""

    def one(spec: tuple[str, str, str, int]) -> Path:
        name, version, arch, size = spec
        return build_deb(outdir, name, version, arch, payload_size=size)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, specs))


def stand_in_archive(
    root: Path, plain: Path, wanted: set[str], key: TestKey, log: Callable[[str], None]
) -> dict[str, tuple[int, str]]:
    """The real index, served from ``root``, in which the packages whose ``Filename`` is in
    ``wanted`` point at stand-in .debs (built by build_deb with the package's name, version
    and architecture, 20-200 kB of random payload) written at that path: their Size, MD5sum
    and SHA256 rewritten, SHA1/SHA512 dropped. Every other stanza is as upstream has it (and
    never downloaded). Returns {Filename: (size, sha256)} of the stand-ins."""
    rng = random.Random(20240602)
    stanzas = plain.read_bytes().rstrip(b"\n").split(b"\n\n")
    chosen: dict[str, int] = {}  # Filename -> index of its (first) stanza
    for n, stanza in enumerate(stanzas):
        match = _FIELD["Filename"].search(stanza)
        if match is not None and (name := match.group(1).decode()) in wanted:
            chosen.setdefault(name, n)
    if missing := wanted - chosen.keys():
        raise BenchError(f"the index does not list {sorted(missing)[:5]}")

    def field(stanza: bytes, name: str) -> str:
        match = _FIELD[name].search(stanza)
        if match is None:
            raise BenchError(f"a stanza without {name}: {stanza[:200]!r}")
        return match.group(1).decode()

    specs = [
        (
            field(stanzas[n], "Package"),
            field(stanzas[n], "Version"),
            field(stanzas[n], "Architecture"),
            int(rng.triangular(20_000, 200_000, 40_000)),
        )
        for n in chosen.values()
    ]
    debs = _build_debs(root.parent / "stand-in-debs", specs)
    made: dict[str, tuple[int, str]] = {}
    for (filename, n), deb in zip(chosen.items(), debs, strict=True):
        data = deb.read_bytes()
        path = root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(deb, path)
        sha = hashlib.sha256(data).hexdigest()
        stanza = _SIZE.sub(b"Size: %d" % len(data), stanzas[n], count=1)
        stanza = _MD5.sub(b"MD5sum: " + hashlib.md5(data).hexdigest().encode(), stanza, count=1)
        stanza = _SHA256.sub(b"SHA256: " + sha.encode(), stanza, count=1)
        stanzas[n] = _OTHER_SUMS.sub(b"", stanza).rstrip(b"\n")
        made[filename] = (len(data), sha)
    index = root.parent / "Packages-stand-ins"
    index.write_bytes(b"\n\n".join(stanzas) + b"\n")
    index_archive(root, index, "bookworm", key, log)
    return made


def payload_archive(
    root: Path, work: Path, count: int, key: TestKey
) -> tuple[list[tuple[str, int]], int]:
    """``count`` .debs x1 ... xN (build_deb, random payload: 20-400 kB, most of them small,
    about 150 kB on average) in a signed archive (build_archive, suite "bench").
    Returns ([(path below root, size)], total bytes)."""
    rng = random.Random(20240601)
    specs = [
        (f"x{n}", "1.0", "amd64", int(rng.triangular(20_000, 400_000, 30_000)))
        for n in range(1, count + 1)
    ]
    debs = _build_debs(work / "debs", specs)
    archive = build_archive(root, key, {"main": debs}, suite="bench", origin=ORIGIN, label=ORIGIN)
    shutil.rmtree(work / "debs")  # build_archive copied them into the pool
    files = sorted(
        ((rel, path.stat().st_size) for rel, path in archive.debs.items()),
        key=lambda entry: int(entry[0].rsplit("/", 2)[1][1:]),  # x1, x2, ... as built
    )
    return files, sum(size for _, size in files)
