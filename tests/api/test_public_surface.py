"""The public surface (``import mirrorkit``) changes only on purpose: its names, every
function's signature and every error's base are compared with ``public_api.txt``.

After an intended change, regenerate the file and review its diff:
    MIRRORKIT_WRITE_API=1 python -m pytest tests/api/test_public_surface.py
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import mirrorkit

EXPECTED = Path(__file__).with_name("public_api.txt")
REPO = Path(__file__).resolve().parents[2]


def describe() -> str:
    lines = []
    for name in sorted(mirrorkit.__all__):
        obj = getattr(mirrorkit, name)
        if name == "__version__":
            lines.append("__version__: str")
        elif inspect.isclass(obj):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            lines.append(f"class {name}({bases})")
        else:
            kind = "async def" if inspect.iscoroutinefunction(obj) else "def"
            lines.append(f"{kind} {name}{inspect.signature(obj)}")
    return "\n".join(lines) + "\n"


def test_the_public_surface_is_the_one_checked_in() -> None:
    got = describe()
    if os.environ.get("MIRRORKIT_WRITE_API"):
        EXPECTED.write_text(got)
    assert got == EXPECTED.read_text(), (
        "the public API changed; if on purpose, regenerate tests/api/public_api.txt "
        "(see this module's docstring) and say so in the changelog"
    )


def test_every_name_in_all_exists_and_every_error_is_exported() -> None:
    from mirrorkit import errors

    for name in mirrorkit.__all__:
        assert hasattr(mirrorkit, name), name
    defined = {
        n for n, v in vars(errors).items() if inspect.isclass(v) and v.__module__ == errors.__name__
    }
    assert defined <= set(mirrorkit.__all__)
    assert issubclass(mirrorkit.QueryError, mirrorkit.MirrorkitError)
    assert issubclass(mirrorkit.UnmetDependenciesError, mirrorkit.MirrorkitError)


def test_the_lazy_names_are_the_api_functions() -> None:
    from mirrorkit import api

    lazy = {n for n, m in mirrorkit._LAZY.items() if m == "mirrorkit.api"}
    assert lazy == set(api.__all__) - {"normalise_fingerprint", "parse_rate"}
    assert lazy <= set(mirrorkit.__all__) and set(mirrorkit.__all__) <= set(dir(mirrorkit))


def test_gc_and_sync_stay_functions_once_every_stage_is_loaded() -> None:
    """A submodule named like an API function would replace it on the package when loaded."""
    import mirrorkit.cli
    import mirrorkit.garbage
    import mirrorkit.syncjob

    assert inspect.isfunction(mirrorkit.gc) and inspect.isfunction(mirrorkit.sync)
    for name in mirrorkit.__all__:
        assert not inspect.ismodule(getattr(mirrorkit, name)), name


def test_importing_mirrorkit_loads_no_stage() -> None:
    """Start-up stays cheap: the CLI and ``import mirrorkit`` load stages only when called."""
    code = (
        "import sys, mirrorkit, mirrorkit.cli; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('mirrorkit'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    stages = {"mirrorkit.mirror", "mirrorkit.snapshot", "mirrorkit.bundle", "mirrorkit.publish",
              "mirrorkit.resolve", "mirrorkit.fetch", "mirrorkit.garbage", "mirrorkit.syncjob",
              "mirrorkit.channel", "mirrorkit.archive", "mirrorkit.gpg"}  # fmt: skip
    assert not stages & set(out), out
    # A stage's import runs the package's __init__, which must not drag the API in.
    code = "import sys, mirrorkit.errors; print('mirrorkit.api' in sys.modules)"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.split()  # fmt: skip
    assert alone == ["False"]
    code = "import sys, mirrorkit.cli; print('asyncio' in sys.modules, 'httpx' in sys.modules)"
    out2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stdout.split()  # fmt: skip
    assert out2 == ["False", "False"]
