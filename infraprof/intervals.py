"""Interval arithmetic on integer-nanosecond ``[start, end)`` intervals, vectorised with numpy.

All functions are O(n log n) (one sort) or better and never mutate their inputs. Intervals with
``end < start`` are treated as empty. Typical use: the union of every kernel, memcpy and memset on
a device is its *busy* time; the holes of that union inside the active span are *idle gaps*::

    ops     |==k1==|  |=k2=|          |===k3===|
             |=cpy=|
    union   |======|  |====|          |========|
    gaps           ^^^^    ^^^^^^^^^^^
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class Intervals(NamedTuple):
    """Disjoint, sorted intervals: ``starts[i] < ends[i] <= starts[i + 1]``."""

    starts: IntArray
    ends: IntArray

    @property
    def total_ns(self) -> int:
        """The summed lengths: the ends' sum minus the starts' (two reductions, no array of
        lengths; int64 sums wrap modulo 2**64, so the difference is exact while the total
        fits a signed int64, which a union of nanosecond timestamps does)."""
        if self.ends.dtype != np.int64 or self.starts.dtype != np.int64:
            return int((self.ends - self.starts).sum())
        total = (int(self.ends.sum()) - int(self.starts.sum())) % 2**64
        return total - 2**64 if total >= 2**63 else total

    def __len__(self) -> int:
        return int(self.starts.size)


def _as_int64(values: npt.ArrayLike) -> IntArray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def union(starts: npt.ArrayLike, ends: npt.ArrayLike) -> Intervals:
    """Merge possibly overlapping intervals into disjoint sorted ones.

    Touching intervals (``end == next start``) are merged. Empty intervals are dropped.
    """
    s = _as_int64(starts)
    e = _as_int64(ends)
    if s.shape != e.shape:
        raise ValueError("starts and ends must have the same length")
    # copies only where needed: inputs without empty intervals are not filtered, inputs
    # already in start order (GPU operations are) not sorted (8 MB a column at 1 M rows)
    keep = e > s
    if not keep.all():
        s, e = s[keep], e[keep]
    del keep
    if s.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return Intervals(empty, empty.copy())
    if not bool(np.all(s[1:] >= s[:-1])):  # most callers pass intervals sorted by start
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        del order
    running_end = np.maximum.accumulate(e)
    new_block = np.empty(s.size, dtype=bool)
    new_block[0] = True
    np.greater(s[1:], running_end[:-1], out=new_block[1:])
    block_starts = s[new_block]
    last_index = np.flatnonzero(np.append(new_block[1:], True))
    return Intervals(block_starts, running_end[last_index])


TOTAL_BLOCK = 1 << 20  # intervals per step of union_total (bounded temporaries)


def union_total(starts: npt.ArrayLike, ends: npt.ArrayLike,
                where: npt.NDArray[np.bool_] | None = None) -> int:
    """``union(starts[where], ends[where]).total_ns`` (``where`` None: every interval)
    without the union's arrays: for intervals in start order, the sum of what each adds past
    the running end of those before it (empty ones add nothing and do not extend it),
    ``TOTAL_BLOCK`` intervals at a time; intervals not in start order go through
    :func:`union`."""
    every_start, every_end = _as_int64(starts), _as_int64(ends)
    total, carry, last_start = 0, None, None
    for lo in range(0, every_start.size, TOTAL_BLOCK):
        s, e = every_start[lo:lo + TOTAL_BLOCK], every_end[lo:lo + TOTAL_BLOCK]
        if where is not None:
            s, e = s[where[lo:lo + TOTAL_BLOCK]], e[where[lo:lo + TOTAL_BLOCK]]
        if not s.size:
            continue
        if (last_start is not None and int(s[0]) < last_start) or not bool(
                np.all(s[1:] >= s[:-1])):
            keep = slice(None) if where is None else where
            return union(every_start[keep], every_end[keep]).total_ns
        last_start = int(s[-1])
        carry = int(s[0]) if carry is None else carry  # at or before every start
        running = np.maximum.accumulate(np.where(e > s, e, carry))
        np.maximum(running, carry, out=running)
        before = np.empty_like(running)
        before[0], before[1:] = carry, running[:-1]
        added = running - np.maximum(s, before)
        total += int(added[added > 0].sum())
        carry = int(running[-1])
    return total


def gaps(merged: Intervals, min_gap_ns: int = 0) -> Intervals:
    """Holes between consecutive disjoint intervals longer than ``min_gap_ns`` (strictly).
    When every hole is (always for ``min_gap_ns`` below 1 and intervals from :func:`union`,
    which merges touching ones), they are views of ``merged``'s arrays: no copy."""
    if len(merged) < 2:
        empty = np.empty(0, dtype=np.int64)
        return Intervals(empty, empty.copy())
    gs = merged.ends[:-1]
    ge = merged.starts[1:]
    keep = (ge - gs) > min_gap_ns
    if keep.all():
        return Intervals(gs, ge)
    return Intervals(gs[keep], ge[keep])


