"""Kineto ``python_function`` events (``torch.profiler(with_stack=True)``) → a py-spy-shaped
profile (:class:`~infraprof.readers.pyspy.PyspyProfile`), so the Python-frame analysis treats
them exactly as it treats py-spy samples.

Kineto records every Python call as a complete event (``ts``, ``dur``) named
``path/file.py(123): function`` (or ``<built-in method ...>``, ``nn.Module: Linear_0``).
Per thread, the events are walked in time order; between two consecutive call boundaries the
stack (the events open at that moment, outermost first) is constant. That stack is then
*sampled* on a fixed grid of ``period_ns`` (every multiple of the period on the trace
timeline; default :data:`DEFAULT_PERIOD_NS` = 100 µs, widened so that no more than
:data:`MAX_SAMPLES` samples are made). The samples sit on the trace's own clock, so the
only placement error is the sampling period itself.

Frames are root first; ``line`` is the line number Kineto printed (the *definition* line of
the function for Python ≥ 3.10 traces, not the executing line), 0 when absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.readers.pyspy import (
    PYSPY_AGGREGATE,
    PYSPY_FRAMES,
    PYSPY_SAMPLES,
    PYSPY_THREADS,
    Frame,
    PyspyProfile,
)

DEFAULT_PERIOD_NS: Final = 100_000
MAX_SAMPLES: Final = 2_000_000
_NAME_RE: Final = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?P<func>.+)$")


def parse_python_name(name: str) -> Frame:
    """``torch/nn/modules/module.py(1501): _call_impl`` → ``(_call_impl, torch/nn/..., 1501)``;
    other names keep ``file=""`` and ``line=0``."""
    match = _NAME_RE.match(name)
    if match is None:
        return (name, "", 0)
    return (match["func"], match["file"], int(match["line"]))


def _segments(events: pd.DataFrame) -> tuple[list[int], list[int], list[tuple[Frame, ...]]]:
    """``(starts, ends, stacks)`` of the constant-stack segments of one thread's events."""
    start = events["start_ns"].to_numpy(np.int64)
    end = events["end_ns"].to_numpy(np.int64)
    frames = [parse_python_name(str(n)) for n in events["name"]]
    # boundaries: (time, 0 = close before 1 = open, order among opens = outer first)
    order = np.lexsort((-end, start))
    bounds = sorted([(int(end[i]), 0, int(rank), int(i)) for rank, i in enumerate(order)]
                    + [(int(start[i]), 1, int(rank), int(i)) for rank, i in enumerate(order)])
    open_events: dict[int, int] = {}  # event index -> open order (outer first)
    seg_start: list[int] = []
    seg_end: list[int] = []
    stacks: list[tuple[Frame, ...]] = []
    k = 0
    while k < len(bounds):
        now = bounds[k][0]
        if seg_end and seg_end[-1] < 0:
            seg_end[-1] = now
        while k < len(bounds) and bounds[k][0] == now:
            _, opening, rank, index = bounds[k]
            if opening:
                open_events[index] = rank
            else:
                open_events.pop(index, None)
            k += 1
        if open_events:
            ordered = sorted(open_events, key=open_events.__getitem__)
            seg_start.append(now)
            seg_end.append(-1)
            stacks.append(tuple(frames[i] for i in ordered))
    if seg_end and seg_end[-1] < 0:
        seg_end[-1] = seg_start[-1]
    return seg_start, seg_end, stacks


def _period(total_ns: int, period_ns: int, max_samples: int) -> int:
    if total_ns // period_ns <= max_samples:
        return period_ns
    return -(-total_ns // max_samples)


def python_profile(events: pd.DataFrame, thread_names: Mapping[int, str], source: str,
                   period_ns: int = DEFAULT_PERIOD_NS,
                   max_samples: int = MAX_SAMPLES) -> PyspyProfile | None:
    """The sampled profile of ``events`` (``start_ns, end_ns, tid, name`` on the trace
    timeline), or ``None`` when there are none. ``thread_names``: tid → name."""
    events = events[events["end_ns"] > events["start_ns"]]
    if events.empty:
        return None
    tids = events["tid"].to_numpy(np.int64)
    per_thread = {int(tid): _segments(events[tids == tid]) for tid in np.unique(tids)}
    total = sum(e - s for starts, ends, _ in per_thread.values()
                for s, e in zip(starts, ends, strict=True))
    period = _period(int(total), period_ns, max_samples)
    ids: dict[tuple[Frame, ...], int] = {}
    parts = []
    for tid, (starts, ends, stacks) in per_thread.items():
        first = -(-np.asarray(starts, dtype=np.int64) // period)  # first grid index >= start
        last = -(-np.asarray(ends, dtype=np.int64) // period)  # first grid index >= end
        counts = np.maximum(last - first, 0)
        sids = np.asarray([ids.setdefault(s, len(ids)) for s in stacks], dtype=np.int64)
        seg = np.repeat(np.arange(len(starts)), counts)
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        parts.append(pd.DataFrame({"start_ns": (first[seg] + offset) * period, "tid": tid,
                                   "thread_key": tid, "stack_id": sids[seg]}))
    samples = table_schema.conform(pd.concat(parts, ignore_index=True), PYSPY_SAMPLES)
    samples = table_schema.as_frame(samples.sort_values(["start_ns", "tid"], kind="stable")
                         .reset_index(drop=True))
    rows = [(sid, depth, *frame) for stack, sid in ids.items()
            for depth, frame in enumerate(stack)]
    frames = (table_schema.conform(pd.DataFrame(rows, columns=list(PYSPY_FRAMES)), PYSPY_FRAMES)
              if rows else table_schema.empty(PYSPY_FRAMES))
    agg = samples.groupby(["tid", "stack_id"]).size().reset_index(name="count")
    threads = pd.DataFrame({"tid": list(per_thread), "thread_key": list(per_thread),
                            "name": [thread_names.get(t) for t in per_thread]})
    note = (f"Python frames from the trace's python_function events, sampled every "
            f"{period / 1000:g} µs")
    return PyspyProfile(
        path=source, format="kineto", timed=True, samples=samples,
        aggregate=table_schema.conform(agg, PYSPY_AGGREGATE), frames=frames,
        threads=table_schema.conform(threads, PYSPY_THREADS), rate_hz=1e9 / period, notes=(note,),
    )
