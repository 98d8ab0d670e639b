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

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.analyses.gap_accumulate import Accumulator, Split, accumulate
from infraprof.analyses.gap_table import CATEGORIES, GapTable
from infraprof.analyses.group_stats import sums_by_code
from infraprof.analyses.names import sorted_text_codes
from infraprof.analyses.native_frames import with_native_frames
from infraprof.analyses.phases import PHASES, DevicePhases
from infraprof.analyses.python_frames import with_python_frames
from infraprof.analyses.sites import RECOMMENDATIONS, WHAT, idle_text
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


def gap_findings(attributions: GapTable, timelines: list[DeviceTimeline],
                 thread_names: dict[int, str], params: GapFindingParams | None = None
                 ) -> list[Finding]:
    """Aggregate attributions into findings, one per (category, site) with positive impact."""
    return [f for f, _ in keyed_gap_findings(attributions, timelines, thread_names, params)]


def keyed_gap_findings(attributions: GapTable, timelines: list[DeviceTimeline],
                       thread_names: dict[int, str], params: GapFindingParams | None = None,
                       split: Split | None = None,
                       phases: dict[int, DevicePhases] | None = None
                       ) -> list[tuple[Finding, str]]:
    """One finding per (category, site, split key) with positive impact, with its key, in
    the order of the first gap that hits each (:func:`~infraprof.analyses.gap_accumulate.
    accumulate`).

    ``split`` maps ``(device_id, gap_start_ns, category)`` to the key of the code that caused
    that gap's time (a mapping, or a table ``device_id, g0, category, key`` as
    :attr:`~infraprof.analyses.native_frames.NativePools.keys`; absent: no key);
    ``phases``: per device, to give each finding the phase holding most of its idle time."""
    p = params or GapFindingParams()
    active = sum(t.span_ns for t in timelines) or 1
    accs = accumulate(attributions, timelines, p.examples, {} if split is None else split,
                      phases)
    return [(_finding(cat, site, rec, p, active, thread_names), key)
            for (cat, site, key), rec in accs if rec.impact > 0]


def _finding(cat: str, site: str, rec: Accumulator, p: GapFindingParams, active: int,
             thread_names: dict[int, str]) -> Finding:
    """The finding of one (category, site, split key) accumulator, in the phase that holds
    most of its idle time (ties: steady). NVTX ranges and calls: the largest first (ties:
    the first met in time)."""
    threads = sorted(rec.threads)
    calls = sorted(rec.calls.items(), key=lambda kv: -kv[1][1])[: p.max_sites]
    nvtx = sorted(rec.nvtx.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[: p.max_sites]
    title = f"{site}: GPU idle {idle_text(rec.idle)} in {rec.gaps} gaps; {WHAT[cat]}"
    finding = impact_finding(
        f"gap.{cat}", cat, title, int(rec.impact), active,
        {
            "site": site,
            "gpu_idle_ns": int(rec.idle),
            "gaps": int(rec.gaps),
            "threads": [{"global_tid": t, "tid": int(decode_tid(t)),
                         "name": thread_names.get(t)} for t in threads[:5]],
            "nvtx_ranges": [{"name": n, "idle_ns": int(v)} for n, (v, _) in nvtx],
            "calls_in_gaps": [{"name": n, "count": c, "in_gap_call_ns": d}
                              for n, (c, d) in calls],
            "examples": [example for _, _, example in rec.examples],
            "next_ops": [{"name": n, "idle_ns": int(v)} for n, v in sorted(
                rec.kernels.items(), key=lambda kv: -kv[1])[: p.max_sites]],
            "not_recoverable_ns": int(rec.idle - rec.impact),
        },
        RECOMMENDATIONS[cat],
    )
    if not rec.phase:
        return finding
    phase = max(PHASES, key=lambda ph: (rec.phase.get(ph, 0), ph == "steady"))
    return replace(finding, phase=phase)


def _site_totals(api_calls: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per API name over the whole trace: call count and total host time (ns)."""
    if not len(api_calls):
        empty = pd.Series(dtype="int64")
        return empty, empty
    names = api_calls["name"]
    if names.isna().any():
        count = api_calls.groupby("name")["end_ns"].count()
        total = (api_calls["end_ns"] - api_calls["start_ns"]).groupby(names).sum()
        return count, total
    # integer codes instead of a groupby on the object column (80 MB at 1 M kernels);
    # end_ns is int64 (no nulls), so the count is the group size
    codes, index = sorted_text_codes(names)
    count = pd.Series(np.bincount(codes, minlength=len(index)), index=index, name="end_ns")
    starts, ends = api_calls["start_ns"].to_numpy(), api_calls["end_ns"].to_numpy()
    # exact float64 sums a block of calls at a time (no array of every duration)
    sums = sums_by_code(codes, len(index), lambda rows: ends[rows] - starts[rows])
    if sums is not None:
        return count, pd.Series(sums.astype(np.int64),
                                index=pd.RangeIndex(len(index))).set_axis(index)
    total = pd.Series(ends - starts).groupby(codes).sum()
    total.index = index[total.index.to_numpy()]
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
