"""``launch._largest_first`` against the full stable descending sort it shortcuts (equal
latencies: the earlier kernel first, whatever the sort implementation does with ties)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.launch import _largest_first


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-5, 40), max_size=60), st.integers(0, 5), st.integers(0, 1000))
def test_largest_first_is_the_sorts_head(values: list[int], n: int, offset: int) -> None:
    series = pd.Series(np.array(values, dtype=np.int64),
                       index=np.arange(len(values)) * 3 + offset)
    expected = series.sort_values(ascending=False, kind="stable").head(n).index
    assert _largest_first(series, n).tolist() == expected.tolist()


def test_largest_first_with_distinct_values_skips_the_sort() -> None:
    values = np.random.default_rng(7).permutation(100_000).astype(np.int64)
    series = pd.Series(values)
    assert _largest_first(series, 3).tolist() == [int(np.argmax(values == v))
                                                   for v in (99_999, 99_998, 99_997)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-10**12, 10**12)), min_size=1,
                max_size=80),
       st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.99, 1.0]))
def test_quantiles_by_code_are_pandas_group_quantiles(pairs: list[tuple[int, int]],
                                                      q: float) -> None:
    """Per code, the linearly interpolated quantile equals pandas' group-by ``quantile``
    bit for bit, and at 0.5 its ``median`` (codes that occur; NaN for the others)."""
    from infraprof.analyses.group_stats import quantiles_by_code

    codes = np.array([c for c, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=np.int64)
    got = quantiles_by_code(codes, values, 5, (q, 0.5))
    by_code = pd.Series(values).groupby(codes)
    want = by_code.quantile(q)
    median = by_code.median()
    for code in range(5):
        if code in want.index:
            assert got[code, 0] == want[code] and got[code, 1] == median[code]
        else:
            assert np.isnan(got[code]).all()


def test_launch_columns_derive_the_call_figures() -> None:
    """A launch's call start, queue time and kernel time follow from the held columns as
    the module docstring defines them (call end = call start + call duration)."""
    from infraprof.analyses.launch import launch_columns

    launches = pd.DataFrame({"start_ns": [100, 200, 300], "end_ns": [150, 260, 301],
                             "name": ["a", "b", "a"], "latency_ns": [30, 5, 40],
                             "api_ns": [10, 9, 40]})
    call_start = np.array([70, 195, 260])
    call_end = call_start + launches["api_ns"].to_numpy()
    assert launch_columns(launches, "api_start_ns").tolist() == call_start.tolist()
    queue = launch_columns(launches, "queue_ns")
    assert queue[[0, 2]].tolist() == [20.0, 0.0] and np.isnan(queue[1])
    assert (launches["start_ns"].to_numpy() - call_end)[1] < 0
    assert launch_columns(launches, "kernel_ns").tolist() == [50, 60, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b_k", "a_k", "c<&>", "z"]),
                          st.integers(0, 10**10)), min_size=1, max_size=60))
def test_slow_launches_by_name_are_pandas_aggregates(rows: list[tuple[str, int]]) -> None:
    """Count, max and median per name from the name codes equal pandas' group-by (values,
    dtypes, index), and so does the count order that picks the five names listed."""
    from infraprof.analyses.launch import _slow_by_name
    from infraprof.tables import as_text_category

    slow = pd.DataFrame({"name": as_text_category(pd.Series([n for n, _ in rows])),
                         "latency_ns": np.array([v for _, v in rows], dtype=np.int64)})
    want = slow.groupby("name", observed=True)["latency_ns"].agg(["count", "max", "median"])
    want.index = pd.Index(want.index.astype(object), dtype=object, name="name")
    got = _slow_by_name(slow)
    pd.testing.assert_frame_equal(got, want)
    assert (got.sort_values("count", ascending=False).index.tolist()
            == want.sort_values("count", ascending=False).index.tolist())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b_k", "a_k", "c<&>", "z"]),
                          st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
                min_size=1, max_size=60),
       st.sampled_from([1, 1000, 2**40]), st.sampled_from([3, 1 << 20]))
def test_launch_summary_is_pandas_group_by(rows: list[tuple[str, int, int, int]],
                                           scale: int, block: int) -> None:
    """``launch_summary`` from the name codes (sums in ``bincount``, one derived column at
    a time) equals pandas' group-by of the derived columns bit for bit: the means, the
    queue count and mean (negative queue times left out), the latency percentiles, the
    order; ``scale`` 2**40 makes the sums exceed 2**53 (pandas' own group-by then),
    ``block`` 3 sums three rows at a time."""
    from unittest import mock

    from infraprof.analyses import group_stats
    from infraprof.analyses.launch import launch_columns, launch_summary
    from infraprof.tables import as_text_category

    launches = pd.DataFrame({
        "start_ns": np.array([s for _, s, _, _ in rows], dtype=np.int64) * scale,
        "name": as_text_category(pd.Series([n for n, *_ in rows]))})
    launches["end_ns"] = launches["start_ns"] + np.array([d for *_, d in rows]) * scale
    launches["latency_ns"] = np.array([lat for _, _, lat, _ in rows], dtype=np.int64) * scale
    launches["api_ns"] = np.array(list(reversed([lat for _, _, lat, _ in rows])),
                                  dtype=np.int64) * scale
    frame = pd.DataFrame({"name": launches["name"], "latency_ns": launches["latency_ns"], **{
        column: launch_columns(launches, column) for column in (
            "kernel_ns", "api_ns", "queue_ns")}})
    g = frame.groupby("name", observed=True)
    want = pd.DataFrame({
        "count": g.size(), "kernel_avg_ns": g["kernel_ns"].mean(),
        "api_avg_ns": g["api_ns"].mean(), "queue_avg_ns": g["queue_ns"].mean(),
        "queue_count": g["queue_ns"].count(), "latency_p50_ns": g["latency_ns"].median(),
        "latency_p99_ns": g["latency_ns"].quantile(0.99)})
    want.index = pd.Index(want.index.astype(object), dtype=object, name="name")
    want = want.reset_index().sort_values(["count", "name"], ascending=[False, True])
    if scale == 1:  # as kernel_launches holds them: latency and call time in int32
        launches = launches.astype({"latency_ns": np.int32, "api_ns": np.int32})
    with mock.patch.object(group_stats, "SUM_BLOCK", block):
        got = launch_summary(launches)
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_exact=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.one_of(st.integers(-2**63, 2**63 - 1),
                                                        st.integers(-50, 50))), max_size=60))
def test_sorted_by_code_is_the_lexsort(pairs: list[tuple[int, int]]) -> None:
    """Values ordered by code, then value, and each code's bounds: as ``np.lexsort``, for
    values whose range fits a packed key with the codes (one sort) and for any others
    (the whole int64 range: a stable sort by code, then each slice)."""
    from infraprof.analyses.group_stats import sorted_by_code

    codes = np.array([c for c, _ in pairs], dtype=np.int8)
    values = np.array([v for _, v in pairs], dtype=np.int64)
    kept = values.copy()
    ordered, bounds = sorted_by_code(codes, values, 7)
    order = np.lexsort((values, codes))
    assert ordered.tolist() == values[order].tolist()
    assert bounds.tolist() == [0, *np.cumsum(np.bincount(codes, minlength=7)).tolist()]
    assert values.tolist() == kept.tolist()  # the input is not modified


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b", "a<&>", "c"]), st.integers(0, 10**6)),
                min_size=1, max_size=50),
       st.sampled_from([1, 3, 2**33]))
def test_duration_stats_are_pandas_group_by(rows: list[tuple[str, int]], scale: int) -> None:
    """The per-name duration statistics (median from ``quantiles_by_code``; pandas' own
    median for durations of 2**52 ns or more) equal pandas' group-by of every statistic."""
    from infraprof.analyses.summary import STAT_COLUMNS, _duration_stats
    from infraprof.tables import as_text_category

    starts = np.arange(len(rows), dtype=np.int64) * 7
    frame = pd.DataFrame({"name": as_text_category(pd.Series([n for n, _ in rows])),
                          "start_ns": starts,
                          "end_ns": starts + np.array([d for _, d in rows]) * scale})
    dur = (frame["end_ns"] - frame["start_ns"]).rename("dur")
    want = dur.groupby(frame["name"].astype(object), sort=False).agg(
        ["count", "sum", "mean", "median", "min", "max", "std"]).reset_index()
    want.columns = ["name", *STAT_COLUMNS]
    want["std_ns"] = want["std_ns"].fillna(0.0)
    for column in ("count", "total_ns", "min_ns", "max_ns"):
        want[column] = want[column].astype("int64")
    want = want.sort_values(["total_ns", "name"], ascending=[False, True], kind="stable")
    got = _duration_stats(frame, ["name"])
    want = want.reset_index(drop=True)
    pd.testing.assert_frame_equal(got.drop(columns="std_ns"), want.drop(columns="std_ns"),
                                  check_exact=True)
    # the standard deviation: two-pass, against the exact one (rational arithmetic) and
    # pandas' running one, within a relative 1e-12
    durations = {name: [d * scale for n, d in rows if n == name] for name, _ in rows}
    exact = {name: _exact_std(values) for name, values in durations.items()}
    for name, std, pandas_std in zip(got["name"], got["std_ns"], want["std_ns"], strict=True):
        assert std == pytest.approx(exact[name], rel=1e-12, abs=1e-9)
        assert std == pytest.approx(pandas_std, rel=1e-12, abs=1e-9)


def _exact_std(values: list[int]) -> float:
    """The sample standard deviation from exact rational arithmetic (0 for one value)."""
    from fractions import Fraction

    if len(values) < 2:
        return 0.0
    mean = Fraction(sum(values), len(values))
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["cudaFree", "cudaMemcpy<&>", "x"]),
                          st.integers(0, 10**6)), min_size=1, max_size=40),
       st.sampled_from([1, 2**45]), st.sampled_from([2, 1 << 20]))
