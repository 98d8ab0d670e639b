"""Command lines of a capture: is the app Python, how the bootstrap wraps it, the ``nsys
profile`` argv, and whether the program exists at all (checked before anything is created)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from infraprof.capture import bootstrap as _bootstrap
from infraprof.errors import UsageError

BOOTSTRAP = Path(_bootstrap.__file__).resolve()
DEFAULT_TRACE = "cuda,nvtx,osrt"
_PY_RE = re.compile(r"^python[\d.]*$")
_OPTS_WITH_VALUE = ("-W", "-X")
_OWNED_NSYS = {"-o": "output", "--output": "output"}
LAUNCHERS = frozenset({"env", "uv", "poetry", "pipenv", "pdm", "hatch", "conda", "mamba",
                       "micromamba", "pixi", "rye"})


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


def _launched(argv: Sequence[str]) -> int:
    """Where the interpreter starts in ``argv`` behind a launcher (``env [VAR=…] python3``,
    ``uv run … python``, ``poetry run python``, ``conda run -n X python``, …): the index of the
    first ``python*`` argument, or of the first ``*.py`` one after ``uv run``; 0 otherwise."""
    name = Path(argv[0]).name if argv else ""
    if name not in LAUNCHERS or (name != "env" and list(argv[1:2]) != ["run"]):
        return 0
    for i, arg in enumerate(argv[1:], start=1):
        if _PY_RE.match(Path(arg).name) or (name == "uv" and arg.endswith(".py")):
            return i
    return 0


def is_python_command(argv: Sequence[str]) -> bool:
    """True for ``python[3[.x]] ...``, a ``*.py`` file, a script with a python shebang, or one
    of these behind a launcher (``env``, ``uv run``, ``poetry run``, …)."""
    if not argv:
        return False
    first = argv[0]
    if _PY_RE.match(Path(first).name) or first.endswith(".py") or _launched(argv):
        return True
    path = shutil.which(first) if os.sep not in first else first
    return path is not None and os.path.isfile(path) and _shebang(path) is not None


def python_launch(argv: Sequence[str], bootstrap: Path = BOOTSTRAP) -> tuple[list[str], bool]:
    """Rewrite a Python command to run through the bootstrap; ``(argv, bootstrapped)``.

    ``python [opts] script.py args`` → ``python [opts] BOOTSTRAP script.py args``, likewise
    ``-m module``; ``./script.py`` uses its shebang interpreter; behind a launcher
    (``uv run python app.py``) the launcher is kept. ``-c``/stdin stay unchanged.
    """
    argv = list(argv)
    at = _launched(argv)
    if at:
        rest, boot = python_launch(argv[at:], bootstrap)
        if argv[at].endswith(".py") and not _PY_RE.match(Path(argv[at]).name):
            rest, boot = [str(bootstrap), *argv[at:]], True  # `uv run app.py`
        return [*argv[:at], *rest], boot
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


def _check_executable(program: str, original: str) -> None:
    if os.sep in program:
        if not os.path.exists(program):
            raise UsageError(f"{original}: no such file; check the path of the program to "
                             "capture")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise UsageError(f"{original}: not an executable file (chmod +x it, or name its "
                             "interpreter, e.g. `infraprof capture -- python3 app.py`)")
    elif shutil.which(program) is None:
        raise UsageError(f"{original}: command not found on PATH; give its full path")


def check_program(command: Sequence[str], app: Sequence[str], bootstrapped: bool) -> None:
    """Refuse (``UsageError``, exit 2) a program that cannot be started, resolved like
    ``execvp`` (a name with ``/`` as a path, else on ``PATH``), before any folder exists.
    ``app`` is what nsys will run (``command`` rewritten for the bootstrap); when bootstrapped,
    the script after the bootstrap must exist too (``-m module`` is left to Python)."""
    _check_executable(app[0], command[0])
    if Path(app[0]).name == "env" and len(app) > 1 and not app[1].startswith("-") \
            and "=" not in app[1]:
        _check_executable(app[1], app[1])  # `#!/usr/bin/env python3`, `env python3 app.py`
    if bootstrapped:
        at = list(app).index(str(BOOTSTRAP)) + 1
        script = app[at] if at < len(app) else None
        if script is not None and script != "-m" and not os.path.exists(script):
            raise UsageError(f"{script}: no such file; check the path of the script to capture")


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
