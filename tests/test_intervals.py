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
