"""Python frames per NVTX range: every instance of the ranges on one thread, counted at once.

The instances (the NVTX ranges of one thread, in start order, ``instance`` counting from 0 per
name) and their py-spy samples are found with two searches over the thread's sorted sample
times and counted per (instance, stack) by a group-by
(:func:`~infraprof.analyses.host_frames.window_stack_counts`), so the cost grows with the
ranges and samples as array operations, not as one search per instance. Only the instances
that hold samples are summarised one by one (:func:`~infraprof.analyses.host_frames.
summarize_stacks`): at most one per sample and nesting level, however many ranges there are.

An instance shorter than the py-spy alignment error is *refused* (its samples cannot be told
from the neighbouring activity's), as is one without samples, or whose samples have no frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infraprof.analyses.host_frames import (
    Frame,
    FrameShare,
    WindowStacks,
    pick_thread,
    summarize_stacks,
    window_stack_counts,
)
from infraprof.tables import as_frame

SHORT, NO_SAMPLES = 1, 2  # RangeInstances.refused codes (0: counted)


@dataclass(frozen=True)
class RangeBreakdown:
    """Host time of one NVTX range instance (``instance`` counts from 0 per name)."""

    name: str
    instance: int
    window: WindowStacks


@dataclass(frozen=True)
class RangeInstances:
    """The NVTX range instances of thread ``tid`` and their py-spy stack counts.

    ``ranges``: one row per instance in start order (``name`` as ``str``, ``instance``,
    ``start_ns``, ``end_ns``, ``samples``, ``refused``: 0, :data:`SHORT` (shorter than the
    alignment error: its samples are not counted) or :data:`NO_SAMPLES`); ``counts``: the
    samples of every counted instance per (``job`` = row of ``ranges``, ``stack`` = index
    into ``stacks``) with ``count`` and ``first`` (:func:`window_stack_counts`)."""

    tid: int
    period_ns: int
    ranges: pd.DataFrame
    counts: pd.DataFrame
    stacks: list[tuple[Frame, ...]]

    def counters(self) -> dict[int, Counter[tuple[Frame, ...]]]:
        """Stack counts of each instance with samples (row of :attr:`ranges` → counts, stacks
        in the order a window query meets them: by stack id). One pass over :attr:`counts`."""
        out: dict[int, Counter[tuple[Frame, ...]]] = {}
        ordered = self.counts.sort_values(["job", "first"], kind="stable")
        for job, stack, count in zip(ordered["job"].tolist(), ordered["stack"].tolist(),
                                     ordered["count"].tolist(), strict=True):
            out.setdefault(job, Counter())[self.stacks[stack]] += count
        return out


def _thread_ranges(nvtx: pd.DataFrame, tid: int, names: Sequence[str] | None) -> pd.DataFrame:
    """The closed NVTX ranges of ``tid`` (of ``names``) in start order: ``name`` (``str``; a
    range without a name is ``"nan"``), ``instance``, ``start_ns``, ``end_ns``."""
    ranges = nvtx[(nvtx["kind"] == "range") & nvtx["end_ns"].notna() & (nvtx["tid"] == tid)]
    if names:
        ranges = ranges[ranges["name"].isin(list(names))]
    ranges = ranges.sort_values("start_ns", kind="stable")
    codes, distinct = pd.factorize(ranges["name"].astype(object), use_na_sentinel=False)
    texts = np.array([str(text) for text in distinct], dtype=object)
    return as_frame(pd.DataFrame({
        "name": texts[codes] if len(codes) else np.empty(0, dtype=object),
        "instance": pd.Series(codes).groupby(codes).cumcount().to_numpy(np.int64),
        "start_ns": ranges["start_ns"].to_numpy(np.int64),
        "end_ns": ranges["end_ns"].to_numpy(np.int64)}))


def range_instances(nvtx: pd.DataFrame, samples: pd.DataFrame, frames: pd.DataFrame,
                    alignment_error_ns: int, period_ns: int, tid: int | None = None,
                    names: Sequence[str] | None = None) -> RangeInstances | None:
    """Every NVTX range instance (of ``names``, default all) on thread ``tid`` (default: the
    busiest annotated thread with samples, :func:`pick_thread`) with its samples counted per
    stack; None when no thread qualifies."""
    if tid is None:
        tid = pick_thread(samples, nvtx, names)
        if tid is None:
            return None
    ranges = _thread_ranges(nvtx, tid, names)
    short = (ranges["end_ns"] - ranges["start_ns"]).to_numpy() < alignment_error_ns
    counted = np.flatnonzero(~short)
    windows = pd.DataFrame({"job": counted, "tid": np.full(len(counted), tid, dtype=np.int64),
                            "start_ns": ranges["start_ns"].to_numpy()[counted],
                            "end_ns": ranges["end_ns"].to_numpy()[counted]})
    counts, stacks = window_stack_counts(samples, frames, windows)
    per_job = np.bincount(counts["job"].to_numpy(np.int64), counts["count"].to_numpy(np.int64),
                          minlength=len(ranges)).astype(np.int64)
    ranges["samples"] = per_job
    ranges["refused"] = np.where(short, SHORT, np.where(per_job == 0, NO_SAMPLES, 0))
    return RangeInstances(tid, period_ns, ranges, counts, stacks)


def _window(instances: RangeInstances, counts: Counter[tuple[Frame, ...]] | None,
            start: int, end: int, alignment_error_ns: int, top: int) -> WindowStacks:
    """The :class:`WindowStacks` of one instance (as ``stacks_in_window`` gives it)."""
    tid, length = instances.tid, end - start
    if length < alignment_error_ns:
        return WindowStacks(
            tid, start, end, 0, 0.0,
            refused=f"window {length / 1e6:.2f} ms is shorter than the py-spy alignment error "
                    f"{alignment_error_ns / 1e6:.2f} ms; not attributed to Python frames")
    if not counts:
        return WindowStacks(tid, start, end, 0, 0.0,
                            refused="no py-spy samples of this thread in the window")
    n = sum(counts.values())
    coverage = min(1.0, n * instances.period_ns / length) if length > 0 else 0.0
    context, shares, stacks = summarize_stacks(counts, top)
    return WindowStacks(tid, start, end, n, coverage, context, shares, stacks)


def range_breakdown(nvtx: pd.DataFrame, samples: pd.DataFrame, frames: pd.DataFrame,
                    alignment_error_ns: int, period_ns: int, tid: int | None = None,
                    names: Sequence[str] | None = None, top: int = 3) -> list[RangeBreakdown]:
    """Per NVTX range instance (of ``names``, default all) on thread ``tid`` (default: the
    busiest annotated thread with samples): the top Python frames of its host time. One
    object per instance: for a few ranges (a step loop); the report's per-name figures come
    from :func:`range_name_breakdown` and :func:`instance_tops` without them."""
    found = range_instances(nvtx, samples, frames, alignment_error_ns, period_ns, tid, names)
    if found is None:
        return []
    counters, ranges = found.counters(), found.ranges
    return [RangeBreakdown(name, instance, _window(found, counters.get(row), start, end,
                                                   alignment_error_ns, top))
            for row, (name, instance, start, end) in enumerate(zip(
                ranges["name"].tolist(), ranges["instance"].tolist(),
                ranges["start_ns"].tolist(), ranges["end_ns"].tolist(), strict=True))]


def range_name_breakdown(nvtx: pd.DataFrame, samples: pd.DataFrame, frames: pd.DataFrame,
                         alignment_error_ns: int, period_ns: int, tid: int | None = None,
                         names: Sequence[str] | None = None, top: int = 5,
                         instances: RangeInstances | None = None) -> dict[str, WindowStacks]:
    """All instances of each range name pooled: name → summary (``start_ns``/``end_ns`` span
    the instances, ``samples`` is the pooled count; a sample inside two nested instances of
    a name counts twice; names in order of their first instance). ``instances``: the
    :func:`range_instances` of the same arguments, when the caller already has it."""
    found = instances if instances is not None else range_instances(
        nvtx, samples, frames, alignment_error_ns, period_ns, tid, names)
    if found is None or found.ranges.empty:
        return {}
    ranges = found.ranges.assign(length_ns=found.ranges["end_ns"] - found.ranges["start_ns"])
    per_name = ranges.groupby("name", sort=False).agg(
        start_ns=("start_ns", "min"), end_ns=("end_ns", "max"),
        covered=("length_ns", "sum"))
    rows = found.counts.sort_values(["job", "first"], kind="stable")
    names_of = ranges["name"].to_numpy()[rows["job"].to_numpy(np.int64)]
    pooled: dict[str, Counter[tuple[Frame, ...]]] = {}
    for name, stack, count in zip(names_of.tolist(), rows["stack"].tolist(),
                                  rows["count"].tolist(), strict=True):
        pooled.setdefault(name, Counter())[found.stacks[stack]] += count
    out = {}
    for name, a, b, covered in zip(per_name.index.tolist(), per_name["start_ns"].tolist(),
                                   per_name["end_ns"].tolist(), per_name["covered"].tolist(),
                                   strict=True):
        counts = pooled.get(name, Counter())
        n = sum(counts.values())
        context, shares, stacks = summarize_stacks(counts, top)
        cov = min(1.0, n * period_ns / covered) if covered else 0.0
        out[name] = WindowStacks(found.tid, a, b, n, cov, context, shares, stacks,
                                 None if n else "no samples in any instance")
    return out


def instance_tops(instances: RangeInstances) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Per range name, how many instances each frame tops (``FrameShare.label`` → instances,
    in the order the instances first reach it), and how many instances are refused (short,
    no samples, or samples without frames)."""
    ranges = instances.ranges
    refused: Counter[str] = Counter(
        ranges["name"][ranges["refused"].to_numpy() != 0].value_counts(sort=False).to_dict())
    tops: dict[str, Counter[str]] = {}
    names = ranges["name"].to_numpy()
    for job, counts in sorted(instances.counters().items()):
        top: FrameShare | None = next(iter(summarize_stacks(counts, 1)[1]), None)
        if top is None:
            refused[str(names[job])] += 1
        else:
            tops.setdefault(str(names[job]), Counter())[top.label] += 1
    return tops, refused
