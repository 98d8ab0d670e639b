"""Nsight Systems SQLite export -> normalized tables (see :mod:`infraprof.tables`).

Capabilities are probed (``sqlite_master``, ``PRAGMA table_info``) instead of trusting version
numbers, so exports from nsys 2022.2 (schema 2.9.1) to 2025.x (3.20) read the same way:

* metadata lives in ``EXPORT_META_DATA`` (<= 3.1) or ``META_DATA_EXPORT`` (>= 3.4);
* a missing activity table means "no such activity", never an error;
* ``_V<n>`` variants of a table are used when the plain name is absent;
* names are ``StringIds`` ids; API names lose their ``_v<4-5 digits>`` version suffix;
* NVTX text is inline (``text``) or registered (``textId``); domains come from the type-75 row
  of the same process;
* duplicated API rows (same thread, correlation id and suffix-stripped name: the 2.9.1 saxpy
  export stores ``cudaMemcpy`` and a nested ``cudaMemcpy_v3020``) are dropped, keeping the
  outer (earliest) row;
* synchronization rows are classified by the API call they belong to, and only fall back to
  ``syncType`` for rows without one (its labels differ between versions).

Only the columns infraprof uses are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.readers import validate
from infraprof.readers.nsys_columns import column_or, with_pid
from infraprof.readers.nsys_devices import read_gpus, read_um_faults
from infraprof.readers.nsys_enums import (
    api_family,
    mem_kinds,
    memcpy_kinds,
    strip_api_suffix,
    sync_kind,
)
from infraprof.readers.row_order import by_start_longest_first, distinct_ids
from infraprof.readers.sqlite_db import SqliteFile, has_sqlite_header
from infraprof.readers.sqlite_frames import read_ahead, read_frame, read_int_frame
from infraprof.tables import map_distinct

NVTX_RANGE_TYPES = (59, 60, 70, 71)
NVTX_MARK_TYPES = (34,)
NVTX_DOMAIN_CREATE = 75
_SYNC_TYPE_FALLBACK = {1: "event", 2: "stream_wait_event", 3: "stream", 4: "context"}


@dataclass
class NsysTables:
    """Everything read from one export: normalized tables plus metadata."""

    path: Path
    meta: dict[str, str] = field(default_factory=dict)
    capture: dict[str, str] = field(default_factory=dict)
    session_start_utc_ns: int | None = None
    analysis_start_ns: int | None = None
    analysis_end_ns: int | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    data_quality: list[validate.DataIssue] = field(default_factory=list)
    all_columns: bool = True  # False: the ANALYSIS_OMITS columns were not read


class _Strings:
    """Lazy ``StringIds`` lookups, fetching only the ids a column needs."""

    def __init__(self, db: SqliteFile) -> None:
        self.db = db
        self.cache: dict[int, str] = {}

    def _fetch(self, ids: list[int]) -> None:
        missing = [i for i in ids if i not in self.cache]
        if not missing or "StringIds" not in self.db.tables:
            return
        for chunk_start in range(0, len(missing), 50_000):
            chunk = missing[chunk_start : chunk_start + 50_000]
            self.db.conn.execute("DROP TABLE IF EXISTS temp._ids")
            self.db.conn.execute("CREATE TEMP TABLE _ids(id INTEGER PRIMARY KEY)")
            self.db.conn.executemany("INSERT INTO temp._ids VALUES (?)", [(i,) for i in chunk])
            rows = self.db.query(
                "SELECT s.id, s.value FROM StringIds s JOIN temp._ids t ON t.id = s.id"
            )
            self.cache.update((int(i), str(v)) for i, v in rows)

    def map(self, ids: pd.Series) -> pd.Series:
        """Strings of ``ids`` as a Categorical of sorted texts (null for null or unknown ids,
        :func:`~infraprof.tables.text_category`): one lookup per distinct id."""
        valid = ids.notna().to_numpy(dtype=bool)
        if valid.all() and isinstance(ids.dtype, np.dtype):  # no null: no mask, no copy
            distinct, which = distinct_ids(ids.to_numpy())
        else:
            distinct, inverse = distinct_ids(ids[valid].to_numpy(dtype=np.int64))
            which = np.full(len(ids), -1, dtype=np.int64)
            which[valid] = inverse
        self._fetch(distinct.tolist())
        texts = [self.cache.get(i) for i in distinct.tolist()]
        return table_schema.text_category(which, texts, ids.index)


def _require_nsys_export(db: SqliteFile) -> None:
    markers = {
        "StringIds", "EXPORT_META_DATA", "META_DATA_EXPORT", "TARGET_INFO_SESSION_START_TIME",
    }
    if not (markers & db.tables):
        raise InputError(
            f"{db.path}: this SQLite database is not an Nsight Systems export (no StringIds or "
            "export metadata tables); pass a .nsys-rep/.qdrep or the .sqlite written by "
            "`nsys export --type sqlite`"
        )


def _read_meta(db: SqliteFile, out: NsysTables) -> None:
    for table in ("EXPORT_META_DATA", "META_DATA_EXPORT"):
        if table in db.tables:
            for name, value in db.query(f'SELECT name, value FROM "{table}"'):
                out.meta[str(name)] = str(value)
    if "META_DATA_CAPTURE" in db.tables:
        for name, value in db.query("SELECT name, value FROM META_DATA_CAPTURE"):
            key = str(name)
            if "ENVIRONMENT" not in key:
                out.capture.setdefault(key, str(value))
    if "TARGET_INFO_SESSION_START_TIME" in db.tables:
        rows = db.query("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME LIMIT 1")
        if rows and rows[0][0] is not None:
            out.session_start_utc_ns = validate.meta_int(
                rows[0][0], db.path, "TARGET_INFO_SESSION_START_TIME", "utcEpochNs")
    if "ANALYSIS_DETAILS" in db.tables:
        rows = db.query("SELECT startTime, stopTime FROM ANALYSIS_DETAILS LIMIT 1")
        if rows and rows[0][0] is not None:
            out.analysis_start_ns = validate.meta_int(rows[0][0], db.path, "ANALYSIS_DETAILS",
                                                      "startTime")
            out.analysis_end_ns = validate.meta_int(rows[0][1], db.path, "ANALYSIS_DETAILS",
                                                    "stopTime")


_NARROW_IDS = frozenset({"device_id", "context_id", "stream_id", "correlation_id", "name_id",
                         "short_id", "mangled_id", "callchain_id"})
"""The id columns of the kernel and API tables read in their narrowest type (the table specs
narrow them anyway; a string id becomes a text code): the read's arrays are half as large."""

