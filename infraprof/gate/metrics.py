"""Per-run metrics for the regression gate: scalar values plus within-run samples.

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
``step:sync:p50_ns``             per-step time in ``*Synchronize*`` API calls
``gpu:busy_ns|span_ns|idle_ns``  union of kernels/memcpy/memset per device, summed
``gpu:idle_share``               idle / span, all devices
``kernel:<name>:total_ns``       summed GPU time of a kernel (short name)
``kernel:<name>:p50_ns``         median instance duration (secondary: instances of one kernel
                                 in one run share caches, clocks and inputs, so they are not
                                 independent samples; report-only by default)
``launch:latency:p50_ns|p99_ns`` kernel start − end of its launch API call (joined on
                                 ``correlation_id`` + ``pid``); includes queueing, so async code
                                 raises it on purpose: report-only by default
``sync:api_ns``, ``sync:calls``  time and count of API calls whose name contains
                                 ``Synchronize``
``launch:calls``                 kernel/graph launch API calls
``memcpy:bytes``, ``memcpy:ns``  bytes moved and summed copy time
===============================  ===========================================================

*Steps* (the within-run unit of observation) come from an NVTX range whose normalised name is
``step``/``iteration``/``train_step`` (optionally numbered), or — when there is none — from the
intervals between consecutive device-wide synchronisations (``cuCtxSynchronize``,
``cudaDeviceSynchronize``), the usual end of a time step in codes without NVTX.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof import intervals
from infraprof.analyses import summary
from infraprof.analyses.api_classes import LAUNCH_RE
from infraprof.errors import InputError
from infraprof.model import Trace, load_trace
from infraprof.model.kernel_metrics import KernelMetrics, load_ncu
from infraprof.readers.ncu_csv import csv_page
from infraprof.readers.ncu_report import is_ncu_report

SCHEMA = "infraprof.gate.run/1"
STEP_SYNC_APIS = ("cuCtxSynchronize", "cudaDeviceSynchronize")
MIN_STEPS = 10
MIN_RANGE_COUNT = 3
TOP_RANGES = 20
TOP_KERNELS = 50
TOP_KERNEL_SAMPLES = 10
QUANTILE_STATS = {"p50_ns": 0.5, "p90_ns": 0.9, "p99_ns": 0.99}
_STEP_NAME = re.compile(r"^(train(ing)?[_ ]?)?(step|iter|iteration)( <n>)?$", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"\s*#?\d+$")

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
        return _require_finite(cls(source=source or str(data.get("source", "")), values=values,
                                   samples=samples, context=context), source or "input")


def _require_finite(run: RunMetrics, source: str) -> RunMetrics:
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


def _add_quantiles(run: RunMetrics, key: str, data: FloatArray,
                   stats: Iterable[str] = ("p50_ns",)) -> None:
    if data.size == 0:
        return
    run.samples[key] = [float(x) for x in data]
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
    norm = ranges["name"].fillna("").astype(str).map(normalize_range_name)
    if step.startswith("nvtx:"):
        wanted = normalize_range_name(step[5:])
        chosen = ranges[norm == wanted]
    elif step == "auto" or step.startswith("sync:"):
        chosen = ranges.iloc[0:0]
        if step == "auto":
            counts = norm[norm.map(is_step_name)].value_counts()
            if len(counts) and int(counts.iloc[0]) >= MIN_STEPS:
                chosen = ranges[norm == counts.index[0]]
    else:
        raise InputError(f"step source {step!r} not understood; use auto, none, nvtx:NAME or "
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


def _step_metrics(trace: Trace, run: RunMetrics, step: str) -> None:
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
    ops = trace.gpu_ops()
    ops = ops[ops["pid"].isin(pids)] if len(ops) else ops
    busy = intervals.union(ops["start_ns"].to_numpy(), ops["end_ns"].to_numpy())
    idle = length - intervals.overlap_each(busy, starts, ends).astype(np.float64)
    _add_quantiles(run, "step:gpu_idle", idle)
    calls = trace.api_calls
    sync_calls = calls[calls["name"].fillna("").str.contains("Synchronize")
                       & calls["pid"].isin(pids)]
    merged = intervals.union(sync_calls["start_ns"].to_numpy(), sync_calls["end_ns"].to_numpy())
    _add_quantiles(run, "step:sync",
                   intervals.overlap_each(merged, starts, ends).astype(np.float64))


def _nvtx_metrics(trace: Trace, run: RunMetrics) -> None:
    ranges = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
    if ranges.empty:
        return
    frame = pd.DataFrame({
        "name": ranges["name"].fillna("").astype(str).map(normalize_range_name).to_numpy(),
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
    names = k["short_name"].where(k["short_name"].notna(), k["name"]).fillna("?").astype(str)
    frame = pd.DataFrame({"name": names.to_numpy(), "dur": _durations(k)})
    totals = frame.groupby("name")["dur"].sum().sort_values(ascending=False)
    for rank, (name, total) in enumerate(totals.iloc[:TOP_KERNELS].items()):
        run.values[f"kernel:{name}:total_ns"] = float(total)
        if rank < TOP_KERNEL_SAMPLES:
            data = frame.loc[frame["name"] == name, "dur"].to_numpy(dtype=np.float64)
            _add_quantiles(run, f"kernel:{name}", data)


def _api_metrics(trace: Trace, run: RunMetrics) -> None:
    calls = trace.api_calls
    names = calls["name"].fillna("").astype(str)
    syncs = calls[names.str.contains("Synchronize")]
    run.values["sync:api_ns"] = float(_durations(syncs).sum())
    run.values["sync:calls"] = float(len(syncs))
    launches = calls[[bool(LAUNCH_RE.search(n)) for n in names]]
    run.values["launch:calls"] = float(len(launches))
    if len(launches) and len(trace.kernels):
        joined = trace.kernels[["correlation_id", "pid", "start_ns"]].merge(
            launches[["correlation_id", "pid", "end_ns"]], on=["correlation_id", "pid"])
        latency = (joined["start_ns"].to_numpy(dtype=np.float64)
                   - joined["end_ns"].to_numpy(dtype=np.float64))
        _add_quantiles(run, "launch:latency", latency, ("p50_ns", "p99_ns"))


def _gpu_metrics(trace: Trace, run: RunMetrics) -> None:
    devices = summary.device_busy(trace)
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


def metrics_from_trace(trace: Trace, step: str = "auto") -> RunMetrics:
    """Every built-in metric of one trace (see the module docstring). ``step`` chooses the
    step source: ``auto`` (default), ``none``, ``nvtx:NAME`` or ``sync:API``."""
    meta = trace.meta
    run = RunMetrics(source=meta.source, context={
        "nsys_version": meta.nsys_version, "capture_command": meta.capture_command})
    _gpu_metrics(trace, run)
    if len(trace.memcpy):
        run.values["memcpy:bytes"] = float(trace.memcpy["bytes"].sum())
        run.values["memcpy:ns"] = float(_durations(trace.memcpy).sum())
    _api_metrics(trace, run)
    _kernel_metrics(trace, run)
    _nvtx_metrics(trace, run)
    _step_metrics(trace, run, step)
    return run


def metrics_from_json(doc: Mapping[str, Any], source: str) -> RunMetrics:
    """Metrics from an ``analyze --format json`` document, or a :meth:`RunMetrics.to_dict`
    document. Uses the ``gate_samples`` section when present (full samples); otherwise only
    the per-run values the summaries allow (no step, launch-latency or sample data)."""
    if "gate_samples" in doc:
        if not isinstance(doc["gate_samples"], Mapping):
            raise InputError(f"{source}: gate_samples is not an object")
        return RunMetrics.from_dict(doc["gate_samples"], source)
    if str(doc.get("schema", "")).startswith("infraprof.gate.run/"):
        return RunMetrics.from_dict(doc, source)
    if "summary" not in doc or "schema_version" not in doc:
        raise InputError(f"{source}: JSON is neither `infraprof analyze --format json` output "
                         "nor gate metrics; pass a trace, a capture folder or analyze JSON")
    try:
        return _require_finite(_from_report_dict(doc, source), source)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise InputError(f"{source}: analyze JSON lacks expected fields ({exc}); re-run "
                         "`infraprof analyze --format json` with this version") from exc


def _from_report_dict(doc: Mapping[str, Any], source: str) -> RunMetrics:
    run = RunMetrics(source=source)
    devices = doc["summary"]["devices"]
    if devices:
        span = sum(int(d["span_ns"]) for d in devices)
        idle = sum(int(d["idle_ns"]) for d in devices)
        run.values["gpu:busy_ns"] = float(sum(int(d["busy_ns"]) for d in devices))
        run.values["gpu:span_ns"] = float(max(int(d["span_end_ns"]) for d in devices)
                                          - min(int(d["span_start_ns"]) for d in devices))
        run.values["gpu:idle_ns"] = float(idle)
        run.values["gpu:idle_share"] = idle / span if span else 0.0
        run.context["gpu"] = ", ".join(sorted({str(d["name"]) for d in devices}))
    copies = [m for m in doc.get("memcpy", []) if m.get("operation") != "memset"]
    if copies:
        run.values["memcpy:bytes"] = float(sum(int(m["bytes"]) for m in copies))
        run.values["memcpy:ns"] = float(sum(int(m["total_ns"]) for m in copies))
    apis = doc.get("api_calls", [])
    syncs = [a for a in apis if "Synchronize" in str(a["name"])]
    run.values["sync:api_ns"] = float(sum(int(a["total_ns"]) for a in syncs))
    run.values["sync:calls"] = float(sum(int(a["count"]) for a in syncs))
    run.values["launch:calls"] = float(sum(int(a["count"]) for a in apis
                                           if LAUNCH_RE.search(str(a["name"]))))
    totals: dict[str, float] = {}
    medians: dict[str, list[float]] = {}
    for k in doc.get("kernels", []):
        name = str(k.get("short_name") or k["name"])
        totals[name] = totals.get(name, 0.0) + float(k["total_ns"])
        medians.setdefault(name, []).append(float(k["median_ns"]))
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_KERNELS]:
        run.values[f"kernel:{name}:total_ns"] = total
        if len(medians[name]) == 1:
            run.values[f"kernel:{name}:p50_ns"] = medians[name][0]
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in doc.get("nvtx", []):
        groups.setdefault(normalize_range_name(str(r["name"] or "")), []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: -sum(int(r["total_ns"]) for r in kv[1]))
    for name, rows in ranked[:TOP_RANGES]:
        if sum(int(r["count"]) for r in rows) < MIN_RANGE_COUNT:
            continue
        run.values[f"nvtx:{name}:total_ns"] = float(sum(int(r["total_ns"]) for r in rows))
        if len(rows) == 1:
            for stat, col in (("p50_ns", "median_ns"), ("p90_ns", "p90_ns"),
                              ("p99_ns", "p99_ns")):
                run.values[f"nvtx:{name}:{stat}"] = float(rows[0][col])
    return run


def metrics_from_ncu(km: KernelMetrics, source: str) -> RunMetrics:
    """Per profiled kernel (short name): ``ncu:<kernel>:duration_ns`` (median over launches;
    every launch is a sample), ``:cpi``, ``:stall:<reason>`` (warp cycles per issued
    instruction spent in that stall), and report-only ``:sm_sol_pct``, ``:mem_sol_pct``,
    ``:dram_bytes_per_s``. One ncu report is one run; its values are single measurements."""
    run = RunMetrics(source=source, context={"source": source, "tool": "ncu"})
    k = km.kernels
    if k.empty:
        return run
    stalls = km.stalls.merge(k[["launch_id", "short_name"]], on="launch_id", how="inner")
    for name, g in k.groupby("short_name", sort=True):
        key = f"ncu:{name}"
        durations = g["duration_ns"].dropna().to_numpy(dtype=np.float64)
        if durations.size:
            run.values[f"{key}:duration_ns"] = float(np.median(durations))
            run.samples[f"{key}:duration_ns"] = [float(x) for x in durations]
        for col, metric in (("cpi", "cpi"), ("sm_sol_pct", "sm_sol_pct"),
                            ("mem_sol_pct", "mem_sol_pct"),
                            ("dram_throughput_bytes_per_s", "dram_bytes_per_s")):
            vals = g[col].dropna().to_numpy(dtype=np.float64)
            if vals.size:
                run.values[f"{key}:{metric}"] = float(np.median(vals))
        s = stalls[(stalls["short_name"] == name) & stalls["ratio_per_issue_active"].notna()]
        for reason, r in s.groupby("reason"):
            run.values[f"{key}:stall:{reason}"] = float(r["ratio_per_issue_active"].median())
    return run


def load_run(path: Path, step: str = "auto") -> RunMetrics:
    """One run from a capture folder, nsys report/SQLite export, analyze JSON or gate metrics
    JSON. Raises ``InputError`` (exit 3) for anything unreadable."""
    if path.is_file() and (is_ncu_report(path) or path.suffix == ".ncu-rep" or (
            path.suffix.lower() == ".csv" and csv_page(path) is not None)):
        return metrics_from_ncu(load_ncu(path), str(path))
    if path.is_file():
        try:
            with path.open("rb") as fh:
                head = fh.read(64).lstrip()
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
        if head.startswith(b"{"):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: invalid JSON ({exc})") from exc
            if not isinstance(doc, dict):
                raise InputError(f"{path}: JSON is not an object")
            return metrics_from_json(doc, str(path))
    return metrics_from_trace(load_trace(path), step)
