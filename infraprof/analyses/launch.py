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
from infraprof.analyses.group_stats import (
    blocks,
    counts_by_code,
    quantiles_and_max_by_code,
    quantiles_by_code,
    sums_by_code,
)
from infraprof.analyses.names import sorted_text_codes
from infraprof.int_widths import narrowest_array
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
    """Kernels joined to their launch calls (the matched ones, in kernel order): ``start_ns,
    end_ns, name`` (the kernel's), ``latency_ns`` (kernel start - call start) and ``api_ns``
    (the call's duration), integers (those two in their narrowest type). The other figures
    of the module docstring follow from them (:func:`launch_columns`): the call's start is
    ``start_ns - latency_ns``, the queue time ``latency_ns - api_ns`` (start - call end),
    the kernel time ``end_ns - start_ns``. With every kernel matched the kernel columns are
    the kernel table's own; the two call columns are the only new ones (80 MB at 10 M
    kernels in int32, against 560 MB for all seven in int64)."""
    k = table_schema.column_view(trace.kernels, ["start_ns", "end_ns", "pid", "correlation_id",
                                                 "name"])
    calls = trace.api_calls
    found = _with_calls(k, calls)
    if found is None:  # keys that are not plain int64: the join's merge
        j = join_launch_calls(k, calls, ("start_ns", "end_ns"), how="inner")
        call_start = np.array(j["api_start_ns"].to_numpy(), dtype=np.int64)
        call_end = np.array(j["api_end_ns"].to_numpy(), dtype=np.int64)
    else:
        j, rows = found
        call_start = calls["start_ns"].to_numpy()[rows]
        call_end = calls["end_ns"].to_numpy()[rows]
    start = j["start_ns"].to_numpy()
    call_end -= call_start  # the call's duration, in place
    latency = start - call_start
    del call_start
    return table_schema.as_frame(pd.DataFrame({
        "start_ns": j["start_ns"], "end_ns": j["end_ns"], "name": j["name"],
        # int32 below 2.1 s (80 MB fewer held at 10 M launches); consumers widen before
        # subtracting them
        "latency_ns": narrowest_array(latency), "api_ns": narrowest_array(call_end)},
        index=pd.RangeIndex(len(j)), copy=False))


def _with_calls(kernels: pd.DataFrame, calls: pd.DataFrame
                ) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The ``kernels`` that have a launch call (``kernels`` itself when all have) and their
    calls' rows in ``calls`` (:func:`~infraprof.model.correlation.call_rows`); None when the
    keys or the call times are not plain int64 (the caller then merges)."""
    rows = call_rows(kernels, calls) if str(calls["start_ns"].dtype) == "int64" else None
    if rows is None:
        return None
    matched = rows >= 0
    if matched.all():
        return kernels, rows
    keep = np.flatnonzero(matched)
    return kernels.iloc[keep].reset_index(drop=True), rows[keep]


def launch_columns(launches: pd.DataFrame, column: str) -> np.ndarray:
    """A figure of :func:`kernel_launches` (one value per launch): its own columns, or
    ``api_start_ns``, ``queue_ns`` (float64, NaN when negative) and ``kernel_ns`` derived
    from them (a new array each)."""
    latency: np.ndarray = launches["latency_ns"].to_numpy()
    if column == "api_start_ns":
        return np.asarray(launches["start_ns"].to_numpy() - latency)
    if column == "queue_ns":
        queue: np.ndarray = np.subtract(latency, launches["api_ns"].to_numpy(),
                                        dtype=np.int64).astype(np.float64)
        queue[queue < 0] = np.nan
        return queue
    if column == "kernel_ns":
        return np.asarray(launches["end_ns"].to_numpy() - launches["start_ns"].to_numpy())
    return np.asarray(launches[column].to_numpy())


def launch_latencies(trace: Trace) -> np.ndarray:
    """``kernel_launches(trace)["latency_ns"]`` (ns, int64, in kernel order) without the other
    columns: the kernel starts minus their launch calls' starts, one gather."""
    k = table_schema.column_view(trace.kernels, ["start_ns", "pid", "correlation_id"])
    calls = trace.api_calls
    found = _with_calls(k, calls)
    if found is None:  # keys that are not plain int64: the join's merge
        return np.asarray(kernel_launches(trace)["latency_ns"].to_numpy())
    launched, rows = found
    latency: np.ndarray = (launched["start_ns"].to_numpy()
                           - calls["start_ns"].to_numpy()[rows])
    return latency


