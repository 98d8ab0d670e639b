"""NVTX ranges projected onto the GPU, and per-range-name latency distributions.

Projection (as nsys ``nvtx_gpu_proj_trace``): a GPU operation belongs to a range when its launch
API call starts inside the range on the same thread; the projected range is
``[first enclosed op start, last enclosed op end]``. Distributions per (domain, name): count,
P50/P90/P99/max of the CPU-side duration and of the projected GPU duration, and throughput
(ranges per second of the range's own span). These are the CI gate's step metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.analyses.base import Analysis, Output
from infraprof.model import Trace
from infraprof.model.correlation import launch_rows

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext


def launched_spans(launch_at: np.ndarray, op_start: np.ndarray, op_end: np.ndarray,
                   range_start: np.ndarray, range_end: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per range ``[range_start, range_end)`` of one thread: the first start and last end of
    the operations whose launch (``launch_at``, ascending) is inside it, and their number
    (0: none; then the first two are 0). Two ``searchsorted`` over all ranges and one
    ``reduceat`` per bound over the launches."""
    lo = np.searchsorted(launch_at, range_start, side="left")
    hi = np.searchsorted(launch_at, range_end, side="left")
    count = np.maximum(hi - lo, 0)
    some = np.flatnonzero(count > 0)
    first = np.zeros(len(lo), dtype=np.int64)
    last = np.zeros(len(lo), dtype=np.int64)
    if len(some):
        # reduceat over [lo, hi) pairs: even outputs are the ranges (a sentinel past the end)
        bounds = np.column_stack((lo[some], hi[some])).ravel()
        first[some] = np.minimum.reduceat(np.append(op_start, 0), bounds)[::2]
        last[some] = np.maximum.reduceat(np.append(op_end, 0), bounds)[::2]
    return first, last, count


