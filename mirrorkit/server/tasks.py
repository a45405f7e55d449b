"""Tasks: every change the REST API makes runs as one, on a bounded thread pool, as in aptly.

A task names the resources it changes (``repo:NAME``, ``snapshot:NAME``, ``publish:STORAGE:
PREFIX``...). A task starts once no earlier unfinished task holds one of its resources, so
changes of one resource run in the order they came, and changes of different resources run at
once (the store's own locks guard against other processes, the CLI included).

A task belongs to the server, not to the request that started it: a client that disconnects
does not stop it. Finished tasks are freed after ``retention`` seconds (and beyond ``keep``
finished ones), so a server that runs for months does not accumulate them; a request made
without ``_async`` frees its task as soon as it answered.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from mirrorkit.errors import (
    ConflictError,
    EmptyResultError,
    FormatError,
    IntegrityError,
    MirrorkitError,
    NotFoundError,
    SignatureError,
    StoreLockedError,
    UsageError,
)

log = logging.getLogger("mirrorkit.server")


class State(IntEnum):
    """aptly's task states (task/task.go), which clients compare as numbers."""

    IDLE = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3


class HTTPError(MirrorkitError):
    """An error a route answers with a given status (aptly's ``AbortWithJSONError``)."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


def http_status(exc: MirrorkitError) -> int:
    """The status aptly answers for this kind of failure."""
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError | StoreLockedError):
        return 409
    if isinstance(
        exc, UsageError | FormatError | EmptyResultError | SignatureError | IntegrityError
    ):
        return 400
    return 500


def error_text(exc: MirrorkitError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


class Output:
    """What a task says while it runs (``GET /api/tasks/:id/output``)."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(line + "\n" for line in self._lines)


Work = Callable[[Output], tuple[int, Any]]
"""A task's body: returns the status and the value to answer with; raises MirrorkitError."""

Outcome = tuple[int, Any] | MirrorkitError
BatchRunner = Callable[[list["Task"]], list[Outcome]]
"""Runs several queued tasks of one batch key as one (group commit): an outcome per task."""


@dataclass
class Task:
    id: int
    name: str
    resources: tuple[str, ...]
    work: Work
    keep: bool
    batch_key: tuple[str, ...] | None = None
    batch_runner: BatchRunner | None = None
    payload: Any = None  # what a batch runner reads of each task
    state: State = State.IDLE
    output: Output = field(default_factory=Output)
    code: int = 0
    value: Any = None
    error: str | None = None
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )

    def json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "ID": self.id,
            "State": int(self.state),
            "Resources": list(self.resources),
        }

    @property
    def finished(self) -> bool:
        return self.state in (State.SUCCEEDED, State.FAILED)


