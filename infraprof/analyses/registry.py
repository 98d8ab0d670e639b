"""Run every analysis on a trace, in a fixed, documented order.

``run_all(trace, params)`` returns an :class:`AnalysisResult`: the findings (unsorted; ranking
sorts them) plus the tables the report shows. Each analysis is a pure function of the trace and
its params dataclass; the default list is :data:`DEFAULT_ANALYSES` (ids), and
``AnalysisParams.disabled`` turns analyses off by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from infraprof.analyses import copies, launch, nvtx_proj
from infraprof.analyses.attribution import (
    CATEGORIES,
    AttributionParams,
    GapAttribution,
    attribute_gaps,
)
from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_findings import GapFindingParams, gap_findings, idle_text
from infraprof.analyses.ncu_kernels import profiling_suggestions, suggestion_text
from infraprof.analyses.python_frames import PythonSummary, python_frames
from infraprof.analyses.timeline import DeviceTimeline, TimelineParams, device_timelines
from infraprof.model import Trace
from infraprof.model.clock import AlignedPyspy

DEFAULT_ANALYSES = ("timeline", "attribution", "launch", "copies", "nvtx")


@dataclass(frozen=True)
class AnalysisParams:
    timeline: TimelineParams = field(default_factory=TimelineParams)
    attribution: AttributionParams = field(default_factory=AttributionParams)
    gaps: GapFindingParams = field(default_factory=GapFindingParams)
    launch: launch.LaunchParams = field(default_factory=launch.LaunchParams)
    copies: copies.CopyParams = field(default_factory=copies.CopyParams)
    host_bound_share: float = 0.10
    suggest_ncu: bool = True
    disabled: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AnalysisResult:
    """What :func:`run_all` found. ``attributions`` holds every attributed gap (for renderers
    that draw the timeline; empty when attribution is disabled or there is no GPU activity)."""

    findings: list[Finding]
    timelines: list[DeviceTimeline]
    idle_breakdown_ns: dict[str, int]
    launch_summary: pd.DataFrame
    launch_bound: pd.DataFrame
    launch_percentiles: dict[str, int | None]
    copy_bandwidth: list[dict[str, Any]]
    nvtx_gpu: pd.DataFrame
    gaps_attributed: int
    attributions: list[GapAttribution] = field(default_factory=list)
    python: PythonSummary | None = None
    pyspy: AlignedPyspy | None = None


def _no_gpu_finding(trace: Trace) -> Finding:
    what = ("GPUs are listed but no kernels, copies or memsets were recorded"
            if len(trace.gpus) else "no GPU activity was recorded (CPU-only capture)")
    return Finding(
        id="trace.no_gpu_activity", category="unknown",
        title=f"Nothing to correlate: {what}", severity="info", impact_ns=0, share=0.0,
        evidence={"gpus_in_node": len(trace.gpus), "api_calls": len(trace.api_calls),
                  "osrt_calls": len(trace.osrt), "nvtx_events": len(trace.nvtx)},
        recommendation="Capture with CUDA tracing on (`nsys profile -t cuda,nvtx,osrt`) while "
                       "the GPU work runs, or use the NVTX/host summaries for CPU-only runs.")


def _host_bound(trace: Trace, timelines: list[DeviceTimeline], findings: list[Finding],
                threshold: float) -> Finding | None:
    """``host.bound``: the GPU is busy less than ``threshold`` of its active span. Impact is the
    host-side idle that overlapping cannot hide (the ``not_recoverable_ns`` of the host-cpu and
    host-wait findings), i.e. what only a faster host (or moving the work to the GPU) recovers —
    disjoint from those findings' own impact."""
    span = sum(t.span_ns for t in timelines)
    busy = sum(t.busy_ns for t in timelines)
    if span <= 0 or busy / span >= threshold:
        return None
    rest = sum(int(f.evidence.get("not_recoverable_ns", 0)) for f in findings
               if f.category in ("host-cpu", "host-wait"))
    if rest <= 0:
        return None
    o = trace.osrt
    top_os = []
    if len(o):
        d = (o["end_ns"] - o["start_ns"]).groupby(o["name"]).agg(["sum", "count"])
        top_os = [{"name": str(n), "total_ns": int(r["sum"]), "calls": int(r["count"])}
                  for n, r in d.sort_values("sum", ascending=False).head(5).iterrows()]
    hint = f" (OS runtime dominated by {top_os[0]['name']})" if top_os else ""
    return Finding(
        id="host.bound", category="host-cpu",
        title=(f"Host-bound: the GPU is busy {100 * busy / span:.2f} % of its active span; "
               f"the host's own work leaves it idle{hint}"),
        severity="high" if rest / span >= 0.2 else "medium", impact_ns=rest, share=rest / span,
        evidence={"gpu_busy_ns": busy, "active_span_ns": span, "busy_share": busy / span,
                  "threshold": threshold, "osrt_top": top_os},
        recommendation="Profile and speed up the host code (or move it to the GPU); the GPU "
                       "work is too small to hide it.")


