"""Summary statistics that match ``nsys stats``: kernels, CUDA API, memory operations, NVTX.

Statistics follow nsys' report SQL: ``avg`` is the mean, ``median`` is the middle value (mean of
the two middle values for even counts), ``std`` is the *sample* standard deviation (0 for a
single value). Differences from nsys, by design:

* kernels are grouped by demangled name only (``gpukernsum`` also splits by grid/block);
* API names are grouped after stripping ``_v<4-5 digits>`` (nsys strips 4 digits only) and
  rows duplicated in the export are counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof import tables as table_schema
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.group_stats import stats_by_code
from infraprof.analyses.names import first_rows_by_code, text_codes
from infraprof.model import Trace

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

STAT_COLUMNS = ["count", "total_ns", "avg_ns", "median_ns", "min_ns", "max_ns", "std_ns"]


def _duration_stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per-group duration statistics, sorted by total time (desc), then keys."""
    if frame.empty:
        cols = {k: pd.Series([], dtype=object) for k in keys}
        stats = {c: pd.Series([], dtype="float64") for c in STAT_COLUMNS}
        return table_schema.as_frame(pd.DataFrame({**cols, **stats}))
    dur = (frame["end_ns"] - frame["start_ns"]).astype("int64")
    aggs = ["count", "sum", "mean", "median", "min", "max", "std"]
    if len(keys) == 1 and frame[keys[0]].notna().all():
        # one text key: its integer codes (same groups, same first-appearance order), every
        # statistic from one sort by (code, duration) (group_stats), not a pandas group-by
        # per statistic and pandas' sorted float copy of every duration for the median
        codes, uniques = text_codes(frame[keys[0]])
        found = stats_by_code(codes, dur.to_numpy(), len(uniques))
        if found is None:  # a negative duration or a sum of 2**53 ns or more: pandas'
            grouped: Any = dur.groupby(codes, sort=False)
            by_pandas = grouped.agg(aggs)
            found = {a: by_pandas[a].to_numpy() for a in aggs}
            uniques = uniques[by_pandas.index.to_numpy()]
        out = pd.DataFrame({keys[0]: uniques, **found})
    else:
        g = frame.assign(dur=dur).groupby(keys, sort=False, dropna=False)["dur"]
        out = g.agg(aggs).reset_index()
    out.columns = [*keys, *STAT_COLUMNS]
    out["std_ns"] = out["std_ns"].fillna(0.0)
    for c in ("count", "total_ns", "min_ns", "max_ns"):
        out[c] = out[c].astype("int64")
    return table_schema.as_frame(out.sort_values(["total_ns", *keys],
                                      ascending=[False, *[True] * len(keys)],
                                      kind="stable").reset_index(drop=True))


def kernel_summary(trace: Trace) -> pd.DataFrame:
    """Per demangled kernel name: ``name, short_name`` + :data:`STAT_COLUMNS`."""
    k = trace.kernels
    out = _duration_stats(k, ["name"])
    if k.empty:
        out["short_name"] = pd.Series([], dtype=object)
        return out
    out["short_name"] = out["name"].map(_first_of_each(k, "name", "short_name"))
    return out


def _first_of_each(frame: pd.DataFrame, key: str, column: str) -> pd.Series:
    """``column`` of the first row of each ``key`` value, indexed by ``key`` (as
    ``frame.drop_duplicates(key).set_index(key)[column]``)."""
    values = frame[column]
    if not frame[key].notna().all():
        firsts = frame.drop_duplicates(key)
        return table_schema.as_series(pd.Series(
            _plain(firsts[column]).to_numpy(), index=firsts[key].astype(object)))
    codes, uniques = text_codes(frame[key])
    firsts = _plain(values.iloc[first_rows_by_code(codes)])  # plain text of these rows only
    return table_schema.as_series(pd.Series(
        firsts.to_numpy(), index=pd.Index(uniques, dtype=object), dtype=firsts.dtype))


def _plain(values: pd.Series) -> pd.Series:
    """The summaries hold plain text: a text category's values as objects."""
    return table_schema.plain_text(values) if table_schema.is_text_category(values) else values


def api_summary(trace: Trace) -> pd.DataFrame:
    """Per CUDA API name (runtime and driver): ``name, api`` + :data:`STAT_COLUMNS`."""
    a = trace.api_calls
    out = _duration_stats(a, ["name"])
    family = _first_of_each(a, "name", "api") if len(a) else pd.Series(dtype=object)
    out["api"] = out["name"].map(family)
    return out


def memcpy_summary(trace: Trace) -> pd.DataFrame:
    """Per memory operation (copy direction, or ``memset``): stats plus ``bytes``,
    ``avg_bytes``, ``min_bytes``, ``max_bytes`` and ``throughput_bytes_per_s`` (total bytes
    over total copy time)."""
    parts = []
    if len(trace.memcpy):
        parts.append(trace.memcpy[["start_ns", "end_ns", "bytes"]].assign(
            operation=trace.memcpy["direction"]))
    if len(trace.memset):
        parts.append(trace.memset[["start_ns", "end_ns", "bytes"]].assign(operation="memset"))
    if not parts:
        out = _duration_stats(pd.DataFrame(columns=["start_ns", "end_ns"]), ["operation"])
        for c in ("bytes", "avg_bytes", "min_bytes", "max_bytes", "throughput_bytes_per_s"):
            out[c] = pd.Series([], dtype="float64")
        return out
    ops = pd.concat(parts, ignore_index=True)
    out = _duration_stats(ops, ["operation"])
    by = ops.groupby("operation")["bytes"].agg(["sum", "mean", "min", "max"])
    out["bytes"] = out["operation"].map(by["sum"]).astype("int64")
    out["avg_bytes"] = out["operation"].map(by["mean"])
    out["min_bytes"] = out["operation"].map(by["min"]).astype("int64")
    out["max_bytes"] = out["operation"].map(by["max"]).astype("int64")
    secs = out["total_ns"].where(out["total_ns"] > 0) / 1e9
    out["throughput_bytes_per_s"] = (out["bytes"] / secs).fillna(0.0)
    return out


