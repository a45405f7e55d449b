"""Group commit of uploads into one repo: add requests that wait for the same repo when one of
them starts are committed together, as one ``repo_add`` (one new head snapshot, one history
entry), instead of one after the other.

An add spends most of its time making the new head durable (fsyncs); a batch pays that once,
so eight CI jobs that add at once cost little more than one. A batch that fails (a broken
file, two different builds of one package) is committed request by request instead, so a
request fails only for its own files, as it would alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorkit.errors import MirrorkitError

if TYPE_CHECKING:
    from mirrorkit.models import Package
    from mirrorkit.repo import Change
    from mirrorkit.server.tasks import Outcome, Task


@dataclass(frozen=True)
class AddRequest:
    """One request's files (package files, not directories), and what to do after."""

    repo: str
    files: tuple[Path, ...]
    force: bool
    after: Callable[[], None]  # e.g. remove the uploaded files


@dataclass(frozen=True)
class Share:
    """One request's part of a committed change."""

    added: tuple[Package, ...]
    removed: tuple[Package, ...]
    unchanged: tuple[Package, ...]


Commit = Callable[[str, list[Path], bool], "Change"]
Render = Callable[[Share], tuple[int, object]]


def runner(commit: Commit, render: Render) -> Callable[[list[Task]], list[Outcome]]:
    """The batch runner of add tasks (see :meth:`TaskList.submit`); every task's payload is
    an :class:`AddRequest` of the same repo and ``force``."""

    def run(tasks: list[Task]) -> list[Outcome]:
        requests: list[AddRequest] = [t.payload for t in tasks]
        repo, force = requests[0].repo, requests[0].force
        shares: list[Share | MirrorkitError] = []
        if len(requests) > 1:
            try:
                change = commit(repo, [f for r in requests for f in r.files], force)
            except MirrorkitError:
                pass  # one of them is at fault: each on its own, below
            else:
                shares = [_share(change, r.files) for r in requests]
        if not shares:
            for r in requests:
                try:
                    shares.append(_share(commit(repo, list(r.files), force), r.files))
                except MirrorkitError as exc:
                    shares.append(exc)
        outcomes: list[Outcome] = []
        for task, r, share in zip(tasks, requests, shares, strict=True):
            if isinstance(share, MirrorkitError):
                outcomes.append(share)
                continue
            r.after()
            if len(requests) > 1:
                task.output.say(f"Committed together with {len(requests) - 1} other add(s)")
            outcomes.append(render(share))
        return outcomes

    return run


def _digests(files: tuple[Path, ...]) -> set[str]:
    out = set()
    for f in files:
        with f.open("rb") as fh:
            out.add(hashlib.file_digest(fh, "sha256").hexdigest())
    return out


def _share(change: Change, files: tuple[Path, ...]) -> Share:
    mine = _digests(files)
    added = tuple(p for p in change.added if p.sha256 in mine)
    unchanged = tuple(p for p in change.unchanged if p.sha256 in mine)
    names = {(p.name, p.architecture) for p in (*added, *unchanged)}
    removed = tuple(p for p in change.removed if (p.name, p.architecture) in names)
    return Share(added, removed, unchanged)
