"""Exception vocabulary and the process exit codes they map to.

Every error a user can cause is an :class:`InfraprofError`; the CLI prints its one-line
``message`` (which names the file and the fix) and exits with ``exit_code``. Anything else
that escapes is a bug and exits with :data:`ExitCode.INTERNAL`.

=====  ==========================================================================
code   meaning
=====  ==========================================================================
0      success (or the gate passed)
1      gate or threshold failure (a regression, or findings above ``--fail-on``)
2      usage error: bad command line or configuration
3      bad or unsupported input: unreadable, corrupt, wrong type, too new, empty;
       also an output that cannot be written (read-only directory, disk full)
4      an external tool (nsys, ncu, py-spy) is missing or failed
70     internal error: a bug in infraprof; please report it
141    stdout was closed early (``infraprof … | head``): quiet, like a process ended by SIGPIPE
=====  ==========================================================================
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Documented process exit codes."""

    OK = 0
    GATE_FAILED = 1
    USAGE = 2
    INPUT = 3
    TOOL = 4
    INTERNAL = 70
    PIPE_CLOSED = 141


class InfraprofError(Exception):
    """Base class of errors a user can cause; ``message`` is one line."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())


class UsageError(InfraprofError):
    """The command line or configuration is invalid."""

    exit_code = ExitCode.USAGE


class InputError(InfraprofError):
    """An input file is missing, unreadable, corrupt, of the wrong type or unsupported."""

    exit_code = ExitCode.INPUT


class OutputError(InfraprofError):
    """An output file cannot be written (read-only directory, disk full, not writable)."""

    exit_code = ExitCode.INPUT


class ToolError(InfraprofError):
    """An external tool (nsys, ncu, py-spy) is missing or failed."""

    exit_code = ExitCode.TOOL


class RegressionDetected(InfraprofError):
    """The regression gate failed."""

    exit_code = ExitCode.GATE_FAILED


class OutputClosed(Exception):
    """The reader of stdout (or of a FIFO output) went away, as in ``infraprof … | head``.

    Not an ``OSError``: click would turn a ``BrokenPipeError`` into exit 1, the regression code.
    The CLI exits 141 without a message instead."""