def test_site_totals_are_pandas_sums(rows: list[tuple[str, int]], scale: int,
                                     block: int) -> None:
    """Per API name: the call count and total time from exact block sums (pandas' integer
    sum where a float sum might not be exact) equal pandas' group-by."""
    from unittest import mock

    from infraprof.analyses import group_stats
    from infraprof.analyses.gap_findings import _site_totals
    from infraprof.tables import as_text_category

    starts = np.arange(len(rows), dtype=np.int64) * 3
    calls = pd.DataFrame({"name": as_text_category(pd.Series([n for n, _ in rows])),
                          "start_ns": starts,
                          "end_ns": starts + np.array([d for _, d in rows]) * scale})
    with mock.patch.object(group_stats, "SUM_BLOCK", block):
        count, total = _site_totals(calls)
    names = calls["name"].astype(object)
    want_total = (calls["end_ns"] - calls["start_ns"]).groupby(names).sum()
    assert count.to_dict() == names.value_counts().to_dict()
    assert {k: int(v) for k, v in total.items()} == {k: int(v) for k, v in want_total.items()}
    assert list(total.index) == sorted(set(names))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=80), st.integers(10, 14),
       st.sampled_from([np.int8, np.int16, np.int64]), st.integers(1, 9))
def test_counts_by_code_is_bincount(codes: list[int], count: int, width: type, block: int
                                    ) -> None:
    """A block of rows at a time (here a few rows), the counts ``np.bincount`` gives."""
    from infraprof.analyses import group_stats

    array = np.array(codes, dtype=width)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(group_stats, "SUM_BLOCK", block)
        got = group_stats.counts_by_code(array, count)
    assert got.tolist() == np.bincount(array.astype(np.int64), minlength=count).tolist()
