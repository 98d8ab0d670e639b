"""Capture orchestration: run an app under nsys (and py-spy) into one folder, robustly.

Layout of a capture folder (``infraprof analyze FOLDER`` finds everything itself): see
:mod:`infraprof.capture.layout`, the one definition of the file names and the manifest.

Arrangement: ``nsys profile -t cuda,nvtx,osrt --sample=none --cpuctxsw=none -o report APP``
launches the app; for Python apps APP is ``python <bootstrap.py> script.py args`` (identical
semantics, plus clock-sync pulses), and ``py-spy record --pid <python pid> -r 500 --idle
--threads -f chrometrace`` attaches to the real interpreter (:mod:`infraprof.capture.sampler`)
as soon as the bootstrap reports its pid (the bootstrap waits for py-spy before its first pulse
group). Robustness (process tree: :mod:`infraprof.capture.ptree`):

* the program is checked before anything is created (missing → ``UsageError``, no folder);
* one capture per folder: ``.infraprof-capture.lock`` (``flock``) refuses a second one;
* the app's exit status is propagated (nsys returns it; 128+N for a signal);
* Ctrl-C (SIGINT) / SIGTERM to infraprof is forwarded to nsys only, which stops the app and
  still writes the report; an app still running ``stop_grace_s`` later gets SIGTERM, then
  SIGKILL after another ``stop_grace_s`` (nsys 2022.4 otherwise leaves it running);
* processes the app left running below the nsys launcher (nsys waits for them) get the same
  treatment ``stop_grace_s`` after the app exited; they are recorded in
  ``manifest.stopped_processes`` and named in one message;
* watchdog: if nsys has not returned ``finalize_timeout_s`` after the app exited (the known
  nsys 2022.4 collector hang), only the collector whose command line holds
  ``--session-name=profile-<app>-<nsys pid>`` is killed, and this is reported;
* nsys missing → :class:`ToolError` (exit 4); py-spy missing or unable to attach → one message
  and the capture continues without Python frames.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from infraprof.capture import layout, ptree
from infraprof.capture import manifest as mf
from infraprof.capture.folder import lock_folder, unlock_folder
from infraprof.capture.launch import (
    build_nsys_argv,
    check_program,
    is_python_command,
    python_launch,
)
from infraprof.capture.nsys import NSYS_INSTALL_HINT, export_sqlite, find_nsys, nsys_version
from infraprof.capture.proc import missing_tool, run_tool
from infraprof.capture.sampler import (
    ATTACH_WAIT_S,
    PYSPY_HINT,
    PySpy,
    find_pyspy,
    pump_thread,
    python_target,
)
from infraprof.errors import InputError, ToolError, UsageError

REPORT_BASE = layout.REPORT_BASE
REPORT_NAME = layout.NSYS_REPORT
SQLITE_NAME = layout.NSYS_SQLITE
PYSPY_TIMED = layout.PYSPY_TIMED
PYSPY_RAW = layout.PYSPY_RAW
SYNC_NAME = layout.SYNC_NAME
DEFAULT_RATE_HZ = layout.PYSPY_RATE_HZ
FINALIZE_TIMEOUT_S = float(os.environ.get("INFRAPROF_NSYS_FINALIZE_TIMEOUT_S", "120"))
STOP_GRACE_S = float(os.environ.get("INFRAPROF_STOP_GRACE_S", "10"))
SCAN_PERIOD_S = 0.1
Log = Callable[[str], None]


@dataclass(frozen=True)
class CaptureOptions:
    """``finalize_timeout_s``: how long nsys may run on after the app exited before its
    collector is killed; ``stop_grace_s``: how long processes get to exit after the app exited
    or a stop was requested, before SIGTERM (and as long again before SIGKILL)."""

    command: tuple[str, ...]
    output: Path
    pyspy: bool | None = None
    rate_hz: int = DEFAULT_RATE_HZ
    sample: bool = False
    nsys_args: tuple[str, ...] = ()
    timeout_s: float | None = None
    finalize_timeout_s: float = FINALIZE_TIMEOUT_S
    stop_grace_s: float = STOP_GRACE_S


@dataclass
class CaptureResult:
    folder: Path
    exit_code: int
    report: Path | None
    sqlite: Path | None
    pyspy_file: Path | None
    manifest: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    hung: bool = False
    interrupted: bool = False
    tool_failure: str | None = None


class _Signals:
    """Forward SIGINT/SIGTERM to nsys while it runs (it stops the app and finalizes)."""

    def __init__(self, log: Log) -> None:
        self.target: int | None = None
        self.count = 0
        self.log = log
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.log("interrupted: stopping the app; nsys is finalizing the report "
                     "(Ctrl-C again to repeat the request)")
        if self.target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.target, signal.SIGINT)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _tool_versions(nsys: str, pyspy: str | None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"nsys": nsys_version(nsys), "py-spy": None,
                                       "python": sys.version.split()[0]}
    if pyspy:
        run = run_tool([pyspy, "--version"], timeout_s=30)
        versions["py-spy"] = run.stdout.strip().removeprefix("py-spy ") or None
    return versions


# ----------------------------------------------------------------------------- supervision

class _Watch:
    """One running ``nsys profile``: finds the app and the Python process to sample, attaches
    py-spy, enforces ``--timeout``, stops processes left running, detects the collector hang."""

    def __init__(self, proc: subprocess.Popen[str], opts: CaptureOptions, sync: Path,
                 boot: bool, pyspy_bin: str | None, say: Log) -> None:
        self.proc, self.opts, self.sync, self.boot = proc, opts, sync, boot
        self.pyspy_bin, self.say = pyspy_bin, say
        self.out = opts.output.resolve() / PYSPY_TIMED
        self.t0 = time.monotonic()
        self.next_scan = 0.0
        self.launcher: int | None = None
        self.app_pid: int | None = None
        self.app_seen_at: float | None = None
        self.app_gone_at: float | None = None
        self.stop_at: float | None = None
        self.pyspy: PySpy | None = None
        self.pyspy_gave_up = False
        self.timed_out = self.hung = self.tree_stopped = False
        self.tool_failure: str | None = None
        self.stopped: list[dict[str, Any]] = []

    def tick(self, interrupts: int) -> bool:
        """One poll step; ``False`` once nsys had to be broken out of a hang."""
        now = time.monotonic()
        if now >= self.next_scan:
            self.next_scan = now + SCAN_PERIOD_S
            self._scan(now)
        go = self.sync.with_suffix(".json.go")
        if self.pyspy is not None and not go.exists() and (
                self.pyspy.sampling.is_set() or self.pyspy.failed_early() or now - self.t0 > 8):
            _touch(go)
        if self.opts.timeout_s is not None and not self.timed_out \
                and now - self.t0 > self.opts.timeout_s:
            self.timed_out = True
            self.say(f"timeout: the app ran longer than {self.opts.timeout_s:g} s; stopping it "
                     "(the report is still written)")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            self.stop_at = self.stop_at or now
        if interrupts and self.stop_at is None:
            self.stop_at = now
        since = min(t for t in (self.app_gone_at, self.stop_at, now) if t is not None)
        if now - since > self.opts.finalize_timeout_s:
            self.hung = True
            self.tool_failure = _break_hang(self.proc, self.opts, self.say)
            return False
        return True

    def _scan(self, now: float) -> None:
        if self.launcher is None:
            self.launcher = ptree.find_launcher(self.proc.pid)
        if self.app_pid is None:
            self.app_pid = (ptree.find_app_pid(self.launcher) if self.launcher is not None
                            else _read_pid(self.sync) if self.boot else None)
        if self.app_pid is not None and self.app_gone_at is None \
                and not ptree.alive(self.app_pid):
            self.app_gone_at = now
        if self.pyspy is None and self.pyspy_bin is not None and not self.pyspy_gave_up:
            self._attach(now)
        grace = self.opts.stop_grace_s
        if self.app_gone_at is not None and now - self.app_gone_at > grace:
            self.stop_tree("left-running", "the app exited but left {n} running (nsys waits "
                           "for them)")
        elif self.stop_at is not None and now - self.stop_at > grace:
            self.stop_tree("ignored-stop", "the app ignored the stop request for {grace:g} s "
                           "({n} running)")

    def _attach(self, now: float) -> None:
        assert self.pyspy_bin is not None
        target = _read_pid(self.sync) if self.boot else python_target(self.app_pid,
                                                                       self.launcher)
        if self.app_pid is not None and self.app_seen_at is None:
            self.app_seen_at = now
        waited = now - self.app_seen_at if self.app_seen_at is not None else 0.0
        if target is not None:
            self.pyspy = PySpy(self.pyspy_bin, target, self.out, self.opts.rate_hz)
        elif self.app_gone_at is not None or (not self.boot and waited > ATTACH_WAIT_S):
            self.pyspy_gave_up = True
            if self.app_gone_at is not None:
                self.say("py-spy: the app exited before a Python process could be sampled; no "
                         "Python frames")
                return
            runs = ptree.exe(self.app_pid) if self.app_pid is not None else None
            self.say(f"py-spy: no Python process to sample within {ATTACH_WAIT_S:g} s (pid "
                     f"{self.app_pid} runs {runs or '?'}); run the app with the interpreter's "
                     "real path; continuing without Python frames")

    def stop_tree(self, reason: str, why: str) -> None:
        """SIGTERM this capture's remaining processes, SIGKILL them ``stop_grace_s`` later."""
        if self.tree_stopped or self.launcher is None \
                or not ptree.comm(self.launcher).startswith(ptree.LAUNCHER_COMM):
            return
        pids = ptree.app_tree(self.launcher)
        if not pids:
            return
        self.tree_stopped = True
        described = {pid: ptree.command_text(pid) for pid in pids}
        grace = self.opts.stop_grace_s
        _, killed = ptree.stop_processes(pids, grace)
        self.stopped = [{"pid": pid, "command": cmd, "reason": reason,
                         "signal": "SIGKILL" if pid in killed else "SIGTERM"}
                        for pid, cmd in described.items()]
        n = f"{len(pids)} process{'es' if len(pids) > 1 else ''}"
        names = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in described.items())
        self.say(why.format(n=n, grace=grace) + f"; stopped them with SIGTERM ({len(killed)} "
                 f"needed SIGKILL {grace:g} s later) and kept the report: {names}")


