"""The vectorised host-gap painter (:mod:`infraprof.analyses.host_paint`) against the per-gap
algorithm it replaced (kept below as the reference), on random threads: gaps in time order
(overlapping when on different devices), API and OS-runtime calls of every category,
nested and zero-length calls, drains across gap starts, a small slack-pool cap."""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.gap_table import main_category
from infraprof.analyses.host_columns import CODES, HostColumns, HostDetail, combine
from infraprof.analyses.host_paint import (
    CODE,
    PaintParams,
    ThreadGaps,
    expand,
    host_details,
    pool_scan,
)

_PRIORITY = {"unknown": 0, "host-cpu": 1, "host-wait": 2, "launch-overhead": 3,
             "allocation": 4, "memcpy": 5, "sync": 6}
_DRAIN = ("sync", "memcpy", "allocation")
_EXPOSABLE = ("host-cpu", "launch-overhead", "host-wait")
Painted = tuple[list[int], list[str]]  # segment bounds (len n + 1) and each segment's category


def _paint(a: int, b: int, spans: list[tuple[int, int, str]], base: str) -> Painted:
    """Elementary segments of ``[a, b)`` and the winning category of each (a gap has a few
    segments: plain Python beats numpy here)."""
    bounds = sorted({x for x in (a, b, *[x for s, e, _ in spans for x in (s, e)]) if a <= x <= b})
    cats = [base] * (len(bounds) - 1)
    prio = [0] * (len(bounds) - 1)
    for s, e, cat in spans:
        p = _PRIORITY[cat]
        for i in range(bisect.bisect_left(bounds, s), bisect.bisect_left(bounds, e)):
            if prio[i] <= p:
                cats[i] = cat
                prio[i] = p
    return bounds, cats


def _attribute_host(g0: int, g1: int, launch_end: int, traced: bool,
                    found: list[tuple[int, int, str, str]]
                    ) -> tuple[list[int], list[str], list[dict[str, Any]],
                               dict[str, Any] | None]:
    """Paint one gap from the calls overlapping it (API calls, then OS-runtime calls)."""
    spans: list[tuple[int, int, str]] = []
    calls: list[dict[str, Any]] = []
    drain: dict[str, Any] | None = None
    for s, e, cat, name in found:
        spans.append((max(s, g0), min(e, g1), cat))
        calls.append({"name": name, "start_ns": s, "dur_ns": e - s, "category": cat})
        if cat in _DRAIN and s < g0 <= e and (drain is None or s < drain["start_ns"]):
            drain = {"name": name, "start_ns": s, "end_ns": e, "category": cat,
                     "blocked_before_gap_ns": g0 - s}
    q0 = max(launch_end, g0)
    queue = [(q0, q0, "launch-overhead")] if g0 < q0 < g1 else []
    bounds, cats = _paint(g0, g1, [*spans, *queue], "host-cpu" if traced else "unknown")
    if q0 < g1:
        cats = ["launch-overhead" if lo >= q0 else cat
                for lo, cat in zip(bounds[:-1], cats, strict=True)]
    calls.sort(key=lambda c: -min(c["dur_ns"], g1 - max(c["start_ns"], g0)))
    return bounds, cats, calls[:5], drain


def _expose(bounds: list[int], cats: list[str], drain: dict[str, Any] | None,
            slack: dict[str, Any], g1: int) -> None:
    """Rule 3 with a per-thread slack pool: host work after a drain call is re-attributed to it
    while the pool (time the host spent blocked before gaps) lasts (``bounds`` and ``cats``
    are changed in place)."""
    if drain is not None:
        slack["ns"] = min(slack["ns"] + int(drain["blocked_before_gap_ns"]), slack["cap"])
        slack["category"] = drain["category"]
        slack["name"] = drain["name"]
    if slack["ns"] <= 0 or slack["category"] is None:
        return
    after = min(int(drain["end_ns"]), g1) if drain is not None else bounds[0]
    i = 0
    while i < len(cats) and slack["ns"] > 0:
        length = bounds[i + 1] - bounds[i]
        if bounds[i] < after or cats[i] not in _EXPOSABLE:
            i += 1
            continue
        if length > slack["ns"]:
            bounds.insert(i + 1, bounds[i] + int(slack["ns"]))
            cats.insert(i + 1, cats[i])
            length = int(slack["ns"])
        cats[i] = slack["category"]
        slack["ns"] -= length
        slack["used"] = True
        i += 1


