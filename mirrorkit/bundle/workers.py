"""Threads that overlap a bundle's disk I/O with its hashing, with bounded memory.

hashlib, zstd and file I/O all release the GIL, so on two cores one thread can read and
(de)compress while another hashes or writes:

* ``Pipe`` runs file writes on a thread of their own (import: disk I/O beside hashing).
* ``HashAhead`` runs SHA-256 on a thread of its own (export: hashing beside reading and
  compressing).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable


class Pipe:
    """File writes on one background thread, in order, so that disk I/O overlaps hashing and
    decompression on the calling thread (hashlib, zstd and file I/O all release the GIL; import
    measured 1.3-1.5x faster with it).
    At most ``depth`` operations wait, so memory stays bounded. The first error is raised to
    the caller at its next :meth:`submit`, or at :meth:`drain`; operations after it are
    skipped."""

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[tuple[Callable[..., object], tuple[object, ...]] | None]
        self._queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mirrorkit-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            if self._error is None or fn is _reached:  # drain's mark passes even so
                try:
                    fn(*args)
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._raise()
        self._queue.put((fn, args))

    def drain(self) -> None:
        """Wait for everything submitted so far; raise its error, if any."""
        done = threading.Event()
        self._queue.put((_reached, (done,)))
        done.wait()
        self._raise()

    def close(self) -> None:
        """Stop the thread (after what is queued; nothing more runs after an error)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _reached(mark: threading.Event) -> None:
    mark.set()


class HashAhead:
    """SHA-256 of chunks on a thread of its own, so that hashing (one core's worth: ~2 GB/s)
    overlaps reading and compressing on the calling thread (hashlib, zstd and file reads all
    release the GIL). Reading, hashing and compressing 303 MB in 2,000 files on 2 cores:
    0.22 s with the hashing inline, 0.15 s with it here.

    The caller reads each chunk into a buffer from :meth:`take`, hands it over with
    :meth:`update` and may go on using it until its next :meth:`take` (reads only: the hash
    thread reads it too). A buffer comes back once hashed; there are ``buffers`` of them, so
    memory stays bounded. :meth:`check` queues a test of a digest after the updates before it;
    the first failure is raised by the next call of the caller's, or by :meth:`finish`."""

    def __init__(self, chunk: int, buffers: int = 4) -> None:
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(bytearray(chunk))
        self._work: queue.SimpleQueue[_HashWork | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mirrorkit-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            hasher, buffer, n, check = item
            if buffer is not None:
                if self._error is None:
                    hasher.update(memoryview(buffer)[:n])
                self._free.put(buffer)  # always: the caller may be waiting for it
            elif check is not None and self._error is None:
                try:
                    check(hasher.hexdigest())
                except BaseException as exc:
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def take(self) -> bytearray:
        self._raise()
        return self._free.get()

    def give_back(self, buffer: bytearray) -> None:
        """Return a buffer that is not handed to :meth:`update`."""
        self._free.put(buffer)

    def update(self, hasher: hashlib._Hash, buffer: bytearray, n: int) -> None:
        self._work.put((hasher, buffer, n, None))

    def check(self, hasher: hashlib._Hash, check: Callable[[str], None]) -> None:
        """Call ``check`` with the hex digest once the updates queued so far are done."""
        self._work.put((hasher, None, 0, check))

    def finish(self) -> None:
        """Wait for everything queued; raise the first failure, if any."""
        self.close()
        self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._work.put(None)
            self._thread.join()


_HashWork = tuple["hashlib._Hash", bytearray | None, int, Callable[[str], None] | None]
