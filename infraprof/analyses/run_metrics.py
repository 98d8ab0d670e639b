"""Per-run metrics for the regression gate: scalar values plus within-run samples.

Computed by a registered analysis, from the same context (device busy, the kernel↔launch
join, the API classification) as every other analysis, so ``analyze`` and ``gate`` cannot
disagree; ``analyze --format json`` carries them as ``gate_samples``. Samples are bounded:
at most :data:`SAMPLE_CAP` per sample set (evenly spaced in recorded order); the values
(quantiles, totals) always use every observation.

One :class:`RunMetrics` describes one capture (one run). Units are in the metric names:
``*_ns`` integer nanoseconds, ``*_bytes``/``:bytes`` bytes, ``:calls`` counts, ``*_share`` a
fraction in [0, 1]. Lower is better for every built-in metric.

Metric names are ``family:subject:statistic``:

===============================  ===========================================================
``nvtx:<range>:p50_ns|p90_ns|p99_ns``  quantiles of one NVTX range name's durations (samples:
                                 every instance). A trailing number is replaced by ``<n>``,
                                 so ``step 17``, ``step 18`` … pool as ``step <n>``.
``nvtx:<range>:total_ns``        summed duration (used to rank ranges; not gated by default)
``step:duration:p50_ns``         per-step wall time (samples: one per step)
``step:gpu_idle:p50_ns``         per-step GPU idle time (step length minus busy union)
``step:sync:p50_ns``             per-step time in API calls of category ``sync``
``gpu:busy_ns|span_ns|idle_ns``  union of kernels/memcpy/memset per device, summed
``gpu:idle_share``               idle / span, all devices
``kernel:<name>:total_ns``       summed GPU time of a kernel (short name)
``kernel:<name>:p50_ns``         median instance duration (secondary: instances of one kernel
                                 in one run share caches, clocks and inputs, so they are not
                                 independent samples; report-only by default)
``launch:latency:p50_ns|p99_ns`` launch-to-start latency: kernel start − *start* of its
                                 launch API call (the one correlation join, as
                                 ``analyses/launch.py``); includes queueing, so async code
                                 raises it on purpose: report-only by default
``sync:api_ns``, ``sync:calls``  time and count of API calls of category ``sync``
                                 (``analyses/api_classes.py``: synchronize, stream wait,
                                 queries)
``launch:calls``                 kernel/graph launch API calls
``memcpy:bytes``, ``memcpy:ns``  bytes moved and summed copy time
===============================  ===========================================================

*Steps* (the within-run unit of observation) come from an NVTX range whose normalised name is
``step``/``iteration``/``train_step`` (optionally numbered; also PyTorch profiler's
``ProfilerStep#N``), or — when there is none — from the
intervals between consecutive device-wide synchronisations (``cuCtxSynchronize``,
``cudaDeviceSynchronize``), the usual end of a time step in codes without NVTX.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof import intervals
from infraprof import tables as table_schema
from infraprof.analyses.api_classes import api_categories
from infraprof.analyses.base import Analysis, Output
from infraprof.errors import InputError, UsageError
from infraprof.model import Trace

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext
    from infraprof.analyses.timeline import DeviceTimeline

SCHEMA = "infraprof.gate.run/1"
STEP_SYNC_APIS = ("cuCtxSynchronize", "cudaDeviceSynchronize")
MIN_STEPS = 10
MIN_RANGE_COUNT = 3
TOP_RANGES = 20
TOP_KERNELS = 50
TOP_KERNEL_SAMPLES = 10
QUANTILE_STATS = {"p50_ns": 0.5, "p90_ns": 0.9, "p99_ns": 0.99}
_STEP_NAME = re.compile(r"^(train(ing)?[_ ]?|profiler[_ ]?)?(step|iter|iteration)( <n>)?$",
                        re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"\s*#?\d+$")
SAMPLE_CAP = 10_000

FloatArray = npt.NDArray[np.float64]


@dataclass
class RunMetrics:
    """Metrics of one run: ``values`` (metric name -> value in the unit its name states) and
    ``samples`` (sample-set name -> within-run observations, e.g. ``nvtx:step <n>`` -> every
    step's duration in ns). ``context`` holds provenance (source, host, gpu, nsys version)."""

    source: str
    values: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    context: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``schema`` = :data:`SCHEMA`); ints stay ints."""
        return {
            "schema": SCHEMA,
            "source": self.source,
            "context": dict(self.context),
            "values": {k: _num(v) for k, v in sorted(self.values.items())},
            "samples": {k: [_num(x) for x in v] for k, v in sorted(self.samples.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> RunMetrics:
        """Inverse of :meth:`to_dict`; raises ``InputError`` on a malformed document."""
        schema = str(data.get("schema", ""))
        if not schema.startswith("infraprof.gate.run/"):
            raise InputError(f"{source or 'input'}: not an infraprof gate metrics document "
                             f"(schema {schema!r})")
        try:
            values = {str(k): float(v) for k, v in dict(data.get("values", {})).items()}
            samples = {str(k): [float(x) for x in v]
                       for k, v in dict(data.get("samples", {})).items()}
            context = {str(k): (None if v is None else str(v))
                       for k, v in dict(data.get("context", {})).items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source or 'input'}: malformed gate metrics ({exc})") from exc
        return require_finite(cls(source=source or str(data.get("source", "")), values=values,
                                  samples=samples, context=context), source or "input")


def require_finite(run: RunMetrics, source: str) -> RunMetrics:
    """Refuse ``Infinity``/``NaN`` (which Python's JSON reader accepts): they would pass or
    fail the gate for no reason."""
    for name, value in run.values.items():
        if not math.isfinite(value):
            raise InputError(f"{source}: metric {name!r} is {value!r}, not a finite number; "
                             "regenerate the metrics")
    for name, series in run.samples.items():
        if not np.isfinite(np.asarray(series, dtype=np.float64)).all():
            raise InputError(f"{source}: samples of {name!r} hold a non-finite value; "
                             "regenerate the metrics")
    return run


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() and abs(v) < 2**63 else float(v)


def normalize_range_name(name: str) -> str:
    """``"step 17"`` -> ``"step <n>"``; ``"[DALI] Run #0"`` -> ``"[DALI] Run <n>"``."""
    base = _TRAILING_NUMBER.sub("", name)
    return name if base == name or not base else f"{base} <n>"


def is_step_name(normalized: str) -> bool:
    return bool(_STEP_NAME.match(normalized))


def bounded_samples(data: FloatArray, cap: int = SAMPLE_CAP) -> FloatArray:
    """At most ``cap`` of ``data``, evenly spaced in recorded order (all when fewer)."""
    if data.size <= cap:
        return data
    picked: FloatArray = data[np.linspace(0, data.size - 1, cap).round().astype(np.int64)]
    return picked


def _add_quantiles(run: RunMetrics, key: str, data: FloatArray,
                   stats: Iterable[str] = ("p50_ns",)) -> None:
    if data.size == 0:
        return
    run.samples[key] = [float(x) for x in bounded_samples(data)]
    for stat in stats:
        run.values[f"{key}:{stat}"] = float(np.quantile(data, QUANTILE_STATS[stat]))


def _durations(frame: pd.DataFrame) -> FloatArray:
    out: FloatArray = (frame["end_ns"].to_numpy(dtype=np.float64)
                       - frame["start_ns"].to_numpy(dtype=np.float64))
    return out


def _steps(trace: Trace, step: str) -> tuple[str, pd.DataFrame] | None:
    """``(label, frame[start_ns, end_ns, pid])`` of the step intervals, or None."""
    if step == "none":
        return None
    ranges = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
    norm = table_schema.map_distinct(table_schema.fill_text(ranges["name"], ""),
                                     lambda name: normalize_range_name(str(name)))
    if step.startswith("nvtx:"):
        wanted = normalize_range_name(step[5:])
        chosen = ranges[norm == wanted]
    elif step == "auto" or step.startswith("sync:"):
        chosen = ranges.iloc[0:0]
        if step == "auto":
            counts = norm[table_schema.map_distinct(norm, is_step_name).astype(bool)].value_counts()
            if len(counts) and int(counts.iloc[0]) >= MIN_STEPS:
                chosen = ranges[norm == counts.index[0]]
    else:
        raise UsageError(f"step source {step!r} not understood; use auto, none, nvtx:NAME or "
                         "sync:API")
    if len(chosen):
        frame = chosen[["start_ns", "end_ns", "pid"]].astype("int64")
        return "nvtx", frame.sort_values("start_ns").reset_index(drop=True)
    apis = (step[5:],) if step.startswith("sync:") else STEP_SYNC_APIS
    calls = trace.api_calls
    syncs = calls[calls["name"].isin(apis)]  # the reader already stripped _vNNNN suffixes
    if len(syncs) <= MIN_STEPS:
        return None
    pid = int(syncs["pid"].value_counts().index[0])
    ends = np.sort(syncs.loc[syncs["pid"] == pid, "end_ns"].to_numpy(dtype=np.int64))
    if ends.size <= MIN_STEPS:
        return None
    frame = pd.DataFrame({"start_ns": ends[:-1], "end_ns": ends[1:], "pid": pid})
    return "sync", frame


def _of_processes(table: pd.DataFrame, pids: set[int]) -> np.ndarray:
    """Whether each row's ``pid`` is one of ``pids`` (a comparison for one process)."""
    column = table["pid"].to_numpy()
    if len(pids) == 1:
        return np.asarray(column == next(iter(pids)))
    return np.isin(column, list(pids))


def _step_busy(trace: Trace, pids: set[int], timelines: list[DeviceTimeline] | None
               ) -> intervals.Intervals:
    """The union of the GPU operations of processes ``pids``. When every operation is
    theirs and the device timelines are held, it is the union of the devices' busy
    intervals (each one the union of its device's operations, disjoint and in order: one
    device's are the result as they are); else it is built from masks on the operations'
    columns (no filtered copies of the tables)."""
    tables = [t for t in (trace.kernels, trace.memcpy, trace.memset) if len(t)]
    masks = [_of_processes(t, pids) for t in tables]
    if timelines and all(bool(mask.all()) for mask in masks):
        if len(timelines) == 1:
            return timelines[0].busy
        return intervals.union(np.concatenate([t.busy.starts for t in timelines]),
                               np.concatenate([t.busy.ends for t in timelines]))
    starts, ends = ([table[column].to_numpy(dtype=np.int64)[mask]
                     for table, mask in zip(tables, masks, strict=True)]
                    for column in ("start_ns", "end_ns"))
    return intervals.union(np.concatenate([np.empty(0, dtype=np.int64), *starts]),
                           np.concatenate([np.empty(0, dtype=np.int64), *ends]))


def _step_metrics(trace: Trace, run: RunMetrics, step: str, is_sync: np.ndarray,
                  timelines: list[DeviceTimeline] | None = None) -> None:
    """Per-step samples; ``is_sync``: each API call is a sync (:func:`api_categories`);
    ``timelines``: the device timelines when they are held already."""
    found = _steps(trace, step)
    if found is None:
        return
    label, steps = found
    run.context["steps"] = f"{label} ({len(steps)} steps)"
    starts = steps["start_ns"].to_numpy(dtype=np.int64)
    ends = steps["end_ns"].to_numpy(dtype=np.int64)
    pids = set(steps["pid"].tolist())
    length = (ends - starts).astype(np.float64)
    _add_quantiles(run, "step:duration", length)
    busy = _step_busy(trace, pids, timelines)
    idle = length - intervals.overlap_each(busy, starts, ends).astype(np.float64)
    del busy
    _add_quantiles(run, "step:gpu_idle", idle)
    calls = trace.api_calls
    sync = is_sync & _of_processes(calls, pids)
    merged = intervals.union(calls["start_ns"].to_numpy()[sync], calls["end_ns"].to_numpy()[sync])
    _add_quantiles(run, "step:sync",
                   intervals.overlap_each(merged, starts, ends).astype(np.float64))


def _nvtx_metrics(trace: Trace, run: RunMetrics) -> None:
    ranges = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
    if ranges.empty:
        return
    frame = pd.DataFrame({
        "name": table_schema.map_text(table_schema.fill_text(ranges["name"], ""),
                                      normalize_range_name).array,
        "dur": _durations(ranges.astype({"end_ns": "int64"})),
    })
    totals = frame.groupby("name")["dur"].agg(["sum", "count"])
    totals = totals[totals["count"] >= MIN_RANGE_COUNT].sort_values("sum", ascending=False)
    for name in totals.index[:TOP_RANGES]:
        data = frame.loc[frame["name"] == name, "dur"].to_numpy(dtype=np.float64)
        _add_quantiles(run, f"nvtx:{name}", data, QUANTILE_STATS)
        run.values[f"nvtx:{name}:total_ns"] = float(data.sum())


def _kernel_metrics(trace: Trace, run: RunMetrics) -> None:
    k = trace.kernels
    if k.empty:
        return
    # a Categorical (sorted texts): the groupby and the comparisons below work on its codes
    names = table_schema.fill_text(table_schema.coalesce_text(k["short_name"], k["name"]), "?")
    frame = pd.DataFrame({"name": names.array, "dur": _durations(k)})
    totals = frame.groupby("name")["dur"].sum().sort_values(ascending=False)
    for rank, (name, total) in enumerate(totals.iloc[:TOP_KERNELS].items()):
        run.values[f"kernel:{name}:total_ns"] = float(total)
        if rank < TOP_KERNEL_SAMPLES:
            data = frame.loc[frame["name"] == name, "dur"].to_numpy(dtype=np.float64)
            _add_quantiles(run, f"kernel:{name}", data)


def _api_metrics(ctx: AnalysisContext, run: RunMetrics, categories: pd.Series,
                 is_sync: np.ndarray) -> None:
    calls = ctx.trace.api_calls
    syncs = table_schema.column_view(calls, ["start_ns", "end_ns"])[is_sync]
    run.values["sync:api_ns"] = float(_durations(syncs).sum())
    run.values["sync:calls"] = float(len(syncs))
    run.values["launch:calls"] = float((categories == "launch").sum())
    latency = ctx.launch_latencies().astype(np.float64)
    if len(latency):
        _add_quantiles(run, "launch:latency", latency, ("p50_ns", "p99_ns"))


def _gpu_metrics(ctx: AnalysisContext, run: RunMetrics) -> None:
    devices = ctx.device_busy
    if not devices:
        return
    span = sum(d.span_ns for d in devices)
    idle = sum(d.idle_ns for d in devices)
    run.values["gpu:busy_ns"] = float(sum(d.busy_ns for d in devices))
    run.values["gpu:span_ns"] = float(max(d.span_end_ns for d in devices)
                                      - min(d.span_start_ns for d in devices))
    run.values["gpu:idle_ns"] = float(idle)
    run.values["gpu:idle_share"] = idle / span if span else 0.0
    run.context["gpu"] = ", ".join(sorted({d.name for d in devices}))


def run_metrics(ctx: AnalysisContext, step: str = "auto") -> RunMetrics:
    """Every built-in metric of one trace (see the module docstring). ``step`` chooses the
    step source: ``auto`` (default), ``none``, ``nvtx:NAME`` or ``sync:API``."""
    trace = ctx.trace
    meta = trace.meta
    run = RunMetrics(source=meta.source, context={
        "nsys_version": meta.nsys_version, "capture_command": meta.capture_command})
    _gpu_metrics(ctx, run)
    if len(trace.memcpy):
        run.values["memcpy:bytes"] = float(trace.memcpy["bytes"].sum())
        run.values["memcpy:ns"] = float(_durations(trace.memcpy).sum())
    categories = api_categories(trace.api_calls["name"])  # once for the calls and the steps
    is_sync = (categories == "sync").to_numpy(dtype=bool)
    _api_metrics(ctx, run, categories, is_sync)
    del categories
    _kernel_metrics(trace, run)
    _nvtx_metrics(trace, run)
    _step_metrics(trace, run, step, is_sync, ctx.held("timelines"))
    return run


@dataclass(frozen=True)
class RunMetricsParams:
    """``step``: where per-step samples come from (``auto``, ``none``, ``nvtx:NAME``,
    ``sync:API``; default ``auto``)."""

    step: str = "auto"


def _run(ctx: AnalysisContext, params: RunMetricsParams) -> Output:
    return Output(tables={"run": run_metrics(ctx, params.step)})


RUN_METRICS = Analysis(
    id="run_metrics", summary="the regression gate's per-run metrics and within-run samples",
    finding_ids=(), params_type=RunMetricsParams, run=_run)
