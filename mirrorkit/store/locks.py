"""The store's locks: the whole store, or named resources under a shared store lock.

```
STORE/lock                          the store lock: exclusive for gc and other whole-store work,
                                    shared by every command that locks named resources
STORE/locks/<kind>/<name>.lock      one resource (mirror/NAME, snapshot/NAME, channel/NAME,
                                    repo/NAME, publish/<target digest>), exclusive
STORE/locks/<kind>.lock             a resource without a name (bundle-import)
```
All are ``flock`` locks, so the kernel releases them when their holder exits, however it ends.
flock locks belong to an open file description: two threads of one process that open the file
separately exclude each other as two processes do, so each operation opens its own descriptors
and keeps its own re-entrancy count (``_HELD``), never sharing a descriptor with another.

Resources are taken in sorted order after the store lock, so two commands never wait for each
other in a cycle. A nested ``locked`` in the same operation (see ``_HELD``) adds what it names
to what the operation holds (out of order: with ``wait`` it is bounded, without it fails at
once; it never hangs). Lock files are never removed while the store is in use: removing one
another process has open would let two processes "hold" the same resource (``gc``, holding the
whole store, may remove them).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from mirrorkit.errors import StorageError, StoreLockedError, UsageError
from mirrorkit.store.files import storage_error

# A resource is KIND or KIND/NAME; each part is a safe file name (mirror, snapshot and channel
# names are checked the same way where they are made).
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@~-]{0,199}$")
# Polling (not a blocking flock and a timer) bounds the wait in every thread: a signal cannot
# interrupt a blocking flock on a thread other than the main one.
_POLL_FIRST, _POLL_MAX = 0.02, 0.25

WaitReporter = Callable[[str], None]
_wait_reporter: WaitReporter | None = None


def set_wait_reporter(reporter: WaitReporter | None) -> None:
    """Who hears "waiting for ..." when a command has to wait for a lock. The CLI shows it on
    stderr; by default (``None``) it goes to ``logging.getLogger("mirrorkit.lock")`` at INFO."""
    global _wait_reporter
    _wait_reporter = reporter


def _report_wait(message: str) -> None:
    if _wait_reporter is not None:
        _wait_reporter(message)
        return
    import logging  # only when a command waits: 5 ms of every start-up otherwise

    logging.getLogger("mirrorkit.lock").info("%s", message)


# How long the running operation waits for a lock when ``locked`` is not told (``waiting``).
_WAIT: ContextVar[float | None] = ContextVar("mirrorkit_lock_wait", default=None)


@contextmanager
def waiting(seconds: float | None) -> Iterator[None]:
    """Within this block, ``locked(..., wait=None)`` waits up to ``seconds`` (None: fails at
    once). The API sets it from a function's ``wait=``, so that every lock the operation takes,
    however deep in the core, waits as the caller asked."""
    token = _WAIT.set(seconds)
    try:
        yield
    finally:
        _WAIT.reset(token)


def check_resource(resource: str) -> str:
    parts = resource.split("/")
    if not resource or not all(_PART.match(p) and ".." not in p for p in parts):
        # Names are checked where they are made; one that reaches a lock unchecked is refused
        # here rather than becoming a path.
        raise UsageError(
            f"invalid name {resource.partition('/')[2] or resource!r}",
            "use letters, digits and . _ + - (not starting with a punctuation mark).",
        )
    return resource


@dataclass
class _Held:
    """What one operation holds in one store: the store lock and its resources."""

    exclusive: bool = False
    depth: int = 0  # nested ``locked`` calls of this operation
    store_fd: int = -1
    resources: dict[str, int] = field(default_factory=dict)  # resource -> fd
    # The threads of one operation (asyncio.to_thread) share this record.
    guard: threading.Lock = field(default_factory=threading.Lock)


# What the running operation holds, per store root. A context variable, not a thread-local:
# asyncio tasks and asyncio.to_thread copy it, so work an operation hands to a worker thread is
# still that operation (re-entrant), while a thread started on its own (a server's request
# threads, threading.Thread) starts with nothing held and is excluded like another process.
# Each value is replaced, never changed in place, so copies taken earlier are unaffected.
_HELD: ContextVar[dict[Path, _Held] | None] = ContextVar("mirrorkit_store_locks", default=None)


class StoreLocks:
    """The locks of the store at ``root``; ``prepare`` creates the store before the first lock
    (a changing command on a new store creates it)."""

    def __init__(self, root: Path, prepare: Callable[[], None]) -> None:
        self.root = root
        self.store_lock = root / "lock"
        self.dir = root / "locks"
        self._prepare = prepare

    def depth(self) -> int:
        """How many ``locked`` calls the running operation is inside, in this store."""
        held = (_HELD.get() or {}).get(self.root.resolve())
        return 0 if held is None else held.depth

    def path(self, resource: str) -> Path:
        return self.dir / f"{check_resource(resource)}.lock"

    @contextmanager
    def locked(self, *resources: str, wait: float | None = None) -> Iterator[None]:
        for r in resources:
            check_resource(r)
        if wait is None:
            wait = _WAIT.get()
        if wait is not None and wait < 0:
            raise ValueError(f"wait must be >= 0 seconds, not {wait}")
        root = self.root.resolve()
        table = _HELD.get() or {}
        held = table.get(root)
        deadline = None if wait is None else time.monotonic() + wait
        token = None
        if held is None:
            held = _Held()
            self._open_store_lock(held, exclusive=not resources, deadline=deadline, wait=wait)
            token = _HELD.set({**table, root: held})
        elif not resources and not held.exclusive:
            # Upgrading a shared flock is not atomic (the kernel drops it first): a caller that
            # holds resources must not ask for the whole store.
            raise RuntimeError("the whole store cannot be locked inside a resource lock")
        taken: list[str] = []
        with held.guard:
            held.depth += 1
        try:
            if not held.exclusive:
                with held.guard:
                    for r in sorted(set(resources)):
                        if r not in held.resources:
                            held.resources[r] = self._take(self.path(r), r, deadline, wait)
                            taken.append(r)
            yield
        finally:
            with held.guard:
                for r in taken:
                    os.close(held.resources.pop(r))  # closing the last descriptor releases it
                held.depth -= 1
            if token is not None:
                os.close(held.store_fd)
                held.store_fd, held.exclusive = -1, False
                _HELD.reset(token)

    def _open_store_lock(
        self, held: _Held, *, exclusive: bool, deadline: float | None, wait: float | None
    ) -> None:
        try:
            self._prepare()
        except StorageError:
            raise
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        held.store_fd = self._take(self.store_lock, None, deadline, wait, exclusive=exclusive)
        held.exclusive = exclusive

    def _take(
        self,
        path: Path,
        resource: str | None,
        deadline: float | None,
        wait: float | None,
        *,
        exclusive: bool = True,
    ) -> int:
        """An open descriptor of ``path`` holding its flock; StoreLockedError at the deadline."""
        try:
            if resource is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only store, or one of another user
            raise storage_error(path, exc) from exc
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        started, pause, told = time.monotonic(), _POLL_FIRST, False
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise storage_error(path, exc) from exc
                now = time.monotonic()
                if deadline is None or now >= deadline:
                    raise self._locked_error(fd, resource, exclusive, wait, now - started)
                if not told:
                    told = True
                    what = self._what(fd, resource, exclusive)
                    _report_wait(f"waiting up to {wait:g} s: {what}")
                time.sleep(min(pause, deadline - now))
                pause = min(pause * 2, _POLL_MAX)
        except BaseException:
            os.close(fd)
            raise
        if exclusive:
            # For the message of whoever finds it taken; /proc/locks is asked first.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    # --- who holds it (for the messages) -----------------------------------------------------

    def _what(self, fd: int, resource: str | None, exclusive: bool) -> str:
        """``mirror/web is locked by another mirrorkit process (pid 123: mirrorkit mirror
        update)``, or what holds the store."""
        if resource is not None:
            return f"{resource} is locked by {_by(_holders(fd))}"
        if exclusive and (users := self._users()):
            return f"the store {self.root} is in use by other mirrorkit commands: " + ", ".join(
                f"{r} ({_pids_text(p)})" for r, p in sorted(users.items())
            )
        return f"the store {self.root} is locked by {_by(_holders(fd))}"

    def _users(self) -> dict[str, list[int]]:
        """Resources held at this moment, with their holders (Linux: from /proc/locks)."""
        locks = _proc_locks()
        if not locks:
            return {}
        found: dict[str, list[int]] = {}
        for path in self.dir.rglob("*.lock") if self.dir.is_dir() else ():
            try:
                st = path.stat()
            except OSError:
                continue
            pids = locks.get((st.st_ino, os.major(st.st_dev), os.minor(st.st_dev)))
            if pids:
                found[path.relative_to(self.dir).as_posix().removesuffix(".lock")] = pids
        return found

    def _locked_error(
        self, fd: int, resource: str | None, exclusive: bool, wait: float | None, waited: float
    ) -> StoreLockedError:
        what = self._what(fd, resource, exclusive)
        if wait:
            message = f"gave up after waiting {waited:.0f} s: {what}"
            hint = (
                "run the command again when that one has finished, or wait longer with "
                "--wait SECONDS (wait= in Python); a lock is released when its holder exits, "
                "even if it crashed."
            )
        else:
            message = what
            hint = (
                "run the command again when that one has finished, or give --wait SECONDS "
                "(wait= in Python) to wait for it; a lock is released when its holder exits, "
                "even if it crashed."
            )
        err = StoreLockedError(message, hint)
        err.resource = resource if resource is not None else "store"
        return err


def _holders(fd: int) -> list[int]:
    """The pids holding the flock on ``fd``'s file: from /proc/locks, else the pid its last
    exclusive holder wrote."""
    try:
        st = os.fstat(fd)
        pids = _proc_locks().get((st.st_ino, os.major(st.st_dev), os.minor(st.st_dev)))
        if pids:
            return pids
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return []
    return [int(text)] if text.isdigit() else []


def _proc_locks() -> dict[tuple[int, int, int], list[int]]:
    """Granted flock locks: (inode, major, minor) -> pids. Empty where /proc/locks is not."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return {}
    out: dict[tuple[int, int, int], list[int]] = {}
    for line in text.splitlines():
        f = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters are marked "->".
        if len(f) < 6 or f[1] != "FLOCK" or "->" in f:
            continue
        try:
            major, minor, ino = f[5].split(":")
            key = (int(ino), int(major, 16), int(minor, 16))
            pid = int(f[4])
        except ValueError:
            continue
        if pid not in out.setdefault(key, []):
            out[key].append(pid)
    return out


