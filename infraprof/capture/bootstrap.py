"""Run a Python program exactly like ``python script.py``, bracketed by clock-sync pulses.

Usage::

    python -m infraprof.capture.bootstrap script.py [args...]
    python -m infraprof.capture.bootstrap -m package.module [args...]
    python /path/to/infraprof/capture/bootstrap.py script.py [args...]   # no install needed

Semantics match ``python script.py`` (``python -m module``): ``sys.argv``, ``sys.path[0]``,
``__name__ == "__main__"``, ``__file__``, the exit code (``sys.exit``, uncaught exceptions → 1
with the usual traceback, Ctrl-C → SIGINT status) are those of the plain command.

Before and after the program the bootstrap emits an in-band **sync pulse** group: three short
CPU-busy periods of distinct lengths (15, 25, 35 ms) in the function ``_infraprof_sync_pulse``,
each at a known ``CLOCK_MONOTONIC`` time, plus NVTX marks ``infraprof-clock mono_ns=<ns>`` and
``infraprof-pulse start_mono_ns=<ns> end_mono_ns=<ns>`` (when the ``nvtx`` package is importable).
py-spy sees the pulses as samples in ``_infraprof_sync_pulse``; matching their edges with the
known times gives py-spy's clock offset (:mod:`infraprof.model.clock`). The pulse times are also
written to ``$INFRAPROF_SYNC_FILE`` (JSON) when set, so nsys is not needed to know them.

Environment (set by ``infraprof capture``; all optional):

* ``INFRAPROF_SYNC_FILE``: JSON file to write (pid, pulses, exit status);
  ``<file>.pid`` is written at start-up.
* ``INFRAPROF_SYNC_WAIT_S``: wait up to this long for ``<file>.go`` (py-spy attached) before
  the first pulse group.
* ``INFRAPROF_SYNC=0``: no pulses at all (plain run).

This file uses only the standard library (plus ``nvtx`` when present) and runs on Python 3.8+,
so ``infraprof capture`` can run it by path with the user's own interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable

PULSE_FUNCTION = "_infraprof_sync_pulse"
PULSE_LENGTHS_S = (0.015, 0.025, 0.035)
PULSE_GAP_S = 0.010
CLOCK_MARK_PREFIX = "infraprof-clock mono_ns="
PULSE_MARK_PREFIX = "infraprof-pulse "
SETTLE_S = 0.03

_USAGE = "usage: python -m infraprof.capture.bootstrap (script.py | -m module) [args...]"


def _mono() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _infraprof_sync_pulse(seconds: float) -> tuple[int, int]:
    """Burn CPU for ``seconds``; return the CLOCK_MONOTONIC (start, end) of the busy period."""
    start = _mono()
    deadline = start + int(seconds * 1e9)
    spins = 0
    while _mono() < deadline:
        spins += 1
    return start, _mono()


class _Sync:
    """Pulse emitter; a no-op when disabled."""

    def __init__(self) -> None:
        self.enabled = os.environ.get("INFRAPROF_SYNC", "1") != "0"
        self.path = os.environ.get("INFRAPROF_SYNC_FILE") or None
        self.pulses: list[dict[str, object]] = []
        self.marks: list[int] = []
        self.mark = self._nvtx_mark() if self.enabled else None
        self.record: dict[str, object] = {
            "pid": os.getpid(), "tid": threading.get_native_id(),
            "pulse_function": PULSE_FUNCTION, "pulses": self.pulses, "clock_marks": self.marks,
            "nvtx": self.mark is not None,
        }

    @staticmethod
    def _nvtx_mark() -> Callable[..., object] | None:
        try:
            import nvtx
        except Exception:
            return None
        mark: Callable[..., object] = nvtx.mark
        return mark

    def start(self) -> None:
        if self.path:
            _write(self.path + ".pid", str(os.getpid()))
        if not self.enabled:
            return
        wait = float(os.environ.get("INFRAPROF_SYNC_WAIT_S", "0") or 0)
        if wait > 0 and self.path:
            deadline = time.monotonic() + wait
            while not os.path.exists(self.path + ".go") and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(SETTLE_S)
        self.group("start")

    def group(self, phase: str) -> None:
        if not self.enabled:
            return
        for i, length in enumerate(PULSE_LENGTHS_S):
            if i:
                time.sleep(PULSE_GAP_S)
            self._clock_mark()
            start, end = _infraprof_sync_pulse(length)
            self.pulses.append({"phase": phase, "start_mono_ns": start, "end_mono_ns": end})
            if self.mark is not None:
                self.mark(message=f"{PULSE_MARK_PREFIX}start_mono_ns={start} end_mono_ns={end}")
        time.sleep(PULSE_GAP_S)
        self._clock_mark()
        self.save()

    def _clock_mark(self) -> None:
        if self.mark is None:
            return
        mono = _mono()
        self.mark(message=f"{CLOCK_MARK_PREFIX}{mono}")
        self.marks.append(mono)

    def save(self, **extra: object) -> None:
        if not self.path:
            return
        self.record.update(extra)
        _write(self.path, json.dumps(self.record, indent=1))


def _write(path: str, text: str) -> None:
    try:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        print(f"infraprof bootstrap: cannot write {path}: {exc}", file=sys.stderr)


def _strip_traceback(exc: BaseException) -> BaseException:
    """Drop the bootstrap's and runpy's frames so the traceback looks like ``python script.py``."""
    tb = exc.__traceback__
    own = {os.path.abspath(__file__)}
    while tb is not None and (
        os.path.abspath(tb.tb_frame.f_code.co_filename) in own
        or tb.tb_frame.f_globals.get("__name__") == "runpy"
    ):
        tb = tb.tb_next
    return exc.with_traceback(tb)  # None when the error is in the bootstrap's call (SyntaxError)


def _die_of_sigint(exc: KeyboardInterrupt) -> None:
    """What the interpreter does with an uncaught KeyboardInterrupt: print the traceback, run
    the exit handlers, then end by SIGINT so that the parent sees the signal status."""
    import atexit
    import signal

    stripped = _strip_traceback(exc)
    sys.excepthook(type(stripped), stripped, stripped.__traceback__)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    raise SystemExit(128 + signal.SIGINT)  # only where SIGINT cannot end the process


def _run_script(path: str) -> None:
    """Execute ``path`` as ``__main__`` like the interpreter does for ``python path``."""
    import builtins
    import importlib.machinery
    import io
    import types

    main = types.ModuleType("__main__")
    loader = importlib.machinery.SourceFileLoader("__main__", path)
    main.__dict__.update(__file__=path, __cached__=None, __loader__=loader, __package__=None,
                         __spec__=None, __builtins__=builtins)
    sys.modules["__main__"] = main
    with io.open_code(path) as fh:
        code = compile(fh.read(), path, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def _exit_status(exc: BaseException | None) -> object:
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        return 1
    return 1


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``argv`` is everything after the bootstrap itself."""
    import runpy

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stderr)
        raise SystemExit(2 if not args else 0)
    module = None
    if args[0] == "-m":
        if len(args) < 2:
            print(_USAGE, file=sys.stderr)
            raise SystemExit(2)
        module, args = args[1], args[2:]
        sys.argv = [module, *args]  # runpy replaces argv[0] with the module's file
        sys.path[0] = os.getcwd()
    else:
        script = args[0]
        if not os.path.exists(script):
            print(f"{sys.executable}: can't open file {os.path.abspath(script)!r}: "
                  "[Errno 2] No such file or directory", file=sys.stderr)
            raise SystemExit(2)
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(script))
    sync = _Sync()
    sync.start()
    failure: BaseException | None = None
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        elif os.path.isfile(sys.argv[0]):
            _run_script(os.path.abspath(sys.argv[0]))
        else:  # a directory or zip file with __main__.py
            runpy.run_path(sys.argv[0], run_name="__main__")
    except KeyboardInterrupt as exc:
        sync.save(exit="KeyboardInterrupt")
        _die_of_sigint(exc)
    except BaseException as exc:
        failure = exc
    if failure is None or isinstance(failure, (SystemExit, Exception)):
        sync.group("end")
    sync.save(exit_status=_exit_status(failure))
    if isinstance(failure, SystemExit):
        raise failure
    if failure is not None:
        stripped = _strip_traceback(failure)
        sys.excepthook(type(stripped), stripped, stripped.__traceback__)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