def _launches_by_thread(trace: Trace, threads: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The launched GPU operations whose launching thread is one of ``threads`` (those with
    NVTX ranges), ordered by that thread, then launch start: ``global_tid, api_start_ns,
    start_ns, end_ns`` as int64 arrays (one thread's launches are one slice). The launch
    calls are found by row (:func:`~infraprof.model.correlation.launch_rows`) and the
    operations of other threads are dropped before anything is sorted or gathered."""
    calls = trace.api_calls
    keys = table_schema.as_frame(pd.DataFrame(trace.op_columns("pid", "correlation_id"),
                                              copy=False))
    rows = launch_rows(keys, calls)
    del keys
    call_tid = calls["global_tid"].to_numpy(dtype=np.int64)
    kept = np.concatenate([np.empty(0, dtype=np.int64), *(
        lo + np.flatnonzero(_launched_by(rows[lo:lo + BLOCK], call_tid, threads))
        for lo in range(0, len(rows), BLOCK))])
    rows = rows[kept]
    tid = call_tid[rows]
    at = calls["start_ns"].to_numpy(dtype=np.int64)[rows]
    del rows
    order = np.lexsort((at, tid))
    # one column at a time (each old one freed before the next is gathered: 170 MB less at
    # 10 M kernels than three gathers at once)
    tid = tid[order]
    at = at[order]
    kept = kept[order]
    del order
    start, end = (trace.op_values(column, kept) for column in ("start_ns", "end_ns"))
    return tid, at, start, end


BLOCK = 1 << 20
"""Operations tested at a time by :func:`_launches_by_thread`."""


def _launched_by(rows: np.ndarray, call_tid: np.ndarray, threads: np.ndarray) -> np.ndarray:
    """Whether each operation (its launch call's row, -1 for none) was launched by one of
    ``threads``."""
    if not len(call_tid):
        return np.zeros(len(rows), dtype=bool)
    launched = rows >= 0
    launched &= table_schema.positions_of(threads, call_tid[np.maximum(rows, 0)])[1]
    return launched


def nvtx_projection(trace: Trace) -> pd.DataFrame:
    """One row per closed NVTX range: ``domain, name, start_ns, end_ns, global_tid,
    gpu_start_ns, gpu_end_ns, gpu_ops`` (GPU columns NaN when no op was launched inside)."""
    r = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
    r = r[["domain", "name", "start_ns", "end_ns", "global_tid"]].copy()
    r["end_ns"] = r["end_ns"].astype("int64")
    r["domain"] = table_schema.fill_text(r["domain"], "")
    launch_tid, launch_at, op_start, op_end = _launches_by_thread(
        trace, np.unique(r["global_tid"].to_numpy(dtype=np.int64)))
    gpu_start = np.full(len(r), np.nan)
    gpu_end = np.full(len(r), np.nan)
    n_ops = np.zeros(len(r), dtype=np.int64)
    r = r.reset_index(drop=True)
    for gtid, rows in r.groupby("global_tid"):
        lo, hi = (int(x) for x in np.searchsorted(launch_tid, [gtid, gtid + 1]))
        if lo == hi:
            continue
        first, last, count = launched_spans(
            launch_at[lo:hi], op_start[lo:hi], op_end[lo:hi],
            rows["start_ns"].to_numpy(dtype=np.int64), rows["end_ns"].to_numpy(dtype=np.int64))
        idx = rows.index.to_numpy()[count > 0]
        gpu_start[idx] = first[count > 0]
        gpu_end[idx] = last[count > 0]
        n_ops[idx] = count[count > 0]
    r["gpu_start_ns"] = gpu_start
    r["gpu_end_ns"] = gpu_end
    r["gpu_ops"] = n_ops
    return table_schema.as_frame(r)


def nvtx_distributions(projection: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, name): ``count, p50_ns, p90_ns, p99_ns, max_ns, gpu_p50_ns, gpu_p99_ns,
    gpu_ops, per_s`` sorted by total range time."""
    if projection.empty:
        return table_schema.as_frame(pd.DataFrame(columns=[
            "domain", "name", "count", "total_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns",
            "gpu_p50_ns", "gpu_p99_ns", "gpu_ops", "per_s"]))
    used = ["domain", "name", "start_ns", "end_ns", "gpu_ops"]  # the groups sort every column
    p = table_schema.column_view(projection, used).assign(
                          dur=projection["end_ns"] - projection["start_ns"],
                          gdur=projection["gpu_end_ns"] - projection["gpu_start_ns"])
    rows = []
    for (domain, name), g in p.groupby(["domain", "name"], sort=False):
        d = g["dur"].to_numpy(dtype=np.float64)
        gd = g["gdur"].dropna().to_numpy(dtype=np.float64)
        span = float(g["end_ns"].max() - g["start_ns"].min())
        rows.append({
            "domain": domain, "name": name, "count": len(g), "total_ns": int(d.sum()),
            "p50_ns": float(np.percentile(d, 50)), "p90_ns": float(np.percentile(d, 90)),
            "p99_ns": float(np.percentile(d, 99)), "max_ns": float(d.max()),
            "gpu_p50_ns": float(np.percentile(gd, 50)) if gd.size else None,
            "gpu_p99_ns": float(np.percentile(gd, 99)) if gd.size else None,
            "gpu_ops": int(g["gpu_ops"].sum()),
            "per_s": (len(g) / (span / 1e9)) if span > 0 else None,
        })
    out = pd.DataFrame(rows).sort_values(["total_ns", "name"], ascending=[False, True])
    return table_schema.as_frame(out.reset_index(drop=True))


@dataclass(frozen=True)
class NvtxParams:
    """NVTX projection has no parameters."""


def _run(ctx: AnalysisContext, params: NvtxParams) -> Output:
    return Output(tables={"distributions": nvtx_distributions(nvtx_projection(ctx.trace))})


NVTX = Analysis(
    id="nvtx", summary="NVTX ranges projected onto the GPU work they launched",
    finding_ids=(), params_type=NvtxParams, run=_run)
