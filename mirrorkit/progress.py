"""How the core reports progress without knowing about terminals.

The CLI draws it with tqdm (``mirrorkit.cli.common.TqdmReporter``); a program using the Python
API passes its own object with these methods as ``reporter=``, or none (:class:`NullReporter`).
Diagnostics do not come this way: they go to ``logging.getLogger("mirrorkit...")``."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def info(self, message: str) -> None:
        """A line of log for stderr (shown unless --quiet)."""

    def debug(self, message: str) -> None:
        """Detail for stderr, shown with --verbose."""

    def start(self, label: str, files: int, total_bytes: int) -> None:
        """A transfer of ``files`` files / ``total_bytes`` bytes begins."""

    def advance(self, files: int, nbytes: int) -> None:
        """``files`` completed and ``nbytes`` transferred since the last call."""

    def finish(self) -> None:
        """The transfer ended (successfully or not)."""


class NullReporter:
    def info(self, message: str) -> None:
        pass

    def debug(self, message: str) -> None:
        pass

    def start(self, label: str, files: int, total_bytes: int) -> None:
        pass

    def advance(self, files: int, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass
