"""Open an nsys input as a :class:`~infraprof.model.trace.Trace`.

Accepted: an nsys SQLite export, an ``.nsys-rep``/``.qdrep`` report (exported with the
installed nsys, cached), either gzip-compressed, or a capture folder holding one of those.
Detection is by content (:mod:`infraprof.inputs.detect`), not by file name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from infraprof.capture.layout import CaptureFolder
from infraprof.errors import InputError
from infraprof.inputs.detect import NSYS_KINDS, InputKind
from infraprof.inputs.source import Input, naming_source, open_input
from infraprof.model.trace import Trace, TraceMeta
from infraprof.readers import nsys_report
from infraprof.readers.columnar_cache import read_nsys_cached
from infraprof.readers.nsys_sqlite import NsysTables

WANTED: Final = "an nsys report, its SQLite export or a capture folder"


def resolve_input(path: Path) -> Input:
    """The nsys file to read for ``path`` (a file, a gzip file or a capture folder), opened.
    ``InputError`` (exit 3) when ``path`` holds no nsys report or SQLite export."""
    opened = open_input(path, NSYS_KINDS | {InputKind.CAPTURE_FOLDER}, WANTED)
    if opened.kind is InputKind.CAPTURE_FOLDER:
        return open_input(CaptureFolder(path).nsys_file(), NSYS_KINDS, WANTED)
    return opened


def sqlite_for(path: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The SQLite export to read for ``path``: the file itself, its inflated copy, or the
    cached ``nsys export`` of a report. ``InputError`` (exit 3), ``ToolError`` (exit 4)."""
    opened = resolve_input(path)
    if opened.kind is InputKind.NSYS_REPORT:
        with naming_source(opened):
            return nsys_report.export_report(opened.path, progress)
    return opened.path


def load_trace(path: Path, progress: Callable[[str], None] | None = None,
               use_cache: bool = True, with_callchains: bool = True,
               all_columns: bool = True) -> Trace:
    """Load ``path`` into a Trace. Raises ``InputError`` (exit 3) or ``ToolError`` (exit 4).

    ``use_cache``: read through the columnar cache (:mod:`infraprof.readers.columnar_cache`);
    ``with_callchains=False`` leaves ``Trace.callchains`` empty (only CPU stacks need them);
    ``all_columns=False`` leaves out the columns no analysis reads
    (:data:`~infraprof.tables.ANALYSIS_OMITS`)."""
    sqlite_path = sqlite_for(path, progress)
    if progress:
        progress(f"Reading {sqlite_path.name}")
    try:
        tables = read_nsys_cached(sqlite_path, with_callchains, use_cache,
                                  all_columns=all_columns)
    except InputError as exc:
        if str(sqlite_path) in exc.message and str(path) not in exc.message:
            raise InputError(f"{path}: {exc.message}") from exc
        raise
    meta = TraceMeta(
        source=str(path),
        sqlite_path=str(sqlite_path),
        nsys_version=tables.meta.get("EXPORT_PRODUCT_VERSION"),
        schema_version=tables.meta.get("EXPORT_SCHEMA_VERSION"),
        session_start_utc_ns=tables.session_start_utc_ns,
        analysis_start_ns=tables.analysis_start_ns,
        analysis_end_ns=tables.analysis_end_ns,
        capture_command=capture_command(tables),
    )
    return Trace(meta=meta, data_quality=tuple(tables.data_quality), **tables.frames)


def capture_command(tables: NsysTables) -> str | None:
    """The profiled command line from the export's ``PROCESS_0`` capture records."""
    command = tables.capture.get("PROCESS_0:COMMAND")
    if command is None:
        return None
    args = [
        v for k, v in sorted(tables.capture.items(), key=lambda kv: _arg_index(kv[0]))
        if k.startswith("PROCESS_0:ARGUMENT_")
    ]
    return " ".join([command, *args])


def _arg_index(key: str) -> int:
    tail = key.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1
