"""Plain-text lines shared by the terminal and Markdown reports: phases (steady-state ranking,
one-time costs) and the host CPU profile. Callers escape the lines for their format."""

from __future__ import annotations

from infraprof.analyses.findings import Finding
from infraprof.ranking import Report
from infraprof.units import fmt_ns, fmt_pct

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


def per_iteration(report: Report, finding: Finding) -> str:
    """``1.2 ms`` (impact over steady-state iterations) for steady findings, else ``""``."""
    n = iterations(report)
    return fmt_ns(finding.impact_ns / n) if n and finding.phase == "steady" else ""


def phase_lines(report: Report, top: int) -> list[str]:
    """How the phases were found, then the one-time (start-up/teardown) costs."""
    phases = report.analysis.phases if report.analysis else []
    if not phases:
        return []
    out = [f"device {p.device_id}: {p.detail}; steady state "
           f"{fmt_ns(p.steady_end_ns - p.steady_start_ns)} of "
           f"{fmt_ns(p.span_end_ns - p.span_start_ns)}"
           + (f", {p.iterations} iterations" if p.iterations else "") for p in phases]
    for f in one_time_findings(report)[:top]:
        idle = fmt_ns(int(f.evidence.get("gpu_idle_ns", 0)))
        out.append(f"{f.phase}: GPU idle {idle} (recoverable {fmt_ns(f.impact_ns)}): {f.title}")
    return out


def host_profile_lines(report: Report, top: int) -> list[str]:
    """Source, hottest function, per-thread top functions (self / inclusive), OS waits."""
    prof = report.analysis.host_profile if report.analysis else None
    if prof is None or (prof.source is None and not prof.osrt_waits):
        return []
    out = []
    if prof.source is not None:
        out.append(f"{prof.samples} samples ({prof.source})")
    if prof.hottest:
        out.append(f"hottest: {fmt_pct(prof.hottest['share'])} of samples in "
                   f"{prof.hottest['frame']}")
    for th in prof.threads:
        name = f" {th['name']}" if th["name"] else ""
        out.append(f"thread {th['tid']}{name}: {th['samples']} samples")
        for kind in ("self", "inclusive"):
            rows = ", ".join(f"{r['frame']} {fmt_pct(r['share'])}" for r in th[kind][:top // 2])
            out.append(f"  {kind}: {rows}")
    if prof.osrt_waits:
        out.append("OS-runtime waits: " + ", ".join(
            f"{w['name']} {fmt_ns(w['total_ns'])} ({w['count']}×)"
            for w in prof.osrt_waits[:5]))
    out.extend(f"note: {n}" for n in prof.notes)
    return out
