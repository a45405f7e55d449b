"""The publish plan is cheap to import: laying out a suite loads no stage (mirror, snapshot,
channel, gpg, resolve) and not boto3; the stage's entry points import them when they run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("mirrorkit.mirror", "mirrorkit.snapshot", "mirrorkit.channel", "mirrorkit.gpg",
         "mirrorkit.resolve", "gnupg", "boto3", "httpx")  # fmt: skip


@pytest.mark.parametrize(
    "module",
    [
        "mirrorkit.publish.plan",
        "mirrorkit.publish.executor",
        "mirrorkit.publish.records",
        "mirrorkit.publish.fs",
        "mirrorkit.publish",
    ],
)
def test_importing_the_plan_loads_no_stage(module: str) -> None:
    code = f"import sys, {module}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.split() == [], f"importing {module} loaded {proc.stdout.strip()}"