def _by(pids: list[int]) -> str:
    """``another mirrorkit process (pid 12) running "mirror update"``."""
    if pids == [os.getpid()]:
        return f"another command of this process (pid {pids[0]})"
    if len(pids) > 1:
        return f"other mirrorkit processes ({_pids_text(pids)})"
    return f"another mirrorkit process ({_pids_text(pids)})" + (
        f' running "{command}"' if pids and (command := _command_of(pids[0])) else ""
    )


def _pids_text(pids: list[int]) -> str:
    return ", ".join(f"pid {p}" for p in sorted(pids)) if pids else "pid unknown"


def _command_of(pid: int) -> str:
    """``mirror update`` for a mirrorkit process, from /proc; ``""`` elsewhere. Names and URLs
    after the subcommand are left out: a URL may carry credentials."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    words = [a.decode(errors="replace") for a in argv if a]
    if not any(w == "mirrorkit" or w.endswith("/mirrorkit") for w in words):
        return ""
    for i, word in enumerate(words):
        if word in _COMMANDS:
            return " ".join([word, *[w for w in words[i + 1 : i + 2] if w.isalpha()]])
    return ""


_COMMANDS = frozenset(
    {"mirror", "snapshot", "channel", "publish", "bundle", "gc", "sync", "repo", "api", "serve"}
)
