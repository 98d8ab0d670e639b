"""Nsight Compute on the timeline: the ``ncu`` join and, without ncu data, what to profile.

``ncu``: each Nsight Compute report given (``--ncu``, or ``profile.ncu-rep`` in a capture folder)
is joined onto the nsys kernels by :func:`~infraprof.analyses.ncu_kernels.join_ncu`.
``ncu_suggestion``: when no report is given, the hottest kernels (≥ ``HOT_SHARE`` of kernel
time, at most 3) are named with the ``infraprof capture --ncu`` command that profiles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import info_finding
from infraprof.analyses.ncu_kernels import HOT_SHARE, capture_command, join_ncu
from infraprof.analyses.summary import kernel_summary
from infraprof.model import Trace

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext


@dataclass(frozen=True)
class ProfilingSuggestion:
    """A hot nsys kernel worth an ncu profile, with the command that captures it."""

    name: str
    short_name: str
    gpu_time_ns: int
    share: float
    launches: int
    command: str


def profiling_suggestions(trace: Trace, top: int = 3, min_share: float = HOT_SHARE,
                          summary: pd.DataFrame | None = None) -> list[ProfilingSuggestion]:
    """Up to ``top`` kernel names with at least ``min_share`` of kernel time, hottest first
    (``summary``: the trace's :func:`~infraprof.analyses.summary.kernel_summary` when already
    computed)."""
    if summary is None:
        summary = kernel_summary(trace)
    rows = [(str(n), str(s), int(t), int(c)) for n, s, t, c in zip(
        summary["name"], summary["short_name"], summary["total_ns"], summary["count"],
        strict=True)]
    total = sum(t for _, _, t, _ in rows)
    out: list[ProfilingSuggestion] = []
    for name, short, total_ns, count in sorted(rows, key=lambda r: -r[2]):
        share = total_ns / total if total else 0.0
        if share < min_share or len(out) >= top:
            break
        out.append(ProfilingSuggestion(name, short, total_ns, share, count,
                                       capture_command(short, trace.meta.capture_command)))
    return out


def suggestion_text(suggestions: list[ProfilingSuggestion]) -> str:
    """Plain text: why and how to profile the suggested kernels (empty when none)."""
    if not suggestions:
        return ""
    lines = ["No Nsight Compute data. To see why the hottest kernels are slow, profile them:"]
    for s in suggestions:
        lines.append(f"  {s.short_name} ({100 * s.share:.0f} % of GPU time, {s.launches} "
                     f"launches):")
        lines.append(f"    {s.command}")
    return "\n".join(lines)


@dataclass(frozen=True)
class NcuParams:
    """The ncu join has no parameters."""


def _run_join(ctx: AnalysisContext, params: NcuParams) -> Output:
    findings = []
    for metrics in ctx.ncu:
        findings += join_ncu(ctx.trace, metrics, ctx.active_span_ns, ctx.kernel_summary)
    return Output(findings=findings)


def _run_suggestion(ctx: AnalysisContext, params: NcuParams) -> Output:
    if ctx.ncu or not len(ctx.trace.kernels):
        return Output()
    hot = profiling_suggestions(ctx.trace, summary=ctx.kernel_summary)
    if not hot:
        return Output()
    names = ", ".join(f"{s.short_name} ({100 * s.share:.0f} %)" for s in hot)
    return Output(findings=[info_finding(
        "kernel.profile_suggestion", "kernel",
        f"No Nsight Compute data; worth profiling: {names} of GPU kernel time",
        {"kernels": [{"name": s.name, "short_name": s.short_name,
                      "total_ns": int(s.gpu_time_ns), "share": round(s.share, 4),
                      "launches": s.launches, "command": s.command} for s in hot]},
        suggestion_text(hot))])


NCU_SUGGESTION = Analysis(
    id="ncu_suggestion", summary="without ncu data: the hottest kernels and how to profile them",
    finding_ids=("kernel.profile_suggestion",), params_type=NcuParams, run=_run_suggestion)
NCU = Analysis(
    id="ncu", summary="Nsight Compute diagnoses (bound class, stalls) joined onto the timeline",
    finding_ids=("kernel.memory_bound", "kernel.compute_bound", "kernel.latency_bound",
                 "kernel.balanced", "kernel.unknown", "kernel.not_profiled",
                 "kernel.not_in_timeline", "kernel.gpu_mismatch"),
    params_type=NcuParams, run=_run_join)