# ----------------------------------------------------------------------------- the capture

def run_capture(opts: CaptureOptions, log: Log) -> CaptureResult:
    """One capture of ``opts.command`` into ``opts.output``. Raises ``ToolError`` when nsys is
    missing, ``UsageError`` for a program that cannot be started (checked before the folder is
    created), a bad or busy folder, ``InputError`` when the manifest cannot be written."""
    if not opts.command:
        raise UsageError("no command to capture; usage: infraprof capture [OPTIONS] -- CMD ...")
    nsys = find_nsys()
    if nsys is None:
        raise ToolError(missing_tool("nsys", NSYS_INSTALL_HINT, "INFRAPROF_NSYS"))
    python = is_python_command(opts.command)
    app, boot = python_launch(opts.command) if python else (list(opts.command), False)
    check_program(opts.command, app, boot)
    folder = opts.output.resolve()
    lock = lock_folder(folder)
    try:
        return _capture_locked(opts, nsys, folder, app, boot, python, log)
    finally:
        unlock_folder(folder, lock)


def _capture_locked(opts: CaptureOptions, nsys: str, folder: Path, app: list[str], boot: bool,
                    python: bool, log: Log) -> CaptureResult:
    messages: list[str] = []

    def say(msg: str) -> None:
        messages.append(msg)
        log(msg)

    pyspy_bin = _pyspy_for(opts, python, boot, say)
    sync = folder / SYNC_NAME
    env = dict(os.environ, INFRAPROF_SYNC_FILE=str(sync))
    env["INFRAPROF_SYNC_WAIT_S"] = "10" if pyspy_bin else "0"
    manifest = mf.base_manifest(list(opts.command), _tool_versions(nsys, pyspy_bin))
    argv = build_nsys_argv(nsys, folder / REPORT_BASE, app, opts.sample, opts.nsys_args)
    manifest["nsys_argv"] = argv[1:]
    anchor = mf.read_clock_anchor()
    manifest.update(clock_anchor=anchor, start_utc=mf.iso_utc(anchor["realtime_ns"]))
    _save_manifest(folder, manifest)

    tails: dict[str, deque[str]] = {"out": deque(maxlen=60), "err": deque(maxlen=60)}
    with _Signals(say) as signals:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        signals.target = proc.pid
        pumps = [pump_thread(proc.stdout, sys.stdout, tails["out"]),
                 pump_thread(proc.stderr, sys.stderr, tails["err"])]
        watch = _Watch(proc, opts, sync, boot, pyspy_bin, say)
        while proc.poll() is None and watch.tick(signals.count):
            time.sleep(0.01)
        rc = proc.wait()
        watch.stop_tree("still-running", "nsys finished but {n} of the app still ran")
        for t in pumps:
            t.join(timeout=5)
    end = mf.read_clock_anchor()
    pyspy_file = _finish_pyspy(watch.pyspy, manifest, opts.rate_hz, say)
    sync_record = _read_json(sync)
    for leftover in (sync, sync.with_suffix(".json.pid"), sync.with_suffix(".json.go")):
        with contextlib.suppress(OSError):
            leftover.unlink()
    report = folder / REPORT_NAME
    app_rc = _app_exit(rc, watch.hung, sync_record)
    tool_failure = watch.tool_failure
    if not report.is_file():
        detail = "".join(tails["err"]).strip().splitlines() or ["no report written"]
        tool_failure = tool_failure or f"nsys failed (rc {rc}): {detail[-1]}"
    sqlite = _export(nsys, report, folder / SQLITE_NAME, say) if report.is_file() else None
    manifest.update(
        exit_code=app_rc, nsys_returncode=rc, end_utc=mf.iso_utc(end["realtime_ns"]),
        duration_s=round((end["monotonic_ns"] - anchor["monotonic_ns"]) / 1e9, 3),
        interrupted=signals.count > 0, timed_out=watch.timed_out, nsys_hung=watch.hung,
        stopped_processes=watch.stopped, report=REPORT_NAME if report.is_file() else None,
        sqlite=SQLITE_NAME if sqlite else None, sync=sync_record, messages=messages,
        tool_failure=tool_failure,
    )
    _save_manifest(folder, manifest)
    return CaptureResult(folder, app_rc, report if report.is_file() else None, sqlite,
                         pyspy_file, manifest, messages, watch.hung, signals.count > 0,
                         tool_failure)


