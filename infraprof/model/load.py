"""Open any supported input as a :class:`~infraprof.model.trace.Trace`.

Accepted: an nsys SQLite export, an ``.nsys-rep``/``.qdrep`` report (exported with the
installed nsys, cached), or a capture folder holding one of those. Detection is by content
(magic bytes), not by file name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infraprof.errors import InputError
from infraprof.model.trace import Trace, TraceMeta
from infraprof.readers import nsys_report
from infraprof.readers.columnar_cache import read_nsys_cached
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


def load_trace(path: Path, progress: Callable[[str], None] | None = None,
               use_cache: bool = True, with_callchains: bool = True) -> Trace:
    """Load ``path`` into a Trace. Raises ``InputError`` (exit 3) or ``ToolError`` (exit 4).

    ``use_cache``: read through the columnar cache (:mod:`infraprof.readers.columnar_cache`);
    ``with_callchains=False`` leaves ``Trace.callchains`` empty (only stacks need them)."""
    source = resolve_input(path)
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise InputError(f"{source}: cannot be read ({exc.strerror}); check permissions") from exc
    if size == 0:
        raise InputError(f"{source}: file is empty; re-run the capture or the export")
    if nsys_report.is_report(source):
        sqlite_path = nsys_report.export_report(source, progress)
    elif has_sqlite_header(source):
        sqlite_path = source
    else:
        raise InputError(
            f"{source}: not an nsys report or SQLite export (unrecognised content); pass a "
            ".nsys-rep/.qdrep file or the output of `nsys export --type sqlite`"
        )
    if progress:
        progress(f"Reading {sqlite_path.name}")
    tables = read_nsys_cached(sqlite_path, with_callchains, use_cache)
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
    return Trace(meta=meta, **tables.frames)


def _arg_index(key: str) -> int:
    tail = key.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1