_ID_SOURCES = {"name_id": "name", "short_id": "short_name", "mangled_id": "mangled_name"}


def _projection(cols: dict[str, str], spec: table_schema.TableSpec) -> dict[str, str]:
    """The SQL columns of ``cols`` whose output column (for ``*_id`` ones: the text column
    they become) is in ``spec``."""
    return {name: expr for name, expr in cols.items()
            if _ID_SOURCES.get(name, name) in spec}


def _read_kernels(db: SqliteFile, strings: _Strings, all_columns: bool = True
                  ) -> pd.DataFrame:
    spec = table_schema.projected(table_schema.KERNELS, "kernels", all_columns)
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_KERNEL")
    if table is None:
        return table_schema.empty(spec)
    cols = {
        "start_ns": "start", "end_ns": '"end"', "device_id": "deviceId",
        "context_id": "contextId", "stream_id": "streamId", "correlation_id": "correlationId",
        "global_pid": "globalPid", "name_id": "demangledName", "short_id": "shortName",
        "mangled_id": column_or(db, table, "mangledName"),
        "grid_x": "gridX", "grid_y": "gridY", "grid_z": "gridZ",
        "block_x": "blockX", "block_y": "blockY", "block_z": "blockZ",
        "registers_per_thread": "registersPerThread",
        "static_smem_bytes": "staticSharedMemory", "dynamic_smem_bytes": "dynamicSharedMemory",
    }
    read = _projection(cols, {**spec, "global_pid": "int64"})  # pid is decoded from it
    f = read_int_frame(db, table, read, sort_by="start_ns", narrow=_NARROW_IDS)
    f["name"] = strings.map(f.pop("name_id"))
    f["short_name"] = strings.map(f.pop("short_id"))
    if "mangled_id" in f.columns:
        f["mangled_name"] = strings.map(f.pop("mangled_id"))
    f["name"] = table_schema.coalesce_text(f["name"], f["short_name"])
    return table_schema.conform(with_pid(f, "global_pid"), spec)


