"""Kernel launch latency and launch-bound detection.

Per kernel launch (joined to its API call by correlation id + process), as nsys ``kernexecsum``:

* ``api_ns``   = launch call duration (CPU cost of the launch);
* ``queue_ns`` = kernel start − launch call end, only when ≥ 0 (time queued on the GPU);
* ``latency_ns`` = kernel start − launch call start (launch-to-start latency).

``launch_latency`` lists kernels whose launch-to-start latency exceeds ``latency_threshold_ns``
(default 1.2 ms). Queue time is not inherently bad — it means the host runs ahead.

Launch-bound detection (``launch_bound_kernels``): a kernel name is launch-bound when it has at
least ``min_launches`` (100) launches, an average GPU duration below ``short_kernel_ns`` (10 µs,
nsys-ai's rule) and an average launch call at least ``cpu_gpu_ratio`` (1.0) × its GPU duration —
the CPU spends as long launching it as the GPU spends running it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.findings import Finding, info_finding
from infraprof.analyses.names import sorted_text_codes
from infraprof.model import Trace
from infraprof.model.correlation import call_rows, join_launch_calls

if TYPE_CHECKING:
    from pandas.api.typing import DataFrameGroupBy

    from infraprof.analyses.context import AnalysisContext


@dataclass(frozen=True)
class LaunchParams:
    latency_threshold_ns: int = 1_200_000
    short_kernel_ns: int = 10_000
    min_launches: int = 100
    cpu_gpu_ratio: float = 1.0


def kernel_launches(trace: Trace) -> pd.DataFrame:
    """Kernels joined to their launch calls: ``start_ns, name, api_start_ns`` and ``api_ns,
    queue_ns (NaN when negative), latency_ns, kernel_ns`` (the columns the launch analyses
    read: at 1 M kernels each column is 8 MB, and the table is kept for the whole run)."""
    k = table_schema.column_view(trace.kernels, ["start_ns", "end_ns", "pid", "correlation_id",
                                                 "name"])
    j = join_launch_calls(k, trace.api_calls, ("start_ns", "end_ns"), how="inner")
    start = j["start_ns"].to_numpy()
    api_start = j["api_start_ns"].to_numpy()
    api_end = j["api_end_ns"].to_numpy()
    queue = (start - api_end).astype("float64")
    queue[queue < 0] = np.nan
    return table_schema.as_frame(pd.DataFrame({
        "start_ns": j["start_ns"], "name": j["name"], "api_start_ns": j["api_start_ns"],
        "api_ns": api_end - api_start, "queue_ns": queue, "latency_ns": start - api_start,
        "kernel_ns": j["end_ns"].to_numpy() - start}, copy=False))


def launch_latencies(trace: Trace) -> np.ndarray:
    """``kernel_launches(trace)["latency_ns"]`` (ns, int64, in kernel order) without the other
    columns: the kernel starts minus their launch calls' starts, one gather."""
    k = table_schema.column_view(trace.kernels, ["start_ns", "pid", "correlation_id"])
    calls = trace.api_calls
    rows = call_rows(k, calls) if str(calls["start_ns"].dtype) == "int64" else None
    if rows is None:  # keys that are not plain int64: the join's merge
        return np.asarray(kernel_launches(trace)["latency_ns"].to_numpy())
    matched = rows >= 0
    latency: np.ndarray = (k["start_ns"].to_numpy()[matched]
                           - calls["start_ns"].to_numpy()[rows[matched]])
    return latency


def _by_name(frame: pd.DataFrame
             ) -> tuple[DataFrameGroupBy[Any, Any], Callable[[pd.DataFrame], None]]:
    """``frame.groupby("name")`` (sorted by name, null names dropped) and a function that
    puts the names back as the index of a frame aggregated from it. Without null names the
    groups are integer codes numbered in name order
    (:func:`~infraprof.analyses.names.sorted_text_codes`: the same groups in the same order,
    without hashing every row's text)."""
    if not frame["name"].notna().all():
        return frame.groupby("name"), lambda aggregated: None
    codes, names = sorted_text_codes(frame["name"])

    def relabel(aggregated: pd.DataFrame) -> None:
        aggregated.index = names[aggregated.index.to_numpy()]

    return frame.groupby(codes), relabel


def launch_summary(launches: pd.DataFrame) -> pd.DataFrame:
    """Per kernel name: ``count, kernel_avg_ns, api_avg_ns, queue_avg_ns, queue_count,
    latency_p50_ns, latency_p99_ns``, sorted by count."""
    if launches.empty:
        return table_schema.as_frame(pd.DataFrame(columns=[
            "name", "count", "kernel_avg_ns", "api_avg_ns", "queue_avg_ns", "queue_count",
            "latency_p50_ns", "latency_p99_ns"]))
    g, relabel = _by_name(launches)
    out = pd.DataFrame({
        "count": g.size(),
        "kernel_avg_ns": g["kernel_ns"].mean(),
        "api_avg_ns": g["api_ns"].mean(),
        "queue_avg_ns": g["queue_ns"].mean(),
        "queue_count": g["queue_ns"].count(),
        "latency_p50_ns": g["latency_ns"].median(),
        "latency_p99_ns": g["latency_ns"].quantile(0.99),
    })
    relabel(out)
    out = out.reset_index()
    return table_schema.as_frame(out.sort_values(["count", "name"], ascending=[False, True])
                      .reset_index(drop=True))


