"""The command line: parse, call ONE function of :mod:`mirrorkit.api`, render the result (text,
or JSON with ``--json``). The only importer of typer and tqdm.

Exit codes: 0 success, 1 the operation failed, 2 usage error, 130 interrupted (143 on SIGTERM,
129 on SIGHUP; see ``signals``).
Results go to stdout (``--json`` where it lists, reports or changes something); progress and
logs go to stderr.

Modules: ``common`` (the apps, global options, errors to exit codes, tqdm, renderers),
``mirrors`` (mirror *, sync), ``snapshots`` (snapshot *), ``channels`` (channel *, gc),
``exports`` (publish *, serve, bundle *), ``repos`` (repo *).
"""

from __future__ import annotations

import sys

# httpx's __init__ tries to import its own command-line client (httpx._main), which imports
# rich when that is installed (typer installs it): 25 ms of every command that downloads, for
# a client this program never runs. A None in sys.modules makes that one import fail, and
# httpx then defines its fallback main() (what it does when rich is missing).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# The command modules register their commands on the apps when imported.
from mirrorkit.cli import (  # noqa: E402,F401
    apiserver,
    channels,
    exports,
    mirrors,
    repos,
    signals,
    snapshots,
)
from mirrorkit.cli.common import TqdmReporter, app, user_errors  # noqa: E402

__all__ = ["TqdmReporter", "app", "main", "user_errors"]


def main() -> None:
    signals.install()
    try:
        app()  # always ends with SystemExit (click's standalone mode)
    except SystemExit:
        if signals.received() is not None:  # e.g. during parsing or rendering
            raise SystemExit(signals.report()) from None
        raise
