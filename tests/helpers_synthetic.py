"""Small synthetic traces for the GPU-side analyses: kernels, launch calls, copies, NVTX."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from infraprof import tables as table_schema
from infraprof.model import Trace, TraceMeta

PID = 7
GTID = (1 << 48) | (PID << 24) | PID
KernelSpec = tuple[int, int, str] | tuple[int, int, str, int] | tuple[int, int, str, int, int]


def kernel_frame(kernels: Sequence[KernelSpec]) -> pd.DataFrame:
    """``(start, duration, name[, stream[, device]])`` rows as a KERNELS table, correlation
    ids 1..n in the given order."""
    rows = []
    for i, spec in enumerate(kernels):
        start, dur, name = spec[0], spec[1], spec[2]
        stream = spec[3] if len(spec) > 3 else 7  # type: ignore[misc]
        device = spec[4] if len(spec) > 4 else 0  # type: ignore[misc]
        rows.append({"start_ns": start, "end_ns": start + dur, "device_id": device,
                     "context_id": 1, "stream_id": stream, "correlation_id": i + 1,
                     "global_pid": GTID & ~0xFFFFFF, "pid": PID, "name": name,
                     "short_name": name, "grid_x": 1, "grid_y": 1, "grid_z": 1, "block_x": 1,
                     "block_y": 1, "block_z": 1, "registers_per_thread": 8,
                     "static_smem_bytes": 0, "dynamic_smem_bytes": 0})
    return table_schema.conform(pd.DataFrame(rows), table_schema.KERNELS)


def launch_calls(kernels: pd.DataFrame, lead_ns: int = 2_000) -> list[dict[str, Any]]:
    """One ``cudaLaunchKernel`` per kernel, ``lead_ns`` before it, 1 µs long."""
    return [{"start_ns": int(s) - lead_ns, "end_ns": int(s) - lead_ns + 1_000,
             "global_tid": GTID, "pid": PID, "tid": PID, "correlation_id": int(c),
             "name": "cudaLaunchKernel", "api": "runtime"}
            for s, c in zip(kernels["start_ns"], kernels["correlation_id"], strict=True)]


def gpus(compute_major: int = 8, devices: Sequence[int] = (0,)) -> pd.DataFrame:
    return table_schema.conform(pd.DataFrame([{
        "device_id": d, "name": f"GPU {d}", "sm_count": 108,
        "memory_bandwidth_bytes_per_s": 1_555_200_000_000, "compute_major": compute_major,
        "compute_minor": 0, "used": True} for d in devices]), table_schema.GPUS)


def trace(kernels: Sequence[KernelSpec], api: Sequence[dict[str, Any]] | None = None,
          compute_major: int = 8, **tables: pd.DataFrame) -> Trace:
    """A trace of ``kernels`` launched by one thread (plus extra ``api`` calls and tables)."""
    k = kernel_frame(kernels)
    calls = launch_calls(k) + list(api or [])
    devices = sorted({int(d) for d in k["device_id"]}) or [0]
    return Trace(meta=TraceMeta(source="synthetic", sqlite_path=""), kernels=k,
                 api_calls=table_schema.conform(pd.DataFrame(calls), table_schema.API_CALLS),
                 gpus=gpus(compute_major, devices), **tables)