def launch_bound_kernels(summary: pd.DataFrame, params: LaunchParams | None = None
                         ) -> pd.DataFrame:
    """Rows of :func:`launch_summary` that are launch-bound (see module docstring)."""
    p = params or LaunchParams()
    if summary.empty:
        return summary
    m = ((summary["count"] >= p.min_launches)
         & (summary["kernel_avg_ns"] < p.short_kernel_ns)
         & (summary["api_avg_ns"] >= p.cpu_gpu_ratio * summary["kernel_avg_ns"]))
    return table_schema.as_frame(summary[m].reset_index(drop=True))


def launch_latency_findings(launches: pd.DataFrame, params: LaunchParams | None = None
                            ) -> list[Finding]:
    """One informational finding listing kernels over the launch-to-start latency threshold.

    Impact is 0: the idle time this latency causes is already counted by the gap findings.
    """
    p = params or LaunchParams()
    if launches.empty:
        return []
    over = launches["latency_ns"] > p.latency_threshold_ns
    # two columns of the slow launches, not a copy of every column (56 MB at 1 M kernels)
    slow = table_schema.column_view(launches, ["name", "latency_ns"])[over]
    if slow.empty:
        return []
    groups, relabel = _by_name(slow)
    by_name = groups["latency_ns"].agg(["count", "max", "median"])
    del groups
    relabel(by_name)
    by_name = by_name.sort_values("count", ascending=False).head(5)
    # the three slowest rows, gathered per column (``launches.loc`` would consolidate the
    # frame's columns: a 56 MB copy at 1 M kernels)
    worst = launches.index.get_indexer(_largest_first(slow["latency_ns"], 3))
    n_slow = len(slow)
    del slow
    return [info_finding(
        "launch.latency",
        "launch-overhead",
        (f"{n_slow} of {len(launches)} kernel launches waited more than "
         f"{p.latency_threshold_ns / 1e6:.1f} ms from launch call to start"),
        {
            "threshold_ns": p.latency_threshold_ns,
            "launches_over_threshold": n_slow,
            "kernels": [{"name": str(n), "count": int(r["count"]),
                         "median_latency_ns": int(r["median"]), "max_latency_ns": int(r["max"])}
                        for n, r in by_name.iterrows()],
            "examples": [{"name": str(name), "api_start_ns": int(api_start),
                          "kernel_start_ns": int(start), "latency_ns": int(latency)}
                         for name, api_start, start, latency in zip(*(
                             launches[column].to_numpy()[worst] for column in (
                                 "name", "api_start_ns", "start_ns", "latency_ns")),
                             strict=True)],
            "note": "long queue time means the host ran ahead; GPU idle it causes is counted "
                    "by gap findings",
        },
        "Usually benign (the host runs ahead). If it coincides with GPU idle, "
                       "look at the gap findings for what the GPU waited on.",
    )]


def _largest_first(values: pd.Series, n: int) -> pd.Index:
    """The labels of the ``n`` largest ``values``, largest first; equal values: the earlier
    row first. Integers: a partition finds the ``n``-th largest and only the values at or
    above it are sorted (a sort of every slow launch was ~0.4 GB at 10 M kernels). A few
    values, or other dtypes: a stable descending sort."""
    arr = values.to_numpy()
    if arr.dtype.kind in "iu" and len(arr) > n + 1 and n > 0:
        found: pd.Index = values.index[table_schema.largest_positions(arr, n)]
        return found
    head: pd.Index = values.sort_values(ascending=False, kind="stable").head(n).index
    return head


def latency_percentiles(launches: pd.DataFrame) -> dict[str, int | None]:
    """P50/P99 of launch-to-start latency and of the launch call duration (ns)."""
    if launches.empty:
        return {"latency_p50_ns": None, "latency_p99_ns": None, "api_p50_ns": None,
                "api_p99_ns": None}
    # one float copy of one column at a time, both percentiles from one partition
    lat50, lat99 = np.percentile(launches["latency_ns"].to_numpy(dtype=np.float64), [50, 99])
    api50, api99 = np.percentile(launches["api_ns"].to_numpy(dtype=np.float64), [50, 99])
    return {"latency_p50_ns": round(float(lat50)), "latency_p99_ns": round(float(lat99)),
            "api_p50_ns": round(float(api50)), "api_p99_ns": round(float(api99))}


def _run(ctx: AnalysisContext, params: LaunchParams) -> Output:
    return Output(findings=launch_latency_findings(ctx.launches, params), tables={
        "per_kernel": ctx.launch_summary, "launch_bound": ctx.launch_bound,
        "percentiles": latency_percentiles(ctx.launches)})


LAUNCH = Analysis(
    id="launch", summary="launch-to-start latency, launch cost and launch-bound kernels",
    finding_ids=("launch.latency",), params_type=LaunchParams, run=_run,
    settings=(
        Setting("launch-latency-threshold", "latency_threshold_ns", "duration",
                "launch-to-start latency above which launch.latency lists a launch (1.2ms)"),
        Setting("short-kernel", "short_kernel_ns", "duration",
                "average kernel time below which a kernel can be launch-bound (10us)"),
        Setting("min-launches", "min_launches", "int",
                "launches a kernel needs before it can be launch-bound (100)"),
    ))
