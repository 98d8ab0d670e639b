"""Python frames behind GPU idle time (py-spy samples aligned to the nsys timeline).

For every gap with ``host-cpu`` or ``host-wait`` time, the launching thread's py-spy stacks
inside the gap are weighted by the gap's idle time of that category (each sample carries an
equal part of it) and pooled per finding (category + site); the pool is summarised once
(:func:`~infraprof.analyses.host_frames.summarize_stacks`), so a finding's frames sit at one
level of one call tree (``python_context`` is the path above them). Findings of those
categories then name the dominant frame ("host in ``collate()`` loader.py:87") and carry the
top frames with their idle time, share of the finding's idle time and sample count. The
samples are those of the whole gap, not only of the category's own segments of it.

Per NVTX range name, the summary also pools the launching thread's host time over all
instances and counts which frame tops each instance (``instance_top_frames``).

:func:`idle_collapsed` exports "CPU while the GPU was idle" as collapsed stacks.

Gaps shorter than the py-spy alignment error are not attributed to samples (the sample could
belong to the neighbouring activity); they are counted in ``python_refused_gaps``. Without
timestamps (speedscope/raw/SVG from elsewhere) only the aggregate profile is reported, with the
note that time correlation was not possible.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof.analyses.attribution import attribute_table
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_table import GapTable
from infraprof.analyses.host_frames import (
    Frame,
    FrameShare,
    collapsed_in_windows,
    summarize_stacks,
    window_stack_counts,
)
from infraprof.analyses.host_jobs import host_jobs, job_windows
from infraprof.analyses.range_frames import instance_tops, range_instances, range_name_breakdown
from infraprof.analyses.sites import WHAT
from infraprof.analyses.timeline import device_timelines
from infraprof.errors import InputError
from infraprof.model import Trace
from infraprof.model.clock import AlignedPyspy
from infraprof.tables import decode_tid, positions_of

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

HOST = ("host-cpu", "host-wait")


@dataclass(frozen=True)
class PythonSummary:
    """What the report shows about Python: alignment, notes, per-range and aggregate frames."""

    alignment_error_ns: int | None
    notes: tuple[str, ...]
    ranges: list[dict[str, Any]] = field(default_factory=list)
    aggregate: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"alignment_error_ns": self.alignment_error_ns, "notes": list(self.notes),
                "ranges": self.ranges, "aggregate": self.aggregate}


def _label(frame: tuple[str, str, int]) -> str:
    fn, path, line = frame
    return f"{fn}() {PurePath(path).name}:{line}" if path else f"{fn}()"


def _aggregate(pyspy: AlignedPyspy, top: int = 10) -> list[dict[str, Any]]:
    agg = pyspy.profile.aggregate
    if agg.empty:
        return []
    counts: Counter[tuple[tuple[str, str, int], ...]] = Counter()
    for sid, n in agg.groupby("stack_id")["count"].sum().items():
        counts[tuple(pyspy.profile.stack(int(str(sid))))] += int(n)
    _, frames, _ = summarize_stacks(counts, top)
    return _frame_rows(frames, top)


def _frame_rows(frames: tuple[FrameShare, ...], limit: int = 5) -> list[dict[str, Any]]:
    return [{"frame": f.label, "share": round(f.share, 4), "samples": f.samples}
            for f in frames[:limit]]


def _ranges(trace_nvtx: pd.DataFrame, pyspy: AlignedPyspy, err: int) -> list[dict[str, Any]]:
    """Per NVTX range name: pooled frames, plus how many instances each frame tops."""
    assert pyspy.samples is not None
    instances = range_instances(trace_nvtx, pyspy.samples, pyspy.frames, err, pyspy.period_ns)
    if instances is None:
        return []
    tops, refused = instance_tops(instances)
    out = []
    for name, w in range_name_breakdown(trace_nvtx, pyspy.samples, pyspy.frames, err,
                                        pyspy.period_ns, instances=instances).items():
        named = tops.get(name, Counter())
        out.append({"name": name, "samples": w.samples, "refused": w.refused,
                    "context": [_label(f) for f in w.context],
                    "frames": _frame_rows(w.frames),
                    "instances": sum(named.values()) + refused[name],
                    "instances_refused": refused[name],
                    "instance_top_frames": [{"frame": label, "instances": n}
                                            for label, n in named.most_common(5)]})
    return out


@dataclass
class FramePools:
    """py-spy stacks pooled per (category, site) of host-side gap time: ``weights`` (stack →
    idle ns it stands for), ``samples`` (stack → sample count), ``attributed`` (idle ns with
    samples), ``refused`` (gaps shorter than the alignment error ``error_ns``)."""

    error_ns: int
    weights: dict[tuple[str, str], Counter[tuple[Frame, ...]]]
    samples: dict[tuple[str, str], Counter[tuple[Frame, ...]]]
    attributed: Counter[tuple[str, str]]
    refused: Counter[tuple[str, str]]


def frame_pools(attributions: GapTable, pyspy: AlignedPyspy) -> FramePools | None:
    """Pool, per (category, site), the launching thread's stacks during the time segments of
    each gap that have that category (``HostDetail.segments``; only gaps with host activity
    have host-side time), each weighted by that gap's idle time of the category. None when
    the profile is not on the nsys timeline.

    A gap (job) shorter than the alignment error is refused; one with samples adds its ns
    to its key's attributed time and ``round(ns * count / samples)`` to each stack's
    weight. Keys and stacks are listed in the order the jobs are met: threads in the order of
    their first launched gap, a thread's jobs in gap order (``host-cpu`` before
    ``host-wait``), a job's stacks by window, then stack id. All of it as group-bys over
    (job, stack) counts (:func:`~infraprof.analyses.host_frames.window_stack_counts`)."""
    if pyspy.samples is None or pyspy.alignment is None:
        return None
    pools = FramePools(int(pyspy.alignment.error_ns), defaultdict(Counter), defaultdict(Counter),
                       Counter(), Counter())
    jobs = host_jobs(attributions, HOST)
    if jobs.empty:
        return pools
    job_tid = decode_tid(jobs["global_tid"].to_numpy(np.int64))
    threads = pd.unique(decode_tid(attributions.launch_values(
        "global_tid", np.flatnonzero(attributions.has_launch))))
    thread, known = positions_of(threads, job_tid)
    order = np.lexsort((np.arange(len(jobs)), np.where(known, thread, len(threads))))
    rank = np.empty(len(jobs), dtype=np.int64)  # the order in which the jobs are met
    rank[order] = np.arange(len(jobs))
    info = pd.DataFrame({"cat": jobs["category"].astype(str).to_numpy(dtype=object),
                         "site": jobs["site"].astype(str).to_numpy(dtype=object),
                         "ns": jobs["ns"].to_numpy(np.int64), "rank": rank,
                         "refused": (jobs["end_ns"] - jobs["start_ns"]).to_numpy()
                         < pools.error_ns})
    refused = info[info["refused"].to_numpy(dtype=bool)].sort_values("rank", kind="stable")
    for (cat, site), n in refused.groupby(["cat", "site"], sort=False).size().items():
        pools.refused[(cat, site)] += int(n)
    windows = job_windows(attributions, jobs)
    counts, stacks = window_stack_counts(pyspy.samples, pyspy.frames, windows.assign(
        tid=job_tid[windows["job"].to_numpy(np.int64)]))
    _pool_counts(pools, info, counts, stacks)
    return pools


def _pool_counts(pools: FramePools, info: pd.DataFrame, counts: pd.DataFrame,
                 stacks: list[tuple[Frame, ...]]) -> None:
    """Add the (job, stack) ``counts`` of the jobs that are not refused to their keys' pools,
    in the order the jobs are met."""
    counts = counts.join(info, on="job")
    counts = counts[~counts["refused"].to_numpy(dtype=bool)]
    if counts.empty:
        return
    total = counts.groupby("job")["count"].transform("sum").to_numpy(np.int64)
    ns, count = counts["ns"].to_numpy(np.int64), counts["count"].to_numpy(np.int64)
    # round(ns * count / total) as Python rounds the float: half to even
    counts = counts.assign(weight=np.rint(ns * count / total).astype(np.int64))
    counts = counts.sort_values(["rank", "first"], kind="stable")
    attributed = counts.drop_duplicates("job").groupby(["cat", "site"], sort=False)["ns"].sum()
    for key, ns_sum in zip(attributed.index, attributed.tolist(), strict=True):
        pools.attributed[key] += ns_sum
    sums = counts.groupby(["cat", "site", "stack"], sort=False).agg(
        weight=("weight", "sum"), samples=("count", "sum"))
    for (cat, site, stack), weight, samples in zip(sums.index, sums["weight"].tolist(),
                                                   sums["samples"].tolist(), strict=True):
        pools.weights[(cat, site)][stacks[stack]] += weight
        pools.samples[(cat, site)][stacks[stack]] += samples


def with_python_frames(finding: Finding, pools: FramePools | None) -> Finding:
    """``finding`` (a host-side gap finding) with its pooled Python frames in the evidence,
    titled by the dominant frame when that holds ≥ 25 % of the idle time."""
    key = (finding.category, str(finding.evidence.get("site")))
    if pools is None or finding.category not in HOST or (
            key not in pools.weights and key not in pools.refused):
        return finding
    ev = dict(finding.evidence)
    idle = max(1, int(ev.get("gpu_idle_ns", 1)))
    context, frames, _ = summarize_stacks(pools.weights[key], 5, pools.samples[key])
    top = [(fr.label, round(fr.share * pools.attributed[key]), fr.samples) for fr in frames]
    ev["python_frames"] = [{"frame": label, "idle_ns": ns, "share_of_idle": round(ns / idle, 4),
                            "samples": n} for label, ns, n in top]
    ev["python_context"] = [_label(fr) for fr in context]
    ev["python_refused_gaps"] = pools.refused[key]
    ev["alignment_error_ns"] = pools.error_ns
    title = finding.title
    if top and top[0][1] / idle >= 0.25:
        active = finding.impact_ns / finding.share if finding.share > 0 else 0
        pct = f" ({100 * idle / active:.0f} % of the GPU's active span)" if active else ""
        title = (f"GPU idle {idle / 1e6:.1f} ms{pct}: host in `{top[0][0]}` "
                 f"({ev['site']}; {WHAT[finding.category]})")
    return replace(finding, title=title, evidence=ev)


def python_summary(pyspy: AlignedPyspy, nvtx: pd.DataFrame) -> PythonSummary:
    """Alignment, notes, per-NVTX-range frames and the aggregate profile."""
    if pyspy.samples is None or pyspy.alignment is None:
        return PythonSummary(None, pyspy.notes, aggregate=_aggregate(pyspy))
    err = int(pyspy.alignment.error_ns)
    return PythonSummary(err, pyspy.notes, _ranges(nvtx, pyspy, err), _aggregate(pyspy))


def idle_collapsed(trace: Trace, pyspy: AlignedPyspy,
                   attributions: GapTable | None = None,
                   min_window_ns: int | None = None) -> str:
    """"CPU while the GPU was idle": py-spy collapsed-stack text (``raw`` format; opens in
    speedscope and flamegraph tools) of each GPU idle gap's launching thread during the gap.

    ``attributions``: :attr:`AnalysisResult.attributions` when the caller already ran the
    analyses (else they are computed). Gaps shorter than ``min_window_ns`` (default: the
    py-spy alignment error) are left out. Raises :class:`InputError` when the profile has no
    samples on the nsys timeline (no timestamps, or no clock alignment).
    """
    if pyspy.samples is None or pyspy.alignment is None:
        why = "; ".join(pyspy.notes) or "the py-spy profile has no timestamps"
        raise InputError(f"cannot export CPU stacks while the GPU was idle: {why}")
    if attributions is None:
        attributions = attribute_table(trace, device_timelines(trace)) if (
            trace.has_gpu_activity) else GapTable()
    floor = pyspy.alignment.error_ns if min_window_ns is None else min_window_ns
    keep = attributions.has_launch & (attributions.dur >= floor)
    tids = decode_tid(attributions.launch_values("global_tid", np.flatnonzero(keep)))
    starts, ends = attributions.g0[keep], attributions.g1[keep]
    out = []
    for tid in np.unique(tids).tolist():
        # gaps of several devices may overlap: count each sample once
        mine = tids == tid
        merged = intervals.union(starts[mine], ends[mine])
        out.append(collapsed_in_windows(pyspy.samples, pyspy.frames, tid,
                                        zip(merged.starts.tolist(), merged.ends.tolist(),
                                            strict=True)))
    return "".join(out)


@dataclass(frozen=True)
class PythonParams:
    """The Python summary has no parameters (frames per finding: see the gaps analysis)."""


def _run(ctx: AnalysisContext, params: PythonParams) -> Output:
    if ctx.pyspy is None:
        return Output()
    return Output(tables={"summary": python_summary(ctx.pyspy, ctx.trace.nvtx)})


PYTHON = Analysis(
    id="python", summary="py-spy profile: alignment, per-NVTX-range and aggregate frames",
    finding_ids=(), params_type=PythonParams, run=_run)
