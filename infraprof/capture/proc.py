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
    """Path of ``name``: ``$env_var`` when set and executable, else ``PATH``."""
    if env_var:
        override = os.environ.get(env_var)
        if override and Path(override).is_file() and os.access(override, os.X_OK):
            return override
    return shutil.which(name)


def require_tool(name: str, hint: str, env_var: str | None = None) -> str:
    """Like :func:`find_tool` but raises :class:`ToolError` with ``hint`` when missing."""
    path = find_tool(name, env_var)
    if path is None:
        raise ToolError(f"{name} not found on PATH; {hint}")
    return path


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
