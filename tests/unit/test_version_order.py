"""archive.compare_versions (a key per version, dpkg's order) against python-debian, the
oracle: on the real bookworm index's versions when apt's lists hold it, else on generated
ones; every neighbour in the sorted order is checked, where an error would show."""

from __future__ import annotations

import itertools
import random
import re
import subprocess
from pathlib import Path

from debian.debian_support import Version, version_compare

from mirrorkit.archive import compare_versions, version_key

BOOKWORM = Path(
    "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
)
TRICKY = [
    "1.0", "1.0-1", "1.0~rc1", "1.0~~", "1:0.9", "0:1.0", "1.0a", "1.0.0", "1.00", "1.0-0",
    "0", "0~~1", "00.1", "1.2~", "1.0+b1", "1.0-1~exp1", "10", "9", "1.0+", "1.0.", "2:0",
    "1.0-1.1", "1.0-1+deb12u1", "7.88.1-10+deb12u5", "0.0.26-1", "1a", "1~", "1-0~",
]  # fmt: skip


def _versions() -> list[str]:
    if BOOKWORM.exists():
        proc = subprocess.run(["lz4", "-dc", str(BOOKWORM)], capture_output=True, check=False)
        if proc.returncode == 0:
            found = re.findall(rb"^Version: (\S+)$", proc.stdout, re.MULTILINE)
            return sorted({v.decode() for v in found})
    rng = random.Random(18)
    parts = ["1", "0", "2", "10", ".", "+", "~", "a", "b", "rc", "deb12u", "-", "+b"]
    out = set(TRICKY)
    while len(out) < 5000:
        v = "".join(rng.choice(parts) for _ in range(rng.randint(1, 8))).strip("-")
        if rng.random() < 0.2:
            v = f"{rng.randint(1, 3)}:{v}"
        out.add(v)
    return sorted(v for v in out if _valid(v))


def _valid(version: str) -> bool:
    try:
        Version(version)
    except ValueError:
        return False
    return True


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def test_compare_versions_agrees_with_python_debian() -> None:
    versions = _versions()
    rng = random.Random(1)
    ordered = sorted(versions, key=version_key)
    pairs = list(itertools.pairwise(ordered))
    pairs += [(rng.choice(versions), rng.choice(versions)) for _ in range(5000)]
    pairs += [(a, b) for a in TRICKY for b in TRICKY]
    wrong = [
        (a, b) for a, b in pairs if _sign(compare_versions(a, b)) != _sign(version_compare(a, b))
    ]
    assert wrong == []
