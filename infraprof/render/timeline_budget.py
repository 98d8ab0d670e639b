"""A timeline export that never exceeds a size budget (``infraprof export --max-size``).

The rule (``docs/perfetto.md``, "Size budget"):

1. When the complete export (of the whole trace, or of ``--window``) fits the budget, it is
   written exactly as without a budget. It is encoded into a spool first; the attempt is
   skipped when even :data:`MIN_EVENT_BYTES` per event cannot fit.
2. Otherwise the file holds an **overview** of the whole span
   (:mod:`~infraprof.render.timeline_overview`: per-device counters in at most 1000 bins)
   and **every event, as the complete export draws it, of one detail window**: centred on
   the example gap with the most attributed time of the first finding in rank order that
   has example gaps inside the span (else on the span's middle), widened symmetrically
   (clipped at the span's bounds, the remainder added on the other side) to the widest
   window whose estimated size fits the budget less the overview, and cut with the
   ``--window`` machinery (:func:`~infraprof.render.timeline_export.build_plan`).
3. The estimate is an upper bound of the encoded bytes of each event (:func:`slice_bound`:
   every varint at its widest, per kind's argument layout, see :data:`LAYOUT`) summed over
   the events that overlap the window (counted in 2^20 equal time bins, rounded outwards).
   Interned strings and per-track headers are not in it, so the detail is encoded into a
   spool that refuses to grow past its share: when it would, the window is narrowed
   (0.6× its half-width) and encoded again. The file is therefore never larger than the
   budget.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.analyses.gap_table import CATEGORIES
from infraprof.errors import UsageError
from infraprof.ranking import Report
from infraprof.ranking.timeline_view import pyspy_slices
from infraprof.render import chrome_trace, perfetto_trace
from infraprof.render.timeline_export import GPU_PID_BASE, ExportPlan, build_plan
from infraprof.render.timeline_gaps import GapColumns
from infraprof.render.timeline_overview import (
    bin_count,
    chrome_overview,
    overview_counters,
    perfetto_overview,
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Write = Callable[[bytes], object]
Span = tuple[int, int]

# Perfetto bytes, every field at its widest: packet = tag + 2-byte length, timestamp 1 + 10,
# sequence id 1 + 5, flags 2, track_event tag + 2-byte length; event: type 2, track uuid
# 1 + 5, category 2, name iid 1 + 5; an int argument 15 (tag, length, name iid 2, int 1 + 10),
# a text argument 11 (interned value: tag 2 + iid 5), a flow id 9 (tag + fixed64); an end
# packet 30. Ids (uuids, sequences, interned ids) are below 2^35.
PACKET_MAX, EVENT_MAX, INT_ARG_MAX, TEXT_ARG_MAX, FLOW_MAX, END_MAX = 25, 16, 15, 11, 9, 30
# kind -> (int arguments, text arguments, flow, instant); gaps: at most one int per category
LAYOUT = {"kernel": (2, 2, True, False), "memcpy": (2, 2, True, False),
          "memset": (2, 0, True, False), "cuda_api": (2, 0, True, False),
          "osrt": (0, 0, False, False), "nvtx": (0, 1, False, False),
          "mark": (0, 0, False, True), "gpu_idle": (len(CATEGORIES), 6, False, False),
          "py-spy": (0, 1, False, False)}
# a lower bound of any event (an instant with 1-byte fields; a JSON event with empty names)
MIN_EVENT_BYTES = {"perfetto": 18, "chrome": 50}
CHROME_FACTOR = 5  # JSON repeats names and keys: an estimate, the spool enforces the budget
# measured mean bytes per event at 1 M kernels (docs/performance.md), for the note's figure
TYPICAL = {"kernel": 80, "memcpy": 90, "memset": 60, "cuda_api": 64, "osrt": 40, "nvtx": 50,
           "mark": 25, "gpu_idle": 79, "py-spy": 50}
BINS = 1 << 20
TRIES = 12
FILL = 0.8  # a detail that fills less of its share is widened once (narrowed)
SPOOL_IN_MEMORY = 8 << 20


def slice_bound(kind: str) -> int:
    """Upper bound of the Perfetto bytes of one event of ``kind`` (begin + end packets)."""
    ints, texts, flow, instant = LAYOUT[kind]
    event = EVENT_MAX + INT_ARG_MAX * ints + TEXT_ARG_MAX * texts + (FLOW_MAX if flow else 0)
    return PACKET_MAX + event + (0 if instant else END_MAX)


class Overflow(Exception):
    """The spool would grow past its limit."""


class Spool:
    """Bytes written through :meth:`write`, kept until :meth:`copy_to` (in memory, in a
    temporary file past 8 MiB); :class:`Overflow` once more than ``limit`` bytes are
    written."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise Overflow
        self.file.write(data)

    def copy_to(self, write: Write) -> None:
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            write(chunk)

    def close(self) -> None:
        self.file.close()