def _api_columns(db: SqliteFile, table: str, spec: table_schema.TableSpec) -> dict[str, str]:
    """The integer columns read from the CUDA API table ``table`` for ``spec``."""
    cols = {
        "start_ns": "start", "end_ns": '"end"', "global_tid": "globalTid",
        "correlation_id": "correlationId", "name_id": "nameId",
        "return_value": column_or(db, table, "returnValue"),
        "callchain_id": column_or(db, table, "callchainId"),
    }
    return _projection(cols, spec)


def _read_ahead(db: SqliteFile, all_columns: bool, with_callchains: bool) -> None:
    """Start reading, one after the other in another thread, the CUDA API table's columns
    (the kernels are read meanwhile: :func:`~infraprof.readers.sqlite_frames.read_ahead`),
    then the memsets' and the callchains' (read here after the other tables otherwise, on
    one core while the other idles: ~0.4 s of the read's wall time at 10 M kernels)."""
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_RUNTIME")
    if table is not None:
        spec = table_schema.projected(table_schema.API_CALLS, "api_calls", all_columns)
        read_ahead(db, table, _api_columns(db, table, spec), narrow=_NARROW_IDS)
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_MEMSET")
    if table is not None:
        read_ahead(db, table, _memset_columns(db, table))
    for _, table in _CALLCHAIN_TABLES if with_callchains else ():
        if table in db.tables:
            read_ahead(db, table, _callchain_columns(db, table))


def _read_api(db: SqliteFile, strings: _Strings, all_columns: bool = True) -> pd.DataFrame:
    spec = table_schema.projected(table_schema.API_CALLS, "api_calls", all_columns)
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_RUNTIME")
    if table is None:
        return table_schema.empty(spec)
    f = read_int_frame(db, table, _api_columns(db, table, spec), sort_by="start_ns",
                       narrow=_NARROW_IDS)
    raw = table_schema.fill_text(strings.map(f.pop("name_id")), "<unknown>")
    f["name"] = table_schema.map_text(raw, strip_api_suffix)
    # One call recorded twice (2.9.1 saxpy: ``cudaMemcpy`` and, nested a few hundred ns inside
    # it, ``cudaMemcpy_v3020`` with the same correlation id): keep the outer, earliest row.
    f = table_schema.first_per_key(by_start_longest_first(f),
                                   ["global_tid", "name", "correlation_id"])
    f["api"] = table_schema.map_text(f["name"], api_family)
    return table_schema.conform(with_pid(f.reset_index(drop=True), "global_tid", "tid" in spec),
                                spec)


def _mem_kind(labels: dict[int, str], kind: Any) -> str | None:
    return None if pd.isna(kind) else labels.get(int(kind), "Unknown")


def _read_memcpy(db: SqliteFile) -> pd.DataFrame:
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_MEMCPY")
    if table is None:
        return table_schema.empty(table_schema.MEMCPY)
    cols = {
        "start_ns": "start", "end_ns": '"end"', "device_id": "deviceId",
        "context_id": "contextId", "stream_id": "streamId", "correlation_id": "correlationId",
        "global_pid": "globalPid", "bytes": "bytes", "copy_kind": "copyKind",
        "src": column_or(db, table, "srcKind"), "dst": column_or(db, table, "dstKind"),
    }
    f = read_int_frame(db, table, cols, sort_by="start_ns")
    kinds, mems = memcpy_kinds(db), mem_kinds(db)
    f["direction"] = map_distinct(f["copy_kind"], lambda k: kinds.get(int(k), f"kind{int(k)}"))
    f["src_kind"] = map_distinct(f.pop("src"), lambda k: _mem_kind(mems, k))
    f["dst_kind"] = map_distinct(f.pop("dst"), lambda k: _mem_kind(mems, k))
    return table_schema.conform(with_pid(f, "global_pid"), table_schema.MEMCPY)