def nvtx_summary(trace: Trace) -> pd.DataFrame:
    """Per NVTX range (domain, name): stats plus ``p90_ns``, ``p99_ns``. Open ranges (no end)
    are excluded and counted in ``open``."""
    r = trace.nvtx[trace.nvtx["kind"] == "range"]
    # as object columns: pandas (3.1) fails to reindex a MultiIndex of two Categoricals whose
    # codes differ in width (int8 domains, int16 names)
    r = r.assign(domain=table_schema.fill_text(r["domain"], "").astype(object),
                 name=r["name"].astype(object))
    closed = r[r["end_ns"].notna()].astype({"end_ns": "int64"})
    out = _duration_stats(closed, ["domain", "name"])
    if closed.empty:
        for c in ("p90_ns", "p99_ns", "open"):
            out[c] = pd.Series([], dtype="float64")
        return out
    dur = (closed["end_ns"] - closed["start_ns"]).astype("int64")
    g = closed.assign(dur=dur).groupby(["domain", "name"])["dur"]
    q = g.quantile([0.9, 0.99]).unstack()
    idx = pd.MultiIndex.from_frame(out[["domain", "name"]])
    out["p90_ns"] = q[0.9].reindex(idx).to_numpy()
    out["p99_ns"] = q[0.99].reindex(idx).to_numpy()
    opened = r[r["end_ns"].isna()]
    n_open = opened.groupby(["domain", "name"]).size()
    out["open"] = n_open.reindex(idx).fillna(0).astype("int64").to_numpy()
    return out


@dataclass(frozen=True)
class DeviceBusy:
    """GPU busy time of one device over its active span ``[first op start, last op end]``."""

    device_id: int
    name: str
    span_start_ns: int
    span_end_ns: int
    busy_ns: int
    kernel_ns: int
    memcpy_ns: int
    memset_ns: int
    ops: int

    @property
    def span_ns(self) -> int:
        return self.span_end_ns - self.span_start_ns

    @property
    def idle_ns(self) -> int:
        return self.span_ns - self.busy_ns


def device_busy(trace: Trace) -> list[DeviceBusy]:
    """Busy = length of the union of kernels, memcpys and memsets per device
    (:func:`~infraprof.intervals.union_total` over masks of the start/end columns: no
    per-device copy of the operations and no union's arrays)."""
    ops = trace.gpu_ops()
    names = dict(zip(trace.gpus["device_id"], trace.gpus["name"], strict=True))
    devices = ops["device_id"].to_numpy()
    starts, ends = ops["start_ns"].to_numpy(), ops["end_ns"].to_numpy()
    kind_column = table_schema.as_text_category(ops["kind"])
    kinds = kind_column.cat.codes.to_numpy()
    kind_code = {str(text): code for code, text in enumerate(kind_column.cat.categories)}
    out = []
    for device in np.unique(devices).tolist():
        mine = None if devices.min() == devices.max() else devices == device
        of_kind = {k: kinds == kind_code.get(k, -2) for k in ("kernel", "memcpy", "memset")}
        if mine is not None:
            of_kind = {k: mask & mine for k, mask in of_kind.items()}
        first = int(starts.min() if mine is None else starts[mine].min())
        last = int(ends.max() if mine is None else ends[mine].max())
        out.append(DeviceBusy(
            device_id=int(device),
            name=str(names.get(device) or f"GPU {device}"),
            span_start_ns=first,
            span_end_ns=last,
            busy_ns=intervals.union_total(starts, ends, mine),
            kernel_ns=intervals.union_total(starts, ends, of_kind["kernel"]),
            memcpy_ns=intervals.union_total(starts, ends, of_kind["memcpy"]),
            memset_ns=intervals.union_total(starts, ends, of_kind["memset"]),
            ops=len(devices) if mine is None else int(mine.sum()),
        ))
    return out


def trace_span(trace: Trace) -> tuple[int, int]:
    """``(start_ns, end_ns)`` covering every recorded event.

    ``ANALYSIS_DETAILS`` is not used: its times are not on the event timeline in every export
    (e.g. captures started by ``cudaProfilerStart``).
    """
    starts, ends = [], []
    for f in (trace.kernels, trace.api_calls, trace.memcpy, trace.memset, trace.osrt):
        if len(f):
            starts.append(int(f["start_ns"].min()))
            ends.append(int(f["end_ns"].max()))
    nv = trace.nvtx
    if len(nv):
        starts.append(int(nv["start_ns"].min()))
        ends.append(int(np.nanmax(nv["end_ns"].fillna(nv["start_ns"]).to_numpy(dtype="float64"))))
    if not starts:
        return 0, 0
    return min(starts), max(ends)


@dataclass(frozen=True)
class SummaryParams:
    """The summaries have no parameters."""


def _run(ctx: AnalysisContext, params: SummaryParams) -> Output:
    start, end = ctx.span
    return Output(tables={
        "span": (start, end), "devices": ctx.device_busy, "kernels": ctx.kernel_summary,
        "api_calls": api_summary(ctx.trace), "memcpy": memcpy_summary(ctx.trace),
        "nvtx": nvtx_summary(ctx.trace)})


SUMMARY = Analysis(
    id="summary", summary="nsys stats-equivalent summaries: kernels, API, memory ops, NVTX",
    finding_ids=(), params_type=SummaryParams, run=_run, optional=False)