class TaskList:
    def __init__(self, workers: int = 8, *, retention: float = 3600.0, keep: int = 1000) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mirrorkit-task")
        self._tasks: dict[int, Task] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._retention = retention
        self._keep = keep
        self._idle = threading.Condition(self._lock)

    # --- running ---------------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        resources: list[str],
        work: Work,
        *,
        keep: bool = True,
        batch: tuple[tuple[str, ...], BatchRunner, Any] | None = None,
    ) -> Task:
        """Queue ``work``. ``batch`` (key, runner, payload): tasks of one key that wait at the
        moment the first of them starts are run together by ``runner``."""
        with self._lock:
            self._prune()
            task = Task(next(self._ids), name, tuple(dict.fromkeys(resources)), work, keep)
            if batch is not None:
                task.batch_key, task.batch_runner, task.payload = batch
            self._tasks[task.id] = task
            self._start_ready()
            return task

    def _start_ready(self) -> None:
        """Start every idle task no earlier unfinished task blocks (called under the lock)."""
        held: set[str] = set()
        for task in sorted(self._tasks.values(), key=lambda t: t.id):
            if task.finished:
                continue
            if task.state is State.IDLE and not held.intersection(task.resources):
                task.state = State.RUNNING
                if task.batch_key is None:
                    self._pool.submit(self._run, task)
                else:
                    # Whatever else of this key waits joins it (adds commute: a publish queued
                    # between them only sees more of what was asked for).
                    group = [task] + [
                        t
                        for t in self._tasks.values()
                        if t.state is State.IDLE and t.batch_key == task.batch_key
                    ]
                    for t in group:
                        t.state = State.RUNNING
                        held.update(t.resources)
                    self._pool.submit(self._run_batch, sorted(group, key=lambda t: t.id))
            held.update(task.resources)

    def _run(self, task: Task) -> None:
        log.debug("task %d started: %s", task.id, task.name)
        try:
            outcome: Outcome = task.work(task.output)
        except MirrorkitError as exc:
            outcome = exc
        except Exception as exc:  # a bug: the task fails, the server stays up
            log.exception("task %d (%s) failed unexpectedly", task.id, task.name)
            outcome = MirrorkitError(f"unexpected {type(exc).__name__}: {exc}")
        self._finish(task, outcome)

    def _run_batch(self, tasks: list[Task]) -> None:
        log.debug("tasks %s started together", [t.id for t in tasks])
        runner = tasks[0].batch_runner
        assert runner is not None
        try:
            outcomes = runner(tasks)
        except Exception as exc:  # a bug: every task of the batch fails, the server stays up
            log.exception("tasks %s failed unexpectedly", [t.id for t in tasks])
            outcomes = [MirrorkitError(f"unexpected {type(exc).__name__}: {exc}")] * len(tasks)
        for task, outcome in zip(tasks, outcomes, strict=True):
            self._finish(task, outcome)

    def _finish(self, task: Task, outcome: Outcome) -> None:
        if isinstance(outcome, MirrorkitError):
            code, value = http_status(outcome), None
            state, error = State.FAILED, error_text(outcome)
            task.output.say(f"Task failed with error: {error}")
        else:
            (code, value), state, error = outcome, State.SUCCEEDED, None
            task.output.say("Task succeeded")
        with self._lock:
            task.code, task.value, task.error = code, value, error
            task.state = state
            task.finished_at = time.monotonic()
            if not task.keep:
                self._tasks.pop(task.id, None)
            self._start_ready()
            waiters, task.waiters = task.waiters, []
            task.done.set()
            self._idle.notify_all()
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)
        log.info("task %d %s: %s", task.id, state.name.lower(), task.name)

    async def wait(self, task: Task) -> Task:
        """Wait for ``task`` without holding a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if task.done.is_set():
                return task
            task.waiters.append((loop, fut))
        await asyncio.shield(fut)
        return task

    async def wait_all(self) -> None:
        while True:
            with self._lock:
                pending = [t for t in self._tasks.values() if not t.finished]
            if not pending:
                return
            for t in pending:
                await self.wait(t)

    # --- the list --------------------------------------------------------------------------------

    def get(self, task_id: int) -> Task:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise HTTPError(404, f"could not find task with id {task_id}")
        return task

    def all(self) -> list[Task]:
        with self._lock:
            self._prune()
            return sorted(self._tasks.values(), key=lambda t: t.id)

    def delete(self, task_id: int) -> Task:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise HTTPError(400, f"could not find task with id {task_id}")
            if not task.finished:
                raise HTTPError(400, f"task with id {task_id} is still in state={int(task.state)}")
            del self._tasks[task_id]
            return task

    def clear(self) -> None:
        with self._lock:
            for task_id in [i for i, t in self._tasks.items() if t.finished]:
                del self._tasks[task_id]

    def _prune(self) -> None:
        """Free finished tasks past their retention, and the oldest beyond ``keep``."""
        now = time.monotonic()
        finished = sorted(
            (t for t in self._tasks.values() if t.finished_at is not None), key=lambda t: t.id
        )
        excess = len(finished) - self._keep
        for n, task in enumerate(finished):
            assert task.finished_at is not None
            if n < excess or now - task.finished_at > self._retention:
                del self._tasks[task.id]

    def shutdown(self) -> None:
        """Let running tasks finish (a change is never cut in half); queued ones still run."""
        self._pool.shutdown(wait=True)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
