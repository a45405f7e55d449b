"""What every API function shares: the error boundary, running coroutines from sync code,
opening the store, and the checks of options several commands take."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from mirrorkit.errors import MirrorkitError, UsageError
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import Store, default_store_path, storage_error
from mirrorkit.store.locks import waiting

if TYPE_CHECKING:
    import logging

    from mirrorkit.mirror import UpdateOptions


def log() -> logging.Logger:
    """The API's logger. ``logging`` is imported at first use: 5 ms of every CLI start-up
    (``mirror list``, ``--version``) otherwise, for records only ``-v`` shows."""
    import logging

    return logging.getLogger("mirrorkit.api")


StrPath = str | os.PathLike[str]
_P = ParamSpec("_P")
_T = TypeVar("_T")


# --- the boundary -----------------------------------------------------------------------------


def lock_wait(value: object) -> float | None:
    """A function's ``wait=``: how many seconds its locks may wait (None: fail at once)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise UsageError(
            f"wait must be a number of seconds >= 0, not {value!r}",
            "give --wait SECONDS (0, or leave it out, to fail at once when a lock is held).",
        )
    return float(value)


def waiting_as_asked(kwargs: dict[str, Any]) -> AbstractContextManager[None]:
    """The call's ``wait=`` for every lock it takes; none given, the caller's (an API function
    calling another keeps its caller's wait)."""
    wait = lock_wait(kwargs.get("wait"))
    return nullcontext() if wait is None else waiting(wait)


def boundary(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Only MirrorkitError leaves the API: a disk error becomes a StorageError naming the file,
    anything else a MirrorkitError that keeps the original as its ``__cause__``. A ``wait=``
    keyword is how long every lock the call takes may wait (``store/locks.py``)."""

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            with waiting_as_asked(kwargs):
                return fn(*args, **kwargs)
        except MirrorkitError:
            raise
        except OSError as exc:
            raise storage_error(exc.filename or "?", exc) from exc
        except Exception as exc:
            log().debug("%s failed unexpectedly", fn.__name__, exc_info=True)
            raise MirrorkitError(
                f"{fn.__name__}: unexpected {type(exc).__name__}: {exc}",
                "this is a bug in mirrorkit; please report it with the command that caused it.",
            ) from exc

    return call


def boundary_async(
    fn: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """:func:`boundary` for coroutine functions."""

    @functools.wraps(fn)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            with waiting_as_asked(kwargs):
                return await fn(*args, **kwargs)
        except MirrorkitError:
            raise
        except OSError as exc:
            raise storage_error(exc.filename or "?", exc) from exc
        except Exception as exc:
            log().debug("%s failed unexpectedly", fn.__name__, exc_info=True)
            raise MirrorkitError(
                f"{fn.__name__}: unexpected {type(exc).__name__}: {exc}",
                "this is a bug in mirrorkit; please report it with the command that caused it.",
            ) from exc

    return call


def run_sync(start: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to the end from synchronous code. Inside a running event loop (a sync
    API function called from async code) it runs on a thread with a loop of its own: the
    caller's loop is blocked for the call, as by any blocking function, but not broken."""
    import asyncio  # here: most commands never start a loop, and asyncio costs start-up time
    import concurrent.futures
    import contextvars

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mirrorkit") as pool:
        # In the caller's context: the store locks it holds are the call's (store/locks.py).
        context = contextvars.copy_context()
        return pool.submit(context.run, lambda: asyncio.run(start())).result()


def open_store(store: StrPath | None) -> Store:
    """The store at ``store`` (default as ``--store``). Nothing is created here: a command that
    writes takes the store's lock, which creates the store (a new one included), and only after
    its arguments, profile and keyrings checked out; a read of a store that is not there finds
    nothing and leaves the disk alone."""
    root = Path(store) if store is not None else default_store_path()
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"store {root}: not a directory", "give --store (or $MIRRORKIT_HOME) a directory."
        )
    log().debug("store %s", root)
    return Store(root)


def reporter_or_null(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else NullReporter()


def gnupghome_arg(gnupghome: StrPath | None) -> str | None:
    return None if gnupghome is None else os.fspath(gnupghome)


# --- argument checks shared by several commands ------------------------------------------------


def parse_rate(text: str) -> float:
    """``500k``, ``10M``, ``1.5m/s`` -> bytes per second (decimal units)."""
    units = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
    t = text.strip().lower().removesuffix("/s").removesuffix("b")
    unit = t[-1] if t and t[-1] in "kmg" else ""
    try:
        value = float(t[: len(t) - len(unit)]) * units[unit]
    except ValueError as exc:
        raise UsageError(
            f"invalid rate {text!r}", "use e.g. 500k, 10M (bytes per second)."
        ) from exc
    if value <= 0:
        raise UsageError(f"invalid rate {text!r}: must be positive")
    return value


def update_options(
    jobs: int,
    max_tries: int,
    limit_rate: str | float | None,
    allow_expired: bool,
    allow_rollback: bool,
    allow_releaseinfo_change: bool,
    proxy: str | None = None,
    ca_bundle: StrPath | None = None,
    auth_file: StrPath | Sequence[StrPath] | None = None,
    *,
    dry_run: bool = False,
    no_space_check: bool = False,
) -> UpdateOptions:
    from mirrorkit import fetch, mirror
    from mirrorkit.net.config import network_config

    if jobs < 1 or max_tries < 1:
        raise UsageError("--jobs and --max-tries must be at least 1")
    rate = parse_rate(limit_rate) if isinstance(limit_rate, str) else limit_rate
    if rate is not None and rate <= 0:
        raise UsageError(f"invalid rate {limit_rate!r}: must be positive")
    return mirror.UpdateOptions(
        jobs=jobs,
        max_tries=max_tries,
        limit_rate=rate,
        allow_expired=allow_expired,
        allow_rollback=allow_rollback,
        allow_releaseinfo_change=allow_releaseinfo_change,
        retry=fetch.RetryPolicy(max_tries=max_tries),
        network=network_config(proxy, ca_bundle, auth_file),
        dry_run=dry_run,
        space_check=not no_space_check,
    )


def normalise_fingerprint(text: str) -> str:
    """A fingerprint as gpg prints it (``ABCD 1234 ...``) or typed in lower case -> the 40 or
    64 upper-case hex digits mirrorkit stores (what it is checked against: mirror.add)."""
    return re.sub(r"\s+", "", text).upper()


def keyring_path(path: StrPath) -> str:
    """Absolute: the record must name the same file whatever directory later commands run in."""
    return str(Path(path).expanduser().resolve())


def split_list(values: Sequence[str]) -> list[str]:
    """``["main,contrib", "non-free"]`` -> ``["main", "contrib", "non-free"]``: aptly's users
    type comma lists, and the option repeats too."""
    if isinstance(values, str):
        values = [values]
    return [v.strip() for value in values for v in value.split(",") if v.strip()]
