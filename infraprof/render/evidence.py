"""Plain-text evidence lines of a finding, shared by the Markdown and HTML renderers.

The lines are unescaped text (trace names included as they are); each renderer escapes them
for its own format.
"""

from __future__ import annotations

from typing import Any

from infraprof.analyses.findings import Finding
from infraprof.analyses.sites import idle_text
from infraprof.units import fmt_bytes, fmt_ns, fmt_pct

_DIRECTIONS = {"HtoD": "H2D", "DtoH": "D2H", "DtoD": "D2D", "PtoP": "P2P", "UVM HtoD": "UM H2D",
               "UVM DtoH": "UM D2H", "UVM DtoD": "UM D2D"}


def _copy_text(wait: dict[str, Any], direction: str) -> str:
    """``2.3 ms D2H (1.2 GB pageable, 3.1 GB/s of 16 GB/s)``."""
    size = wait["memcpy_bytes"].get(direction, 0)
    pageable = wait.get("memcpy_pageable_bytes", {}).get(direction, 0)
    kind = ("pageable" if size and pageable >= size else
            f"{fmt_bytes(pageable)} pageable" if pageable else
            "pinned" if direction in ("HtoD", "DtoH") else "")
    rate = wait.get("achieved_bytes_per_s", {}).get(direction)
    peak = wait.get("link_peak_bytes_per_s", {}).get(direction)
    details = [f"{fmt_bytes(size)}{' ' + kind if kind else ''}"]
    if rate is not None:
        achieved = f"{rate / 1e9:.1f} GB/s" if rate >= 1e8 else f"{rate / 1e6:.1f} MB/s"
        details.append(achieved + (f" of {peak / 1e9:.0f} GB/s" if peak else ""))
    name = _DIRECTIONS.get(direction, direction)
    return f"{idle_text(wait['memcpy_ns'][direction])} {name} ({', '.join(details)})"


def during_wait_line(wait: dict[str, Any]) -> str:
    """``cudaStreamSynchronize 8.7 ms = 6.1 ms kernels + 2.3 ms D2H (…) + 0.3 ms UM faults``:
    what the GPU did while the host was blocked (parts may overlap; idle is what is left)."""
    parts = [f"{idle_text(wait['kernel_ns'])} kernels"] if wait.get("kernel_ns") else []
    parts += [_copy_text(wait, d) for d in sorted(wait.get("memcpy_ns", {}),
                                                  key=lambda d: -wait["memcpy_ns"][d])]
    if wait.get("um_faults"):
        parts.append(f"{idle_text(wait.get('um_fault_ns', 0))} UM faults "
                     f"({wait['um_faults']} faults, {fmt_bytes(wait.get('um_migrated_bytes', 0))} "
                     "migrated)")
    if wait.get("gpu_idle_ns"):
        parts.append(f"{idle_text(wait['gpu_idle_ns'])} GPU idle")
    return f"{wait['site']} {idle_text(wait['blocked_ns'])} = {' + '.join(parts) or 'nothing'}"


def _gap_lines(ev: dict[str, Any]) -> list[str]:
    lines = []
    if "gpu_idle_ns" in ev:
        lines.append(f"GPU idle attributed: {fmt_ns(ev['gpu_idle_ns'])} in {ev.get('gaps', '?')} "
                     f"gaps (not recoverable by this fix: "
                     f"{fmt_ns(ev.get('not_recoverable_ns', 0))})")
    if "site_calls" in ev:
        lines.append(f"{ev['site']}: {ev['site_calls']} calls, host blocked "
                     f"{fmt_ns(ev['site_host_blocked_ns'])} in total")
    if ev.get("during_wait"):
        lines.append(during_wait_line(ev["during_wait"]))
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


def _gpu_side_lines(ev: dict[str, Any]) -> list[str]:
    """Kernel-class, communication and kernel-sequence evidence."""
    lines = []
    for g in ev.get("groups", [])[:3]:
        if "count" in g:
            note = "" if g.get("counted", True) else " (not counted: may be a needed cast)"
            lines.append(f"{g['group']}: {fmt_ns(g['total_ns'])} in {g['count']} launches{note}")
    for k in ev.get("top_kernels", [])[:3]:
        lines.append(f"kernel {k['name']}: ×{k['count']}, {fmt_ns(k['total_ns'])}")
    for c in ev.get("collectives", [])[:4]:
        lines.append(f"{c['collective']}: ×{c['count']}, {fmt_ns(c['total_ns'])}, exposed "
                     f"{fmt_ns(c['exposed_ns'])}")
    for r in ev.get("exposed_nvtx_ranges", [])[:3]:
        lines.append(f"NVTX range {r['name']}: {fmt_ns(r['exposed_ns'])} exposed")
    for s in ev.get("sequences", [])[:3]:
        lines.append(f"×{s['occurrences']}: {' → '.join(s['kernels'])[:300]} "
                     f"({fmt_ns(s['recoverable_ns'])} idle between them)")
    return lines


def evidence_lines(finding: Finding) -> list[str]:
    """Short human lines summarising ``finding.evidence`` (empty when nothing is known)."""
    ev = finding.evidence
    lines = _gap_lines(ev) + _kernel_lines(ev) + _gpu_side_lines(ev)
    for o in ev.get("osrt_top", [])[:3]:
        lines.append(f"OS runtime {o['name']}: {fmt_ns(o['total_ns'])} in {o['calls']} calls")
    return lines
