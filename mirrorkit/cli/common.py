"""What every command shares: the Typer apps, the global options, errors to exit codes, the
tqdm reporter, and small renderers (JSON, units, plurals)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from mirrorkit._version import __version__
from mirrorkit.cli import signals
from mirrorkit.errors import MirrorkitError
from mirrorkit.store import default_store_path
from mirrorkit.store.locks import set_wait_reporter

if TYPE_CHECKING:
    from tqdm import tqdm
    from typer._click.core import Context as ClickContext  # typer 0.28 vendors click

    from mirrorkit.models import ExtraRef


@dataclass
class Globals:
    store: Path
    quiet: bool = False
    verbose: bool = False
    gnupghome: str | None = None
    # The network (--proxy, --ca-bundle, --auth-file): None = not given (environment, profile).
    proxy: str | None = None
    ca_bundle: Path | None = None
    auth_files: list[Path] | None = None
    # --wait: seconds a command waits for a lock another command holds (None: fails at once).
    wait: float | None = None


G = Globals(store=Path())

# Options of the main command that may also follow the subcommand ("publish fs SNAP DIR -q"):
# name -> whether it takes a value.
_GLOBAL_OPTIONS = {"--store": True, "--gnupghome": True, "-q": False, "--quiet": False,
                   "-v": False, "--verbose": False, "--proxy": True, "--ca-bundle": True,
                   "--auth-file": True, "--wait": True}  # fmt: skip


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
        if takes_value is None and re.fullmatch(r"-[qv]{2,}", arg):
            takes_value = False  # -qv, -vq: flags given together
        if takes_value is None:
            rest.append(arg)
        elif takes_value and "=" not in arg and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        else:
            front.append(arg)
        i += 1
    return front + rest


def _argument_metavar(self: TyperArgument, ctx: ClickContext, *, usage: bool = False) -> str:
    """Positionals as man pages and click write them: ``NAME`` when required, ``[NAME]`` when
    not (typer 0.28 writes ``{name}`` and ``[name]``, lower case, beside ``<str>`` options)."""
    var = self.metavar or (self.name or "").upper()
    if self.nargs != 1 and not var.endswith("..."):
        var += "..."
    if usage and not self.required and not var.startswith("["):
        return f"[{var}]"
    return var


TyperArgument.make_metavar = _argument_metavar  # type: ignore[method-assign]


class AlternativesCommand(TyperCommand):
    """A command whose positionals are required unless an option replaces them all, e.g.
    ``mirror add NAME URL SUITE --keyring FILE`` or ``mirror add --profile FILE``: the usage
    line says so instead of showing the positionals as optional."""

    usage = ""

    def collect_usage_pieces(self, ctx: ClickContext) -> list[str]:
        return [self.options_metavar or "[OPTIONS]", self.usage]


def command_with_usage(usage: str) -> type[AlternativesCommand]:
    return type("Command", (AlternativesCommand,), {"usage": usage})


class MainGroup(TyperGroup):
    """The root command: global options are accepted after the subcommand too."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


