"""Capture orchestration: run an app under nsys (and py-spy) into one folder, robustly.

Layout of a capture folder (``infraprof analyze FOLDER`` finds everything itself): see
:mod:`infraprof.capture.layout`, the one definition of the file names and the manifest.

Arrangement: ``nsys profile -t cuda,nvtx,osrt --sample=none --cpuctxsw=none -o report APP``
launches the app; for Python apps APP is ``python <bootstrap.py> script.py args`` (identical
semantics, plus clock-sync pulses), and ``py-spy record --pid <app pid> -r 500 --idle --threads
-f chrometrace`` attaches as soon as the bootstrap reports its pid (the bootstrap waits for
py-spy before its first pulse group). Robustness:

* the app's exit status is propagated (nsys returns it; 128+N for a signal);
* Ctrl-C (SIGINT) / SIGTERM to infraprof is forwarded to nsys only, which stops the app and
  still writes the report;
* watchdog: if nsys has not returned ``finalize_timeout_s`` after the app exited (the known
  nsys 2022.4 collector hang), only the collector whose ``/proc/<pid>/cmdline`` ends in
  ``--session-name=profile-<app>-<nsys pid>`` is killed, and this is reported;
* nsys missing → :class:`ToolError` (exit 4); py-spy missing or ptrace denied → a message and
  the capture continues without Python frames.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from infraprof.capture import bootstrap as _bootstrap
from infraprof.capture import layout
from infraprof.capture import manifest as mf
from infraprof.capture.nsys import NSYS_INSTALL_HINT, export_sqlite, find_nsys, nsys_version
from infraprof.capture.proc import find_tool, run_tool
from infraprof.errors import ToolError, UsageError

REPORT_BASE = layout.REPORT_BASE
REPORT_NAME = layout.NSYS_REPORT
SQLITE_NAME = layout.NSYS_SQLITE
PYSPY_TIMED = layout.PYSPY_TIMED
PYSPY_RAW = layout.PYSPY_RAW
SYNC_NAME = layout.SYNC_NAME
BOOTSTRAP = Path(_bootstrap.__file__).resolve()
DEFAULT_TRACE = "cuda,nvtx,osrt"
DEFAULT_RATE_HZ = layout.PYSPY_RATE_HZ
FINALIZE_TIMEOUT_S = float(os.environ.get("INFRAPROF_NSYS_FINALIZE_TIMEOUT_S", "120"))
PYSPY_HINT = "install it with `pip install py-spy` or set INFRAPROF_PYSPY"
_PY_RE = re.compile(r"^python[\d.]*$")
_OPTS_WITH_VALUE = ("-W", "-X")
_OWNED_NSYS = {"-o": "output", "--output": "output"}
_DEFAULTED = ("-t", "--trace", "-s", "--sample", "--cpuctxsw", "--cudabacktrace")
Log = Callable[[str], None]


@dataclass(frozen=True)
class CaptureOptions:
    command: tuple[str, ...]
    output: Path
    pyspy: bool | None = None
    rate_hz: int = DEFAULT_RATE_HZ
    sample: bool = False
    nsys_args: tuple[str, ...] = ()
    timeout_s: float | None = None
    finalize_timeout_s: float = FINALIZE_TIMEOUT_S


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


# ----------------------------------------------------------------------------- command lines

def find_pyspy() -> str | None:
    """py-spy: ``$INFRAPROF_PYSPY``, ``PATH``, or beside the running interpreter (a venv)."""
    found = find_tool("py-spy", "INFRAPROF_PYSPY")
    if found or os.environ.get("INFRAPROF_PYSPY"):
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = shlex.split(first[2:])
    return parts if parts and "python" in " ".join(parts) else None


def is_python_command(argv: Sequence[str]) -> bool:
    """True for ``python[3[.x]] ...``, a ``*.py`` file, or a script with a python shebang."""
    if not argv:
        return False
    first = argv[0]
    if _PY_RE.match(Path(first).name) or first.endswith(".py"):
        return True
    path = shutil.which(first) if os.sep not in first else first
    return path is not None and os.path.isfile(path) and _shebang(path) is not None


def python_launch(argv: Sequence[str], bootstrap: Path = BOOTSTRAP) -> tuple[list[str], bool]:
    """Rewrite a Python command to run through the bootstrap; ``(argv, bootstrapped)``.

    ``python [opts] script.py args`` → ``python [opts] BOOTSTRAP script.py args``, likewise
    ``-m module``; ``./script.py`` uses its shebang interpreter. ``-c``/stdin stay unchanged.
    """
    argv = list(argv)
    first = argv[0]
    if not _PY_RE.match(Path(first).name):
        path = shutil.which(first) if os.sep not in first else first
        interp = _shebang(path) if path else None
        if interp is None and first.endswith(".py"):
            interp = [sys.executable]
        if interp is None:
            return argv, False
        return [*interp, str(bootstrap), *argv], True
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-m", "-c", "-"):
        i += 2 if argv[i] in _OPTS_WITH_VALUE else 1
    if i >= len(argv) or argv[i] in ("-c", "-"):
        return argv, False
    return [*argv[:i], str(bootstrap), *argv[i:]], True


def build_nsys_argv(nsys: str, output_base: Path, app: Sequence[str], sample: bool = False,
                    extra: Sequence[str] = ()) -> list[str]:
    """``nsys profile`` command line: defaults unless ``extra`` sets the same option."""
    for arg in extra:
        if arg.split("=", 1)[0] in _OWNED_NSYS:
            raise UsageError(f"--nsys-arg {arg}: the output is set by infraprof; use -o DIR")
    given = {a.split("=", 1)[0] for a in extra if a.startswith("-")}
    argv = [nsys, "profile"]
    defaults = [("-t", "--trace", f"--trace={DEFAULT_TRACE}")]
    if sample:
        defaults += [("-s", "--sample", "--sample=process-tree"),
                     ("--cpuctxsw", "--cpuctxsw", "--cpuctxsw=process-tree"),
                     ("--cudabacktrace", "--cudabacktrace", "--cudabacktrace=all")]
    else:
        defaults += [("-s", "--sample", "--sample=none"),
                     ("--cpuctxsw", "--cpuctxsw", "--cpuctxsw=none")]
    for short, long, value in defaults:
        if short not in given and long not in given:
            argv.append(value)
    argv += [*extra, "--force-overwrite=true", f"--output={output_base}", *app]
    return argv


# ----------------------------------------------------------------------------- processes

def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def find_collectors(nsys_pid: int) -> list[tuple[int, str]]:
    """nsys collector processes of the ``nsys profile`` with pid ``nsys_pid``: those whose
    command line ends in ``--session-name=profile-<app>-<nsys_pid>`` (nothing broader)."""
    pattern = re.compile(rf"--session-name=profile-.+-{nsys_pid}$")
    found = []
    for pid in _pids():
        parts = _cmdline(pid)
        if parts and pattern.search(parts[-1]):
            found.append((pid, " ".join(parts)))
    return found


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in _pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(pid)
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def find_app_pid(nsys_pid: int) -> int | None:
    """The app nsys launched: the child of ``nsys-launcher`` that is not ``nsys-tee``."""
    kids = _children_map()
    todo = list(kids.get(nsys_pid, []))
    while todo:
        pid = todo.pop(0)
        if _comm(pid).startswith("nsys-launcher"):
            for child in kids.get(pid, []):
                if not _comm(child).startswith("nsys-tee"):
                    return child
        todo.extend(kids.get(pid, []))
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pump(stream: IO[str], sink: IO[str], tail: deque[str], seen: threading.Event | None,
          marker: str = "") -> None:
    for line in stream:
        tail.append(line)
        if seen is not None and marker in line:
            seen.set()
        if sink is not None:
            with contextlib.suppress(OSError, ValueError):
                sink.write(line)
                sink.flush()


def _pump_thread(stream: IO[str] | None, sink: IO[str] | None, tail: deque[str],
                 seen: threading.Event | None = None, marker: str = "") -> threading.Thread:
    t = threading.Thread(target=_pump, args=(stream, sink, tail, seen, marker), daemon=True)
    t.start()
    return t


class _PySpy:
    """py-spy attached to the app; output and failure messages kept."""

    def __init__(self, binary: str, pid: int, out: Path, rate_hz: int) -> None:
        self.argv = [binary, "record", "--pid", str(pid), "--rate", str(rate_hz), "--idle",
                     "--threads", "--format", "chrometrace", "--output", str(out)]
        self.out = out
        self.start_mono_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     start_new_session=True)
        self.sampling = threading.Event()
        self.lines: deque[str] = deque(maxlen=40)
        self.threads = [
            _pump_thread(self.proc.stdout, None, self.lines, self.sampling, "Sampling process"),
            _pump_thread(self.proc.stderr, None, self.lines),
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

    def problem(self) -> str:
        text = " ".join(line.strip() for line in self.lines if line.strip())
        if re.search(r"Permission denied|Operation not permitted|ptrace", text, re.I):
            return ("py-spy was denied ptrace access to the app (run as root, or give the "
                    "container CAP_SYS_PTRACE and a permissive kernel.yama.ptrace_scope); "
                    "continuing without Python frames")
        return f"py-spy failed ({text[-300:] or f'rc {self.proc.returncode}'}); " \
               "continuing without Python frames"


# ----------------------------------------------------------------------------- the capture

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


def _prepare_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a directory; choose another -o")
    if folder.is_dir() and any(folder.iterdir()):
        raise UsageError(f"{folder}: directory is not empty; choose a new -o DIR")
    folder.mkdir(parents=True, exist_ok=True)


def _tool_versions(nsys: str, pyspy: str | None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"nsys": nsys_version(nsys), "py-spy": None,
                                       "python": sys.version.split()[0]}
    if pyspy:
        run = run_tool([pyspy, "--version"], timeout_s=30)
        versions["py-spy"] = run.stdout.strip().removeprefix("py-spy ") or None
    return versions


def run_capture(opts: CaptureOptions, log: Log) -> CaptureResult:
    """One capture of ``opts.command`` into ``opts.output``. Raises ``ToolError`` when nsys is
    missing or fails before the app starts, ``UsageError`` for a bad folder."""
    if not opts.command:
        raise UsageError("no command to capture; usage: infraprof capture [OPTIONS] -- CMD ...")
    nsys = find_nsys()
    if nsys is None:
        raise ToolError(f"nsys not found (INFRAPROF_NSYS or PATH); {NSYS_INSTALL_HINT}")
    folder = opts.output.resolve()
    _prepare_folder(folder)
    messages: list[str] = []

    def say(msg: str) -> None:
        messages.append(msg)
        log(msg)

    python = is_python_command(opts.command)
    want_pyspy = python if opts.pyspy is None else opts.pyspy
    pyspy_bin = find_pyspy() if want_pyspy else None
    if want_pyspy and pyspy_bin is None:
        say(f"py-spy not found; continuing without Python frames ({PYSPY_HINT})")
    app, boot = python_launch(opts.command) if python else (list(opts.command), False)
    if python and not boot:
        say("Python command without a script (-c/stdin): no clock-sync pulses; Python "
            "samples will be placed on the timeline only approximately")
    sync = folder / SYNC_NAME
    env = dict(os.environ, INFRAPROF_SYNC_FILE=str(sync))
    env["INFRAPROF_SYNC_WAIT_S"] = "10" if pyspy_bin else "0"
    manifest = mf.base_manifest(list(opts.command), _tool_versions(nsys, pyspy_bin))
    argv = build_nsys_argv(nsys, folder / REPORT_BASE, app, opts.sample, opts.nsys_args)
    manifest["nsys_argv"] = argv[1:]
    anchor = mf.read_clock_anchor()
    manifest.update(clock_anchor=anchor, start_utc=mf.iso_utc(anchor["realtime_ns"]))
    mf.write_manifest(folder, manifest)

    tails: dict[str, deque[str]] = {"out": deque(maxlen=60), "err": deque(maxlen=60)}
    pyspy: _PySpy | None = None
    app_pid: int | None = None
    app_gone_at: float | None = None
    hung = timed_out = False
    tool_failure: str | None = None
    t0 = time.monotonic()
    with _Signals(say) as signals:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        signals.target = proc.pid
        pumps = [_pump_thread(proc.stdout, sys.stdout, tails["out"]),
                 _pump_thread(proc.stderr, sys.stderr, tails["err"])]
        next_scan = 0.0
        while proc.poll() is None:
            time.sleep(0.01)
            now = time.monotonic()
            if app_pid is None and now >= next_scan:
                next_scan = now + 0.1
                app_pid = _read_pid(sync) if boot else None
                if app_pid is None:
                    app_pid = find_app_pid(proc.pid)
            if app_pid is not None and pyspy is None and pyspy_bin is not None:
                pyspy = _PySpy(pyspy_bin, app_pid, folder / PYSPY_TIMED, opts.rate_hz)
            if pyspy is not None and not sync.with_suffix(".json.go").exists() and (
                    pyspy.sampling.is_set() or pyspy.failed_early()
                    or now - t0 > 8):
                _touch(sync.with_suffix(".json.go"))
            if app_pid is not None and app_gone_at is None and not _alive(app_pid):
                app_gone_at = now
            if (opts.timeout_s is not None and not timed_out and now - t0 > opts.timeout_s):
                timed_out = True
                say(f"timeout: the app ran longer than {opts.timeout_s:g} s; stopping it "
                    "(the report is still written)")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
                app_gone_at = app_gone_at or now
            if signals.count and app_gone_at is None:
                app_gone_at = now
            if app_gone_at is not None and now - app_gone_at > opts.finalize_timeout_s:
                hung = True
                tool_failure = _break_hang(proc, opts.finalize_timeout_s, say)
                break
        rc = proc.wait()
        for t in pumps:
            t.join(timeout=5)
    interrupted = signals.count > 0
    end = mf.read_clock_anchor()
    pyspy_file = _finish_pyspy(pyspy, manifest, opts.rate_hz, say)
    sync_record = _read_json(sync)
    for leftover in (sync, sync.with_suffix(".json.pid"), sync.with_suffix(".json.go")):
        with contextlib.suppress(OSError):
            leftover.unlink()
    report = folder / REPORT_NAME
    app_rc = _app_exit(rc, hung, sync_record)
    if not report.is_file():
        detail = "".join(tails["err"]).strip().splitlines() or ["no report written"]
        tool_failure = tool_failure or f"nsys failed (rc {rc}): {detail[-1]}"
    sqlite = _export(nsys, report, folder / SQLITE_NAME, say) if report.is_file() else None
    manifest.update(
        exit_code=app_rc, nsys_returncode=rc, end_utc=mf.iso_utc(end["realtime_ns"]),
        duration_s=round((end["monotonic_ns"] - anchor["monotonic_ns"]) / 1e9, 3),
        interrupted=interrupted, timed_out=timed_out, nsys_hung=hung,
        report=REPORT_NAME if report.is_file() else None,
        sqlite=SQLITE_NAME if sqlite else None, sync=sync_record, messages=messages,
        tool_failure=tool_failure,
    )
    mf.write_manifest(folder, manifest)
    return CaptureResult(folder, app_rc, report if report.is_file() else None, sqlite,
                         pyspy_file, manifest, messages, hung, interrupted, tool_failure)


def _read_pid(sync: Path) -> int | None:
    try:
        return int(sync.with_suffix(".json.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

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


def _break_hang(proc: subprocess.Popen[str], waited_s: float, say: Log) -> str:
    collectors = find_collectors(proc.pid)
    for pid, _ in collectors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    names = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in collectors) or "none found"
    message = (f"nsys did not finish {waited_s:g} s after the app exited (known nsys hang with "
               f"CPU sampling/context-switch tracing); killed only this capture's collector "
               f"({names})")
    say(message)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        say(f"nsys (pid {proc.pid}) still running; killed its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return message


def _finish_pyspy(pyspy: _PySpy | None, manifest: dict[str, Any], rate_hz: int, say: Log
                  ) -> Path | None:
    if pyspy is None:
        manifest["pyspy"] = None
        return None
    rc = pyspy.finish()
    ok = pyspy.out.is_file() and pyspy.out.stat().st_size > 2
    manifest["pyspy"] = {
        "argv": pyspy.argv[1:], "rate_hz": rate_hz, "returncode": rc,
        "start_mono_ns": pyspy.start_mono_ns, "file": PYSPY_TIMED if ok else None,
    }
    if not ok:
        say(pyspy.problem())
        with contextlib.suppress(OSError):
            pyspy.out.unlink()
        return None
    return pyspy.out


def _export(nsys: str, report: Path, target: Path, say: Log) -> Path | None:
    run = export_sqlite(report, target, nsys, timeout_s=900)
    if run.returncode == 0 and target.is_file():
        return target
    say(f"`nsys export` failed (rc {run.returncode}): "
        f"{(run.stderr or run.stdout).strip()[-300:]}; the report is kept, "
        f"`infraprof analyze` will retry the export")
    with contextlib.suppress(OSError):
        target.unlink()
    return None
