"""Plain-text evidence lines of a finding, shared by the Markdown and HTML renderers.

The lines are unescaped text (trace names included as they are); each renderer escapes them
for its own format.
"""

from __future__ import annotations

from typing import Any

from infraprof.analyses.findings import Finding
from infraprof.units import fmt_ns, fmt_pct


def _gap_lines(ev: dict[str, Any]) -> list[str]:
    lines = []
    if "gpu_idle_ns" in ev:
        lines.append(f"GPU idle attributed: {fmt_ns(ev['gpu_idle_ns'])} in {ev.get('gaps', '?')} "
                     f"gaps (not recoverable by this fix: "
                     f"{fmt_ns(ev.get('not_recoverable_ns', 0))})")
    if "site_calls" in ev:
        lines.append(f"{ev['site']}: {ev['site_calls']} calls, host blocked "
                     f"{fmt_ns(ev['site_host_blocked_ns'])} in total")
    for k in ev.get("launch_bound_kernels", [])[:5]:
        lines.append(f"kernel {k['name']}: ×{k['count']}, GPU {fmt_ns(k['kernel_avg_ns'])} vs "
                     f"launch call {fmt_ns(k['launch_call_avg_ns'])} on average")
    for c in ev.get("calls_in_gaps", [])[:5]:
        lines.append(f"calls overlapping the gaps: {c['name']} ×{c['count']}")
    for r in [r for r in ev.get("nvtx_ranges", []) if r.get("name") != "(none)"][:3]:
        lines.append(f"NVTX range {r['name']}: {fmt_ns(r['idle_ns'])} of the idle time")
    for pf in ev.get("python_frames", [])[:3]:
        lines.append(f"python: {pf['frame']} {fmt_pct(pf.get('share_of_idle'))} of the idle "
                     f"time ({pf.get('samples', '?')} samples)")
    native = ev.get("native_frame")
    if native:
        path = " → ".join(f"{f['function']} ({f['module']})" for f in ev.get("native_path", []))
        cut = "; nsys cut the stack above it" if ev.get("native_stack_cut") else ""
        lines.append(f"native: {native['function']} ({native['module']}) "
                     f"{fmt_pct(native.get('share_of_idle'))} of the idle time "
                     f"({native.get('samples', '?')} samples{cut})")
        if path:
            lines.append(f"native path: {path}")
    for t in ev.get("threads", [])[:2]:
        lines.append(f"thread {t['tid']}" + (f" ({t['name']})" if t.get("name") else ""))
    for e in ev.get("examples", [])[:3]:
        if "gap_end_ns" in e:
            width = fmt_ns(e["gap_end_ns"] - e["gap_start_ns"])
            lines.append(f"e.g. gap at {e['gap_start_ns']} ns, {width} before {e['next_op']}")
        elif "latency_ns" in e:
            lines.append(f"e.g. {e['name']} launched at {e['api_start_ns']} ns, started "
                         f"{fmt_ns(e['latency_ns'])} later")
    for k in ev.get("kernels", [])[:3]:
        if "median_latency_ns" in k:
            lines.append(f"kernel {k['name']}: ×{k['count']}, launch latency median "
                         f"{fmt_ns(k['median_latency_ns'])}, max {fmt_ns(k['max_latency_ns'])}")
    return lines


def _kernel_lines(ev: dict[str, Any]) -> list[str]:
    lines = []
    if "bound" in ev:
        lines.append(f"ncu: {ev['bound']}-bound" + (f" ({ev['bound_detail']})"
                                                    if ev.get("bound_detail") else ""))
    for s in ev.get("stalls", [])[:3]:
        lines.append(f"stall {s['reason']}: {fmt_pct(s['share'])} ({s.get('explanation', '')})")
    if ev.get("stalls_note"):
        lines.append(str(ev["stalls_note"]))
    roof = ev.get("roofline")
    if roof:
        pct = roof.get("pct_of_roof")
        of_roof = f", {pct:.0f} % of the roof" if isinstance(pct, float) and pct == pct else ""
        lines.append(f"roofline ({roof['precision']}): intensity "
                     f"{roof['arithmetic_intensity']:.3g} FLOP/B, ridge {roof['ridge_point']:.3g}, "
                     f"{roof['side']} side{of_roof}")
    if ev.get("occupancy"):
        lines.append(f"occupancy: {ev['occupancy']}")
    return lines


def evidence_lines(finding: Finding) -> list[str]:
    """Short human lines summarising ``finding.evidence`` (empty when nothing is known)."""
    ev = finding.evidence
    lines = _gap_lines(ev) + _kernel_lines(ev)
    for o in ev.get("osrt_top", [])[:3]:
        lines.append(f"OS runtime {o['name']}: {fmt_ns(o['total_ns'])} in {o['calls']} calls")
    return lines