def _pyspy_for(opts: CaptureOptions, python: bool, boot: bool, say: Log) -> str | None:
    """The py-spy binary to run (``None``: no Python sampling), saying why not when wanted."""
    want_pyspy = python if opts.pyspy is None else opts.pyspy
    pyspy_bin = find_pyspy() if want_pyspy else None
    if want_pyspy and pyspy_bin is None:
        say(f"py-spy not found; continuing without Python frames ({PYSPY_HINT})")
    if python and not boot:
        say("Python command without a script (-c/stdin): no clock-sync pulses; Python "
            "samples will be placed on the timeline only approximately")
    return pyspy_bin


def _save_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    try:
        mf.write_manifest(folder, manifest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            (folder / f".{layout.MANIFEST_NAME}.tmp{os.getpid()}").unlink()
        raise InputError(f"{folder / layout.MANIFEST_NAME}: cannot write the capture manifest "
                         f"({exc.strerror}); free space or choose another -o") from exc


def _read_pid(sync: Path) -> int | None:
    try:
        return int(sync.with_suffix(".json.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.write_text("go\n")


def _app_exit(nsys_rc: int, hung: bool, sync: dict[str, Any] | None) -> int:
    """The app's exit status as a shell reports it."""
    if nsys_rc < 0:  # nsys itself killed by a signal
        nsys_rc = 128 - nsys_rc
    if hung and sync is not None and isinstance(sync.get("exit_status"), int):
        return int(sync["exit_status"])
    return nsys_rc


def _break_hang(proc: subprocess.Popen[str], opts: CaptureOptions, say: Log) -> str:
    collectors = ptree.find_collectors(proc.pid)
    ptree.signal_all([pid for pid, _ in collectors], signal.SIGKILL)
    names = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in collectors) or "none found"
    known = (" (known nsys 2022.4 collector hang with CPU sampling/context-switch tracing)"
             if opts.sample else "")
    message = (f"nsys did not finish {opts.finalize_timeout_s:g} s after the app exited{known};"
               f" killed only this capture's collector ({names})")
    say(message)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        say(f"nsys (pid {proc.pid}) still running; killed its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return message


def _finish_pyspy(pyspy: PySpy | None, manifest: dict[str, Any], rate_hz: int, say: Log
                  ) -> Path | None:
    if pyspy is None:
        manifest["pyspy"] = None
        return None
    rc = pyspy.finish()
    ok = pyspy.out.is_file() and pyspy.out.stat().st_size > 2
    manifest["pyspy"] = {
        "argv": pyspy.argv[1:], "rate_hz": rate_hz, "returncode": rc, "pid": pyspy.pid,
        "exe": pyspy.exe, "start_mono_ns": pyspy.start_mono_ns,
        "file": PYSPY_TIMED if ok else None,
    }
    if not ok:
        say(pyspy.problem())
        with contextlib.suppress(OSError):
            pyspy.out.unlink()
        return None
    return pyspy.out


def _export(nsys: str, report: Path, target: Path, say: Log) -> Path | None:
    """``nsys export`` into the folder, verified: nsys 2022.4 exits 0 and leaves an empty file
    when the disk fills up ("database or disk is full")."""
    run = export_sqlite(report, target, nsys, timeout_s=900)
    output = (run.stderr + "\n" + run.stdout).strip()
    full = re.search(r"disk is full|no space left", output, re.I) is not None
    if run.returncode == 0 and not full and _sqlite_ok(target):
        return target
    with contextlib.suppress(OSError):
        target.unlink()
    full = full or _disk_full(target.parent)
    detail = [line for line in output.splitlines() if line.strip()
              and not line.startswith("Exporting")]
    why = "the disk is full; free space, then " if full else ""
    say(f"`nsys export` failed (rc {run.returncode}): {(detail or ['no output'])[-1][-200:]}; "
        f"the report is kept, {why}`infraprof analyze {target.parent}` will retry the export")
    return None


def _sqlite_ok(path: Path) -> bool:
    """A complete-looking SQLite file: the header and a readable schema with tables."""
    try:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            return int(tables.fetchone()[0]) > 0
    except (OSError, sqlite3.Error):
        return False


def _disk_full(folder: Path, reserve_bytes: int = 1 << 20) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < reserve_bytes
