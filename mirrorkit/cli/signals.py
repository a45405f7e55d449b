"""SIGINT, SIGTERM and SIGHUP: one clean message, the right exit code, and an end within a few
seconds whatever the process was doing.

A signal unwinds the running operation like Ctrl-C, so that its ``finally`` blocks remove temp
files and staging directories. How depends on where it lands:

- in synchronous code, the handler raises KeyboardInterrupt;
- inside the event loop (``mirror update``, ``sync``), a KeyboardInterrupt raised in the handler
  would land in whichever task happens to run: that task ends with an exception nobody
  retrieves (the "Task exception was never retrieved" traceback) and the others are left to
  ``asyncio.run``'s shutdown, which can wait on them forever. The handler cancels every task
  instead, as ``asyncio.run`` does for its own Ctrl-C, and the pipeline unwinds through its
  TaskGroups and ``finally`` blocks;
- outside an operation (parsing the command line, rendering a result), nothing is raised: the
  command ends with the interrupted exit code as soon as it returns.

Whatever happens next, a watchdog thread ends the process :data:`GRACE` seconds after the
signal (a second signal ends it at once). It exits with ``os._exit``: the store lock is an
``flock``, released by the kernel with the process, and whatever a cut-short cleanup leaves in
the store's ``tmp/`` is reclaimed by the next run and by ``gc``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

GRACE = 5.0
"""Seconds an interrupted command may take to clean up before the process exits anyway."""

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
_SAID = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "terminated (SIGHUP)",
}

_received: list[int] = []  # the first signal; more only matter as "now"
_reported = threading.Event()
_say = threading.Lock()
_active = 0  # operations running (see interruptible)


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP in this (the main) thread, for the whole process."""
    for signum in CODES:
        signal.signal(signum, _on_signal)


def received() -> int | None:
    """The first signal received, if any."""
    return _received[0] if _received else None


def exit_code() -> int:
    signum = received()
    return CODES[signal.Signals(signum)] if signum is not None else 130


def report() -> int:
    """Print the one message (once, from whichever thread gets here first); the exit code."""
    with _say:
        if not _reported.is_set():
            _reported.set()
            signum = received()
            said = _SAID[signal.Signals(signum)] if signum is not None else "interrupted"
            try:
                sys.stderr.write(
                    f"error: {said}; nothing was committed.\n"
                    "hint: run the same command again (a mirror update resumes its downloads).\n"
                )
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed (a dead terminal after SIGHUP)
                pass
    return exit_code()


def is_interruption(exc: BaseException) -> bool:
    """KeyboardInterrupt, or the cancellation :func:`_on_signal` caused in the event loop."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    asyncio = sys.modules.get("asyncio")  # not imported: no event loop was ever cancelled
    return bool(_received) and asyncio is not None and isinstance(exc, asyncio.CancelledError)


@contextmanager
def interruptible() -> Iterator[None]:
    """While an operation runs, a signal interrupts it (see the module docstring)."""
    global _active
    _active += 1
    try:
        if _received:  # came while the command line was parsed: do not start
            raise KeyboardInterrupt
        yield
    finally:
        _active -= 1


def handled() -> None:
    """The command stopped on the signal as its normal way to end (``serve``): no message,
    no interrupted exit code, no watchdog."""
    _received.clear()
    _reported.set()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _received:  # a second signal: the user means now
        os._exit(report())
    _received.append(signum)
    _quiet_shutdown()
    threading.Thread(target=_watchdog, name="mirrorkit-signal-watchdog", daemon=True).start()
    if not _active:
        return
    loop = _running_loop()
    if loop is None:
        raise KeyboardInterrupt
    import asyncio

    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.call_soon_threadsafe(lambda: None)  # wake the selector, so the cancellations run


def _running_loop() -> AbstractEventLoop | None:
    """The event loop running in this thread (a signal handler runs in the main thread)."""
    if "asyncio" not in sys.modules:
        return None
    import asyncio

    loop = asyncio._get_running_loop()
    return loop if loop is not None and not loop.is_closed() else None


def _quiet_shutdown() -> None:
    """What an unwinding pipeline may leave for the interpreter to complain about (a task whose
    exception nobody retrieved, a coroutine never awaited) is a consequence of the signal, not
    news: the one message says what happened."""
    logging.getLogger("asyncio").disabled = True
    sys.unraisablehook = lambda unraisable: None


def _watchdog() -> None:
    time.sleep(GRACE)
    if _received:  # not handled() meanwhile
        os._exit(report())
