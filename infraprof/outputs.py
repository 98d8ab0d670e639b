"""Every file infraprof writes goes through here: outputs never clobber inputs or devices.

Rules (see ``docs/reliability.md``):

* an output path that resolves to an input (same inode, through symlinks and hard links) is
  refused with a usage error (exit 2) before anything is written;
* a regular file (or an absent path) is written atomically: a temp file in the same
  directory, ``fsync``, then ``os.replace``; an existing file keeps its permission bits;
* a symlink is followed and its target written (atomically when the target is regular);
* character devices, FIFOs, sockets and ``/dev/stdout``-style paths are streamed to as they
  are: opened without ``O_CREAT``/``O_TRUNC`` and never replaced;
* a write that fails (read-only directory, ``ENOSPC``, ``EACCES``) raises
  :class:`~infraprof.errors.OutputError` (exit 3) after removing the temp file; a closed pipe
  raises :class:`~infraprof.errors.OutputClosed`, which the CLI turns into a quiet exit 141.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from infraprof.capture.layout import CaptureFolder
from infraprof.errors import OutputClosed, OutputError, UsageError

_STREAM_PATH_RE = re.compile(r"^/(dev/(stdout|stderr|fd/\d+)|proc/(self|\d+)/fd/\d+)$")


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _protected(inputs: Iterable[Path | None]) -> list[Path]:
    """The files behind ``inputs``: a directory (a capture folder) stands for the files
    infraprof reads in it and in its ``run-*`` sub-folders."""
    files: list[Path] = []
    for path in inputs:
        if path is None:
            continue
        if path.is_dir():
            with contextlib.suppress(OSError):
                folder = CaptureFolder(path)
                files += folder.input_files()
                for run in folder.runs():
                    files += CaptureFolder(run).input_files()
        else:
            files.append(path)
    return files


def refuse_inputs(output: Path | None, inputs: Iterable[Path | None], option: str = "-o"
                  ) -> None:
    """Raise :class:`UsageError` when ``output`` is (or resolves to) one of ``inputs``."""
    if output is None or not os.path.exists(output):
        return
    for path in _protected(inputs):
        if _same_file(output, path):
            raise UsageError(f"{output}: {option} would overwrite the input {path}; write the "
                             "output to another file")


def is_stream(path: Path) -> bool:
    """True for paths written in place: devices, FIFOs, sockets and ``/dev/stdout``-style."""
    if _STREAM_PATH_RE.match(str(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _fail(path: Path, what: str, exc: OSError) -> OutputError:
    reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return OutputError(f"{path}: cannot write {what} ({reason}); choose another path or free "
                       "space")


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_output(path: Path, data: str | bytes, inputs: Iterable[Path | None] = (),
                 what: str = "the output", option: str = "-o") -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` following the module's rules.

    Raises :class:`UsageError` (exit 2) for a directory or a path that is an input,
    :class:`OutputError` (exit 3) when writing fails, :class:`OutputClosed` for a closed pipe.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open_output(path, inputs, what, option) as out:
        out.write(payload)


def append_output(path: Path, text: str, what: str) -> None:
    """Append ``text`` to ``path`` (created if absent): for files that others also append to,
    such as ``$GITHUB_STEP_SUMMARY``. Raises :class:`OutputError` when that fails."""
    if os.path.isdir(path):
        raise OutputError(f"{path}: cannot write {what} (is a directory)")
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except BrokenPipeError as exc:
        raise OutputClosed(str(path)) from exc
    except OSError as exc:
        raise _fail(path, what, exc) from exc


class OutputStream:
    """Where :func:`open_output` writes: ``write(bytes)`` in as many chunks as the caller
    likes. A closed pipe raises :class:`OutputClosed`, any other failure
    :class:`OutputError` naming the path."""

    def __init__(self, fd: int | None, path: Path | None, what: str) -> None:
        self.fd, self.path, self.what = fd, path, what
        self.written = 0

    def write(self, data: bytes) -> None:
        name = Path(str(self.path or "<stdout>"))
        try:
            if self.fd is None:
                sys.stdout.buffer.write(data)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
        except BrokenPipeError as exc:
            raise OutputClosed(str(name)) from exc
        except OSError as exc:
            raise _fail(name, self.what, exc) from exc
        self.written += len(data)


@contextlib.contextmanager
def open_output(path: Path | None, inputs: Iterable[Path | None] = (),
                what: str = "the output", option: str = "-o") -> Iterator[OutputStream]:
    """Stream an output of any size to ``path`` (stdout when None) following the module's
    rules: a regular file is written to a temp file beside it and replaces it only when the
    ``with`` block ends without an error (``fsync`` first); devices, FIFOs and
    ``/dev/stdout``-style paths are written in place. Raises as :func:`write_output`."""
    if path is None:
        yield OutputStream(None, None, what)
        try:
            sys.stdout.buffer.flush()
        except BrokenPipeError as exc:
            raise OutputClosed("<stdout>") from exc
        return
    refuse_inputs(path, inputs, option)
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory; give a file name for {option}")
    if is_stream(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0))
        except OSError as exc:
            raise _fail(path, what, exc) from exc
        try:
            yield OutputStream(fd, path, what)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        return
    yield from _atomic_stream(path, what)


def _atomic_stream(path: Path, what: str) -> Iterator[OutputStream]:
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise OutputError(f"{path}: cannot write {what} (no such directory {target.parent}); "
                          "create it first")
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    except OSError as exc:
        raise _fail(target, what, exc) from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _fail(target, what, exc) from exc
    done = False
    try:
        yield OutputStream(fd, target, what)
        try:
            os.fsync(fd)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            raise _fail(target, what, exc) from exc
        done = True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
