"""Open any supported input as a :class:`~infraprof.model.trace.Trace`.

Accepted: an nsys SQLite export, an ``.nsys-rep``/``.qdrep`` report (exported with the
installed nsys, cached), a capture folder holding one of those, or a PyTorch profiler (Kineto)
Chrome-trace JSON, plain or gzipped. Detection is by content (magic bytes, the JSON's start),
not by file name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infraprof.errors import InputError
from infraprof.model.clock import AlignedPyspy, Alignment, NsysClock, PyspyClock
from infraprof.model.trace import Trace, TraceMeta
from infraprof.readers import kineto, nsys_report
from infraprof.readers.kineto_python import python_profile
from infraprof.readers.nsys_sqlite import read_nsys_sqlite
from infraprof.readers.sqlite_db import has_sqlite_header

_CAPTURE_CANDIDATES = ("report.sqlite", "report.nsys-rep", "report.qdrep")


def _from_folder(folder: Path) -> Path:
    for name in _CAPTURE_CANDIDATES:
        if (folder / name).is_file():
            return folder / name
    reports = sorted(
        [*folder.glob("*.sqlite"), *folder.glob("*.nsys-rep"), *folder.glob("*.qdrep")]
    )
    if len(reports) == 1:
        return reports[0]
    raise InputError(
        f"{folder}: is a directory without a single nsys report or SQLite export in it; "
        "pass the .nsys-rep or .sqlite file itself"
    )


def resolve_input(path: Path) -> Path:
    """The nsys file to read for ``path`` (a file or a capture folder)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory; check the path")
    if path.is_dir():
        return _from_folder(path)
    return path


@dataclass(frozen=True)
class LoadedInput:
    """A loaded trace and, for Kineto traces recorded ``with_stack=True``, its Python
    function events as a profile on the trace's own timeline (used as py-spy samples are)."""

    trace: Trace
    python: AlignedPyspy | None = None


def load_trace(path: Path, progress: Callable[[str], None] | None = None) -> Trace:
    """Load ``path`` into a Trace. Raises ``InputError`` (exit 3) or ``ToolError`` (exit 4)."""
    return load_input(path, progress).trace


def load_input(path: Path, progress: Callable[[str], None] | None = None) -> LoadedInput:
    """:func:`load_trace` plus the Python frames a Kineto trace carries."""
    source = resolve_input(path)
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise InputError(f"{source}: cannot be read ({exc.strerror}); check permissions") from exc
    if size == 0:
        raise InputError(f"{source}: file is empty; re-run the capture or the export")
    if kineto.is_kineto(source):
        return _load_kineto(path, source, progress)
    if nsys_report.is_report(source):
        sqlite_path = nsys_report.export_report(source, progress)
    elif has_sqlite_header(source):
        sqlite_path = source
    else:
        raise InputError(
            f"{source}: not an nsys report, SQLite export or PyTorch profiler trace "
            "(unrecognised content); pass a .nsys-rep/.qdrep file, the output of `nsys export "
            "--type sqlite` or a torch.profiler *.pt.trace.json[.gz]"
        )
    if progress:
        progress(f"Reading {sqlite_path.name}")
    tables = read_nsys_sqlite(sqlite_path)
    command = tables.capture.get("PROCESS_0:COMMAND")
    if command is not None:
        args = [
            v for k, v in sorted(tables.capture.items(), key=lambda kv: _arg_index(kv[0]))
            if k.startswith("PROCESS_0:ARGUMENT_")
        ]
        command = " ".join([command, *args])
    meta = TraceMeta(
        source=str(path),
        sqlite_path=str(sqlite_path),
        nsys_version=tables.meta.get("EXPORT_PRODUCT_VERSION"),
        schema_version=tables.meta.get("EXPORT_SCHEMA_VERSION"),
        session_start_utc_ns=tables.session_start_utc_ns,
        analysis_start_ns=tables.analysis_start_ns,
        analysis_end_ns=tables.analysis_end_ns,
        capture_command=command,
    )
    return LoadedInput(Trace(meta=meta, **tables.frames))


def _load_kineto(path: Path, source: Path, progress: Callable[[str], None] | None
                 ) -> LoadedInput:
    tables = kineto.read_kineto(source, progress)
    window = tables.window or (None, None)
    schema = tables.header.get("schemaVersion")
    meta = TraceMeta(
        source=str(path), sqlite_path=str(source), nsys_version=None,
        schema_version=str(schema) if schema is not None else None,
        session_start_utc_ns=tables.session_start_utc_ns, analysis_start_ns=window[0],
        analysis_end_ns=window[1], capture_command=None, input_format="kineto",
        rank=tables.rank, world_size=tables.world_size, warnings=tuple(tables.warnings),
    )
    trace = Trace(meta=meta, **tables.frames)
    return LoadedInput(trace, _kineto_python(tables, trace))


def _kineto_python(tables: kineto.KinetoTables, trace: Trace) -> AlignedPyspy | None:
    """``python_function`` events as samples on the trace timeline: same clock, so the
    alignment error is the sampling period alone."""
    names = {int(t): str(n) for t, n in zip(trace.threads["tid"], trace.threads["name"],
                                            strict=True)}
    profile = python_profile(tables.python_events, names, str(tables.path))
    if profile is None:
        return None
    period = round(1e9 / (profile.rate_hz or 1.0))
    alignment = Alignment(NsysClock(offset_ns=0, method="kineto-timeline", error_ns=0),
                          PyspyClock(offset_ns=0, method="kineto-python-events",
                                     error_ns=period))
    return AlignedPyspy(profile, alignment, profile.samples, profile.notes)


def _arg_index(key: str) -> int:
    tail = key.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1