def union_with(merged: Intervals, starts: npt.ArrayLike, ends: npt.ArrayLike) -> Intervals:
    """``union`` of the disjoint intervals ``merged`` (as :func:`union` gives them) and a few
    more (``starts``, ``ends``): only the intervals of ``merged`` that the others overlap or
    touch are merged again; the rest are placed around them. One copy of ``merged``'s
    arrays, where a union of the concatenation sorts and copies every interval several
    times (10 M busy intervals and the profiler overhead: ~0.5 GB of temporaries)."""
    extra = union(starts, ends)
    if not len(extra) or not len(merged):
        return merged if len(merged) else extra
    # merged intervals touching an extra one: ending at or after its start, starting at or
    # before its end (a range per extra interval, marked by a running count)
    delta = np.zeros(len(merged) + 1, dtype=np.int32)
    np.add.at(delta, np.searchsorted(merged.ends, extra.starts, side="left"), 1)
    np.add.at(delta, np.searchsorted(merged.starts, extra.ends, side="right"), -1)
    touched = np.cumsum(delta[:-1], dtype=np.int32) > 0
    del delta
    pieces = union(np.concatenate((merged.starts[touched], extra.starts)),
                   np.concatenate((merged.ends[touched], extra.ends)))
    # each piece's place: the untouched intervals starting before it (none touches it)
    touched_rows = np.flatnonzero(touched)
    before = np.searchsorted(merged.starts, pieces.starts)
    before -= np.searchsorted(touched_rows, before)
    is_piece = np.zeros(len(merged) - len(touched_rows) + len(pieces), dtype=bool)
    is_piece[before + np.arange(len(pieces))] = True
    kept = ~touched
    del touched
    out = []
    for merged_side, piece_side in ((merged.starts, pieces.starts), (merged.ends, pieces.ends)):
        side = np.empty(len(is_piece), dtype=np.int64)
        side[is_piece] = piece_side
        side[~is_piece] = merged_side[kept]
        out.append(side)
    return Intervals(out[0], out[1])


def overlap_total(merged: Intervals, start: int, end: int) -> int:
    """Length of ``[start, end)`` covered by the disjoint intervals ``merged``."""
    if end <= start or len(merged) == 0:
        return 0
    return int(overlap_each(merged, np.array([start]), np.array([end]))[0])


def overlap_each(merged: Intervals, starts: npt.ArrayLike, ends: npt.ArrayLike) -> IntArray:
    """For each query ``[starts[i], ends[i])``, the length covered by ``merged``.

    Uses prefix sums of the merged lengths and two ``searchsorted`` calls per query batch
    (:class:`Coverage`; build one to query the same intervals repeatedly).
    """
    return Coverage(merged).within(starts, ends)