@dataclass(frozen=True)
class _Relabel:
    """The integer group keys of :func:`_by_name` (``codes``, one per row) and the name of
    each (``names[code]``); called on a frame aggregated by those groups, it puts the names
    back as its index."""

    codes: np.ndarray
    names: pd.Index

    def __call__(self, aggregated: pd.DataFrame) -> None:
        aggregated.index = self.names[aggregated.index.to_numpy()]


def _by_name(frame: pd.DataFrame) -> tuple[DataFrameGroupBy[Any, Any], _Relabel | None]:
    """``frame.groupby("name")`` (sorted by name, null names dropped) and, without null
    names, a :class:`_Relabel`: then the groups are integer codes numbered in name order
    (:func:`~infraprof.analyses.names.sorted_text_codes`: the same groups in the same order,
    without hashing every row's text); with null names None (the groups are the texts)."""
    if not frame["name"].notna().all():
        return frame.groupby("name"), None
    codes, names = sorted_text_codes(frame["name"])
    return frame.groupby(codes), _Relabel(codes, names)


def launch_summary(launches: pd.DataFrame) -> pd.DataFrame:
    """Per kernel name: ``count, kernel_avg_ns, api_avg_ns, queue_avg_ns, queue_count,
    latency_p50_ns, latency_p99_ns``, sorted by count. The means are pandas' group means
    (:func:`_means_by_code`: exact sums of the integers, no group-by); the latency
    percentiles interpolate linearly between the sorted latencies of each name (pandas'
    ``quantile``), from one sort of the latencies by name (:func:`quantiles_by_code`)
    instead of pandas' sorted copy of every column. Null names: pandas' group-by on the
    texts."""
    if launches.empty:
        return table_schema.as_frame(pd.DataFrame(columns=[
            "name", "count", "kernel_avg_ns", "api_avg_ns", "queue_avg_ns", "queue_count",
            "latency_p50_ns", "latency_p99_ns"]))
    if launches["name"].notna().all():
        codes, names = sorted_text_codes(launches["name"])
        out = _by_code_summary(launches, codes, len(names))
        _Relabel(codes, names)(out)
    else:
        out = _grouped_summary(launches)
    out = out.reset_index()
    return table_schema.as_frame(out.sort_values(["count", "name"], ascending=[False, True])
                      .reset_index(drop=True))


def _grouped_summary(launches: pd.DataFrame) -> pd.DataFrame:
    """:func:`launch_summary`'s columns per name (the index) by pandas' group-by on the
    names (the path for names with nulls)."""
    frame = pd.DataFrame({"name": launches["name"], "latency_ns": launches["latency_ns"], **{
        column: launch_columns(launches, column) for column in (
            "kernel_ns", "api_ns", "queue_ns")}}, copy=False)
    g = frame.groupby("name")
    return table_schema.as_frame(pd.DataFrame({
        "count": g.size(), "kernel_avg_ns": g["kernel_ns"].mean(),
        "api_avg_ns": g["api_ns"].mean(), "queue_avg_ns": g["queue_ns"].mean(),
        "queue_count": g["queue_ns"].count(), "latency_p50_ns": g["latency_ns"].median(),
        "latency_p99_ns": g["latency_ns"].quantile(0.99)}))


def _by_code_summary(launches: pd.DataFrame, codes: np.ndarray, count: int) -> pd.DataFrame:
    """:func:`launch_summary`'s columns per name code ``0 .. count - 1`` (every code
    present): the derived columns summed a block at a time (:func:`_means_by_code`; a
    10 M-launch summary held five whole columns and pandas' group numbers at once)."""
    start, end = launches["start_ns"].to_numpy(), launches["end_ns"].to_numpy()
    latency, api = launches["latency_ns"].to_numpy(), launches["api_ns"].to_numpy()

    def queue_of(rows: slice) -> np.ndarray:  # the queue time; 0 where it is negative
        return np.asarray(np.maximum(np.subtract(latency[rows], api[rows], dtype=np.int64), 0))

    def waited_of(rows: slice) -> np.ndarray:  # where it is not (launch_columns' non-NaN)
        return np.asarray(latency[rows] >= api[rows])

    sizes = counts_by_code(codes, count)
    queued = sum((np.bincount(codes[rows][waited_of(rows)], minlength=count)
                  for rows in blocks(len(codes))), np.zeros(count, dtype=np.int64))
    found = quantiles_by_code(codes, latency, count, (0.5, 0.99))
    return table_schema.as_frame(pd.DataFrame({
        "count": sizes,
        "kernel_avg_ns": _means_by_code(codes, sizes, lambda rows: end[rows] - start[rows]),
        "api_avg_ns": _means_by_code(codes, sizes, lambda rows: api[rows]),
        "queue_avg_ns": _means_by_code(codes, queued, queue_of, waited_of),
        "queue_count": queued,
        "latency_p50_ns": found[:, 0], "latency_p99_ns": found[:, 1]}))


