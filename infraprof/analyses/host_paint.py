"""Painting one thread's gaps with host activity, all gaps at once (rules 2-4 of
:mod:`infraprof.analyses.attribution`), with numpy on sorted arrays.

Every gap ``[g0, g1)`` is cut at its ends, at the (clipped) ends of the calls overlapping it
and at the instant its launch call returned (``q0``, when inside the gap). To sort and search
the cuts of all gaps at once, instant ``x`` of gap ``i`` gets the key ``base[i] + x - g0[i]``,
where ``base`` is the running sum of ``g1 - g0 + 1``: the gaps' key ranges are disjoint and in
gap order. Each elementary segment takes the category of highest priority among the calls
covering it (``CODES``: a category's code is its priority; ``host-cpu``, else ``unknown`` for a
thread without traced calls); after ``q0`` it is ``launch-overhead`` (queue latency).

Rule 3's slack pool is sequential per thread: gap ``i`` adds ``a_i`` (the time the host was
blocked in a draining call before the gap, pool capped at ``cap``) and then converts up to
``E_i`` ns of exposable work after the drain, so the pool after it is
``f_i(x) = max(min(x + a_i, cap) - E_i, 0)``. Each ``f_i`` is a clamp ``min(max(x + A, L),
U)`` and clamps compose into clamps, so the pool before every gap is a prefix composition
(:func:`pool_scan`, ``log2(n)`` vector steps), not a loop over gaps.

The result is a :class:`~infraprof.analyses.host_columns.HostColumns`: the merged runs, top
calls, drains and NVTX spots of all gaps as columns (a gap's dict record is built only when
asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from infraprof.analyses.host_columns import CODE, HostColumns, missing
from infraprof.distinct import distinct

_HOST_CPU, _LAUNCH = CODE["host-cpu"], CODE["launch-overhead"]
_DRAIN = np.array([CODE["sync"], CODE["memcpy"], CODE["allocation"]])
_EXPOSABLE = np.array([CODE["host-cpu"], CODE["launch-overhead"], CODE["host-wait"]])
TOP_CALLS = 5


@dataclass(frozen=True)
class ThreadGaps:
    """One thread's gaps with host activity (``g0``, ``g1``, ``launch_end``; time order) and
    the calls overlapping them, one row per (gap, call): ``gap`` (ascending; API calls, then
    OS-runtime calls, each in start order), ``start``, ``end``, ``code`` (category code),
    ``name`` (object). ``traced``: the thread has traced calls."""

    g0: np.ndarray
    g1: np.ndarray
    launch_end: np.ndarray
    traced: bool
    gap: np.ndarray
    start: np.ndarray
    end: np.ndarray
    code: np.ndarray
    name: np.ndarray


@dataclass(frozen=True)
class PaintParams:
    """``launch_host_max_ns``: rule 4; ``drain_exposure``: apply rule 3;
    ``max_run_ahead_ns``: the slack pool's cap."""

    launch_host_max_ns: int
    drain_exposure: bool
    max_run_ahead_ns: int


class Segments:
    """Elementary segments ``[lo, hi)`` of all gaps, in gap and time order, with their gap
    and category code."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, gap: np.ndarray, code: np.ndarray
                 ) -> None:
        self.lo, self.hi, self.gap, self.code = lo, hi, gap, code.astype(np.int8)


def expand(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(f, f + c) for f, c in zip(first, counts)])`` (counts >= 0)."""
    offsets = np.cumsum(counts) - counts
    return (np.repeat(first - offsets, counts) + np.arange(int(counts.sum()))).astype(np.int64)


def group_offsets(sorted_groups: np.ndarray, n: int) -> np.ndarray:
    """``offsets[i]:offsets[i + 1]`` are the positions of group ``i`` in ``sorted_groups``."""
    return np.searchsorted(sorted_groups, np.arange(n + 1), side="left")


def paint(g: ThreadGaps) -> Segments:
    """Rule 2: the segments of every gap and their categories (before rules 3 and 4)."""
    dur = g.g1 - g.g0
    base = np.cumsum(dur + 1) - (dur + 1)
    shift = base - g.g0  # key of instant x of gap i: x + shift[i]
    q0 = np.maximum(g.launch_end, g.g0)
    queued = (g.g0 < q0) & (q0 < g.g1)
    s_key = np.maximum(g.start, g.g0[g.gap]) + shift[g.gap]
    e_key = np.minimum(g.end, g.g1[g.gap]) + shift[g.gap]
    keys = distinct(np.concatenate([base, base + dur, s_key, e_key, (q0 + shift)[queued]]))
    gap = np.searchsorted(base, keys[:-1], side="right") - 1
    valid = keys[1:] <= (base + dur)[gap]
    lo_key, hi_key, gap = keys[:-1][valid], keys[1:][valid], gap[valid]
    code = np.full(len(gap), _HOST_CPU if g.traced else CODE["unknown"], dtype=np.int8)
    first = np.searchsorted(lo_key, s_key, side="left")
    counts = np.maximum(np.searchsorted(lo_key, e_key, side="left") - first, 0)
    np.maximum.at(code, expand(first, counts), np.repeat(g.code.astype(np.int8), counts))
    lo, hi = lo_key - shift[gap], hi_key - shift[gap]
    code[(lo >= q0[gap]) & (q0 < g.g1)[gap]] = _LAUNCH
    return Segments(lo, hi, gap, code)


