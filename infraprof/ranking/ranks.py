"""Several reports as one job: each rank's facts from its own report, and the
:class:`ManyReport` (``analyze A B C …``), whose ``to_dict()`` is the multi-input JSON contract
(``docs/json-schema.md``, *Several inputs*)::

    {"schema_version", "reports": [one `analyze -f json` object per input],
     "ranks": [per-rank rows, by rank], "findings": [cross-rank findings, by impact_ns]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from infraprof.analyses.communication import COLLECTIVE_RE
from infraprof.analyses.findings import Finding
from infraprof.analyses.kernel_classes import classify_kernels
from infraprof.analyses.phases import nvtx_steps
from infraprof.analyses.ranks import CrossRank, RankFacts, RankParams, cross_rank
from infraprof.ranking.report import SCHEMA_VERSION, Report

MAX_COLLECTIVES: Final = 200_000  # per rank: bounds the data a worker sends back
MAX_GAPS: Final = 200_000  # per rank: the longest gaps are kept
MAX_STEPS: Final = 100_000
STEP_LIKE: Final = re.compile(r"step|iter|batch|epoch", re.IGNORECASE)


@dataclass(frozen=True)
class ManyReport:
    """The per-input report objects, the per-rank rows and the cross-rank findings."""

    reports: list[dict[str, Any]]
    ranks: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "reports": self.reports,
                "ranks": self.ranks, "findings": [f.to_dict() for f in self.findings]}


def build_many(reports: list[dict[str, Any]], facts: list[RankFacts],
               params: RankParams | None = None) -> ManyReport:
    """The reduce: per-input report objects (in input order) and every rank's facts."""
    result: CrossRank = cross_rank(facts, params)
    return ManyReport(reports, result.ranks, result.findings)


def _steps(report: Report, compute: tuple[np.ndarray, np.ndarray]) -> tuple[
        str | None, list[tuple[int, int, int]]]:
    """``(step name, [(start, end, compute)])``: NVTX steps whose name says step, iteration,
    batch or epoch (:data:`STEP_LIKE`; else the whole span is one step);
    compute = summed durations of the non-communication kernels starting in each step's
    window (to the next step's start), or the step's wall time when the rank has no kernels."""
    starts, durations = compute
    found = nvtx_steps(report.trace.nvtx)
    if found is not None and not STEP_LIKE.search(found[0]):
        found = None
    if found is None:
        name = None
        bounds = np.array([[report.span_start_ns, report.span_end_ns]], dtype=np.int64)
    else:
        name, inst = found
        inst = inst.sort_values("start_ns", kind="stable").head(MAX_STEPS)
        bounds = np.column_stack([inst["start_ns"].to_numpy(np.int64),
                                  inst["end_ns"].to_numpy(np.int64)])
    if not len(starts):
        return name, [(int(s), int(e), int(e - s)) for s, e in bounds]
    which = np.searchsorted(bounds[:, 0], starts, side="right") - 1
    keep = (which >= 0) & ((which < len(bounds) - 1) | (starts <= bounds[-1, 1]))
    sums = np.bincount(which[keep], weights=durations[keep], minlength=len(bounds))
    return name, [(int(s), int(e), int(round(c))) for (s, e), c in zip(bounds, sums,
                                                                        strict=True)]


def rank_facts(report: Report, *, input_path: str, input_index: int, pid: int | None,
               rank_hint: int | None, rank_source: str) -> RankFacts:
    """What the cross-rank step needs of one rank, from that rank's own report."""
    kernels = report.trace.kernels
    classes = classify_kernels(kernels["name"])["class"].to_numpy(object)
    is_comm = classes == "communication"
    k_start = kernels["start_ns"].to_numpy(np.int64)
    k_dur = kernels["end_ns"].to_numpy(np.int64) - k_start
    name, steps = _steps(report, (k_start[~is_comm], k_dur[~is_comm]))
    comm = kernels[is_comm].sort_values("start_ns", kind="stable").head(MAX_COLLECTIVES)
    ops = comm["name"].astype(str).str.extract(COLLECTIVE_RE, expand=False).fillna("collective")
    collectives = [(str(o).lower(), int(s), int(e)) for o, s, e in zip(
        ops, comm["start_ns"], comm["end_ns"], strict=True)]
    analysis = report.analysis
    table = analysis.attributions if analysis else None
    longest = (np.argsort(-table.dur, kind="stable")[:MAX_GAPS] if table is not None
               else np.empty(0, np.int64))
    records = table.records(longest) if table is not None else []
    gaps = [(g.start_ns, g.end_ns, g.category)
            for g in sorted(records, key=lambda g: g.start_ns)]
    top = report.findings[0] if report.findings else None
    return RankFacts(
        input=input_path, input_index=input_index, pid=pid, rank_hint=rank_hint,
        rank_source=rank_source, session_start_utc_ns=report.trace.meta.session_start_utc_ns,
        span_start_ns=report.span_start_ns, span_end_ns=report.span_end_ns,
        gpu_busy_ns=report.gpu_busy_ns,
        idle_by_cause_ns={k: int(v) for k, v in (
            analysis.idle_breakdown_ns if analysis else {}).items()},
        exposed_comm_ns=sum(int(c["exposed_ns"]) for c in (
            analysis.communication if analysis else [])),
        steps=steps, collectives=collectives, gaps=gaps,
        top_finding=({"id": top.id, "title": top.title, "impact_ns": top.impact_ns}
                     if top else None),
        step_name=name)