def _ncu_suggestion(trace: Trace) -> Finding | None:
    """Info finding naming the kernels worth profiling with Nsight Compute, with commands."""
    hot = profiling_suggestions(trace)
    if not hot:
        return None
    names = ", ".join(f"{s.short_name} ({100 * s.share:.0f} %)" for s in hot)
    return Finding(
        id="kernel.profile_suggestion", category="kernel",
        title=f"No Nsight Compute data; worth profiling: {names} of GPU kernel time",
        severity="info", impact_ns=0, share=0.0,
        evidence={"kernels": [{"name": s.name, "short_name": s.short_name,
                               "total_ns": int(s.gpu_time_ns), "share": round(s.share, 4),
                               "launches": s.launches, "command": s.command} for s in hot]},
        recommendation=suggestion_text(hot))


def _decorate(findings: list[Finding], trace: Trace, bound: pd.DataFrame) -> list[Finding]:
    """Add host-blocked totals to call sites and the launch-bound kernel table."""
    api = trace.api_calls
    by_name = api.groupby("name")["end_ns"].count() if len(api) else pd.Series(dtype="int64")
    dur = (api["end_ns"] - api["start_ns"]).groupby(api["name"]).sum() if len(api) else by_name
    out = []
    for f in findings:
        ev = dict(f.evidence)
        title = f.title
        if f.category in ("sync", "memcpy", "allocation") and ev.get("site") in by_name.index:
            ev["site_calls"] = int(by_name[ev["site"]])
            ev["site_host_blocked_ns"] = int(dur[ev["site"]])
        if f.id == "gap.launch-overhead" and len(bound):
            ev["launch_bound_kernels"] = [
                {"name": str(r.name), "count": int(r.count),
                 "kernel_avg_ns": round(float(r.kernel_avg_ns)),
                 "launch_call_avg_ns": round(float(r.api_avg_ns))}
                for r in bound.head(10).itertuples()]
            n = int(bound["count"].sum())
            title = (f"Launch-bound: {n} launches of {len(bound)} short kernels cost more CPU "
                     f"to launch than GPU to run; GPU idle {idle_text(ev['gpu_idle_ns'])} in "
                     f"{ev['gaps']} gaps")
        out.append(Finding(f.id, f.category, title, f.severity, f.impact_ns, f.share, ev,
                           f.recommendation))
    return out


def run_all(trace: Trace, params: AnalysisParams | None = None,
            pyspy: AlignedPyspy | None = None) -> AnalysisResult:
    """Every enabled analysis over ``trace`` (``pyspy``: aligned py-spy samples, optional)."""
    p = params or AnalysisParams()
    findings: list[Finding] = []
    timelines = device_timelines(trace, p.timeline)
    breakdown = dict.fromkeys(CATEGORIES, 0)
    launches = launch.kernel_launches(trace)
    summary = launch.launch_summary(launches)
    bound = launch.launch_bound_kernels(summary, p.launch)
    atts: list[GapAttribution] = []
    python: PythonSummary | None = None
    if not trace.has_gpu_activity:
        findings.append(_no_gpu_finding(trace))
    elif "attribution" not in p.disabled:
        atts = attribute_gaps(trace, timelines, p.attribution)
        for a in atts:
            for k, v in a.parts.items():
                breakdown[k] += v
        names = {int(g): str(n) for g, n in zip(trace.threads["global_tid"],
                                                  trace.threads["name"], strict=True)}
        gap = _decorate(gap_findings(atts, timelines, names, p.gaps), trace, bound)
        host = _host_bound(trace, timelines, gap, p.host_bound_share)
        if pyspy is not None:
            gap, python = python_frames(gap, atts, pyspy, trace.nvtx)
        findings += gap + ([host] if host else [])
    if p.suggest_ncu and len(trace.kernels):
        hint = _ncu_suggestion(trace)
        findings += [hint] if hint else []
    if "launch" not in p.disabled:
        findings += launch.launch_latency_findings(launches, p.launch)
    if "copies" not in p.disabled:
        findings += copies.copy_findings(trace)
    nvtx_gpu = (nvtx_proj.nvtx_distributions(nvtx_proj.nvtx_projection(trace))
                if "nvtx" not in p.disabled else pd.DataFrame())
    if pyspy is not None and python is None:
        python = python_frames([], [], pyspy, trace.nvtx)[1]
    return AnalysisResult(
        findings=findings,
        timelines=timelines,
        idle_breakdown_ns=breakdown,
        launch_summary=summary,
        launch_bound=bound,
        launch_percentiles=launch.latency_percentiles(launches),
        copy_bandwidth=copies.copy_bandwidth(trace, p.copies),
        nvtx_gpu=nvtx_gpu,
        gaps_attributed=len(atts),
        attributions=atts,
        pyspy=pyspy,
        python=python,
    )