def clamp(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``min(max(x, low), high)`` elementwise."""
    return np.asarray(np.minimum(np.maximum(x, low), high))


def pool_scan(add: np.ndarray, take: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The slack pool over a thread's gaps: ``pool = min(pool + add[i], cap)``, then
    ``used[i] = min(pool, take[i])`` is taken out. Returns ``(before, used)``: the pool
    after the addition, and what gap ``i`` used (a prefix composition of clamps)."""
    shift = (add - take).astype(np.int64)
    low = np.zeros(len(add), dtype=np.int64)
    high = np.maximum(cap - take, 0).astype(np.int64)
    step = 1
    while step < len(add):  # compose with the function ``step`` gaps earlier
        prev_shift, prev_low, prev_high = shift[:-step], low[:-step], high[:-step]
        now_shift, now_low, now_high = shift[step:], low[step:], high[step:]
        shift, low, high = (
            np.concatenate([shift[:step], prev_shift + now_shift]),
            np.concatenate([low[:step], clamp(prev_low + now_shift, now_low, now_high)]),
            np.concatenate([high[:step], clamp(prev_high + now_shift, now_low, now_high)]))
        step *= 2
    after = clamp(shift, low, high)  # each prefix applied to an empty pool
    before = np.minimum(np.concatenate([[0], after[:-1]]) + add, cap) if len(add) else after
    return before, before - after


def gap_sums(values: np.ndarray, gap: np.ndarray, n: int) -> np.ndarray:
    """Per gap ``0..n-1``, the sum of ``values`` of its rows (``gap`` ascending; int64)."""
    total = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    bounds = group_offsets(gap, n)
    return np.asarray(total[bounds[1:]] - total[bounds[:-1]], dtype=np.int64)


def drains(g: ThreadGaps) -> np.ndarray:
    """Per gap, the row of its drain call (a draining call that started before the gap and
    returned inside it or later; the earliest-starting, ties: the first row), -1: none."""
    at = g.g0[g.gap]
    rows = np.flatnonzero(np.isin(g.code, _DRAIN) & (g.start < at) & (at <= g.end))
    rows = rows[np.lexsort((rows, g.start[rows], g.gap[rows]))]
    out = np.full(len(g.g0), -1, dtype=np.int64)
    if len(rows):
        firsts = rows[np.r_[True, g.gap[rows][1:] != g.gap[rows][:-1]]]
        out[g.gap[firsts]] = firsts
    return out


def expose(seg: Segments, g: ThreadGaps, drain: np.ndarray, cap: int
           ) -> tuple[Segments, np.ndarray, np.ndarray]:
    """Rule 3: exposable work (``host-cpu``, ``launch-overhead``, ``host-wait``) starting at or
    after the gap's drain returned (the gap's start without a drain) becomes the category of
    the thread's last drain while the slack pool lasts (a segment is cut where it runs out).
    Returns the segments, whether each gap used the pool, and the row of the drain call that
    last filled it (-1: none yet)."""
    n = len(g.g0)
    has = drain >= 0
    if not has.any():
        return seg, np.zeros(n, dtype=bool), drain
    row = np.where(has, drain, 0)
    add = np.where(has, g.g0 - g.start[row], 0)
    after = np.where(has, np.minimum(g.end[row], g.g1), g.g0)
    length = seg.hi - seg.lo
    masked = np.where(np.isin(seg.code, _EXPOSABLE) & (seg.lo >= after[seg.gap]), length, 0)
    per_gap = gap_sums(masked, seg.gap, n)
    _, used = pool_scan(add, per_gap, cap)
    source = np.maximum.accumulate(np.where(has, drain, -1))  # rows ascend with the gaps
    prior = np.cumsum(masked) - masked - (np.cumsum(per_gap) - per_gap)[seg.gap]
    taken = np.clip(used[seg.gap] - prior, 0, length) * (masked > 0)
    split = (taken > 0) & (taken < length)
    reps = 1 + split.astype(np.int64)
    first = np.cumsum(reps) - reps  # position of each segment's first piece
    lo, hi = np.repeat(seg.lo, reps), np.repeat(seg.hi, reps)
    gap, code = np.repeat(seg.gap, reps), np.repeat(seg.code, reps)
    hit = np.flatnonzero(taken > 0)
    code[first[hit]] = g.code[source[seg.gap[hit]]]
    cut = np.flatnonzero(split)
    hi[first[cut]] = seg.lo[cut] + taken[cut]
    lo[first[cut] + 1] = seg.lo[cut] + taken[cut]
    return Segments(lo, hi, gap, code), used > 0, source


def where_points(seg: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (gap, category), in order of the category's first segment in the gap: the gap,
    the category code, and the middle of its longest segment (the first of equal ones),
    where its innermost NVTX range is looked up."""
    index = np.arange(len(seg.lo))
    length = seg.hi - seg.lo
    order = np.lexsort((index, -length, seg.code, seg.gap))
    if not len(order):
        return order, order, order
    gap, code = seg.gap[order], seg.code[order]
    starts = np.flatnonzero(np.r_[True, (gap[1:] != gap[:-1]) | (code[1:] != code[:-1])])
    best = order[starts]
    best = best[np.argsort(np.minimum.reduceat(order, starts), kind="stable")]
    return seg.gap[best], seg.code[best], seg.lo[best] + length[best] // 2


def runs(seg: Segments, n: int, launch_host_max_ns: int) -> Segments:
    """Rule 4 (a gap's ``host-cpu`` below ``launch_host_max_ns`` in all is
    ``launch-overhead``), then touching segments of one category merged."""
    length = seg.hi - seg.lo
    cpu = gap_sums(np.where(seg.code == _HOST_CPU, length, 0), seg.gap, n)
    renamed = ((cpu > 0) & (cpu < launch_host_max_ns))[seg.gap] & (seg.code == _HOST_CPU)
    code = np.where(renamed, _LAUNCH, seg.code)
    keep = length > 0
    lo, hi, gap, code = seg.lo[keep], seg.hi[keep], seg.gap[keep], code[keep]
    new = np.r_[True, (gap[1:] != gap[:-1]) | (code[1:] != code[:-1]) | (lo[1:] != hi[:-1])]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(lo)] - 1
    return Segments(lo[starts], hi[ends], gap[starts], code[starts])


def top_calls(g: ThreadGaps) -> np.ndarray:
    """Rows of the :data:`TOP_CALLS` calls of each gap with the most time up to the gap's
    end (``min(duration, g1 - max(start, g0))``; ties: row order), by gap."""
    index = np.arange(len(g.gap))
    key = -np.minimum(g.end - g.start, g.g1[g.gap] - np.maximum(g.start, g.g0[g.gap]))
    order = np.lexsort((index, key, g.gap))
    ordered = g.gap[order]
    rank = index - np.searchsorted(ordered, ordered, side="left")
    return order[rank < TOP_CALLS]


def host_details(g: ThreadGaps, p: PaintParams,
                 nvtx_at: Callable[[np.ndarray], np.ndarray]) -> HostColumns:
    """The host details of the gaps of ``g`` (rules 2-4) as columns, ``rows`` = the gaps'
    positions in ``g``; ``nvtx_at``: the thread's innermost NVTX range name at each instant
    (an object array, None: none)."""
    n = len(g.g0)
    if not n:
        return HostColumns()
    seg = paint(g)
    drain = drains(g)
    used, source = np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64)
    if p.drain_exposure:
        seg, used, source = expose(seg, g, drain, p.max_run_ahead_ns)
    w_gap, w_code, w_at = where_points(seg)
    names = np.asarray(nvtx_at(w_at), dtype=object)
    named = ~missing(names)
    merged = runs(seg, n, p.launch_host_max_ns)
    calls = top_calls(g)
    exposed = np.where(used, source, -1)
    exposed_by = np.full(n, None, dtype=object)
    exposed_by[exposed >= 0] = g.name[exposed[exposed >= 0]]
    return HostColumns(
        rows=np.arange(n, dtype=np.int64),
        run_gap=merged.gap.astype(np.int64), run_code=merged.code, run_lo=merged.lo,
        run_hi=merged.hi,
        call_gap=g.gap[calls].astype(np.int64), call_name=g.name[calls],
        call_start=g.start[calls], call_end=g.end[calls], call_code=g.code[calls].astype(np.int8),
        drain_name=_taken(g.name, drain, None), drain_start=_taken(g.start, drain, 0),
        drain_end=_taken(g.end, drain, 0), drain_code=_taken(g.code, drain, -1).astype(np.int8),
        drain_blocked=np.where(drain >= 0, g.g0 - _taken(g.start, drain, 0), 0),
        exposed_by=exposed_by,
        where_gap=w_gap[named].astype(np.int64), where_code=w_code[named].astype(np.int8),
        where_name=names[named])


def _taken(values: np.ndarray, rows: np.ndarray, fill: object) -> np.ndarray:
    """``values[rows]``, ``fill`` where ``rows`` < 0."""
    if not len(values):
        return np.full(len(rows), fill, dtype=values.dtype if fill is not None else object)
    return np.asarray(np.where(rows >= 0, values[np.maximum(rows, 0)], cast(Any, fill)))
