"""One run's metrics for the regression gate, from any input: a trace (through the registered
``run_metrics`` analysis — see :mod:`infraprof.analyses.run_metrics` for every metric), the JSON
of ``infraprof analyze --format json`` (its ``gate_samples``), a gate metrics document, or an
Nsight Compute report (``ncu:*`` metrics).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from infraprof.analyses.api_classes import api_category
from infraprof.analyses.context import AnalysisContext
from infraprof.analyses.run_metrics import (
    MIN_RANGE_COUNT,
    TOP_KERNELS,
    TOP_RANGES,
    RunMetrics,
    normalize_range_name,
    require_finite,
    run_metrics,
)
from infraprof.capture.layout import CaptureFolder
from infraprof.errors import InputError
from infraprof.inputs import (
    JSON_DOCUMENT_KINDS,
    NCU_KINDS,
    TRACE_KINDS,
    check_kind,
    load_ncu,
    load_trace,
    read_json_document,
)
from infraprof.model import Trace
from infraprof.model.kernel_metrics import KernelMetrics

__all__ = ["RunMetrics", "expand_runs", "load_run", "load_side", "metrics_from_json",
           "metrics_from_ncu", "metrics_from_trace"]

FloatArray = npt.NDArray[np.float64]


def metrics_from_trace(trace: Trace, step: str = "auto") -> RunMetrics:
    """The ``run_metrics`` analysis of ``trace`` (``step``: see ``RunMetricsParams``)."""
    return run_metrics(AnalysisContext(trace), step)


def metrics_from_json(doc: Mapping[str, Any], source: str) -> RunMetrics:
    """Metrics from an ``analyze --format json`` document, or a :meth:`RunMetrics.to_dict`
    document. Uses the ``gate_samples`` section when present (full samples); otherwise only
    the per-run values the summaries allow (no step, launch-latency or sample data)."""
    if "gate_samples" in doc and doc["gate_samples"] is not None:
        if not isinstance(doc["gate_samples"], Mapping):
            raise InputError(f"{source}: gate_samples is not an object")
        return RunMetrics.from_dict(doc["gate_samples"], source)
    if str(doc.get("schema", "")).startswith("infraprof.gate.run/"):
        return RunMetrics.from_dict(doc, source)
    if "summary" not in doc or "schema_version" not in doc:
        raise InputError(f"{source}: JSON is neither `infraprof analyze --format json` output "
                         "nor gate metrics; pass a trace, a capture folder or analyze JSON")
    try:
        return require_finite(_from_report_dict(doc, source), source)
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
    syncs = [a for a in apis if api_category(str(a["name"])) == "sync"]
    run.values["sync:api_ns"] = float(sum(int(a["total_ns"]) for a in syncs))
    run.values["sync:calls"] = float(sum(int(a["count"]) for a in syncs))
    run.values["launch:calls"] = float(sum(int(a["count"]) for a in apis
                                           if api_category(str(a["name"])) == "launch"))
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
    """One run from a capture folder, nsys report/SQLite export, Nsight Compute report or CSV,
    analyze JSON or gate metrics JSON (any file gzip-compressed too), detected by content.
    Raises ``InputError`` (exit 3) for anything unreadable. A folder of per-rank reports is
    one run of a multi-rank job (:mod:`infraprof.gate.ranks`)."""
    from infraprof.gate.ranks import is_rank_folder, load_job

    if is_rank_folder(path):
        return load_job(path, step)
    kind = check_kind(path, TRACE_KINDS | NCU_KINDS | JSON_DOCUMENT_KINDS,
                      "a capture folder, an nsys report or SQLite export, an Nsight Compute "
                      "report, analyze JSON or gate metrics JSON")
    if kind in NCU_KINDS:
        return metrics_from_ncu(load_ncu(path), str(path))
    if kind in JSON_DOCUMENT_KINDS:
        return metrics_from_json(read_json_document(path), str(path))
    return trace_metrics(path, step)


RESULT_KIND = "gate-run"
"""The result-cache kind of a trace's gate metrics (:mod:`infraprof.result_cache`)."""


def trace_metrics(path: Path, step: str = "auto") -> RunMetrics:
    """:func:`metrics_from_trace` of the trace at ``path``, through the result cache (an
    nsys SQLite export seen before, unchanged, with the same ``step`` and code: its stored
    metrics, without reading it)."""
    from infraprof import result_cache

    settings = {"step": step}
    key = result_cache.entry_key(RESULT_KIND, path, settings)
    entry = result_cache.load(key) if key is not None else None
    cached = _metrics_from_bytes(entry.body) if entry is not None else None
    if cached is not None:
        return cached
    run = metrics_from_trace(load_trace(path, all_columns=False), step)
    body = _metrics_to_bytes(run) if key is not None else None
    if key is not None and body is not None and result_cache.still_same(
            path, key, RESULT_KIND, settings):
        result_cache.store(key, body)
    return run


def _metrics_to_bytes(run: RunMetrics) -> bytes | None:
    """``run`` as JSON that keeps its key order and every number exactly (ints stay ints,
    floats round-trip through ``repr``); None when a value is not JSON (then not cached)."""
    try:
        return json.dumps({"source": run.source, "values": list(run.values.items()),
                           "samples": [[k, list(v)] for k, v in run.samples.items()],
                           "context": list(run.context.items())}).encode()
    except (TypeError, ValueError):
        return None


def _metrics_from_bytes(body: bytes) -> RunMetrics | None:
    try:
        doc = json.loads(body)
        return RunMetrics(source=doc["source"], values=dict(doc["values"]),
                          samples={k: list(v) for k, v in doc["samples"]},
                          context=dict(doc["context"]))
    except (ValueError, KeyError, TypeError):
        return None


def expand_runs(paths: list[Path]) -> list[Path]:
    """A folder written by ``capture --repeat K`` (``run-1`` … ``run-K``) stands for K runs."""
    out: list[Path] = []
    for path in paths:
        runs = CaptureFolder(path).runs() if path.is_dir() else []
        out.extend(runs or [path])
    return out


def load_side(paths: list[Path], step: str, what: str) -> list[RunMetrics]:
    """Every run of one side (``what``: ``baseline``/``candidate``, named in errors)."""
    runs = []
    for path in expand_runs(paths):
        try:
            runs.append(load_run(path, step))
        except InputError as exc:
            raise InputError(f"{what}: {exc.message}") from exc
    return runs
