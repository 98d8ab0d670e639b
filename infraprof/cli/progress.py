"""The progress line on stderr of the long-running commands (``analyze``, ``export``): a rich
spinner with the current step ("Reading …", "Analysing: …", "Writing …"), shown only on a
terminal, never with ``--quiet`` or under CI, and only once a run has lasted
:data:`PROGRESS_DELAY_S` (short runs print nothing). It is transient: erased when done."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PROGRESS_DELAY_S = 2.0
"""A status line appears only once a run has lasted this long (seconds)."""


class _DelayedStatus:
    """A rich status line on stderr (spinner + the current step), shown from
    :data:`PROGRESS_DELAY_S` after the start until the work is done; transient (erased)."""

    def __init__(self, console: Console, delay_s: float) -> None:
        self._status = console.status("Working…")
        self._lock = threading.Lock()
        self._started = self._stopped = False
        self._timer = threading.Timer(delay_s, self._start)
        self._timer.daemon = True
        self._timer.start()

    def update(self, message: str) -> None:
        with self._lock:
            self._status.update(message)

    def _start(self) -> None:
        with self._lock:
            if not self._stopped:
                self._status.start()
                self._started = True

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            if self._started:
                self._status.stop()


def progress_wanted(quiet: bool) -> bool:
    """Progress on stderr: only when stderr is a terminal, not ``--quiet``, not in CI."""
    return sys.stderr.isatty() and not quiet and not os.environ.get("CI")


@contextmanager
def progress_line(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A callable that sets the current step (None when ``enabled`` is false)."""
    if not enabled:
        yield None
        return
    from rich.console import Console

    status = _DelayedStatus(Console(stderr=True), PROGRESS_DELAY_S)
    try:
        yield status.update
    finally:
        status.stop()
