"""Turn gap attributions into ranked findings with recoverable-time estimates.

Each finding covers one cause (category + site); the idle nanoseconds behind different findings
never overlap, because every nanosecond of every gap has exactly one category.

Recoverable time (``impact_ns``) per category:

* ``sync``, ``memcpy``, ``allocation``, ``launch-overhead``, ``dependency``, ``unknown``: the
  attributed idle time (drain exposure already bounds it by what the host could have run ahead;
  launch overhead disappears with CUDA graphs or fusion).
* ``host-cpu``, ``host-wait``: host work can only hide behind GPU work. With double buffering
  (prefetch the next batch / write output from another thread) a host phase overlaps the GPU work
  issued since the previous gap with host work on that device, so a gap recovers
  ``min(its host-side idle, GPU busy time since that previous gap)``, shared between its
  host-cpu and host-wait parts in proportion.

Sites: the dominant call (API or OS-runtime name) for blocking categories, the innermost NVTX
range of the launching thread for host work (else ``(no NVTX range)``), and the kernel names for
launch overhead.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infraprof.analyses.attribution import CATEGORIES, GapAttribution
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.analyses.native_frames import with_native_frames
from infraprof.analyses.phases import PHASES, DevicePhases, phase_of_gap
from infraprof.analyses.python_frames import with_python_frames
from infraprof.analyses.sites import RECOMMENDATIONS, WHAT, idle_text, site_of
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.analyses.wait_contents import with_during_wait
from infraprof.tables import decode_tid

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

@dataclass(frozen=True)
class GapFindingParams:
    """``max_sites``: sites listed per finding (default 5); ``examples``: example gaps (3)."""

    max_sites: int = 5
    examples: int = 3


class _BusyIndex:
    """GPU busy time between two instants per device in O(log n): the prefix sums of each
    device's busy intervals are built once (``intervals.overlap_total`` rebuilds them per
    query)."""

    def __init__(self, timelines: dict[int, DeviceTimeline]) -> None:
        self.timelines = timelines
        self.prefix: dict[int, tuple[list[int], list[int], np.ndarray, np.ndarray]] = {}

    def _covered_before(self, device: int, t: int) -> int:
        if device not in self.prefix:
            busy = self.timelines[device].busy
            lengths = np.cumsum(busy.ends - busy.starts)
            self.prefix[device] = ([0, *lengths.tolist()], busy.starts.tolist(), busy.starts,
                                   busy.ends)
        prefix, starts, _, ends = self.prefix[device]
        idx = bisect.bisect_right(starts, t)
        if idx == 0:
            return 0
        return prefix[idx - 1] + max(min(t, int(ends[idx - 1])) - starts[idx - 1], 0)

    def between(self, device: int, t0: int, t1: int) -> int:
        """Same as ``intervals.overlap_total(timelines[device].busy, t0, t1)`` (0 without
        one)."""
        tl = self.timelines.get(device)
        if tl is None or t1 <= t0 or len(tl.busy) == 0:
            return 0
        return self._covered_before(device, t1) - self._covered_before(device, t0)


def gap_findings(attributions: list[GapAttribution], timelines: list[DeviceTimeline],
                 thread_names: dict[int, str], params: GapFindingParams | None = None
                 ) -> list[Finding]:
    """Aggregate attributions into findings, one per (category, site) with positive impact."""
    return [f for f, _ in keyed_gap_findings(attributions, timelines, thread_names, params)]


def keyed_gap_findings(attributions: list[GapAttribution], timelines: list[DeviceTimeline],
                       thread_names: dict[int, str], params: GapFindingParams | None = None,
                       split: dict[tuple[int, int, str], str] | None = None,
                       phases: dict[int, DevicePhases] | None = None
                       ) -> list[tuple[Finding, str]]:
    """One finding per (category, site, split key) with positive impact, with its key.

    ``split`` maps ``(device_id, gap_start_ns, category)`` to the key of the code that caused
    that gap's time (:func:`~infraprof.analyses.native_frames.split_keys`; absent: no key);
    ``phases``: per device, to give each finding the phase holding most of its idle time."""
    p = params or GapFindingParams()
    keys = split or {}
    by_dev = {t.device_id: t for t in timelines}
    active = sum(t.span_ns for t in timelines) or 1
    acc: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"idle": 0, "impact": 0, "gaps": 0, "examples": [], "threads": set(),
                 "nvtx": defaultdict(int), "calls": defaultdict(lambda: [0, 0]),
                 "kernels": defaultdict(int), "phase": defaultdict(int)})
    last_host: dict[int, int] = {}
    busy = _BusyIndex(by_dev)
    for a in sorted(attributions, key=lambda x: x.start_ns):
        host_ns = a.parts.get("host-cpu", 0) + a.parts.get("host-wait", 0)
        budget = 0
        if host_ns:
            prev = last_host.get(a.device_id, by_dev[a.device_id].span_start_ns)
            budget = min(host_ns, busy.between(a.device_id, prev, a.start_ns))
            last_host[a.device_id] = a.end_ns
        for cat, ns in a.parts.items():
            site = site_of(a, cat)
            rec = acc[(cat, site, keys.get((a.device_id, a.start_ns, cat), ""))]
            rec["idle"] += ns
            if phases is not None:
                rec["phase"][phase_of_gap(phases, a.device_id, a.start_ns, a.end_ns)] += ns
            if cat in ("host-cpu", "host-wait"):
                rec["impact"] += budget * ns // host_ns
            else:
                rec["impact"] += ns
            rec["gaps"] += 1
            if a.global_tid is not None:
                rec["threads"].add(a.global_tid)
            rec["nvtx"][a.where.get(cat) or a.nvtx or "(none)"] += ns
            if cat == "launch-overhead":
                rec["kernels"][a.next_op["name"]] += ns
            for c in a.calls:
                if c["category"] == cat:
                    rec["calls"][c["name"]][0] += 1
                    rec["calls"][c["name"]][1] += int(c["dur_ns"])
            if len(rec["examples"]) < p.examples or ns > rec["examples"][-1]["attributed_ns"]:
                rec["examples"].append({
                    "device_id": a.device_id, "gap_start_ns": a.start_ns,
                    "gap_end_ns": a.end_ns, "attributed_ns": ns,
                    "next_op": a.next_op["name"], "launch_call": a.launch and a.launch["name"],
                    "drain_call": a.drain and a.drain["name"], "nvtx": a.nvtx,
                    "calls": a.calls[:3],
                })
                rec["examples"].sort(key=lambda e: -e["attributed_ns"])
                del rec["examples"][p.examples:]
    return [(_finding(cat, site, rec, p, active, thread_names), key)
            for (cat, site, key), rec in acc.items() if rec["impact"] > 0]


def _finding(cat: str, site: str, rec: dict[str, Any], p: GapFindingParams, active: int,
             thread_names: dict[int, str]) -> Finding:
    """The finding of one (category, site, split key) accumulator, in the phase that holds
    most of its idle time (ties: steady)."""
    threads = sorted(rec["threads"])
    calls = sorted(rec["calls"].items(), key=lambda kv: -kv[1][1])[: p.max_sites]
    nvtx = sorted(rec["nvtx"].items(), key=lambda kv: -kv[1])[: p.max_sites]
    title = f"{site}: GPU idle {idle_text(rec['idle'])} in {rec['gaps']} gaps; {WHAT[cat]}"
    finding = impact_finding(
        f"gap.{cat}", cat, title, int(rec["impact"]), active,
        {
            "site": site,
            "gpu_idle_ns": int(rec["idle"]),
            "gaps": int(rec["gaps"]),
            "threads": [{"global_tid": t, "tid": int(decode_tid(t)),
                         "name": thread_names.get(t)} for t in threads[:5]],
            "nvtx_ranges": [{"name": n, "idle_ns": int(v)} for n, v in nvtx],
            "calls_in_gaps": [{"name": n, "count": c, "in_gap_call_ns": d}
                              for n, (c, d) in calls],
            "examples": rec["examples"],
            "next_ops": [{"name": n, "idle_ns": int(v)} for n, v in sorted(
                rec["kernels"].items(), key=lambda kv: -kv[1])[: p.max_sites]],
            "not_recoverable_ns": int(rec["idle"] - rec["impact"]),
        },
        RECOMMENDATIONS[cat],
    )
    if not rec["phase"]:
        return finding
    phase = max(PHASES, key=lambda ph: (rec["phase"].get(ph, 0), ph == "steady"))
    return replace(finding, phase=phase)


def _site_totals(api_calls: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per API name over the whole trace: call count and total host time (ns)."""
    if not len(api_calls):
        empty = pd.Series(dtype="int64")
        return empty, empty
    count = api_calls.groupby("name")["end_ns"].count()
    total = (api_calls["end_ns"] - api_calls["start_ns"]).groupby(api_calls["name"]).sum()
    return count, total


