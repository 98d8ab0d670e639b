"""Property tests for infraprof.intervals (hypothesis) plus worked examples."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof import intervals

interval_lists = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 2_000)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=60,
)


def _brute_cover(pairs: list[tuple[int, int]]) -> set[int]:
    covered: set[int] = set()
    for s, e in pairs:
        covered.update(range(s, e))
    return covered


@given(interval_lists)
@settings(max_examples=200, deadline=None)
def test_union_matches_brute_force(pairs: list[tuple[int, int]]) -> None:
    u = intervals.union([p[0] for p in pairs], [p[1] for p in pairs])
    assert u.total_ns == len(_brute_cover(pairs))
    assert u.total_ns <= sum(e - s for s, e in pairs)
    assert np.all(u.starts < u.ends)
    assert np.all(u.ends[:-1] < u.starts[1:])


@given(interval_lists)
@settings(max_examples=200, deadline=None)
def test_busy_plus_gaps_equals_span(pairs: list[tuple[int, int]]) -> None:
    u = intervals.union([p[0] for p in pairs], [p[1] for p in pairs])
    if len(u) == 0:
        return
    span = int(u.ends[-1] - u.starts[0])
    assert u.total_ns + intervals.gaps(u).total_ns == span


@given(interval_lists, st.integers(0, 12_000), st.integers(0, 3_000))
@settings(max_examples=200, deadline=None)
def test_overlap_matches_brute_force(pairs: list[tuple[int, int]], qs: int, qlen: int) -> None:
    u = intervals.union([p[0] for p in pairs], [p[1] for p in pairs])
    want = len(_brute_cover(pairs) & set(range(qs, qs + qlen)))
    assert intervals.overlap_total(u, qs, qs + qlen) == want


@given(interval_lists, interval_lists)
@settings(max_examples=150, deadline=None)
def test_intersect_and_subtract(a_pairs: list[tuple[int, int]],
                                b_pairs: list[tuple[int, int]]) -> None:
    a = intervals.union([p[0] for p in a_pairs], [p[1] for p in a_pairs])
    b = intervals.union([p[0] for p in b_pairs], [p[1] for p in b_pairs])
    ca, cb = _brute_cover(a_pairs), _brute_cover(b_pairs)
    assert intervals.intersect(a, b).total_ns == len(ca & cb)
    assert intervals.subtract(a, b).total_ns == len(ca - cb)
    # the exact intervals: the maximal runs of the common instants, in order
    for got, want in ((intervals.intersect(a, b), ca & cb), (intervals.subtract(a, b), ca - cb)):
        assert list(zip(got.starts.tolist(), got.ends.tolist(), strict=True)) == _runs(want)


def _runs(instants: set[int]) -> list[tuple[int, int]]:
    """The maximal runs ``[start, end)`` of consecutive ``instants``, in order."""
    runs: list[tuple[int, int]] = []
    for t in sorted(instants):
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1)
        else:
            runs.append((t, t + 1))
    return runs


def test_intersect_of_touching_disjoint_intervals() -> None:
    """Intervals that touch without being merged (built directly, not by ``union``) give
    the merged common part."""
    a = intervals.Intervals(np.array([0, 5, 20]), np.array([5, 10, 30]))
    b = intervals.Intervals(np.array([3, 9]), np.array([6, 25]))
    got = intervals.intersect(a, b)
    assert (got.starts.tolist(), got.ends.tolist()) == ([3, 9, 20], [6, 10, 25])


def test_touching_intervals_merge_and_gap_threshold() -> None:
    u = intervals.union([0, 10, 30], [10, 20, 40])
    assert list(u.starts) == [0, 30] and list(u.ends) == [20, 40]
    assert intervals.gaps(u, min_gap_ns=10).total_ns == 0
    assert intervals.gaps(u, min_gap_ns=9).total_ns == 10


@given(interval_lists, st.lists(st.integers(-10, 12_100), max_size=40))
@settings(max_examples=200, deadline=None)
def test_contains_matches_brute_force(pairs: list[tuple[int, int]], times: list[int]) -> None:
    u = intervals.union([p[0] for p in pairs], [p[1] for p in pairs])
    covered = _brute_cover(pairs)
    assert intervals.contains(u, times).tolist() == [t in covered for t in times]


@given(interval_lists, interval_lists)
@settings(max_examples=400, deadline=None)
def test_union_with_is_the_union_of_both(a_pairs: list[tuple[int, int]],
                                         b_pairs: list[tuple[int, int]]) -> None:
    """Merging a few intervals into a union (``union_with``) gives exactly the union of the
    concatenation (same arrays), and leaves the inputs unchanged."""
    a = intervals.union([s for s, _ in a_pairs], [e for _, e in a_pairs])
    kept = (a.starts.copy(), a.ends.copy())
    b_starts = np.array([s for s, _ in b_pairs], dtype=np.int64)
    b_ends = np.array([e for _, e in b_pairs], dtype=np.int64)
    got = intervals.union_with(a, b_starts, b_ends)
    want = intervals.union(np.concatenate((a.starts, b_starts)),
                           np.concatenate((a.ends, b_ends)))
    assert got.starts.tolist() == want.starts.tolist()
    assert got.ends.tolist() == want.ends.tolist()
    assert a.starts.tolist() == kept[0].tolist() and a.ends.tolist() == kept[1].tolist()


@given(interval_lists, st.integers(-5, 300))
@settings(max_examples=200, deadline=None)
def test_gaps_are_views_when_every_hole_is_listed(pairs: list[tuple[int, int]],
                                                  min_gap: int) -> None:
    """The holes longer than the threshold, as a brute-force filter gives them; views of
    the union's arrays when none is filtered out."""
    merged = intervals.union([s for s, _ in pairs], [e for _, e in pairs])
    got = intervals.gaps(merged, min_gap)
    holes = list(zip(merged.ends[:-1].tolist(), merged.starts[1:].tolist(), strict=True))
    want = [(s, e) for s, e in holes if e - s > min_gap]
    assert list(zip(got.starts.tolist(), got.ends.tolist(), strict=True)) == want
    if len(want) == len(holes) and holes:
        assert np.shares_memory(got.starts, merged.ends)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(-50, 2_000), st.booleans()),
                max_size=60),
       st.booleans(), st.booleans(), st.sampled_from([1, 3, 1 << 20]))