def _means_by_code(codes: np.ndarray, sizes: np.ndarray,
                   values_of: Callable[[slice], np.ndarray],
                   counted_of: Callable[[slice], np.ndarray] | None = None) -> np.ndarray:
    """Per code ``0 .. len(sizes) - 1``: the mean of the integers ``values_of(rows)`` gives
    for its rows (only the ``counted_of(rows)`` ones, the others 0; ``sizes``: the counted
    rows per code), NaN without any: bit for bit pandas' group-by ``mean``: the exact sums of
    :func:`~infraprof.analyses.group_stats.sums_by_code` over the count (pandas'
    compensated summation adds nothing to exact sums); pandas' group-by where they are not
    exact."""
    count = len(sizes)
    sums = sums_by_code(codes, count, values_of)
    if sums is None:
        every = slice(None)
        kept = slice(None) if counted_of is None else counted_of(every)
        grouped = pd.Series(values_of(every)[kept]).groupby(codes[kept]).mean()
        return np.asarray(grouped.reindex(range(count)).to_numpy(dtype=np.float64))
    means: np.ndarray = np.divide(sums, sizes, out=np.full(count, np.nan), where=sizes > 0)
    return means


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
    by_name = _slow_by_name(slow).sort_values("count", ascending=False).head(5)
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
            "examples": [{"name": str(name), "api_start_ns": int(start - latency),
                          "kernel_start_ns": int(start), "latency_ns": int(latency)}
                         for name, start, latency in zip(*(
                             # the rows taken first (a name column's codes, not every
                             # launch's name as an object: 80 MB at 10 M launches)
                             launches[column].take(worst).to_numpy() for column in (
                                 "name", "start_ns", "latency_ns")), strict=True)],
            "note": "long queue time means the host ran ahead; GPU idle it causes is counted "
                    "by gap findings",
        },
        "Usually benign (the host runs ahead). If it coincides with GPU idle, "
                       "look at the gap findings for what the GPU waited on.",
    )]


def _slow_by_name(slow: pd.DataFrame) -> pd.DataFrame:
    """Per name (index, in name order): ``count``, ``max`` and ``median`` of ``latency_ns``,
    as pandas' ``groupby("name")["latency_ns"].agg(["count", "max", "median"])``. Without
    null names from the name codes: ``bincount`` and the per-name maximum and median of
    :func:`quantiles_and_max_by_code` (pandas' own median, bit for bit), with no group-by."""
    groups, relabel = _by_name(slow)
    if relabel is None:
        return table_schema.as_frame(groups["latency_ns"].agg(["count", "max", "median"]))
    del groups
    latency = slow["latency_ns"].to_numpy()  # any integer width
    count = len(relabel.names)
    found, largest = quantiles_and_max_by_code(relabel.codes, latency, count, (0.5,))
    median = found[:, 0]
    return table_schema.as_frame(pd.DataFrame({
        "count": counts_by_code(relabel.codes, count), "max": largest,
        "median": median}, index=relabel.names))


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
    # one float copy of one column at a time (a new array: the columns are integers),
    # partitioned in place for both percentiles (numpy would copy it again)
    lat50, lat99 = np.percentile(np.array(launches["latency_ns"].to_numpy(), dtype=np.float64),
                                 [50, 99], overwrite_input=True)
    api50, api99 = np.percentile(np.array(launches["api_ns"].to_numpy(), dtype=np.float64),
                                 [50, 99], overwrite_input=True)
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
