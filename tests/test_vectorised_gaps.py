"""Vectorised gap helpers against simple per-item reference implementations (hypothesis):
the calls overlapping many gaps at once, the innermost NVTX range at many instants, and the
gap table's text codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof import intervals
from infraprof.analyses.attribution import _Calls, _innermost_nvtx_many
from infraprof.analyses.gap_accumulate import _top_candidates
from infraprof.analyses.gap_table import gathered_text
from infraprof.analyses.kernel_sequences import BusyBefore
from infraprof.analyses.nvtx_proj import launched_spans
from infraprof.tables import as_text_category

_SPAN = st.tuples(st.integers(0, 400), st.integers(0, 120))


def _calls(spans: list[tuple[int, int]]) -> _Calls:
    frame = pd.DataFrame({"start_ns": [s for s, _ in spans],
                          "end_ns": [s + d for s, d in spans],
                          "name": [f"c{i % 4}" for i in range(len(spans))]}, dtype=object)
    frame = frame.astype({"start_ns": "int64", "end_ns": "int64"})
    return _Calls.of(frame, lambda name: "sync" if name == "c0" else "launch-overhead")


@given(st.lists(_SPAN, max_size=30), st.lists(_SPAN, max_size=12))
@settings(max_examples=150, deadline=None)
def test_overlaps_of_many_gaps_are_the_per_gap_overlaps(
        spans: list[tuple[int, int]], gaps: list[tuple[int, int]]) -> None:
    """``(gap, call)`` of every call with ``start < g1`` and ``end > g0``, by gap, then in
    the calls' (start) order."""
    calls = _calls(spans)
    g0 = np.array([a for a, _ in gaps], dtype=np.int64)
    g1 = np.array([a + d + 1 for a, d in gaps], dtype=np.int64)
    gap, call = calls.overlaps(g0, g1)
    want = [(i, j) for i, (a, b) in enumerate(zip(g0.tolist(), g1.tolist(), strict=True))
            for j, (s, e) in enumerate(zip(calls.s.tolist(), calls.e.tolist(), strict=True))
            if s < b and e > a]
    assert list(zip(gap.tolist(), call.tolist(), strict=True)) == want


def _innermost(starts: list[int], ends: list[int], names: list[str], t: int) -> str | None:
    hi = sum(1 for s in starts if s <= t)
    for i in range(hi - 1, max(0, hi - 64) - 1, -1):
        if ends[i] > t:
            return names[i]
    return None


@given(st.lists(_SPAN, max_size=90), st.lists(st.integers(-10, 600), max_size=20))
@settings(max_examples=100, deadline=None)
def test_innermost_nvtx_of_many_instants_is_the_scalar_look_back(
        ranges: list[tuple[int, int]], times: list[int]) -> None:
    ranges = sorted(ranges, key=lambda r: r[0])
    starts = [s for s, _ in ranges]
    ends = [s + d for s, d in ranges]
    names = [f"r{i % 7}" for i in range(len(ranges))]
    entry = {"nv_s": np.array(starts, dtype=np.int64), "nv_e": np.array(ends, dtype=np.int64),
             "nv_name": np.array(names, dtype=object)}
    got = _innermost_nvtx_many(entry, np.array(times, dtype=np.int64)).tolist()
    assert got == [_innermost(starts, ends, names, t) for t in times]


_TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "b", "kernel<1>", "a "]))


@given(st.lists(_TEXT, min_size=1, max_size=40), st.data())
@settings(max_examples=150, deadline=None)
def test_gathered_text_codes_are_factorize_of_the_gathered_texts(
        values: list[str | None], data: st.DataObject) -> None:
    """Row codes of a column, gathered by any rows (a blank for some), then numbered by first
    appearance: the codes and texts ``pd.factorize(..., use_na_sentinel=False)`` gives for
    the gathered values (the blank ``""`` merged with a real ``""``); for an object column
    and for the readers' Categorical of the same texts."""
    column = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    source = as_text_category(column) if data.draw(st.booleans()) else column
    rows = np.array(data.draw(st.lists(st.integers(0, len(values) - 1), max_size=30)),
                    dtype=np.int64)
    blanked = np.array(data.draw(st.lists(st.booleans(), min_size=len(rows),
                                          max_size=len(rows))), dtype=bool)
    codes, names = gathered_text(source, rows, blanked)
    gathered = np.where(blanked, "", column.to_numpy(dtype=object)[rows])
    want_codes, want_uniques = pd.factorize(gathered, use_na_sentinel=False)
    assert codes.tolist() == want_codes.tolist()
    assert names == tuple(str(x) for x in want_uniques)


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 50), st.integers(0, 50)),
                max_size=30),
       st.lists(st.tuples(st.integers(-20, 320), st.integers(0, 120)), max_size=15))
