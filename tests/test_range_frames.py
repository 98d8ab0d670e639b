"""Per-NVTX-range Python frames, counted for all instances at once (``range_frames``), against
the per-window oracle: ``stacks_in_window`` for one instance at a time, ``windows_counts``
pooled per name, and a per-window ``Counter`` for the collapsed export. Random nested and
overlapping ranges, names with nulls, stack ids without frames and two ids with equal frames;
the capture test (``test_capture.py``) checks the same functions on a real py-spy capture."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.host_frames import (
    Frame,
    collapsed_in_windows,
    stacks_in_window,
    summarize_stacks,
    windows_counts,
)
from infraprof.analyses.range_frames import (
    instance_tops,
    range_breakdown,
    range_instances,
    range_name_breakdown,
)
from infraprof.collapsed import write_collapsed
from infraprof.readers.pyspy import format_frame

APP = "/src/app.py"
STACKS: list[tuple[Frame, ...]] = [
    (("<module>", APP, 1), ("run", APP, 3), ("load", APP, 52)),
    (("<module>", APP, 1), ("run", APP, 3), ("load", APP, 53), ("collate", APP, 47)),
    (("<module>", APP, 1), ("run", APP, 3), ("step", APP, 58)),
    (("<module>", APP, 1), ("run", APP, 3), ("load", APP, 52)),  # same frames as id 0
    (("<module>", APP, 1), ("other", APP, 9)),
]
TID, ERR, PERIOD = 7, 3_000, 1_000


def _frames() -> pd.DataFrame:
    return pd.DataFrame([(sid, depth, f, p, n) for sid, stack in enumerate(STACKS)
                         for depth, (f, p, n) in enumerate(stack)],
                        columns=["stack_id", "depth", "function", "file", "line"])


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NVTX ranges (some on another thread, some open, names with nulls) and samples (stack
    ids 0-5: 5 has no frames) on a 0-100 µs timeline."""
    n = draw(st.integers(0, 25))
    starts = draw(st.lists(st.integers(0, 90_000), min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(0, 40_000), min_size=n, max_size=n))
    names = draw(st.lists(st.sampled_from(["step", "op", "fwd", None]), min_size=n, max_size=n))
    tids = draw(st.lists(st.sampled_from([TID, TID, TID, 8]), min_size=n, max_size=n))
    open_ = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    nvtx = pd.DataFrame({
        "name": pd.Categorical(names), "kind": ["range"] * n, "tid": tids,
        "start_ns": starts,
        "end_ns": pd.array([None if o and i % 5 == 0 else s + ln for i, (s, ln, o)
                            in enumerate(zip(starts, lengths, open_, strict=True))],
                           dtype="Int64")})
    k = draw(st.integers(0, 60))
    samples = pd.DataFrame({
        "start_ns": draw(st.lists(st.integers(0, 130_000), min_size=k, max_size=k)),
        "tid": draw(st.lists(st.sampled_from([TID, TID, 8]), min_size=k, max_size=k)),
        "stack_id": draw(st.lists(st.integers(0, 5), min_size=k, max_size=k))})
    return nvtx, samples


def _oracle_ranges(nvtx: pd.DataFrame) -> list[tuple[str, int, int]]:
    ranges = nvtx[nvtx["end_ns"].notna() & (nvtx["tid"] == TID)].sort_values(
        "start_ns", kind="stable")
    return [(str(name), int(a), int(b)) for name, a, b in
            ranges[["name", "start_ns", "end_ns"]].itertuples(index=False)]


@settings(max_examples=150, deadline=None)
@given(_inputs())
def test_range_breakdown_matches_one_window_at_a_time(data: tuple[pd.DataFrame, pd.DataFrame]
                                                      ) -> None:
    nvtx, samples = data
    frames = _frames()
    got = range_breakdown(nvtx, samples, frames, ERR, PERIOD, tid=TID)
    expected = _oracle_ranges(nvtx)
    seen: Counter[str] = Counter()
    assert len(got) == len(expected)
    for row, (name, a, b) in zip(got, expected, strict=True):
        assert (row.name, row.instance) == (name, seen[name])
        seen[name] += 1
        assert row.window == stacks_in_window(samples, frames, TID, a, b, ERR, PERIOD, 3)


