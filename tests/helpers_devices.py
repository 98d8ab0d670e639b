"""Device nodes and links made inside a test's own folder.

Tests about writing to devices never touch the machine's ``/dev``: a regression there (an
output replacing ``/dev/null`` with a regular file) would break every later program on the
machine, including CI. As root (CI, containers) ``mknod`` makes real character devices with
the kernel's numbers for null (1, 3) and full (1, 7); elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def char_device(folder: Path, name: str, major: int, minor: int) -> Path:
    """A character device ``folder/dev/name`` with the given numbers."""
    path = folder / "dev" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CI runs as root)")
    return path


def null_device(folder: Path) -> Path:
    return char_device(folder, "null", 1, 3)


def full_device(folder: Path) -> Path:
    return char_device(folder, "full", 1, 7)


def stdout_link(folder: Path) -> Path:
    """``folder/dev/stdout`` -> ``/proc/self/fd/1``, as the system's ``/dev/stdout`` is."""
    path = folder / "dev" / "stdout"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/proc/self/fd/1")
    return path
