"""The capture folder: created (or accepted empty, or left by a failed capture) and locked, so
two captures never write into one folder at once.

The lock is an exclusive ``flock`` on ``FOLDER/.infraprof-capture.lock`` holding the capturing
pid; the kernel drops it when that process dies, so a stale file never blocks. The emptiness
check happens under the lock: a second capture is refused whether it comes during the first
(``another infraprof capture (pid N)``) or after it (``directory is not empty``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from infraprof.capture.layout import MANIFEST_NAME
from infraprof.errors import UsageError

LOCK_NAME = ".infraprof-capture.lock"


def _reusable(folder: Path, names: set[str]) -> bool:
    """A folder left by a capture that failed before nsys wrote anything: only a manifest
    without a report."""
    if names != {MANIFEST_NAME}:
        return False
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("report") is None


def lock_folder(folder: Path) -> int:
    """Create ``folder`` (or accept it empty, or left by a failed capture) and hold an exclusive
    ``flock`` on ``folder/.infraprof-capture.lock``; a second capture into the same folder is
    refused with ``UsageError`` (exit 2) instead of interleaving. Returns the lock's fd."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a directory; choose another -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot create the capture folder ({exc.strerror}); "
                         "choose another -o") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise UsageError(f"{folder}: another infraprof capture (pid {holder}) is writing into "
                         "this folder; wait for it to finish or choose another -o DIR") from None
    names = {p.name for p in folder.iterdir()} - {LOCK_NAME}
    if names and not _reusable(folder, names):
        unlock_folder(folder, fd)
        raise UsageError(f"{folder}: directory is not empty; choose a new -o DIR")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_folder(folder: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        (folder / LOCK_NAME).unlink()
    os.close(fd)
