"""The suite checks the system tools it runs once, before the first test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.tools import TOOLS, debian_packages, missing_message

REPO = Path(__file__).resolve().parents[2]


def _path_without(tmp_path: Path, hidden: set[str]) -> str:
    """A PATH of one directory linking every program on the real PATH but ``hidden``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = bin_dir / name
            if name not in hidden and not os.path.lexists(link):
                link.symlink_to(Path(directory, name))
    return str(bin_dir)


def test_missing_tools_stop_the_run_with_one_message(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _path_without(tmp_path, {"apt-ftparchive", "mmdebstrap"})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert "missing: apt-ftparchive (apt-get install apt-utils)" in out
    assert "missing: mmdebstrap (apt-get install mmdebstrap)" in out
    assert "apt-get install apt-utils mmdebstrap" in out
    assert " passed" not in out and " failed" not in out  # no test ran


def test_the_message_names_each_tool_and_its_package() -> None:
    text = missing_message({"lz4": "lz4", "xz": "xz-utils"})
    assert text.splitlines()[1:] == [
        "  missing: lz4 (apt-get install lz4)",
        "  missing: xz (apt-get install xz-utils)",
        "Install them all with: apt-get install lz4 xz-utils",
    ]


def test_ci_installs_exactly_the_listed_packages() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.tools"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == debian_packages() == sorted(set(TOOLS.values()))
    assert "python3 -m tests.helpers.tools" in (REPO / ".ci" / "run").read_text()
