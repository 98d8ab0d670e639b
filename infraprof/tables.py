"""Column specifications of the normalized trace tables.

This module is the shared vocabulary between ``readers`` (which fill the tables) and
``model`` (which holds them). Conventions:

* time is integer nanoseconds on the capture's own timeline (``*_ns`` columns);
* sizes are bytes (``bytes`` or ``*_bytes``), rates carry their unit in the name;
* ids from the trace keep their meaning (``global_tid`` is nsys' packed
  ``vm << 48 | pid << 24 | tid``); ``pid``/``tid`` are decoded from it;
* nullable integers use pandas' ``Int64`` dtype, text is ``object`` (``str`` or ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

# pandas 3 stores its default ``str`` dtype in pyarrow when pyarrow is installed (the ``fast``
# extra installs it for the Arrow-native SQLite read). The analyses' intermediate text arrays
# then cost twice the memory of the Python storage pandas uses without pyarrow (1 M kernels:
# peak RSS 1.5 vs 0.74 GiB, docs/performance.md "Round 5"), so infraprof keeps the Python
# storage whether or not pyarrow is installed.
pd.set_option("mode.string_storage", "python")

TableSpec = Mapping[str, str]

KERNELS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int64",
    "context_id": "int64",
    "stream_id": "int64",
    "correlation_id": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "name": "object",
    "short_name": "object",
    "mangled_name": "object",
    "grid_x": "int64",
    "grid_y": "int64",
    "grid_z": "int64",
    "block_x": "int64",
    "block_y": "int64",
    "block_z": "int64",
    "registers_per_thread": "int64",
    "static_smem_bytes": "int64",
    "dynamic_smem_bytes": "int64",
}

API_CALLS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "correlation_id": "int64",
    "name": "object",
    "api": "object",
    "return_value": "Int64",
    "callchain_id": "Int64",
}

MEMCPY: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int64",
    "context_id": "int64",
    "stream_id": "int64",
    "correlation_id": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "bytes": "int64",
    "copy_kind": "int64",
    "direction": "object",
    "src_kind": "object",
    "dst_kind": "object",
}

MEMSET: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int64",
    "context_id": "int64",
    "stream_id": "int64",
    "correlation_id": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "bytes": "int64",
    "mem_kind": "object",
}

SYNCS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "Int64",
    "context_id": "Int64",
    "stream_id": "Int64",
    "correlation_id": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "sync_type": "Int64",
    "api_name": "object",
    "kind": "object",
}

NVTX: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "Int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "end_global_tid": "Int64",
    "name": "object",
    "domain": "object",
    "event_type": "int64",
    "kind": "object",
}

OSRT: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "name": "object",
    "callchain_id": "Int64",
}

CPU_SAMPLES: Final[TableSpec] = {
    "start_ns": "int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "callchain_id": "int64",
}

CALLCHAIN_FRAMES: Final[TableSpec] = {
    "source": "object",
    "callchain_id": "int64",
    "depth": "int64",
    "symbol": "object",
    "module": "object",
}

PROFILER_OVERHEAD: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "name": "object",
}

THREADS: Final[TableSpec] = {
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "name": "object",
}

PROCESSES: Final[TableSpec] = {
    "global_pid": "int64",
    "pid": "int64",
    "name": "object",
}

UM_CPU_FAULTS: Final[TableSpec] = {
    "start_ns": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "address": "Int64",
}

UM_GPU_FAULTS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "device_id": "int64",
    "address": "Int64",
    "faults": "int64",
}

GPUS: Final[TableSpec] = {
    "device_id": "int64",
    "name": "object",
    "sm_count": "Int64",
    "memory_bandwidth_bytes_per_s": "Int64",
    "clock_rate_hz": "Int64",
    "total_memory_bytes": "Int64",
    "compute_major": "Int64",
    "compute_minor": "Int64",
    "bus_location": "object",
    "used": "bool",
}

ANALYSIS_OMITS: Final[Mapping[str, tuple[str, ...]]] = {
    "kernels": ("context_id", "mangled_name", "grid_x", "grid_y", "grid_z", "block_x",
                "block_y", "block_z", "registers_per_thread", "static_smem_bytes",
                "dynamic_smem_bytes"),
    "api_calls": ("return_value",),
}
"""Columns no analysis reads unless Nsight Compute reports are joined (kernel launch
configuration) or the trace is exported (``infraprof export``): a reader asked for the
analysis columns only leaves them out of these tables (absent, never filled with nulls)."""


def projected(spec: TableSpec, table: str, all_columns: bool) -> TableSpec:
    """``spec`` without the :data:`ANALYSIS_OMITS` columns of ``table`` unless
    ``all_columns``."""
    if all_columns or table not in ANALYSIS_OMITS:
        return spec
    omitted = set(ANALYSIS_OMITS[table])
    return {col: dtype for col, dtype in spec.items() if col not in omitted}



def as_frame(value: object) -> pd.DataFrame:
    """Narrow a pandas result to ``DataFrame`` (pandas-stubs often infer ``Any``)."""
    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"expected a DataFrame, got {type(value).__name__}")
    return value


def column_view(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame[columns]`` without copying: a frame of ``frame``'s own column arrays (pandas
    copies the values of a list selection out of a consolidated block: 8 MB per column at
    1 M rows). Copy-on-write keeps ``frame`` unchanged when the view is modified."""
    return as_frame(pd.DataFrame({column: frame[column] for column in columns}, copy=False))


def as_series(value: object) -> pd.Series:
    """Narrow a pandas result to ``Series`` (pandas-stubs often infer ``Any``)."""
    if not isinstance(value, pd.Series):
        raise TypeError(f"expected a Series, got {type(value).__name__}")
    return value


def empty(spec: TableSpec) -> pd.DataFrame:
    """An empty table with the columns and dtypes of ``spec``."""
    return as_frame(
        pd.DataFrame({c: pd.Series([], dtype=cast(Any, d)) for c, d in spec.items()})
    )


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Return ``frame`` with exactly the columns of ``spec``, in order, cast to its dtypes.

    Missing columns are filled with nulls (nullable dtypes) or raise ``KeyError`` (non-null
    dtypes), so a reader cannot silently drop a required column.
    """
    out: dict[str, pd.Series] = {}
    n = len(frame)
    for col, dtype in spec.items():
        if col in frame.columns:
            series = frame[col]
            if dtype == "object":
                out[col] = series.astype(object).where(series.notna(), None)
            else:
                out[col] = series.astype(cast(Any, dtype))
        elif dtype in ("Int64", "object"):
            out[col] = pd.Series([None] * n, dtype=cast(Any, dtype))
        else:
            raise KeyError(f"required column {col!r} missing")
    return as_frame(pd.DataFrame(out, index=pd.RangeIndex(n)))


IntArray = npt.NDArray[np.int64]


def decode_pid(global_id: npt.ArrayLike) -> IntArray:
    """PID from an nsys ``globalTid``/``globalPid``: bits 24-47."""
    ids: IntArray = np.asarray(global_id, dtype=np.int64)
    return (ids >> 24) & 0xFFFFFF


def decode_tid(global_tid: npt.ArrayLike) -> IntArray:
    """TID from an nsys ``globalTid``: bits 0-23."""
    ids: IntArray = np.asarray(global_tid, dtype=np.int64)
    return ids & 0xFFFFFF
