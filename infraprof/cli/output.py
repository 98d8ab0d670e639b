"""Where a command's text goes: stdout, or a file written atomically (temp file + rename)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infraprof.errors import InputError, UsageError


def emit(text: str, output: Path | None, what: str = "the output") -> None:
    """Write ``text`` to stdout (``output`` None) or atomically to ``output``.

    Raises ``UsageError`` (exit 2) when ``output`` is a directory and ``InputError`` (exit 3)
    when it cannot be written; a partial temp file is removed.
    """
    if output is None:
        sys.stdout.write(text)
        return
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; give a file name for -o")
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{output}: cannot write {what} ({exc.strerror})") from exc


def color_wanted(no_color: bool) -> bool:
    """ANSI colour on stdout: off with ``--no-color``, ``NO_COLOR`` or ``TERM=dumb``; on for a
    TTY or ``FORCE_COLOR``."""
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))