@settings(max_examples=150, deadline=None)
def test_launched_spans_are_the_per_range_slices(
        launches: list[tuple[int, int, int]], ranges: list[tuple[int, int]]) -> None:
    launches = sorted(launches)
    at = np.array([t for t, _, _ in launches], dtype=np.int64)
    starts = np.array([t + a for t, a, _ in launches], dtype=np.int64)
    ends = np.array([t + a + b for t, a, b in launches], dtype=np.int64)
    first, last, count = launched_spans(
        at, starts, ends, np.array([s for s, _ in ranges], dtype=np.int64),
        np.array([s + d for s, d in ranges], dtype=np.int64))
    for i, (s, d) in enumerate(ranges):
        inside = [k for k, t in enumerate(at.tolist()) if s <= t < s + d]
        assert count[i] == len(inside)
        if inside:
            assert first[i] == min(starts[inside]) and last[i] == max(ends[inside])


_KERNEL = st.tuples(st.integers(0, 1), st.integers(0, 80), st.integers(0, 30))


@given(st.lists(_KERNEL, min_size=1, max_size=40),
       st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1_500), st.integers(0, 60)),
                max_size=25),
       st.data())
@settings(max_examples=150, deadline=None)
def test_idle_in_spans_is_the_union_minus_busy(
        kernels: list[tuple[int, int, int]], busy_ops: list[tuple[int, int, int]],
        data: st.DataObject) -> None:
    """Idle time inside the union of kernel spans (first kernel's start to last kernel's
    end), per device: the union's length minus ``overlap_total`` of the device's busy
    intervals over each merged span."""
    rows, t = [], {0: 0, 1: 0}
    for device, step, dur in kernels:  # any order of devices; starts grow per device
        t[device] += step
        rows.append((device, t[device], t[device] + dur))
    k = pd.DataFrame(rows, columns=["device_id", "start_ns", "end_ns"])
    if data.draw(st.booleans()):  # as in a trace: the kernels are among the busy operations
        busy_ops = busy_ops + [(d, s, e - s) for d, s, e in rows]
    busy = {d: intervals.union([s for dd, s, _ in busy_ops if dd == d],
                               [s + n for dd, s, n in busy_ops if dd == d]) for d in (0, 1)}
    # a span runs from a kernel to a later one of the same device (sequences are on a stream)
    pairs = []
    for i in data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=20)):
        later = [j for j in range(i, len(rows)) if rows[j][0] == rows[i][0]]
        pairs.append((i, data.draw(st.sampled_from(later))))
    first = np.array([a for a, _ in pairs], dtype=np.int64)
    last = np.array([b for _, b in pairs], dtype=np.int64)
    want = 0
    for device in sorted({rows[i][0] for i in first.tolist()}):
        mine = [i for i in range(len(first)) if rows[int(first[i])][0] == device]
        spans = intervals.union([rows[int(first[i])][1] for i in mine],
                                [rows[int(last[i])][2] for i in mine])
        want += spans.total_ns - sum(intervals.overlap_total(busy[device], s, e)
                                     for s, e in zip(spans.starts.tolist(), spans.ends.tolist(),
                                                     strict=True))
    assert BusyBefore(k, busy).idle_in(first, last) == want


def _picked(group: np.ndarray, ns: np.ndarray, rows: np.ndarray, keep: int,
            candidates: np.ndarray) -> list[int]:
    order = candidates[np.lexsort((rows[candidates], -ns[candidates], group[candidates]))]
    ordered = group[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, side="left")
    return order[rank < keep].tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 9)),
                max_size=60), st.integers(0, 4))
def test_example_candidates_hold_every_groups_top(items: list[tuple[int, int, int]],
                                                  keep: int) -> None:
    """The examples picked from the candidates of ``_top_candidates`` are those a sort of
    every gap picks (the ``keep`` largest per group, ties: earlier gap, then position),
    with many equal lengths and repeated rows."""
    group = np.array([g for g, _, _ in items], dtype=np.int64)
    ns = np.array([n for _, n, _ in items], dtype=np.int64)
    rows = np.array([r for _, _, r in items], dtype=np.int64)
    everything = np.arange(len(items))
    assert _picked(group, ns, rows, keep, _top_candidates(group, ns, keep)) == _picked(
        group, ns, rows, keep, everything)
