"""The :class:`Trace`: every normalized table of one capture plus its provenance.

Tables are pandas DataFrames whose columns are defined in :mod:`infraprof.tables` (integer
nanoseconds on the capture's timeline, bytes, ids decoded). A trace is immutable by
convention: analyses read it and never modify its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.int_widths import narrowest_int
from infraprof.readers.validate import DataIssue
from infraprof.shared_value import shared_value


def _empty_of(columns: table_schema.TableSpec) -> Callable[[], pd.DataFrame]:
    """A dataclass default factory: an empty table with ``columns`` (name → dtype)."""
    return lambda: table_schema.empty(columns)


def _start_end_order(start: np.ndarray, end: np.ndarray) -> np.ndarray | None:
    """Row order by (start, end), as ``np.lexsort`` gives it; None when the rows are in that
    order already."""
    tie = start[1:] == start[:-1]
    if bool(np.all((start[1:] > start[:-1]) | (tie & (end[1:] >= end[:-1])))):
        return None
    return np.lexsort((end, start))


def _stacked(parts: list[pd.Series], order: np.ndarray | None) -> Any:
    """The ``parts`` one after the other, rows taken in ``order``: one copy of each value
    (an integer column as a numpy array of the narrowest integer type holding its values,
    :func:`~infraprof.int_widths.narrowest_int`; any other dtype through pandas, keeping it)."""
    if all(isinstance(part.dtype, np.dtype) and part.dtype.kind == "i" for part in parts):
        arrays = [part.to_numpy() for part in parts if len(part)]
        width = narrowest_int(min(int(a.min()) for a in arrays),
                                           max(int(a.max()) for a in arrays))
        values = np.concatenate(arrays, dtype=width, casting="same_kind")
        return values if order is None else values[order]
    joined = pd.concat(parts, ignore_index=True)
    return joined if order is None else joined.iloc[order].reset_index(drop=True)


_GATHER_BLOCK = 1 << 20
"""Rows gathered at a time by :meth:`Trace.op_values` (bounded temporaries)."""


@dataclass(frozen=True)
class TraceMeta:
    """Where a trace came from and what wrote it. ``input_format`` is ``nsys`` or ``kineto``
    (PyTorch profiler); ``rank``/``world_size`` come from Kineto's ``distributedInfo``;
    ``warnings`` are reader messages for the user (e.g. a truncated file read in part)."""

    source: str
    sqlite_path: str
    nsys_version: str | None = None
    schema_version: str | None = None
    session_start_utc_ns: int | None = None
    analysis_start_ns: int | None = None
    analysis_end_ns: int | None = None
    capture_command: str | None = None
    input_format: str = "nsys"
    rank: int | None = None
    world_size: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def producer(self) -> list[str]:
        """What wrote the trace, as report header parts (``nsys 2022.4 · export schema 3.0``;
        ``PyTorch profiler (Kineto) · schema 1 · rank 0 of 2``)."""
        if self.input_format == "kineto":
            bits = ["PyTorch profiler (Kineto)", f"schema {self.schema_version or '?'}"]
            if self.rank is not None:
                size = f" of {self.world_size}" if self.world_size is not None else ""
                bits.append(f"rank {self.rank}{size}")
            return bits
        return [f"nsys {self.nsys_version or '?'}", f"export schema {self.schema_version or '?'}"]


@dataclass(frozen=True)
class Trace:
    """Normalized tables of one nsys capture."""

    meta: TraceMeta
    kernels: pd.DataFrame = field(default_factory=_empty_of(table_schema.KERNELS))
    api_calls: pd.DataFrame = field(default_factory=_empty_of(table_schema.API_CALLS))
    memcpy: pd.DataFrame = field(default_factory=_empty_of(table_schema.MEMCPY))
    memset: pd.DataFrame = field(default_factory=_empty_of(table_schema.MEMSET))
    syncs: pd.DataFrame = field(default_factory=_empty_of(table_schema.SYNCS))
    nvtx: pd.DataFrame = field(default_factory=_empty_of(table_schema.NVTX))
    osrt: pd.DataFrame = field(default_factory=_empty_of(table_schema.OSRT))
    cpu_samples: pd.DataFrame = field(default_factory=_empty_of(table_schema.CPU_SAMPLES))
    callchains: pd.DataFrame = field(default_factory=_empty_of(table_schema.CALLCHAIN_FRAMES))
    overhead: pd.DataFrame = field(default_factory=_empty_of(table_schema.PROFILER_OVERHEAD))
    threads: pd.DataFrame = field(default_factory=_empty_of(table_schema.THREADS))
    processes: pd.DataFrame = field(default_factory=_empty_of(table_schema.PROCESSES))
    gpus: pd.DataFrame = field(default_factory=_empty_of(table_schema.GPUS))
    data_quality: tuple[DataIssue, ...] = ()  # rows the reader left out, and why
    um_cpu_faults: pd.DataFrame = field(default_factory=_empty_of(table_schema.UM_CPU_FAULTS))
    um_gpu_faults: pd.DataFrame = field(default_factory=_empty_of(table_schema.UM_GPU_FAULTS))

    def gpu_ops(self) -> pd.DataFrame:
        """Kernels, memcpys and memsets as one table: ``start_ns, end_ns, device_id, stream_id,
        correlation_id, pid, name, kind`` sorted by start (``kind`` is ``kernel``/``memcpy``/
        ``memset``; a memcpy's name is its direction; both Categoricals with sorted texts,
        :func:`~infraprof.tables.text_category`). The times are int64; the four id columns
        are in the narrowest integer type that holds their values (device and stream ids
        usually fit one byte: ~0.2 GB less at 10 M kernels). Built once per trace; do not
        modify."""
        return self._gpu_ops

    def op_columns(self, *columns: str) -> dict[str, np.ndarray]:
        """Integer ``columns`` (e.g. ``pid``, ``start_ns``) of the kernels, then the memcpys,
        then the memsets, one array each (the first ``len(kernels)`` rows are the kernels), in
        table order, not sorted: for consumers whose result does not depend on the row
        order. Unlike :meth:`gpu_ops` nothing is sorted, named or kept. Each column is in the
        tables' common integer type (their narrowest ids stay narrow: no int64 copies)."""
        out = {}
        for column in columns:
            parts = self._op_parts(column)
            out[column] = (np.concatenate(parts, dtype=np.result_type(*parts)) if parts
                           else np.empty(0, dtype=np.int64))
        return out

    def _op_parts(self, column: str) -> list[np.ndarray]:
        """``column`` of the kernels, memcpys and memsets that have rows, as arrays (their own
        integer types; int64 when one is not of integers)."""
        tables = [table for table in (self.kernels, self.memcpy, self.memset) if len(table)]
        parts = [table[column].to_numpy() for table in tables]
        if not all(part.dtype.kind in "iu" for part in parts):
            parts = [table[column].to_numpy(dtype=np.int64) for table in tables]
        return parts

    def op_values(self, column: str, rows: np.ndarray) -> np.ndarray:
        """``op_columns(column)[column][rows]`` without that whole column: ``rows`` a block
        at a time, each table's values gathered for the rows in its range (no concatenated
        copy of the column: 85 MB at 10 M operations)."""
        parts = self._op_parts(column)
        out = np.empty(len(rows), dtype=np.result_type(*parts) if parts else np.int64)
        for lo in range(0, len(rows), _GATHER_BLOCK):
            block, into = rows[lo:lo + _GATHER_BLOCK], out[lo:lo + _GATHER_BLOCK]
            first = 0
            for part in parts:
                inside = (block >= first) & (block < first + len(part))
                into[inside] = part[block[inside] - first]
                first += len(part)
        return out

    def release_gpu_ops(self) -> None:
        """Drop the table :meth:`gpu_ops` built (~50 MB at 1 M kernels); a later call builds
        it again."""
        self.__dict__.pop("_gpu_ops", None)

    @shared_value
    def _gpu_ops(self) -> pd.DataFrame:
        cols = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "pid"]
        used = [(kind, table, names) for kind, table, names in (
            ("kernel", self.kernels, self.kernels["name"]),
            ("memcpy", self.memcpy, self.memcpy["direction"]),
            ("memset", self.memset, None)) if len(table)]
        if not used:
            empty = {c: pd.Series([], dtype="int64") for c in cols}
            none = table_schema.text_category(np.empty(0, dtype=np.int64), [])
            return table_schema.as_frame(pd.DataFrame({**empty, "name": none, "kind": none}))
        # name and kind as Categoricals (sorted texts) from each part's codes: no text per row
        texts: list[object] = []
        name_codes = []
        for _, table, names in used:
            if names is None:
                codes = np.full(len(table), len(texts), dtype=np.int32)
                texts.append("memset")
            else:
                names = table_schema.as_text_category(names)
                codes = names.cat.codes.to_numpy().astype(np.int32)
                codes[codes >= 0] += len(texts)
                texts.extend(names.cat.categories)
            name_codes.append(codes)
        tables = [table for _, table, _ in used]
        starts, ends = (np.concatenate([t[column].to_numpy(dtype=np.int64) for t in tables])
                        for column in ("start_ns", "end_ns"))
        order = _start_end_order(starts, ends)
        ops = {"start_ns": starts if order is None else starts[order],
               "end_ns": ends if order is None else ends[order]}
        del starts, ends  # the unsorted copies
        ops.update({column: _stacked([t[column] for t in tables], order)
                    for column in cols[2:]})
        kinds = np.repeat(np.arange(len(used), dtype=np.int8), [len(t) for t in tables])
        codes = np.concatenate(name_codes)
        del name_codes
        ops["name"] = table_schema.text_category(
            codes if order is None else codes[order], texts)
        ops["kind"] = table_schema.text_category(kinds if order is None else kinds[order],
                                                 [kind for kind, _, _ in used])
        return table_schema.as_frame(pd.DataFrame(ops, copy=False))

    @property
    def has_gpu_activity(self) -> bool:
        return bool(len(self.kernels) or len(self.memcpy) or len(self.memset))

    def used_gpus(self) -> pd.DataFrame:
        return table_schema.as_frame(self.gpus[self.gpus["used"]].reset_index(drop=True))

    def thread_name(self, global_tid: int) -> str | None:
        """The name of the first ``threads`` row of ``global_tid`` (as ``str``), None when
        the thread is not listed (a lookup in a mapping built once per trace)."""
        return self._thread_names.get(int(global_tid))

    @shared_value
    def _thread_names(self) -> dict[int, str]:
        ids = self.threads["global_tid"].tolist()
        names = self.threads["name"].tolist()
        found: dict[int, str] = {}
        for gtid, name in zip(reversed(ids), reversed(names), strict=True):
            if not pd.isna(gtid):
                found[int(gtid)] = str(name)  # the first row of a thread wins: written last
        return found