def _read_memset(db: SqliteFile) -> pd.DataFrame:
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_MEMSET")
    if table is None:
        return table_schema.empty(table_schema.MEMSET)
    f = read_int_frame(db, table, _memset_columns(db, table), sort_by="start_ns")
    mems = mem_kinds(db)
    f["mem_kind"] = map_distinct(f.pop("mem"), lambda k: _mem_kind(mems, k))
    return table_schema.conform(with_pid(f, "global_pid"), table_schema.MEMSET)


def _memset_columns(db: SqliteFile, table: str) -> dict[str, str]:
    return {
        "start_ns": "start", "end_ns": '"end"', "device_id": "deviceId",
        "context_id": "contextId", "stream_id": "streamId", "correlation_id": "correlationId",
        "global_pid": "globalPid", "bytes": "bytes", "mem": column_or(db, table, "memKind"),
    }


def _read_syncs(db: SqliteFile, api: pd.DataFrame) -> pd.DataFrame:
    table = db.resolve_table("CUPTI_ACTIVITY_KIND_SYNCHRONIZATION")
    if table is None:
        return table_schema.empty(table_schema.SYNCS)
    cols = {
        "start_ns": "start", "end_ns": '"end"', "device_id": column_or(db, table, "deviceId"),
        "context_id": column_or(db, table, "contextId"),
        "stream_id": column_or(db, table, "streamId"),
        "correlation_id": "correlationId", "global_pid": "globalPid",
        "sync_type": column_or(db, table, "syncType"),
    }
    f = read_int_frame(db, table, cols, sort_by="start_ns")
    f = with_pid(f, "global_pid")
    calls = table_schema.first_per_key(api[["pid", "correlation_id", "name"]],
                                       ["pid", "correlation_id"])
    calls = calls.rename(columns={"name": "api_name"})
    if len(f):
        f["correlation_id"] = f["correlation_id"].astype("int64")
        f = f.merge(calls, on=["pid", "correlation_id"], how="left")
    else:
        f["api_name"] = pd.Series([], dtype=object)
    by_name = map_distinct(f["api_name"], lambda n: None if pd.isna(n) else sync_kind(str(n)))
    by_type = map_distinct(f["sync_type"], lambda t: "unknown" if pd.isna(t)
                           else _SYNC_TYPE_FALLBACK.get(int(t), "unknown"))
    f["kind"] = by_name.where(by_name.notna(), by_type)
    return table_schema.conform(f, table_schema.SYNCS)


def _domain_names(f: pd.DataFrame, is_domain: np.ndarray) -> np.ndarray:
    """Each NVTX event's domain: the name its process's domain-create event gave the id (the
    last one), else ``domain <id>``; None for the default domain (0 or none). One join."""
    keys = pd.DataFrame({"pid": f["pid"].to_numpy(np.int64), "domain": pd.to_numeric(
        f["domain_id"]).fillna(0).to_numpy(np.int64)})
    texts = f.loc[is_domain, "name"].astype(object)
    named = keys[is_domain].assign(text=texts.where(texts.notna(), "nan").to_numpy())
    last = named.drop_duplicates(["pid", "domain"], keep="last")
    found = np.array(keys.merge(last, "left", on=["pid", "domain"])["text"], dtype=object)
    missing = pd.isna(found)
    found[missing] = ("domain " + keys["domain"][missing].astype(str)).to_numpy(dtype=object)
    found[keys["domain"].to_numpy() == 0] = None
    return found


