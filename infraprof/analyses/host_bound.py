"""``host.bound``: the GPUs are busy less than ``share`` of their active span.

Impact is the host-side idle that overlapping cannot hide — the ``not_recoverable_ns`` of the
``gap.host-cpu`` and ``gap.host-wait`` findings — i.e. what only a faster host (or moving the
work to the GPU) recovers; it is disjoint from those findings' own impact. The evidence names
the OS-runtime calls with the most time (top 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.model import Trace

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext


@dataclass(frozen=True)
class HostBoundParams:
    """``share``: GPU busy share of the active span below which a trace is host-bound (0.10)."""

    share: float = 0.10


def _osrt_top(trace: Trace, top: int = 5) -> list[dict[str, Any]]:
    osrt = trace.osrt
    if not len(osrt):
        return []
    per_name = (osrt["end_ns"] - osrt["start_ns"]).groupby(osrt["name"]).agg(["sum", "count"])
    return [{"name": str(name), "total_ns": int(row["sum"]), "calls": int(row["count"])}
            for name, row in per_name.sort_values("sum", ascending=False).head(top).iterrows()]


def host_bound_finding(trace: Trace, busy_ns: int, span_ns: int, gap_findings: list[Finding],
                       threshold: float) -> Finding | None:
    """The ``host.bound`` finding, or None when the GPUs are busy enough or nothing is left
    that only the host can recover."""
    if span_ns <= 0 or busy_ns / span_ns >= threshold:
        return None
    rest = sum(int(f.evidence.get("not_recoverable_ns", 0)) for f in gap_findings
               if f.category in ("host-cpu", "host-wait"))
    if rest <= 0:
        return None
    top_os = _osrt_top(trace)
    hint = f" (OS runtime dominated by {top_os[0]['name']})" if top_os else ""
    return impact_finding(
        "host.bound", "host-cpu",
        (f"Host-bound: the GPU is busy {100 * busy_ns / span_ns:.2f} % of its active span; "
         f"the host's own work leaves it idle{hint}"),
        rest, span_ns,
        {"gpu_busy_ns": busy_ns, "active_span_ns": span_ns, "busy_share": busy_ns / span_ns,
         "threshold": threshold, "osrt_top": top_os},
        "Profile and speed up the host code (or move it to the GPU); the GPU work is too small "
        "to hide it.")


def _run(ctx: AnalysisContext, params: HostBoundParams) -> Output:
    busy = sum(t.busy_ns for t in ctx.timelines)
    found = host_bound_finding(ctx.trace, busy, ctx.active_span_ns,
                               ctx.outputs["gaps"].findings, params.share)
    return Output(findings=[found] if found else [])


HOST_BOUND = Analysis(
    id="host_bound", summary="the GPUs are mostly idle because of the host's own work",
    finding_ids=("host.bound",), params_type=HostBoundParams, run=_run, requires=("gaps",),
    settings=(Setting("host-bound-share", "share", "share",
                      "GPU busy share of the active span below which host.bound fires (10%)"),))
