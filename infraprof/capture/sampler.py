"""py-spy beside the nsys capture: find it, pick the real Python process, attach, explain failures.

Which process is sampled: the pid the bootstrap reports from inside the interpreter (always the
real Python, also when ``python3`` is a pyenv-style shim that ``exec``\\ s it, or a launcher that
forks it); without the bootstrap (``python -c``), the app's pid once ``/proc/<pid>/exe`` is a
Python interpreter, else the first Python process below the launcher, waiting at most
:data:`ATTACH_WAIT_S`. The pid and executable are recorded in the manifest (``pyspy.pid``,
``pyspy.exe``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from infraprof.capture import ptree
from infraprof.capture.proc import find_tool

ATTACH_WAIT_S = 10.0
PYSPY_HINT = "install it with `pip install py-spy` or set INFRAPROF_PYSPY"
SAMPLING_MARKER = "Sampling process"


def find_pyspy() -> str | None:
    """py-spy: ``$INFRAPROF_PYSPY``, ``PATH``, or beside the running interpreter (a venv)."""
    found = find_tool("py-spy", "INFRAPROF_PYSPY")
    if found or os.environ.get("INFRAPROF_PYSPY"):
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def python_target(app_pid: int | None, launcher: int | None) -> int | None:
    """The Python process to sample without a bootstrap pid: the app once its executable is a
    Python interpreter (a shim has exec'd it), else a Python process below the launcher."""
    if app_pid is not None and ptree.is_python_exe(ptree.exe(app_pid)):
        return app_pid
    if launcher is None:
        return None
    for pid in ptree.app_tree(launcher):
        if ptree.is_python_exe(ptree.exe(pid)):
            return pid
    return None


def _pump(stream: IO[str], sink: IO[str] | None, tail: deque[str], seen: threading.Event | None,
          marker: str) -> None:
    for line in stream:
        tail.append(line)
        if seen is not None and marker in line:
            seen.set()
        if sink is not None:
            with contextlib.suppress(OSError, ValueError):
                sink.write(line)
                sink.flush()


def pump_thread(stream: IO[str] | None, sink: IO[str] | None, tail: deque[str],
                seen: threading.Event | None = None, marker: str = "") -> threading.Thread:
    """Copy ``stream`` line by line into ``sink`` (may be ``None``), keeping the last lines in
    ``tail`` and setting ``seen`` at the first line holding ``marker``."""
    thread = threading.Thread(target=_pump, args=(stream, sink, tail, seen, marker),
                              daemon=True)
    thread.start()
    return thread


class PySpy:
    """py-spy attached to the app; output and failure messages kept."""

    def __init__(self, binary: str, pid: int, out: Path, rate_hz: int) -> None:
        self.pid = pid
        self.exe = ptree.exe(pid)
        self.argv = [binary, "record", "--pid", str(pid), "--rate", str(rate_hz), "--idle",
                     "--threads", "--format", "chrometrace", "--output", str(out)]
        self.out = out
        self.start_mono_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     start_new_session=True,
                                     env=dict(os.environ, RUST_BACKTRACE="0"))
        self.sampling = threading.Event()
        self.lines: deque[str] = deque(maxlen=40)
        self.threads = [
            pump_thread(self.proc.stdout, None, self.lines, self.sampling, SAMPLING_MARKER),
            pump_thread(self.proc.stderr, None, self.lines),
        ]

    def failed_early(self) -> bool:
        return self.proc.poll() is not None and not self.sampling.is_set()

    def finish(self, timeout_s: float = 20.0) -> int | None:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for t in self.threads:
            t.join(timeout=2)
        return self.proc.returncode

    def error_line(self) -> str:
        """py-spy's own ``Error: …`` line (its Rust backtrace left out)."""
        lines = [line.strip() for line in self.lines if line.strip()]
        errors = [line for line in lines if line.startswith("Error:")]
        if errors:
            return errors[0].removeprefix("Error:").strip()
        plain = [line for line in lines if not re.match(r"^(\d+:|at |Stack backtrace)", line)]
        return (plain[-1] if plain else f"exit status {self.proc.returncode}")[:300]

    def problem(self) -> str:
        """One line: why no Python samples were recorded and how to fix it."""
        text = " ".join(self.lines)
        where = f"pid {self.pid} ({self.exe or 'executable unknown'})"
        if re.search(r"Permission denied|Operation not permitted|ptrace", text, re.I):
            return (f"py-spy was denied ptrace access to {where} (run as root, or give the "
                    "container CAP_SYS_PTRACE and a permissive kernel.yama.ptrace_scope); "
                    "continuing without Python frames")
        if re.search(r"python version|python interpreter|libpython", text, re.I):
            return (f"py-spy found no Python interpreter in {where}: {self.error_line()}; "
                    "run the app with the interpreter's real path (printed by "
                    "`python3 -c 'import sys; print(sys.executable)'`) instead of a launcher "
                    "that forks it; continuing without Python frames")
        return (f"py-spy failed on {where}: {self.error_line()}; continuing without Python "
                "frames")
