"""The lock object that keeps two publishers of one S3 prefix apart: ``PREFIX/.mirrorkit-lock``.

It is created with a conditional put (``If-None-Match: *``) and read back: a publisher holds the
lock only if the object holds its token. Before the switch and before pruning the publisher
checks that it still does (``--break-lock`` of another publisher may have taken it meanwhile),
and at the end it removes only its own lock. A killed publisher's lock stays until someone
passes ``--break-lock``; the error names who held it, since when and for which suite.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mirrorkit._version import __version__
from mirrorkit.errors import MirrorkitError, PublishError

if TYPE_CHECKING:
    from mirrorkit.publish.s3 import Bucket

LOCK_NAME = ".mirrorkit-lock"


@dataclass(frozen=True, slots=True)
class LockInfo:
    holder: str
    created: str
    suite: str = ""
    token: str = ""

    @classmethod
    def parse(cls, data: bytes | None) -> LockInfo:
        try:
            raw = json.loads(data or b"")
            return cls(
                str(raw.get("holder", "unknown")),
                str(raw.get("created", "unknown time")),
                str(raw.get("suite", "")),
                str(raw.get("token", "")),
            )
        except (ValueError, AttributeError):
            return cls("unknown (the lock object is not mirrorkit's)", "unknown time")

    def describe(self) -> str:
        suite = f", publishing suite {self.suite}" if self.suite else ""
        return f"{self.holder} since {self.created}{suite}"


def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


@contextmanager
def publish_lock(
    bucket: Bucket, *, suite: str, break_lock: bool = False
) -> Iterator[LockInfo | None]:
    """Hold ``PREFIX/.mirrorkit-lock`` for the duration; yields the lock that ``break_lock``
    removed, if any. Released at the end, also on failure (not when the process is killed:
    that is what ``--break-lock`` is for)."""
    broken = None
    if break_lock and (old := bucket.get(LOCK_NAME)) is not None:
        broken = LockInfo.parse(old)
        bucket.delete([LOCK_NAME])
    mine = LockInfo(
        _who(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), suite, secrets.token_hex(16)
    )
    body = json.dumps(
        {
            "holder": mine.holder,
            "created": mine.created,
            "suite": suite,
            "token": mine.token,
            "mirrorkit": __version__,
        },
        indent=1,
    ).encode()
    # A HEAD first: a server that silently ignores If-None-Match must not let us overwrite a
    # lock; and a read-back after the put: we hold the lock only if it holds our token.
    current = bucket.get(LOCK_NAME)
    if current is None and bucket.put_exclusive(LOCK_NAME, body):
        current = bucket.get(LOCK_NAME)
    held = LockInfo.parse(current) if current is not None else None
    if held is None or held.token != mine.token:
        who = held.describe() if held else "another publisher (it went away meanwhile)"
        raise PublishError(
            f"{bucket.target.url} is locked by {who}",
            "wait for that publish to finish and run the command again; if none is running "
            f"(it was killed), remove the stale lock with --break-lock (s3://{bucket.target.bucket}"
            f"/{bucket.target.key(LOCK_NAME)}).",
        )
    bucket.lock_token = mine.token
    try:
        yield broken
    except BaseException:
        bucket.lock_token = None
        # The original error matters more; if the lock stays, the next run names it as stale.
        with contextlib.suppress(MirrorkitError):
            _release(bucket, mine)
        raise
    else:
        bucket.lock_token = None
        try:
            _release(bucket, mine)
        except PublishError as exc:
            exc.message = f"published, but the lock was not removed: {exc.message}"
            exc.hint = "the next publish will name it as held by you: pass --break-lock then."
            raise


def check_lock(bucket: Bucket) -> None:
    """Before a step others must not interleave with (the switch, pruning): do we still hold
    the lock? Someone may have broken it (--break-lock) while we uploaded."""
    if bucket.lock_token is None:
        return
    current = bucket.get(LOCK_NAME)
    held = LockInfo.parse(current) if current is not None else None
    if held is None or held.token != bucket.lock_token:
        who = held.describe() if held else "someone (it is gone)"
        raise PublishError(
            f"{bucket.target.url}: the lock was broken by {who} while this publish ran; "
            "the suite was not switched",
            "two publishers wrote to this prefix at once: let the other one finish, then run "
            "this command again (what it uploaded is reused).",
        )


def _release(bucket: Bucket, mine: LockInfo) -> None:
    # Delete only our own lock: if someone broke it and took the lock, theirs stays.
    current = bucket.get(LOCK_NAME)
    if current is not None and LockInfo.parse(current).token == mine.token:
        bucket.delete([LOCK_NAME])