def _overlapping(start: I64, end: I64, span: Span) -> npt.NDArray[np.bool_]:
    lo, hi = span
    return (start < hi) & ((end > lo) | (start >= lo))


def event_spans(report: Report, gaps: GapColumns, span: Span | None
                ) -> list[tuple[str, I64, I64]]:
    """``(kind, starts, ends)`` of every event the export draws inside ``span`` (the same
    rows as :func:`~infraprof.render.timeline_export.build_plan`)."""
    t = report.trace
    nvtx_ranges = t.nvtx[(t.nvtx["kind"] == "range") & t.nvtx["end_ns"].notna()]
    marks = t.nvtx[t.nvtx["kind"] == "mark"]
    slices = pyspy_slices(report)
    pyspy = pd.DataFrame({"start_ns": np.array([s.start_ns for s in slices], dtype=np.int64),
                          "end_ns": np.array([s.end_ns for s in slices], dtype=np.int64)})
    out = []
    for kind, frame in (("kernel", t.kernels), ("memcpy", t.memcpy), ("memset", t.memset),
                        ("cuda_api", t.api_calls), ("osrt", t.osrt), ("nvtx", nvtx_ranges),
                        ("mark", marks), ("gpu_idle", gaps.frame), ("py-spy", pyspy)):
        start = frame["start_ns"].to_numpy(dtype=np.int64)
        end = start if kind == "mark" else np.maximum(
            frame["end_ns"].to_numpy(dtype=np.int64), start)
        if span is not None:  # no copies for the whole trace
            keep = _overlapping(start, end, span)
            start, end = start[keep], end[keep]
        out.append((kind, start, end))
    return out


