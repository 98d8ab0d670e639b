"""Report sections about phases and the host CPU: which findings are steady-state (ranked,
with their cost per iteration), the one-time start-up/teardown costs, how the phases were
found, and the host CPU profile. Built once here; every format lays them out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infraprof.analyses.findings import Finding
from infraprof.units import fmt_ns, fmt_pct

if TYPE_CHECKING:
    from infraprof.ranking.report import Report
    from infraprof.ranking.sections import Section

ONE_TIME = ("startup", "teardown")


def steady_findings(report: Report) -> list[Finding]:
    """Findings of the steady state (and those without a phase), in rank order."""
    return [f for f in report.findings if f.phase not in ONE_TIME]


def one_time_findings(report: Report) -> list[Finding]:
    """Start-up and teardown gap findings, by GPU idle time (what a one-time cost holds up)."""
    found = [f for f in report.findings if f.phase in ONE_TIME and f.impact_ns > 0]
    return sorted(found, key=lambda f: -int(f.evidence.get("gpu_idle_ns", 0)))


def iterations(report: Report) -> int | None:
    """Steady-state iterations (the most of any device; None when unknown)."""
    found = [p.iterations for p in (report.analysis.phases if report.analysis else [])
             if p.iterations]
    return max(found) if found else None


def per_iteration_ns(report: Report, finding: Finding) -> float | None:
    """A steady finding's impact over the steady-state iterations (None otherwise)."""
    n = iterations(report)
    return finding.impact_ns / n if n and finding.phase == "steady" else None


def phases_section(report: Report, top: int) -> Section | None:
    """How the phases were found (one note per device), then the one-time costs."""
    from infraprof.ranking.sections import Section

    phases = report.analysis.phases if report.analysis else []
    if not phases:
        return None
    notes = [f"device {p.device_id}: {p.detail}; steady state "
             f"{fmt_ns(p.steady_end_ns - p.steady_start_ns)} of "
             f"{fmt_ns(p.span_end_ns - p.span_start_ns)}"
             + (f", {p.iterations} iterations" if p.iterations else "") for p in phases]
    for f in one_time_findings(report)[:top]:
        idle = fmt_ns(int(f.evidence.get("gpu_idle_ns", 0)))
        notes.append(f"{f.phase}: GPU idle {idle} (recoverable {fmt_ns(f.impact_ns)}): "
                     f"{f.title}")
    return Section("phases", "Phases (start-up and teardown costs are one-time)", (),
                   notes=tuple(notes))


def host_profile_section(report: Report, top: int) -> Section | None:
    """Source, hottest function, per-thread top functions (self / inclusive), OS waits."""
    from infraprof.ranking.sections import Section

    prof = report.analysis.host_profile if report.analysis else None
    if prof is None or (prof.source is None and not prof.osrt_waits):
        return None
    notes = []
    if prof.source is not None:
        notes.append(f"{prof.samples} samples ({prof.source})")
    if prof.hottest:
        notes.append(f"hottest: {fmt_pct(prof.hottest['share'])} of samples in "
                     f"{prof.hottest['frame']}")
    for th in prof.threads:
        name = f" {th['name']}" if th["name"] else ""
        notes.append(f"thread {th['tid']}{name}: {th['samples']} samples")
        for kind in ("self", "inclusive"):
            rows = ", ".join(f"{r['frame']} {fmt_pct(r['share'])}"
                             for r in th[kind][:max(1, top // 2)])
            notes.append(f"  {kind}: {rows}")
    if prof.osrt_waits:
        notes.append("OS-runtime waits: " + ", ".join(
            f"{w['name']} {fmt_ns(w['total_ns'])} ({w['count']}×)"
            for w in prof.osrt_waits[:5]))
    notes.extend(f"note: {n}" for n in prof.notes)
    return Section("host_profile", "Host CPU profile", (), notes=tuple(notes))