app = typer.Typer(
    cls=MainGroup,
    help="Verified offline snapshot mirrors of Debian/Ubuntu APT archives.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell): README says how.
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help text: "[default: ...]" must print as written, not be eaten as rich markup.
    rich_markup_mode=None,
)
mirror_app = typer.Typer(help="Follow upstream suites, verified.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Immutable, dated package sets.", no_args_is_help=True)
publish_app = typer.Typer(help="Publish snapshots as signed APT trees.", no_args_is_help=True)
channel_app = typer.Typer(
    help="Pointers such as dev, staging and prod at snapshots.", no_args_is_help=True
)
bundle_app = typer.Typer(
    help="Signed bundles that carry snapshots across an air gap.", no_args_is_help=True
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


@contextmanager
def user_errors() -> Iterator[None]:
    """Run one operation: a signal interrupts it (see :mod:`mirrorkit.cli.signals`), and the
    core's errors become a message, a hint and an exit code."""
    try:
        with signals.interruptible():
            yield
    except MirrorkitError as exc:
        if signals.received() is not None:  # what the signal caused: report the signal
            raise typer.Exit(signals.report()) from None
        if (
            G.verbose
            and exc.__cause__ is not None
            and not isinstance(exc.__cause__, MirrorkitError | OSError)
        ):  # an unexpected error: the traceback is what a bug report needs
            import logging

            logging.getLogger("mirrorkit").error("caused by", exc_info=exc.__cause__)
        fail(exc)
    except BaseException as exc:
        if signals.is_interruption(exc):
            raise typer.Exit(signals.report()) from None
        raise


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
            unit_divisor=1000,  # decimal MB, as every summary line counts them
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
    """Bytes as every message writes them: decimal megabytes, one decimal."""
    return f"{n / 1e6:.1f} MB"


def extra_line(e: ExtraRef) -> str:
    """``main/i18n/Translation-en: 3 descriptions``, ``main/Contents-amd64: 12 files``."""
    from mirrorkit.extras import TRANSLATION, published_path

    noun = "description" if e.kind == TRANSLATION else "file"
    return f"{published_path(e)}: {plural(e.entries, noun)}"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 package``, ``2 packages`` (``nouns`` where adding an s is wrong)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mirrorkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    store: Path | None = typer.Option(
        None,
        "--store",
        metavar="DIR",
        help="Store directory [default: $MIRRORKIT_HOME or XDG data dir].",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and results."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More detail on stderr."),
    gnupghome: str | None = typer.Option(
        None, "--gnupghome", metavar="DIR", help="GnuPG home for signing [default: $GNUPGHOME]."
    ),
    proxy: str | None = typer.Option(
        None,
        "--proxy",
        metavar="URL",
        help="HTTP(S) proxy for every download (http://USER:PASS@HOST:PORT); 'apt' for apt's "
        "Acquire::http(s)::Proxy, 'none' for none [default: $https_proxy, $http_proxy, "
        "$all_proxy, $no_proxy].",
    ),
    ca_bundle: Path | None = typer.Option(
        None,
        "--ca-bundle",
        metavar="FILE",
        help="CA certificates (PEM) that verify TLS servers [default: $SSL_CERT_FILE, "
        "$SSL_CERT_DIR, else the built-in store].",
    ),
    auth_file: list[Path] | None = typer.Option(
        None,
        "--auth-file",
        metavar="FILE",
        help="Credentials in apt's auth.conf format; repeatable [default: /etc/apt/auth.conf, "
        "/etc/apt/auth.conf.d/*.conf, ~/.netrc].",
    ),
    wait: float | None = typer.Option(
        None,
        "--wait",
        metavar="SECONDS",
        min=0,
        help="Wait up to SECONDS for a mirror, snapshot, channel or publish target another "
        "command is changing (saying so on stderr) [default: fail at once, naming it].",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    G.store = store or default_store_path()
    G.quiet, G.verbose, G.gnupghome = quiet, verbose, gnupghome
    G.proxy, G.ca_bundle, G.auth_files = proxy, ca_bundle, auth_file or None
    G.wait = wait
    # A command that has to wait for a lock says what for (the core only hands over the line).
    set_wait_reporter(None if quiet else lambda line: err(f"{line} ..."))
    # -v shows what the core logs (logging.getLogger("mirrorkit.*")) on stderr. logging is
    # imported only then (or when something else loaded it): 5 ms of every start-up.
    if verbose and not quiet:
        _show_logs(True)
    elif "logging" in sys.modules:
        _show_logs(False)


_LOG_HANDLER: Any = None


def _show_logs(on: bool) -> None:
    import logging

    global _LOG_HANDLER

    class EchoHandler(logging.Handler):
        """Log records on stderr as it is when the record is made (the test runner swaps it)."""

        def emit(self, record: logging.LogRecord) -> None:
            err(f"{record.levelname.lower()}: {record.name}: {record.getMessage()}")

    if _LOG_HANDLER is None:
        _LOG_HANDLER = EchoHandler()
    logger = logging.getLogger("mirrorkit")
    if on:
        logger.setLevel(logging.DEBUG)
        if _LOG_HANDLER not in logger.handlers:
            logger.addHandler(_LOG_HANDLER)
    else:
        logger.setLevel(logging.NOTSET)
        logger.removeHandler(_LOG_HANDLER)