class Coverage:
    """Disjoint sorted intervals with the prefix sums of their lengths, built once, for
    many :meth:`within` queries (``O(log n)`` each)."""

    def __init__(self, merged: Intervals) -> None:
        self.starts, self.ends = merged.starts, merged.ends
        # the lengths' running sum built in its own array (no length or cumsum temporaries:
        # 160 MB at 10 M intervals)
        self.prefix = np.zeros(self.starts.size + 1, dtype=np.int64)
        np.subtract(self.ends, self.starts, out=self.prefix[1:])
        np.cumsum(self.prefix[1:], out=self.prefix[1:])

    def covered_before(self, t: npt.ArrayLike) -> IntArray:
        """For each instant ``t``, the length covered before it (non-decreasing in ``t``)."""
        if self.starts.size == 0:
            return np.zeros(np.size(t), dtype=np.int64)
        return np.asarray(self._covered_before(_as_int64(t)), dtype=np.int64)

    def _covered_before(self, t: IntArray) -> IntArray:
        return self._covered_and_last(t)[0]

    def _covered_and_last(self, t: IntArray) -> tuple[IntArray, IntArray]:
        """The length covered before each ``t`` and the index of the last interval starting
        at or before it (clamped to 0 where none does: nothing is covered before ``t``)."""
        # its prefix sum plus the part of it before t, computed in place (no temporaries)
        last = np.searchsorted(self.starts, t, side="right")
        last -= 1
        none = last < 0
        np.maximum(last, 0, out=last)
        covered: IntArray = np.minimum(t, self.ends[last])
        covered -= self.starts[last]
        np.maximum(covered, 0, out=covered)
        covered += self.prefix[last]
        covered[none] = 0
        return covered, last

    def covered_before_ends(self, starts: IntArray, ends: IntArray
                            ) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """For each ``[starts[i], ends[i])``: the length covered before its end
        (:meth:`covered_before`), and whether one interval holds it whole (``start <= end``;
        then the length covered before its start is that minus its duration: the disjoint
        intervals do not touch, so a span covered throughout lies in one). One search, of
        the ends."""
        if self.starts.size == 0:
            return np.zeros(ends.size, dtype=np.int64), np.zeros(ends.size, dtype=bool)
        covered, last = self._covered_and_last(_as_int64(ends))
        whole = self.starts[last] <= starts
        whole &= starts <= ends
        whole &= ends <= self.ends[last]
        return covered, whole

    def within(self, starts: npt.ArrayLike, ends: npt.ArrayLike) -> IntArray:
        """For each query ``[starts[i], ends[i])``, the length covered (0 when empty)."""
        qs = _as_int64(starts)
        qe = _as_int64(ends)
        if self.starts.size == 0 or qs.size == 0:
            return np.zeros(qs.size, dtype=np.int64)
        out = self._covered_before(qe) - self._covered_before(qs)
        return np.where(qe > qs, out, 0).astype(np.int64)


def contains(merged: Intervals, times: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """For each time ``t``, whether some ``[start, end)`` of ``merged`` holds it."""
    t = _as_int64(times)
    i = np.searchsorted(merged.starts, t, side="right") - 1
    inside = np.zeros(t.size, dtype=bool)
    ok = i >= 0
    inside[ok] = t[ok] < merged.ends[i[ok]]
    return inside


def clip(merged: Intervals, start: int, end: int) -> Intervals:
    """The parts of ``merged`` inside ``[start, end)``."""
    s = np.clip(merged.starts, start, end)
    e = np.clip(merged.ends, start, end)
    keep = e > s
    return Intervals(s[keep], e[keep])


def subtract(a: Intervals, b: Intervals) -> Intervals:
    """The parts of disjoint intervals ``a`` not covered by disjoint intervals ``b``."""
    if len(a) == 0 or len(b) == 0:
        return Intervals(a.starts.copy(), a.ends.copy())
    lo = min(int(a.starts[0]), int(b.starts[0])) - 1
    hi = max(int(a.ends[-1]), int(b.ends[-1])) + 1
    b_holes_s = np.concatenate(([lo], b.ends))
    b_holes_e = np.concatenate((b.starts, [hi]))
    return intersect(a, Intervals(b_holes_s, b_holes_e))


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """Intersection of two sets of disjoint sorted intervals: for each interval of ``a``, the
    run of ``b``'s intervals overlapping it (two ``searchsorted``; every pair that overlaps,
    at most ``len(a) + len(b)`` pairs), each pair's common part, then :func:`union` (the
    parts come in start order)."""
    if len(a) == 0 or len(b) == 0:
        empty = np.empty(0, dtype=np.int64)
        return Intervals(empty, empty.copy())
    first = np.searchsorted(b.ends, a.starts, side="right")  # b ending after a's start
    counts = np.searchsorted(b.starts, a.ends, side="left")  # … to b starting before a's end
    counts -= first
    np.maximum(counts, 0, out=counts)
    pairs = int(counts.sum())
    mine = np.repeat(np.arange(len(a)), counts)
    # b's index of each pair: its run's first, plus the pair's place within the run
    theirs = np.arange(pairs, dtype=np.int64)
    theirs += np.repeat(first - (np.cumsum(counts) - counts), counts)
    starts = np.maximum(a.starts[mine], b.starts[theirs])
    ends = np.minimum(a.ends[mine], b.ends[theirs])
    return union(starts, ends)
