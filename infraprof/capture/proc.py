"""Run an external tool with a timeout, killing its whole process group on expiry."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infraprof.errors import ToolError


@dataclass(frozen=True)
class CompletedRun:
    """Outcome of :func:`run_tool`; ``timed_out`` runs have ``returncode`` -9."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def find_tool(name: str, env_var: str | None = None) -> str | None:
    """Path of ``name``: ``$env_var`` when it is set (not empty), and then only when it is an
    executable file (a user who names a tool means that one: another on ``PATH`` is not
    taken in its place); else ``PATH``."""
    override = os.environ.get(env_var) if env_var else None
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    return shutil.which(name)


def require_tool(name: str, hint: str, env_var: str | None = None) -> str:
    """Like :func:`find_tool` but raises :class:`ToolError` with ``hint`` when missing."""
    path = find_tool(name, env_var)
    if path is None:
        raise ToolError(missing_tool(name, hint, env_var))
    return path


def missing_tool(name: str, hint: str, env_var: str | None = None) -> str:
    """The message for ``name`` not found by :func:`find_tool`: where it was looked for (the
    variable's value when one is set, else ``PATH``) and ``hint``."""
    override = os.environ.get(env_var) if env_var else None
    where = (f"${env_var} is {override!r}, not an executable file" if override
             else f"not on PATH{f' and ${env_var} is not set' if env_var else ''}")
    return f"{name} not found: {where}; {hint}"


def run_tool(
    argv: Sequence[str],
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> CompletedRun:
    """Run ``argv`` in its own process group, capturing output; never raises on failure.

    On timeout the whole group gets SIGKILL and ``timed_out`` is set.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return CompletedRun(tuple(argv), -9, out, err, timed_out=True)
    return CompletedRun(tuple(argv), proc.returncode, out, err)