@settings(max_examples=400, deadline=None)
def test_union_total_is_the_unions_length(rows: list[tuple[int, int, bool]], in_order: bool,
                                          masked: bool, block: int) -> None:
    """``union_total`` (the time each interval adds past the running end, a block at a
    time) equals ``union(...).total_ns`` of the selected intervals: empty and reversed
    ones, intervals in start order or not (then through ``union``), any block size."""
    from unittest import mock

    if in_order:
        rows = sorted(rows)
    starts = np.array([s for s, _, _ in rows], dtype=np.int64)
    ends = starts + np.array([d for _, d, _ in rows], dtype=np.int64)
    where = np.array([w for _, _, w in rows], dtype=bool) if masked else None
    keep = slice(None) if where is None else where
    want = intervals.union(starts[keep], ends[keep]).total_ns
    with mock.patch.object(intervals, "TOTAL_BLOCK", block):
        assert intervals.union_total(starts, ends, where) == want


@given(interval_lists, st.lists(st.tuples(st.integers(-50, 12_500), st.integers(-20, 800)),
                                max_size=40))
@settings(max_examples=200, deadline=None)
def test_covered_before_ends_and_whole_spans(pairs: list[tuple[int, int]],
                                             spans: list[tuple[int, int]]) -> None:
    """``Coverage.covered_before_ends``: the length covered before each end, and whether one
    interval holds the span whole: exactly the spans whose every instant is covered (the
    covered length before the start is then that before the end minus the duration)."""
    u = intervals.union([p[0] for p in pairs], [p[1] for p in pairs])
    cover = intervals.Coverage(u)
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([s + d for s, d in spans], dtype=np.int64)
    before_end, whole = cover.covered_before_ends(starts, ends)
    assert before_end.tolist() == cover.covered_before(ends).tolist()
    covered = _brute_cover(pairs)
    for (s, d), held in zip(spans, whole.tolist(), strict=True):
        if d < 0:
            assert not held
            continue
        inside = any(a <= s and s + d <= b for a, b in zip(u.starts.tolist(), u.ends.tolist(),
                                                            strict=True))
        assert held == inside
        if held:
            assert all(t in covered for t in range(s, s + d))
    before_start = cover.covered_before(starts)
    assert (before_start[whole] == (before_end - (ends - starts))[whole]).all()


@given(st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**40)), max_size=30))
@settings(max_examples=200, deadline=None)
def test_total_ns_is_the_sum_of_lengths(pairs: list[tuple[int, int]]) -> None:
    """``total_ns`` from the two sums (which wrap modulo 2**64 for large timestamps) equals
    the sum of the lengths computed in Python integers."""
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    ends = np.array([s + d for s, d in pairs], dtype=np.int64)
    assert intervals.Intervals(starts, ends).total_ns == sum(d for _, d in pairs)
