"""Running mirrorkit from tests: in-process through the real CLI (typer's runner)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from mirrorkit.cli import app


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(store: Path, *args: str, gnupghome: Path | None = None) -> Result:
    """``mirrorkit --store STORE [--gnupghome G] ARGS...`` through the real CLI."""
    argv = ["--store", str(store)]
    if gnupghome is not None:
        argv += ["--gnupghome", str(gnupghome)]
    result = CliRunner().invoke(app, [*argv, *args], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)