def _read_nvtx(db: SqliteFile, strings: _Strings) -> pd.DataFrame:
    table = db.resolve_table("NVTX_EVENTS")
    if table is None:
        return table_schema.empty(table_schema.NVTX)
    cols = {
        "start_ns": "start", "end_ns": '"end"', "event_type": "eventType",
        "global_tid": "globalTid", "end_global_tid": column_or(db, table, "endGlobalTid"),
        "text": column_or(db, table, "text"), "text_id": column_or(db, table, "textId"),
        "domain_id": column_or(db, table, "domainId", "0"),
    }
    types = (*NVTX_RANGE_TYPES, *NVTX_MARK_TYPES, NVTX_DOMAIN_CREATE)
    f = read_frame(db, table, cols, f"WHERE eventType IN {types} ORDER BY start")
    f["global_tid"] = f["global_tid"].fillna(0).astype("int64")
    registered = strings.map(f.pop("text_id"))
    text = f.pop("text")
    f["name"] = table_schema.coalesce_text(table_schema.as_text_category(text), registered)
    f = with_pid(f, "global_tid")
    is_domain = (f["event_type"] == NVTX_DOMAIN_CREATE).to_numpy()
    f = f.assign(domain=_domain_names(f, is_domain)).loc[~is_domain].copy()
    f["kind"] = np.where(f["event_type"].isin(NVTX_MARK_TYPES), "mark", "range")
    f["name"] = table_schema.fill_text(f["name"], "<unnamed>")
    return table_schema.conform(f.reset_index(drop=True), table_schema.NVTX)


def _read_osrt(db: SqliteFile, strings: _Strings) -> pd.DataFrame:
    table = db.resolve_table("OSRT_API")
    if table is None:
        return table_schema.empty(table_schema.OSRT)
    cols = {
        "start_ns": "start", "end_ns": '"end"', "global_tid": "globalTid",
        "name_id": "nameId", "callchain_id": column_or(db, table, "callchainId"),
    }
    f = read_int_frame(db, table, cols, sort_by="start_ns")
    f["name"] = table_schema.fill_text(strings.map(f.pop("name_id")), "<unknown>")
    return table_schema.conform(with_pid(f, "global_tid"), table_schema.OSRT)


def _read_samples(db: SqliteFile) -> pd.DataFrame:
    if "COMPOSITE_EVENTS" not in db.tables:
        return table_schema.empty(table_schema.CPU_SAMPLES)
    cols = {"start_ns": "start", "global_tid": "globalTid", "callchain_id": "id"}
    f = read_int_frame(db, "COMPOSITE_EVENTS", cols, sort_by="start_ns")
    return table_schema.conform(with_pid(f, "global_tid"), table_schema.CPU_SAMPLES)


_CALLCHAIN_TABLES = (("sampling", "SAMPLING_CALLCHAINS"), ("osrt", "OSRT_CALLCHAINS"),
                     ("cuda", "CUDA_CALLCHAINS"))


def _callchain_columns(db: SqliteFile, table: str) -> dict[str, str]:
    return {"callchain_id": "id", "depth": "stackDepth", "symbol_id": "symbol",
            "module_id": column_or(db, table, "module")}


def read_callchains(db: SqliteFile, strings: _Strings) -> pd.DataFrame:
    """Frames of CPU-sampling, OS-runtime and CUDA API backtraces (``depth`` 0 = leaf)."""
    parts = []
    for source, table in _CALLCHAIN_TABLES:
        if table not in db.tables:
            continue
        f = read_int_frame(db, table, _callchain_columns(db, table))
        f["source"] = source
        parts.append(f)
    if not parts:
        return table_schema.empty(table_schema.CALLCHAIN_FRAMES)
    f = pd.concat(parts, ignore_index=True)  # the ids of every table, mapped once
    f["symbol"], f["module"] = strings.map(f.pop("symbol_id")), strings.map(f.pop("module_id"))
    return table_schema.conform(f, table_schema.CALLCHAIN_FRAMES)


