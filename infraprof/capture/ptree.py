"""The process tree of one capture, read from ``/proc`` (Linux).

nsys 2022.4 runs the app like this (real command lines, ``nsys profile ... python3 app.py``)::

    nsys profile ... python3 app.py                           <- pid N (infraprof's child)
    └─ nsys-launcher /tmp/xxxx 11                             <- child subreaper
       ├─ python3 app.py                                      <- the app (session leader)
       │  └─ (children of the app; orphans are re-parented to the launcher)
       └─ nsys-tee 3 4 5 7
    nsys --start-agent --session-name=profile-python3-N --shm-name=quadd-create-agent-…
                                                              <- the collector (re-parented
                                                                 to init)

"This capture's process tree" is everything below the launcher except ``nsys-tee``: the app
and whatever it started, including processes that outlived it (the launcher is a child
subreaper, so they stay below it). Nothing outside that tree is ever signalled, except the
collector whose ``--session-name`` ends in ``-N``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_ARG = "--session-name"
AGENT_ARG = "--start-agent"
LAUNCHER_COMM = "nsys-launcher"
TEE_COMM = "nsys-tee"
PYTHON_EXE_RE = re.compile(r"^(?:python|pypy)[\d.]*[dmu]*$")
_MAX_COMMAND_CHARS = 300


@dataclass(frozen=True)
class ProcStat:
    """Fields of ``/proc/<pid>/stat``: state letter, parent, session, start time (clock ticks)."""

    pid: int
    state: str
    ppid: int
    sid: int
    start_ticks: int


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` of ``pid``, or ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(pid, fields[0], int(fields[1]), int(fields[3]), int(fields[19]))


def cmdline(pid: int) -> list[str] | None:
    """The arguments of ``pid`` (``None`` when gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def command_text(pid: int) -> str:
    """``pid``'s command line as one line (at most 300 characters), for messages."""
    parts = cmdline(pid)
    text = " ".join(parts) if parts else f"[{comm(pid) or '?'}]"
    return text if len(text) <= _MAX_COMMAND_CHARS else text[:_MAX_COMMAND_CHARS - 1] + "…"


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def exe(pid: int) -> str | None:
    """The executable of ``pid`` (``/proc/<pid>/exe``), or ``None``."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def is_python_exe(path: str | None) -> bool:
    """True when ``path`` names a Python interpreter binary (``python3.11``, ``pypy3``)."""
    return path is not None and PYTHON_EXE_RE.match(Path(path).name) is not None


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from ``/proc/<pid>/task/*/children``; a full ``/proc``
    scan when the kernel lacks that file)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    try:
        for task in tasks:
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except FileNotFoundError:
        return [p for p in all_pids() if (s := proc_stat(p)) is not None and s.ppid == pid]
    except OSError:
        pass
    return kids


def descendants(pid: int, skip_comm: str = "") -> list[int]:
    """Every process below ``pid`` (breadth first), leaving out subtrees whose ``comm``
    starts with ``skip_comm``."""
    found: list[int] = []
    todo = children(pid)
    while todo:
        kid = todo.pop(0)
        if skip_comm and comm(kid).startswith(skip_comm):
            continue
        found.append(kid)
        todo.extend(children(kid))
    return found


def find_launcher(nsys_pid: int) -> int | None:
    """The ``nsys-launcher`` below the ``nsys profile`` with pid ``nsys_pid``."""
    for pid in descendants(nsys_pid):
        if comm(pid).startswith(LAUNCHER_COMM):
            return pid
    return None


def app_tree(launcher: int) -> list[int]:
    """The app and every process it left below the launcher (``nsys-tee`` excluded), alive."""
    return [pid for pid in descendants(launcher, TEE_COMM) if alive(pid)]


def find_app_pid(launcher: int) -> int | None:
    """The app nsys started: the launcher's child that leads its own session (the launcher
    starts the app with ``setsid``); else its oldest child other than ``nsys-tee``. An orphan
    of an app that already exited (its session leader is gone) returns the session id, which
    then reads as not alive."""
    kids = [s for k in children(launcher) if not comm(k).startswith(TEE_COMM)
            and (s := proc_stat(k)) is not None]
    if not kids:
        return None
    leaders = [s.pid for s in kids if s.pid == s.sid]
    if leaders:
        return leaders[0]
    oldest = min(kids, key=lambda s: s.start_ticks)
    return oldest.sid if oldest.sid != launcher and proc_stat(oldest.sid) is None else oldest.pid


def _session_of(parts: list[str]) -> str | None:
    for i, arg in enumerate(parts):
        if arg.startswith(SESSION_ARG + "="):
            return arg[len(SESSION_ARG) + 1:]
        if arg == SESSION_ARG and i + 1 < len(parts):
            return parts[i + 1]
    return None


def find_collectors(nsys_pid: int) -> list[tuple[int, str]]:
    """nsys collector processes of the ``nsys profile`` with pid ``nsys_pid``: command lines
    holding ``--start-agent`` and ``--session-name=profile-<app>-<nsys_pid>`` (as one argument
    or two, anywhere in the line: nsys 2022.4 follows it with ``--shm-name=…``)."""
    pattern = re.compile(rf"^profile-.*-{nsys_pid}$")
    found = []
    for pid in all_pids():
        parts = cmdline(pid)
        if not parts or AGENT_ARG not in parts:
            continue
        session = _session_of(parts)
        if session is not None and pattern.match(session):
            found.append((pid, " ".join(parts)))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_processes(pids: list[int], grace_s: float) -> tuple[list[int], list[int]]:
    """SIGTERM ``pids``, wait up to ``grace_s``, SIGKILL the survivors.
    Returns ``(stopped by SIGTERM, killed)``."""
    signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    signal_all(left, signal.SIGKILL)
    return [p for p in pids if p not in left], left
