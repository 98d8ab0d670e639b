"""Where a command's text goes: stdout, or a file through :mod:`infraprof.outputs`.

Every document passes :mod:`infraprof.text_safety` on its way out, so no control character
from a trace reaches a terminal or CI log raw, whatever the renderer did.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infraprof.errors import OutputClosed, OutputError
from infraprof.text_safety import printable, safe_json, safe_text

if TYPE_CHECKING:  # the reader loads pandas: not at start-up
    from infraprof.readers.validate import DataIssue

TextKind = Literal["text", "ansi", "json", "github"]


def make_safe(text: str, kind: TextKind) -> str:
    """``text`` after the last safety pass for its kind (see :mod:`infraprof.text_safety`)."""
    if kind == "json":
        return safe_json(text)
    return safe_text(text, ansi=kind == "ansi", workflow_commands=kind == "github")


def emit(text: str, output: Path | None, what: str = "the output",
         inputs: Iterable[Path | None] = (), kind: TextKind = "text",
         option: str = "-o") -> None:
    """Write ``text`` to stdout (``output`` None) or to ``output`` (never over an input).

    Raises ``UsageError`` (exit 2) for a directory or an input as ``output``, ``OutputError``
    (exit 3) when writing fails and ``OutputClosed`` when stdout was closed.
    """
    text = make_safe(text, kind)
    if output is not None:
        from infraprof.outputs import write_output  # file writing: loaded when used

        write_output(output, text, inputs, what, option)
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise OutputClosed("<stdout>") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(f"<stdout>: cannot write {what} ({reason})") from exc


def data_quality_lines(issues: Iterable[DataIssue], source: Path) -> list[str]:
    """One ``infraprof: warning:`` line (with its newline) per kind of row the reader left
    out."""
    return [f"infraprof: warning: {printable(issue.describe(source))}\n" for issue in issues]


def warning_lines(messages: Iterable[str]) -> list[str]:
    """One ``infraprof: warning:`` line (with its newline) per reader message (control
    characters escaped)."""
    return [f"infraprof: warning: {printable(message)}\n" for message in messages]


def warn_data_quality(issues: Iterable[DataIssue], source: Path) -> None:
    """:func:`data_quality_lines` on stderr."""
    sys.stderr.write("".join(data_quality_lines(issues, source)))


def warn_lines(messages: Iterable[str]) -> None:
    """:func:`warning_lines` on stderr."""
    sys.stderr.write("".join(warning_lines(messages)))


def color_wanted(no_color: bool) -> bool:
    """ANSI colour on stdout: off with ``--no-color``, ``NO_COLOR`` or ``TERM=dumb``; on for a
    TTY or ``FORCE_COLOR``."""
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))