@dataclass
class Costs:
    """Estimated bytes of the events overlapping a window, from cumulative sums over
    :data:`BINS` equal time bins of ``[lo, hi)``: ``before_start[b]`` sums the events
    starting before bin ``b``, ``before_end[b]`` those ending before it."""

    lo: int
    hi: int
    width: int
    before_start: F64
    before_end: F64

    @classmethod
    def of(cls, spans: list[tuple[str, I64, I64]], fmt: str, lo: int, hi: int) -> Costs:
        width = max(1, -(-(hi - lo) // BINS))
        starts = np.zeros(BINS, dtype=np.float64)
        ends = np.zeros(BINS, dtype=np.float64)
        for kind, start, end in spans:
            cost = slice_bound(kind) * (CHROME_FACTOR if fmt == "chrome" else 1)
            starts += np.bincount(np.clip((start - lo) // width, 0, BINS - 1),
                                  minlength=BINS) * float(cost)
            ends += np.bincount(np.clip((end - lo) // width, 0, BINS - 1),
                                minlength=BINS) * float(cost)
        zero = np.zeros(1)
        return cls(lo, hi, width, np.concatenate([zero, np.cumsum(starts)]),
                   np.concatenate([zero, np.cumsum(ends)]))

    def _bin(self, ns: int) -> int:
        return int(min(max((ns - self.lo) // self.width, 0), BINS - 1))

    def estimate(self, window: Span) -> float:
        """Upper bound of the events overlapping ``[lo, hi)`` (whole bins: rounded out)."""
        lo, hi = window
        return float(self.before_start[self._bin(hi - 1) + 1] - self.before_end[self._bin(lo)])

    def total(self) -> float:
        return float(self.before_start[-1])


def around(centre: int, half: int, lo: int, hi: int) -> Span:
    """``[centre - half, centre + half)`` clipped to ``[lo, hi)``, the clipped part added on
    the other side; never empty."""
    start, end = centre - half, centre + half
    if start < lo:
        end, start = end + (lo - start), lo
    if end > hi:
        start, end = max(lo, start - (end - hi)), hi
    return start, max(end, start + 1)


def widest_half(costs: Costs, centre: int, limit: float) -> int:
    """The largest half-width whose window's :meth:`Costs.estimate` is within ``limit``
    (0 when none is)."""
    good, bad = 0, costs.hi - costs.lo + 1
    if costs.estimate(around(centre, bad, costs.lo, costs.hi)) <= limit:
        return bad
    while bad - good > 1:
        mid = (good + bad) // 2
        if costs.estimate(around(centre, mid, costs.lo, costs.hi)) <= limit:
            good = mid
        else:
            bad = mid
    return good


def detail_centre(report: Report, lo: int, hi: int) -> tuple[int, str]:
    """The detail window's centre and why: the middle of the example gap with the most
    attributed time of the first finding (rank order) with example gaps in ``[lo, hi)``;
    else the middle of ``[lo, hi)``."""
    for finding in report.findings:
        examples = [e for e in finding.evidence.get("examples", []) or []
                    if isinstance(e, dict) and "gap_start_ns" in e and "gap_end_ns" in e
                    and lo <= (int(e["gap_start_ns"]) + int(e["gap_end_ns"])) // 2 < hi]
        if examples:
            best = max(examples, key=lambda e: int(e.get("attributed_ns") or 0))
            middle = (int(best["gap_start_ns"]) + int(best["gap_end_ns"])) // 2
            return middle, f"the largest gap of the top finding {finding.id}"
    return (lo + hi) // 2, "the middle of the trace: no finding with example gaps"


def typical_size(spans: list[tuple[str, I64, I64]], fmt: str) -> int:
    """The complete export's likely size: measured mean bytes per event kind."""
    factor = CHROME_FACTOR if fmt == "chrome" else 1
    return sum(TYPICAL[kind] * factor * len(start) for kind, start, _ in spans)


def gpu_pids(report: Report) -> list[int]:
    analysis = report.analysis
    return [GPU_PID_BASE + tl.device_id for tl in analysis.timelines] if analysis else []


def try_write(plan: ExportPlan, writer: Callable[[ExportPlan, Write], Any], limit: int
              ) -> Spool | None:
    """``plan`` written into a :class:`Spool` of ``limit`` bytes; None when it does not fit."""
    spool = Spool(limit)
    try:
        writer(plan, spool.write)
    except Overflow:
        spool.close()
        return None
    return spool


def too_small(budget: int, needed: int) -> UsageError:
    return UsageError(f"--max-size {budget:,} bytes is too small for the overview and a "
                      f"detail window (they need more than {needed:,} bytes); give a larger "
                      "--max-size, or --max-size 0 for no limit")


WindowWriter = Callable[[ExportPlan, Span, Write], Any]


def _cut_writer(writer: WindowWriter, window: Span, plan: ExportPlan, write: Write) -> Any:
    return writer(plan, window, write)


def narrowed(plan_for: Callable[[Span], ExportPlan], costs: Costs, centre: int,
             limits: tuple[int, int], writer: WindowWriter, budget: int
             ) -> tuple[Span, ExportPlan, Spool]:
    """The widest window (module docstring, rule 3) whose estimate is within ``limits[0]``
    and whose plan, written by ``writer``, within ``limits[1]`` bytes; its plan and spool.
    A window that fills less than :data:`FILL` of the spool is widened once, with the
    estimate scaled by the bytes it really took (kept only when it fits too)."""
    estimate_limit, spool_limit = limits
    half = widest_half(costs, centre, estimate_limit)
    for _ in range(TRIES):
        window = around(centre, half, costs.lo, costs.hi)
        plan = plan_for(window)
        spool = try_write(plan, functools.partial(_cut_writer, writer, window), spool_limit)
        if spool is not None:
            return _widened(plan_for, costs, centre, limits, writer, (window, plan, spool))
        half = int(half * 0.6)
    raise too_small(budget, budget - estimate_limit)


def _widened(plan_for: Callable[[Span], ExportPlan], costs: Costs, centre: int,
             limits: tuple[int, int], writer: WindowWriter,
             fitting: tuple[Span, ExportPlan, Spool]) -> tuple[Span, ExportPlan, Spool]:
    """``fitting``, or a wider window when it fits too (see :func:`narrowed`)."""
    estimate_limit, spool_limit = limits
    window, plan, spool = fitting
    estimate = costs.estimate(window)
    if spool.size >= FILL * spool_limit or estimate <= 0 or window == (costs.lo, costs.hi):
        return window, plan, spool
    scaled = estimate_limit * estimate / max(spool.size, 1) * 0.95
    wider = around(centre, widest_half(costs, centre, scaled), costs.lo, costs.hi)
    if wider[1] - wider[0] <= window[1] - window[0]:
        return window, plan, spool
    spool.close()  # one plan and spool at a time: the first is written again if need be
    del plan, fitting
    for attempt in (wider, window):
        plan = plan_for(attempt)
        found = try_write(plan, functools.partial(_cut_writer, writer, attempt), spool_limit)
        if found is not None:
            return attempt, plan, found
        del plan
    raise AssertionError("a window that fitted no longer fits")  # the writers are pure


@dataclass(frozen=True)
class Detail:
    """What a size-bounded export wrote: the detail window and why it is there."""

    window: Span
    reason: str
    complete_size: int  # the complete export's likely size (bytes), for the note
    counters: int  # counter tracks of the overview (0: no GPU)


def _bounds(spans: list[tuple[str, I64, I64]], span: Span | None) -> Span:
    """The first start and last end (+ 1) of the events, inside ``span``."""
    lo = min((int(s.min()) for _, s, _ in spans if len(s)), default=0)
    hi = max((int(e.max()) + 1 for _, _, e in spans if len(e)), default=lo + 1)
    if span is not None:
        lo, hi = max(lo, span[0]), min(hi, span[1])
    return lo, max(hi, lo + 1)


def _complete(report: Report, fmt: str, span: Span | None, budget: int, gaps: GapColumns,
              check_count: Callable[[int], None]) -> Spool | None:
    """The complete export in a spool when it fits ``budget`` (rule 1)."""
    plan = build_plan(report, span, gaps=gaps)
    check_count(plan.event_count())
    if fmt == "perfetto":
        return try_write(plan, perfetto_trace.write_perfetto, budget)
    return try_write(plan, lambda p, w: chrome_trace.write_chrome_trace(report, p, w), budget)


def write_within(report: Report, fmt: str, span: Span | None, budget: int, write: Write,
                 check_count: Callable[[int], None]) -> Detail | None:
    """The export of ``report`` (``fmt`` ``perfetto`` or ``chrome``; rows overlapping
    ``span`` when given) in at most ``budget`` bytes, by the module docstring's rule,
    through ``write``. None when the complete export was written, else what was cut.
    ``check_count(n)`` is called with the event count of each plan before it is written."""
    gaps = GapColumns(report)
    spans = event_spans(report, gaps, span)
    if sum(len(s) for _, s, _ in spans) * MIN_EVENT_BYTES[fmt] <= budget:
        spool = _complete(report, fmt, span, budget, gaps, check_count)
        if spool is not None:
            spool.copy_to(write)
            spool.close()
            return None
    lo, hi = _bounds(spans, span)
    costs = Costs.of(spans, fmt, lo, hi)
    centre, reason = detail_centre(report, lo, hi)
    pids = gpu_pids(report)
    counters = overview_counters(report, gaps, lo, hi, bin_count(len(pids), budget),
                                 GPU_PID_BASE)
    complete_size = typical_size(spans, fmt)
    del spans
    label = f"detail window: every event ({reason})"

    def plan_for(window: Span) -> ExportPlan:
        plan = build_plan(report, window, pids, gaps)
        check_count(plan.event_count())
        return plan

    if fmt == "perfetto":
        reserve = len(perfetto_overview(counters, dict.fromkeys(pids, 1 << 34), (hi, hi), label))
        if reserve >= budget:
            raise too_small(budget, reserve)
        limits = (budget - reserve, budget - reserve)
        window, plan, spool = narrowed(plan_for, costs, centre, limits,
                                       lambda p, _, w: perfetto_trace.write_perfetto(p, w), budget)
        spool.copy_to(write)
        write(perfetto_overview(counters, perfetto_trace.process_uuids(plan), window, label))
    else:
        reserve = len(json.dumps(chrome_overview(counters, (hi, hi), label))) + 256
        if reserve >= budget:
            raise too_small(budget, reserve)
        window, plan, spool = narrowed(
            plan_for, costs, centre, (budget - reserve, budget),
            lambda p, w_span, w: chrome_trace.write_chrome_trace(
                report, p, w, chrome_overview(counters, w_span, label)), budget)
        spool.copy_to(write)
    spool.close()
    return Detail(window, reason, complete_size, len(counters))