@settings(max_examples=150, deadline=None)
@given(_inputs())
def test_pooled_and_top_frames_match_the_per_window_pooling(
        data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    nvtx, samples = data
    frames = _frames()
    expected = _oracle_ranges(nvtx)
    counts = windows_counts(samples, frames, TID, [(a, b) for _, a, b in expected], ERR)
    pooled: dict[str, Counter[tuple[Frame, ...]]] = {}
    spans: dict[str, list[int]] = {}
    covered: Counter[str] = Counter()
    tops: dict[str, Counter[str]] = {}
    refused: Counter[str] = Counter()
    for (name, a, b), found in zip(expected, counts, strict=True):
        span = spans.setdefault(name, [a, b])
        span[0], span[1] = min(span[0], a), max(span[1], b)
        covered[name] += b - a
        pooled.setdefault(name, Counter()).update(found or Counter())
        top = summarize_stacks(found)[1] if found else ()
        if top:
            tops.setdefault(name, Counter())[top[0].label] += 1
        else:
            refused[name] += 1
    got = range_name_breakdown(nvtx, samples, frames, ERR, PERIOD, tid=TID)
    assert list(got) == list(spans)
    for name, window in got.items():
        n = sum(pooled[name].values())
        assert (window.start_ns, window.end_ns, window.samples) == (*spans[name], n)
        assert (window.context, window.frames, window.stacks) == summarize_stacks(pooled[name])
        assert window.refused == (None if n else "no samples in any instance")
        if covered[name]:
            assert window.coverage == min(1.0, n * PERIOD / covered[name])
    instances = range_instances(nvtx, samples, frames, ERR, PERIOD, tid=TID)
    assert instances is not None
    got_tops, got_refused = instance_tops(instances)
    assert got_refused == refused
    assert {k: list(v.items()) for k, v in got_tops.items()} == {
        k: list(v.items()) for k, v in tops.items()}


@settings(max_examples=100, deadline=None)
@given(_inputs(), st.lists(st.tuples(st.integers(0, 130_000), st.integers(0, 20_000)),
                           max_size=8))
def test_collapsed_in_windows_matches_window_by_window(
        data: tuple[pd.DataFrame, pd.DataFrame], spans: list[tuple[int, int]]) -> None:
    _, samples = data
    frames = _frames()
    windows = [(a, a + n) for a, n in spans]
    total: Counter[tuple[Frame, ...]] = Counter()
    for found in windows_counts(samples, frames, TID, windows, 0):
        total.update(found or Counter())
    expected = write_collapsed(([f"thread ({TID})", *(format_frame(f) for f in stack)], n)
                               for stack, n in total.items())
    assert collapsed_in_windows(samples, frames, TID, windows) == expected


def test_many_ranges_stay_columnar() -> None:
    """50 k one-sample-period ranges: every instance is counted; only those with samples are
    summarised (the per-name totals equal the samples inside the ranges)."""
    starts = np.arange(50_000, dtype=np.int64) * 10_000
    nvtx = pd.DataFrame({"name": pd.Categorical(np.where(np.arange(50_000) % 2, "op", "fwd")),
                         "kind": "range", "tid": TID, "start_ns": starts,
                         "end_ns": pd.array(starts + 5_000, dtype="Int64")})
    samples = pd.DataFrame({"start_ns": np.arange(0, 500_000_000, 1_000_000), "tid": TID,
                            "stack_id": 2})
    found = range_instances(nvtx, samples, _frames(), ERR, PERIOD, tid=TID)
    assert found is not None and len(found.ranges) == 50_000
    assert int(found.ranges["samples"].sum()) == 500
    pooled = range_name_breakdown(nvtx, samples, _frames(), ERR, PERIOD, instances=found)
    assert pooled["fwd"].samples == 500 and pooled["op"].samples == 0
    tops, refused = instance_tops(found)
    assert tops["fwd"]["step() app.py:58"] == 500
    assert refused["fwd"] == 25_000 - 500 and refused["op"] == 25_000
