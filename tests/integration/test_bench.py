"""scripts/bench still starts, and its measured children still run mirrorkit's code (the
figures themselves are the bench's business, not the suite's)."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

from tests.helpers.archive import Archive

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_bench_lists_its_sections_and_refuses_unknown_ones() -> None:
    proc = _bench("--help")
    assert proc.returncode == 0, proc.stderr
    assert "parse, download, proxy, resolve, bundle" in proc.stdout
    proc = _bench("nonsense")
    assert proc.returncode == 2
    assert "unknown section(s) nonsense" in proc.stderr


def test_bench_parse_children_count_every_stanza(archive: Archive, tmp_path: Path) -> None:
    packages = tmp_path / "Packages"
    xz = archive.dists / "main/binary-amd64/Packages.xz"
    packages.write_bytes(lzma.decompress(xz.read_bytes()))
    stanzas = packages.read_text().count("Package: ")
    assert stanzas == 7
    for mode in ("parse-mirrorkit", "parse-deb822"):
        proc = _bench("_child", mode, str(packages))
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["count"] == stanzas
        assert result["seconds"] >= 0
