"""Values read from an nsys SQLite export are checked here, at the reader boundary.

Called on every table right after its rows are selected (vectorised, no per-row loop), before
any column is cast or decoded:

* a value of the wrong type — text, a blob, a fraction or an infinity in an integer column —
  means the file is not a trustworthy export: :class:`~infraprof.errors.InputError` (exit 3)
  naming the file, the table and the column;
* NULL in an identity or launch column (``globalPid``, ``globalTid``, ``deviceId``,
  ``streamId``, ``correlationId``, ``copyKind``, ``bytes``, ``gridX``, ...) is refused the
  same way: the row cannot be placed or described;
* NULL times (``start``; ``end`` except for NVTX marks) and reversed intervals
  (``end < start``) are dropped, and each kind of drop is counted in a :class:`DataIssue`,
  which the JSON report lists under ``data_quality``.

:func:`require_strings` refuses an export whose activity rows name strings but that has no
``StringIds`` table (every name would print as ``nan``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError

_VERSION_SUFFIX_RE = re.compile(r"_V\d+$")
TEXT_COLUMNS = frozenset({"text", "name", "bus_location"})
TIME_COLUMNS = ("start_ns", "end_ns")
IDENTITY_COLUMNS = frozenset({
    "global_pid", "global_tid", "device_id", "context_id", "stream_id", "correlation_id",
    "copy_kind", "bytes", "event_type", "callchain_id", "depth", "pid",
    "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "registers_per_thread",
    "static_smem_bytes", "dynamic_smem_bytes",
})
# Identity columns that may legitimately be NULL, per table (base name, without ``_V<n>``).
NULLABLE = {
    "NVTX_EVENTS": frozenset({"end_ns", "global_tid"}),
    "PROFILER_OVERHEAD": frozenset({"global_tid"}),
    "CUPTI_ACTIVITY_KIND_RUNTIME": frozenset({"callchain_id"}),
    "OSRT_API": frozenset({"callchain_id"}),
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": frozenset({"device_id", "context_id",
                                                      "stream_id"}),
    "PROCESSES": frozenset({"pid"}),
}
STRING_ID_TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "OSRT_API")


@dataclass(frozen=True)
class DataIssue:
    """Rows dropped from one table for one reason (``issue``), for the report."""

    table: str
    column: str
    issue: str
    rows_dropped: int

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "issue": self.issue,
                "rows_dropped": self.rows_dropped}

    def describe(self, path: Path | str) -> str:
        return (f"{path}: {self.table}.{self.column}: {self.issue}; {self.rows_dropped} "
                "row(s) left out")


def _sql_name(expr: str) -> str:
    return expr.strip().strip('"')


def _check_types(frame: pd.DataFrame, path: Path, table: str,
                 columns: dict[str, str]) -> None:
    for name in frame.columns:
        if name in TEXT_COLUMNS or name not in columns:
            continue
        raw = frame[name]
        if pd.api.types.is_integer_dtype(raw.dtype):
            continue  # the common case: SQLite gave integers only, no NULL
        present = raw.notna().to_numpy()
        if not present.any():
            continue
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = present & ~(np.isfinite(numbers) & (np.floor(numbers) == numbers)
                               & (np.abs(numbers) < 2.0**63))
        if bad.any():
            example = raw[bad].iloc[0]
            raise InputError(
                f"{path}: table {table}, column {_sql_name(columns[name])}: "
                f"{int(bad.sum())} value(s) are not 64-bit integers (e.g. "
                f"{str(example)[:40]!r}); the export is corrupt or was modified, re-export it "
                "with `nsys export --type sqlite`")


def _check_identities(frame: pd.DataFrame, path: Path, table: str, base: str,
                      columns: dict[str, str]) -> None:
    allowed = NULLABLE.get(base, frozenset())
    for name in IDENTITY_COLUMNS & set(frame.columns):
        if name in allowed or columns.get(name, "NULL") == "NULL":
            continue
        nulls = int(frame[name].isna().sum())
        if nulls:
            raise InputError(
                f"{path}: table {table}, column {_sql_name(columns[name])}: {nulls} row(s) "
                "are NULL where nsys always writes a value; the export is corrupt, re-export "
                "it with `nsys export --type sqlite`")


def clean_table(frame: pd.DataFrame, path: Path, table: str, columns: dict[str, str],
                issues: list[DataIssue]) -> pd.DataFrame:
    """``frame`` (raw rows of ``table``; ``columns`` maps its names to SQL expressions) with
    rows that have NULL times or ``end < start`` dropped and counted into ``issues``. Raises
    :class:`InputError` for wrong types and NULL identities (see the module docstring)."""
    if frame.empty:
        return frame
    base = _VERSION_SUFFIX_RE.sub("", table)
    _check_types(frame, path, table, columns)
    _check_identities(frame, path, table, base, columns)
    allowed = NULLABLE.get(base, frozenset())
    keep = np.ones(len(frame), dtype=bool)
    for name in TIME_COLUMNS:
        if name in frame.columns and name not in allowed:
            missing = frame[name].isna().to_numpy() & keep
            if missing.any():
                issues.append(DataIssue(table, _sql_name(columns[name]), "NULL time",
                                        int(missing.sum())))
                keep &= ~missing
    if "start_ns" in frame.columns and "end_ns" in frame.columns:
        reversed_rows = keep & _end_before_start(frame["start_ns"], frame["end_ns"])
        if reversed_rows.any():
            issues.append(DataIssue(table, _sql_name(columns["end_ns"]),
                                    "end before start", int(reversed_rows.sum())))
            keep &= ~reversed_rows
    if keep.all():
        return frame
    return table_schema.as_frame(frame.loc[keep].reset_index(drop=True))


def _end_before_start(start: pd.Series, end: pd.Series) -> np.ndarray:
    """Per row, whether ``end < start`` (False where either is null): integers compared as
    they are (no float copies of two time columns), other columns as numbers."""
    if all(isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu"
           for column in (start, end)):
        return np.asarray(end.to_numpy() < start.to_numpy())
    start_values = pd.to_numeric(start).to_numpy(dtype=np.float64)
    end_values = pd.to_numeric(end).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray(end_values < start_values)


def meta_int(value: object, path: Path, table: str, column: str) -> int:
    """A single integer from a metadata table (a session start, an analysis window), or
    :class:`InputError` naming the table and column."""
    if type(value) is int and abs(value) < 2**63:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    raise InputError(f"{path}: table {table}, column {column}: {str(value)[:40]!r} is not an "
                     "integer time; the export is corrupt, re-export it with `nsys export "
                     "--type sqlite`")


def require_strings(tables: frozenset[str], path: Path,
                    row_count: dict[str, int]) -> None:
    """Refuse an export without ``StringIds`` whose activity tables (``row_count``, by name)
    hold rows: their names cannot be resolved."""
    if "StringIds" in tables:
        return
    for table, rows in row_count.items():
        if rows and _VERSION_SUFFIX_RE.sub("", table) in STRING_ID_TABLES:
            raise InputError(
                f"{path}: table StringIds is missing, so the names of the {rows} row(s) in "
                f"{table} cannot be resolved; the export is incomplete, re-export it with "
                "`nsys export --type sqlite`")


_INT_FIELDS = {"clock_anchor": ("realtime_ns", "monotonic_ns", "read_window_ns"),
               "pyspy": ("start_mono_ns",), "sync": ("tid",)}
_PULSE_FIELDS = ("start_mono_ns", "end_mono_ns")
_MAX_NS = 2**62


def _is_int(value: object) -> bool:
    return type(value) is int and abs(value) < _MAX_NS


def _manifest_error(path: Path, field_name: str, value: object, want: str) -> InputError:
    return InputError(f"{path}: field {field_name} is {str(value)[:40]!r}, expected {want}; "
                      "the capture manifest is corrupt, re-run `infraprof capture`")


def check_manifest(data: object, path: Path) -> dict[str, Any]:
    """``data`` (a parsed ``manifest.json``) when the fields the clock alignment reads have
    the right types: integer ns in ``clock_anchor``, ``pyspy.start_mono_ns``, ``sync.tid``
    and ``sync.pulses[*]``, a positive finite ``pyspy.rate_hz``. Raises :class:`InputError`
    naming the field otherwise."""
    if not isinstance(data, dict):
        raise _manifest_error(path, "(top level)", type(data).__name__, "a JSON object")
    for section, names in _INT_FIELDS.items():
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise _manifest_error(path, section, block, "an object")
        for name in names:
            if block.get(name) is not None and not _is_int(block[name]):
                raise _manifest_error(path, f"{section}.{name}", block[name], "an integer")
    rate = (data.get("pyspy") or {}).get("rate_hz")
    if rate is not None and not (type(rate) in (int, float) and 0 < rate < 1e9):
        raise _manifest_error(path, "pyspy.rate_hz", rate, "a positive number (Hz)")
    pulses = (data.get("sync") or {}).get("pulses", [])
    if not isinstance(pulses, list):
        raise _manifest_error(path, "sync.pulses", pulses, "a list")
    for i, pulse in enumerate(pulses):
        if not isinstance(pulse, dict) or ("start_mono_ns" in pulse and not all(
                _is_int(pulse.get(k)) for k in _PULSE_FIELDS)):
            raise _manifest_error(path, f"sync.pulses[{i}]", pulse,
                                  "integer start_mono_ns and end_mono_ns")
    return data
