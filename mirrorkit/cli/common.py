"""What every command shares: the Typer apps, the global options, errors to exit codes, the
tqdm reporter, and small renderers (JSON, units, plurals)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from mirrorkit._version import __version__
from mirrorkit.errors import MirrorkitError
from mirrorkit.store import default_store_path

if TYPE_CHECKING:
    from tqdm import tqdm
    from typer._click.core import Context as ClickContext  # typer 0.28 vendors click


@dataclass
class Globals:
    store: Path
    quiet: bool = False
    verbose: bool = False
    gnupghome: str | None = None


G = Globals(store=Path())

# Options of the main command that may also follow the subcommand ("publish fs SNAP DIR -q"):
# name -> whether it takes a value.
_GLOBAL_OPTIONS = {"--store": True, "--gnupghome": True, "-q": False, "--quiet": False,
                   "-v": False, "--verbose": False}  # fmt: skip


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move the global options to the front, where click parses them, wherever they were
    given (``publish fs SNAP DIR -q``). Nothing after ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        takes_value = _GLOBAL_OPTIONS.get(name)
        if takes_value is None:
            rest.append(arg)
        elif takes_value and "=" not in arg and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        else:
            front.append(arg)
        i += 1
    return front + rest


class MainGroup(TyperGroup):
    """The root command: global options are accepted after the subcommand too."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


app = typer.Typer(
    cls=MainGroup,
    help="Verified offline snapshot mirrors of Debian/Ubuntu APT archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: "[default: ...]" must print as written, not be eaten as rich markup.
    rich_markup_mode=None,
)
mirror_app = typer.Typer(help="Mirrors: follow an upstream suite.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Snapshots: immutable, dated package sets.", no_args_is_help=True)
publish_app = typer.Typer(help="Publish a snapshot as a signed APT tree.", no_args_is_help=True)
channel_app = typer.Typer(help="Channels: dev/staging/prod pointers.", no_args_is_help=True)
bundle_app = typer.Typer(
    help="Air-gap bundles: signed, verifiable, incremental, split into volumes.",
    no_args_is_help=True,
)
app.add_typer(mirror_app, name="mirror")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(publish_app, name="publish")
app.add_typer(channel_app, name="channel")

JSON = typer.Option(False, "--json", help="Machine-readable output on stdout.")


def err(message: str) -> None:
    typer.echo(message, err=True)


def info(message: str) -> None:
    """A log line on stderr: what happened, beside the results on stdout. Not with -q."""
    if not G.quiet:
        err(message)


def fail(exc: MirrorkitError) -> NoReturn:
    err(f"error: {exc.message}")
    if exc.hint:
        err(f"hint: {exc.hint}")
    raise typer.Exit(exc.exit_code)


TERMINATED = threading.Event()


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the core's errors into a message, a hint and an exit code."""
    try:
        yield
    except MirrorkitError as exc:
        if (
            G.verbose
            and exc.__cause__ is not None
            and not isinstance(exc.__cause__, MirrorkitError | OSError)
        ):  # an unexpected error: the traceback is what a bug report needs
            logging.getLogger("mirrorkit").error("caused by", exc_info=exc.__cause__)
        fail(exc)
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if TERMINATED.is_set() else "interrupted"
        err(f"error: {how}; nothing was committed.")
        err("hint: run the same command again (a mirror update resumes its downloads).")
        raise typer.Exit(143 if TERMINATED.is_set() else 130) from None


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (systemd, kill, a CI timeout) unwinds like Ctrl-C: temp files and staging
    directories are removed on the way out, which the default action (exit at once) skips."""
    TERMINATED.set()
    raise KeyboardInterrupt


class TqdmReporter:
    """Progress bars on a terminal (files and bytes); log lines unless --quiet."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None
        self._files = 0
        self._total_files = 0

    def info(self, message: str) -> None:
        if not G.quiet:
            err(message)

    def debug(self, message: str) -> None:
        if G.verbose and not G.quiet:
            err(message)

    def start(self, label: str, files: int, total_bytes: int) -> None:
        self._files, self._total_files = 0, files
        if G.quiet or not sys.stderr.isatty() or files == 0:
            return
        from tqdm import tqdm  # here, not at start-up: most runs have no terminal to draw on

        self._bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(f"0/{files} files")

    def advance(self, files: int, nbytes: int) -> None:
        if self._bar is None:
            return
        if nbytes:
            self._bar.update(nbytes)
        if files:
            self._files += files
            self._bar.set_postfix_str(f"{self._files}/{self._total_files} files", refresh=False)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def plain(value: Any) -> str:
    """A record's value for people: lists one item per line, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "".join(f"\n      {plain(v)}" for v in value) or "-"
    return "-" if value is None else str(value)


def field_line(indent: str, key: str, value: Any) -> str:
    text = plain(value)
    return f"{indent}{key}:{text}" if text.startswith("\n") else f"{indent}{key}: {text}"


def emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mirrorkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    store: Path | None = typer.Option(
        None, "--store", help="Store directory [default: $MIRRORKIT_HOME or XDG data dir]."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and results."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More detail on stderr."),
    gnupghome: str | None = typer.Option(
        None, "--gnupghome", help="GnuPG home for signing [default: $GNUPGHOME]."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    G.store = store or default_store_path()
    G.quiet, G.verbose, G.gnupghome = quiet, verbose, gnupghome
    # -v shows what the core logs (logging.getLogger("mirrorkit.*")) on stderr.
    logger = logging.getLogger("mirrorkit")
    if verbose and not quiet:
        logger.setLevel(logging.DEBUG)
        if _LOG_HANDLER not in logger.handlers:
            logger.addHandler(_LOG_HANDLER)
    else:
        logger.setLevel(logging.NOTSET)
        logger.removeHandler(_LOG_HANDLER)


class _EchoHandler(logging.Handler):
    """Log records on stderr as it is when the record is made (the test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        err(f"{record.levelname.lower()}: {record.name}: {record.getMessage()}")


_LOG_HANDLER = _EchoHandler()