def _read_overhead(db: SqliteFile, strings: _Strings) -> pd.DataFrame:
    if "PROFILER_OVERHEAD" not in db.tables:
        return table_schema.empty(table_schema.PROFILER_OVERHEAD)
    cols = {"start_ns": "start", "end_ns": '"end"', "global_tid": "globalTid",
            "name_id": "nameId"}
    f = read_int_frame(db, "PROFILER_OVERHEAD", cols, sort_by="start_ns")
    f["global_tid"] = f["global_tid"].fillna(0)
    f["name"] = strings.map(f.pop("name_id"))
    return table_schema.conform(f, table_schema.PROFILER_OVERHEAD)


def _read_threads(db: SqliteFile, strings: _Strings) -> pd.DataFrame:
    if "ThreadNames" not in db.tables:
        return table_schema.empty(table_schema.THREADS)
    f = read_int_frame(db, "ThreadNames", {"global_tid": "globalTid", "name_id": "nameId"})
    f["name"] = strings.map(f.pop("name_id"))
    f = f.drop_duplicates("global_tid", keep="last")
    return table_schema.conform(with_pid(f, "global_tid"), table_schema.THREADS)


def _read_processes(db: SqliteFile) -> pd.DataFrame:
    if "PROCESSES" not in db.tables:
        return table_schema.empty(table_schema.PROCESSES)
    f = read_frame(db, "PROCESSES", {"global_pid": "globalPid", "pid": "pid", "name": "name"})
    return table_schema.conform(f.drop_duplicates("global_pid"), table_schema.PROCESSES)


def read_nsys_sqlite(path: Path, with_callchains: bool = True, all_columns: bool = True
                     ) -> NsysTables:
    """Read an nsys SQLite export. Raises :class:`InputError` for anything that is not one.

    ``all_columns=False`` leaves the :data:`~infraprof.tables.ANALYSIS_OMITS` columns out of
    the kernel and API tables (what ``analyze`` reads without Nsight Compute reports)."""
    if not has_sqlite_header(path):
        raise InputError(
            f"{path}: not an SQLite file; pass a .nsys-rep/.qdrep report or its "
            "`nsys export --type sqlite` output"
        )
    with SqliteFile(path) as db:
        _require_nsys_export(db)
        out = NsysTables(path=path, all_columns=all_columns)
        _read_meta(db, out)
        strings = _Strings(db)
        fr: dict[str, Any] = out.frames
        _read_ahead(db, all_columns, with_callchains)
        fr["kernels"] = _read_kernels(db, strings, all_columns)
        fr["api_calls"] = _read_api(db, strings, all_columns)
        fr["memcpy"] = _read_memcpy(db)
        fr["memset"] = _read_memset(db)
        fr["syncs"] = _read_syncs(db, fr["api_calls"])
        fr["nvtx"] = _read_nvtx(db, strings)
        fr["osrt"] = _read_osrt(db, strings)
        fr["cpu_samples"] = _read_samples(db)
        fr["callchains"] = (read_callchains(db, strings) if with_callchains
                            else table_schema.empty(table_schema.CALLCHAIN_FRAMES))
        fr["overhead"] = _read_overhead(db, strings)
        fr["threads"] = _read_threads(db, strings)
        fr["processes"] = _read_processes(db)
        used: set[int] = set()
        for name in ("kernels", "memcpy", "memset"):
            used.update(int(d) for d in pd.unique(fr[name]["device_id"]))
        fr["gpus"] = read_gpus(db, used)
        validate.require_strings(db.tables, path, {
            "CUPTI_ACTIVITY_KIND_KERNEL": len(fr["kernels"]),
            "CUPTI_ACTIVITY_KIND_RUNTIME": len(fr["api_calls"]), "OSRT_API": len(fr["osrt"])})
        out.data_quality = list(db.issues)
        fr["um_cpu_faults"], fr["um_gpu_faults"] = read_um_faults(db)
    return out