def _where_points(bounds: list[int], cats: list[str]) -> list[tuple[str, int]]:
    """The middle of each category's longest segment (the first of equal ones), in order of
    the categories' first segments: where its innermost NVTX range is looked up."""
    best: dict[str, tuple[int, int]] = {}
    for i, cat in enumerate(cats):
        n = bounds[i + 1] - bounds[i]
        if n > best.get(cat, (-1, 0))[0]:
            best[cat] = (n, i)
    return [(cat, bounds[i] + n // 2) for cat, (n, i) in best.items()]


def _parts(bounds: list[int], cats: list[str], p: PaintParams
           ) -> tuple[dict[str, int], dict[str, list[tuple[int, int]]]]:
    """Per-category totals and time segments (adjacent segments merged), after rule 4."""
    total: dict[str, int] = {}
    for cat, a, b in zip(cats, bounds[:-1], bounds[1:], strict=True):
        total[cat] = total.get(cat, 0) + b - a
    cpu = total.get("host-cpu", 0)
    rename = {"host-cpu": "launch-overhead"} if 0 < cpu < p.launch_host_max_ns else {}
    segments: dict[str, list[tuple[int, int]]] = {}
    for cat, a, b in zip(cats, bounds[:-1], bounds[1:], strict=True):
        if b <= a:
            continue
        c = rename.get(cat, cat)
        seg = segments.setdefault(c, [])
        if seg and seg[-1][1] == a:
            seg[-1] = (seg[-1][0], b)
        else:
            seg.append((a, b))
    parts = {c: sum(b - a for a, b in s) for c, s in segments.items()}
    return {k: v for k, v in parts.items() if v > 0}, segments


def _reference(g0s: list[int], g1s: list[int], ends: list[int], traced: bool,
               found: list[list[tuple[int, int, str, str]]], p: PaintParams,
               nvtx_at: Any) -> list[HostDetail]:
    """The per-gap loop: paint, expose (one slack pool over the thread's gaps), parts."""
    pool: dict[str, Any] = {"ns": 0, "category": None, "name": None,
                            "cap": p.max_run_ahead_ns, "used": False}
    out = []
    for g0, g1, a1, calls_in in zip(g0s, g1s, ends, found, strict=True):
        bounds, cats, calls, drain = _attribute_host(g0, g1, a1, traced, calls_in)
        exposed_by = None
        if p.drain_exposure:
            pool["used"] = False
            _expose(bounds, cats, drain, pool, g1)
            exposed_by = str(pool["name"]) if pool["used"] else None
        parts, segments = _parts(bounds, cats, p)
        where = {cat: name for cat, t in _where_points(bounds, cats)
                 if (name := nvtx_at(np.array([t]))[0]) is not None}
        out.append(HostDetail(parts, calls, drain, where, exposed_by, segments))
    return out


def _nvtx_at(times: np.ndarray) -> np.ndarray:
    return np.array([None if t % 5 == 0 else f"range{t % 3}" for t in times.tolist()],
                    dtype=object)


_CATS = ("sync", "memcpy", "allocation", "launch-overhead", "host-wait", "host-cpu")
_CALL = st.tuples(st.integers(0, 3_000), st.integers(0, 600), st.sampled_from(_CATS),
                  st.integers(0, 3))
_GAP = st.tuples(st.integers(0, 250), st.integers(1, 700), st.integers(1, 900))


@given(st.lists(_GAP, max_size=14), st.lists(_CALL, max_size=25), st.lists(_CALL, max_size=10),
       st.booleans(), st.booleans(), st.integers(0, 800), st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_host_details_are_the_per_gap_algorithm(
        gaps: list[tuple[int, int, int]], api: list[tuple[int, int, str, int]],
        osrt: list[tuple[int, int, str, int]], traced: bool, exposure: bool, cap: int,
        host_max: int) -> None:
    g0s, g1s, launch_ends, t = [], [], [], 0
    for step, dur, lead in gaps:  # starts ascending, gaps may overlap (several devices)
        t += step
        g0s.append(t)
        g1s.append(t + dur)
        launch_ends.append(t + lead)  # after the gap's start: a gap with host activity
    tables = [sorted(calls, key=lambda c: c[0]) for calls in (api, osrt)] if traced else []
    found = [[(s, s + d, cat, f"call{n}") for table in tables for s, d, cat, n in table
              if s < b and s + d > a] for a, b in zip(g0s, g1s, strict=True)]
    rows = [(i, *call) for i, calls in enumerate(found) for call in calls]
    g = ThreadGaps(np.array(g0s, dtype=np.int64), np.array(g1s, dtype=np.int64),
                   np.array(launch_ends, dtype=np.int64), traced,
                   np.array([r[0] for r in rows], dtype=np.int64),
                   np.array([r[1] for r in rows], dtype=np.int64),
                   np.array([r[2] for r in rows], dtype=np.int64),
                   np.array([CODE[r[3]] for r in rows], dtype=np.int8),
                   np.array([r[4] for r in rows], dtype=object))
    p = PaintParams(host_max, exposure, cap)
    got = host_details(g, p, _nvtx_at)
    want = _reference(g0s, g1s, launch_ends, traced, found, p, _nvtx_at)
    assert got.rows.tolist() == list(range(len(want)))
    for mine, theirs in zip(got.values(), want, strict=True):
        assert mine == theirs
        # same key order in every dict (the JSON lists them in this order)
        for field in ("parts", "where", "segments"):
            assert list(getattr(mine, field)) == list(getattr(theirs, field))
        assert [list(c) for c in mine.calls] == [list(c) for c in theirs.calls]


def _thread(gaps: list[tuple[int, int, int]], calls: list[tuple[int, int, str, int]]
            ) -> ThreadGaps:
    """One thread's gaps (time order) and the calls overlapping them, as the painter takes
    them."""
    g0s, g1s, ends, t = [], [], [], 0
    for step, dur, lead in gaps:
        t += step
        g0s.append(t)
        g1s.append(t + dur)
        ends.append(t + lead)
    rows = [(i, s, s + d, CODE[cat], f"call{n}")
            for i, (a, b) in enumerate(zip(g0s, g1s, strict=True))
            for s, d, cat, n in sorted(calls) if s < b and s + d > a]
    return ThreadGaps(np.array(g0s, dtype=np.int64), np.array(g1s, dtype=np.int64),
                      np.array(ends, dtype=np.int64), True,
                      np.array([r[0] for r in rows], dtype=np.int64),
                      np.array([r[1] for r in rows], dtype=np.int64),
                      np.array([r[2] for r in rows], dtype=np.int64),
                      np.array([r[3] for r in rows], dtype=np.int8),
                      np.array([r[4] for r in rows], dtype=object))


@given(st.lists(st.tuples(st.lists(_GAP, max_size=6), st.lists(_CALL, max_size=12)),
                max_size=4), st.randoms(use_true_random=False))
@settings(max_examples=150, deadline=None)
def test_combined_columns_are_each_threads_records(
        threads: list[tuple[list[tuple[int, int, int]], list[tuple[int, int, str, int]]]],
        rnd: Any) -> None:
    """Threads' columns combined under shuffled table rows: each row's record is its
    thread's, and the columnar parts / main category are the records' (``parts`` order,
    first of equal parts)."""
    p = PaintParams(40, True, 300)
    pieces = [host_details(_thread(gaps, calls), p, _nvtx_at) for gaps, calls in threads]
    table_rows = list(range(sum(len(piece) for piece in pieces)))
    rnd.shuffle(table_rows)
    given_rows, at = [], 0
    for piece in pieces:
        given_rows.append(np.array(table_rows[at:at + len(piece)], dtype=np.int64))
        at += len(piece)
    both = combine(list(zip(given_rows, pieces, strict=True)))
    want = {int(row): piece[i] for rows, piece in zip(given_rows, pieces, strict=True)
            for i, row in enumerate(rows.tolist())}
    assert both.rows.tolist() == sorted(want)
    assert dict(both.items()) == want
    parts = both.parts()
    got: dict[int, list[tuple[str, int]]] = {}
    for gap, code, ns in zip(parts.gap.tolist(), parts.code.tolist(), parts.ns.tolist(),
                             strict=True):
        got.setdefault(int(both.rows[gap]), []).append((CODES[code], ns))
    assert got == {row: list(d.parts.items()) for row, d in want.items() if d.parts}
    main = [CODES[c] if c >= 0 else "unknown" for c in both.main_codes().tolist()]
    assert main == [main_category(want[row].parts) for row in both.rows.tolist()]


def test_main_code_is_the_first_of_equal_parts() -> None:
    """Equal parts: the category whose first run comes first in the gap wins (a category
    split in two runs counts once, in the order of its first run)."""
    runs = [(0, "sync", 0, 5), (0, "host-cpu", 5, 10),
            (1, "host-cpu", 0, 2), (1, "sync", 2, 6), (1, "host-cpu", 6, 8),
            (2, "memcpy", 0, 3), (2, "sync", 3, 7)]
    host = HostColumns(
        rows=np.array([3, 7, 9], dtype=np.int64),
        run_gap=np.array([r[0] for r in runs], dtype=np.int64),
        run_code=np.array([CODE[r[1]] for r in runs], dtype=np.int8),
        run_lo=np.array([r[2] for r in runs], dtype=np.int64),
        run_hi=np.array([r[3] for r in runs], dtype=np.int64))
    assert [CODES[c] for c in host.main_codes().tolist()] == ["sync", "host-cpu", "sync"]
    parts = host.parts()
    assert list(zip(parts.gap.tolist(), [CODES[c] for c in parts.code.tolist()],
                    parts.ns.tolist(), parts.order.tolist(), strict=True)) == [
        (0, "sync", 5, 0), (0, "host-cpu", 5, 1), (1, "host-cpu", 4, 0), (1, "sync", 4, 1),
        (2, "memcpy", 3, 0), (2, "sync", 4, 1)]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 60)), max_size=40),
       st.integers(0, 120))
@settings(max_examples=200, deadline=None)
def test_pool_scan_is_the_sequential_pool(steps: list[tuple[int, int]], cap: int) -> None:
    pool, before, used = 0, [], []
    for add, take in steps:
        pool = min(pool + add, cap)
        before.append(pool)
        used.append(min(pool, take))
        pool -= used[-1]
    got_before, got_used = pool_scan(np.array([a for a, _ in steps], dtype=np.int64),
                                     np.array([t for _, t in steps], dtype=np.int64), cap)
    assert got_before.tolist() == before
    assert got_used.tolist() == used


@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(0, 4)), max_size=12))
def test_expand_concatenates_the_ranges(ranges: list[tuple[int, int]]) -> None:
    first = np.array([f for f, _ in ranges], dtype=np.int64)
    counts = np.array([c for _, c in ranges], dtype=np.int64)
    want = [x for f, c in ranges for x in range(f, f + c)]
    assert expand(first, counts).tolist() == want
