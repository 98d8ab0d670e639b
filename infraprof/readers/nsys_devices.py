"""Device-side tables of an nsys export: the GPUs (``TARGET_INFO_GPU``) and Unified Memory
page faults (``CUDA_UM_*_PAGE_FAULT_EVENTS``), as :mod:`infraprof.tables` frames."""

from __future__ import annotations

import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.readers.nsys_columns import column_or, with_pid
from infraprof.readers.sqlite_db import SqliteFile
from infraprof.readers.sqlite_frames import read_frame


def _require_columns(db: SqliteFile, table: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if not db.has_column(table, c)]
    if missing:
        raise InputError(
            f"{db.path}: table {table} lacks column(s) {', '.join(missing)} of nsys' export "
            "schema; re-export the report with `nsys export --type sqlite`")


def read_um_faults(db: SqliteFile) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unified Memory page faults (``--cuda-um-cpu-page-faults`` / ``-gpu-page-faults``):
    ``CUDA_UM_CPU_PAGE_FAULT_EVENTS(start, globalPid, address, ...)`` and
    ``CUDA_UM_GPU_PAGE_FAULT_EVENTS(start, end, globalPid, deviceId, address,
    numberOfPageFaults, faultAccessType)``; absent tables mean no UM tracing."""
    cpu_table = db.resolve_table("CUDA_UM_CPU_PAGE_FAULT_EVENTS")
    gpu_table = db.resolve_table("CUDA_UM_GPU_PAGE_FAULT_EVENTS")
    cpu = table_schema.empty(table_schema.UM_CPU_FAULTS)
    gpu = table_schema.empty(table_schema.UM_GPU_FAULTS)
    if cpu_table is not None:
        _require_columns(db, cpu_table, ("start", "globalPid"))
        f = read_frame(db, cpu_table, {
            "start_ns": "start", "global_pid": "globalPid",
            "address": column_or(db, cpu_table, "address")}, "ORDER BY start")
        cpu = table_schema.conform(with_pid(f, "global_pid"), table_schema.UM_CPU_FAULTS)
    if gpu_table is not None:
        _require_columns(db, gpu_table, ("start", "end", "globalPid", "deviceId"))
        f = read_frame(db, gpu_table, {
            "start_ns": "start", "end_ns": '"end"', "global_pid": "globalPid",
            "device_id": "deviceId", "address": column_or(db, gpu_table, "address"),
            "faults": f'coalesce({column_or(db, gpu_table, "numberOfPageFaults", "1")}, 1)'},
            "ORDER BY start")
        gpu = table_schema.conform(with_pid(f, "global_pid"), table_schema.UM_GPU_FAULTS)
    return cpu, gpu


def read_gpus(db: SqliteFile, used: set[int]) -> pd.DataFrame:
    if "TARGET_INFO_GPU" not in db.tables:
        rows = pd.DataFrame({"device_id": sorted(used)})
        rows["name"] = [f"GPU {d}" for d in rows["device_id"]]
        rows["used"] = True
        return table_schema.conform(rows, table_schema.GPUS)
    t = "TARGET_INFO_GPU"
    cols = {
        "device_id": "id", "name": column_or(db, t, "name"),
        "sm_count": column_or(db, t, "smCount"),
        "memory_bandwidth_bytes_per_s": column_or(db, t, "memoryBandwidth"),
        "clock_rate_hz": column_or(db, t, "clockRate"),
        "total_memory_bytes": column_or(db, t, "totalMemory"),
        "compute_major": column_or(db, t, "computeMajor"),
        "compute_minor": column_or(db, t, "computeMinor"),
        "bus_location": column_or(db, t, "busLocation"),
    }
    f = read_frame(db, t, cols, "ORDER BY id").drop_duplicates("device_id")
    known = set(int(d) for d in f["device_id"])
    extra = [{"device_id": d, "name": f"GPU {d}"} for d in sorted(used - known)]
    if extra:
        f = pd.concat([f, pd.DataFrame(extra)], ignore_index=True)
    f["used"] = f["device_id"].map(lambda d: int(d) in used)
    return table_schema.conform(f, table_schema.GPUS)