def _with_site_totals(finding: Finding, totals: tuple[pd.Series, pd.Series]) -> Finding:
    """Blocking-call findings also say how often, and how long, the host was in that call."""
    count, total = totals
    site = str(finding.evidence.get("site"))
    if finding.category not in ("sync", "memcpy", "allocation") or site not in count.index:
        return finding
    evidence = {**finding.evidence, "site_calls": int(count[site]),
                "site_host_blocked_ns": int(total[site])}
    return replace(finding, evidence=evidence)


def _with_launch_bound(finding: Finding, bound: pd.DataFrame) -> Finding:
    """Launch-overhead findings list the launch-bound kernels and are titled by them."""
    if finding.id != "gap.launch-overhead" or not len(bound):
        return finding
    ev = dict(finding.evidence)
    ev["launch_bound_kernels"] = [
        {"name": str(r.name), "count": int(r.count),
         "kernel_avg_ns": round(float(r.kernel_avg_ns)),
         "launch_call_avg_ns": round(float(r.api_avg_ns))}
        for r in bound.head(10).itertuples()]
    launches = int(bound["count"].sum())
    title = (f"Launch-bound: {launches} launches of {len(bound)} short kernels cost more CPU "
             f"to launch than GPU to run; GPU idle {idle_text(ev['gpu_idle_ns'])} in "
             f"{ev['gaps']} gaps")
    return replace(finding, title=title, evidence=ev)


def _run_gaps(ctx: AnalysisContext, params: GapFindingParams) -> Output:
    totals = _site_totals(ctx.trace.api_calls)
    native = ctx.native_pools
    phases = {ph.device_id: ph for ph in ctx.phases}
    findings = [
        with_during_wait(with_native_frames(with_python_frames(
            _with_launch_bound(_with_site_totals(f, totals), ctx.launch_bound),
            ctx.python_pools), key, native), ctx.trace)
        for f, key in keyed_gap_findings(ctx.attributions, ctx.timelines, ctx.thread_names,
                                         params, native.keys if native else None, phases)]
    return Output(findings=findings)


GAPS = Analysis(
    id="gaps", summary="gap causes aggregated per (category, site) with recoverable time",
    finding_ids=tuple(f"gap.{c}" for c in CATEGORIES), params_type=GapFindingParams,
    run=_run_gaps, requires=("attribution",))
