"""The row-number launch join (``model.correlation.join_launch_calls``) against the pandas
merge it replaced, and ``tables.column_view`` (no copy, copy-on-write)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.memory import release_free_memory
from infraprof.model import correlation
from infraprof.tables import as_text_category, column_view

KEYS = st.tuples(st.sampled_from([0, 7, 12, 2**40]), st.integers(-5, 40))
WIDE_KEYS = st.tuples(st.sampled_from([0, 7, 2**40, 2**62]),
                      st.sampled_from([-2**62, -1, 0, 5, 2**62]))


def _frames(ops: list[tuple[int, int]], calls: list[tuple[int, int]],
            categorical: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    op_frame = pd.DataFrame({"pid": [p for p, _ in ops], "correlation_id": [c for _, c in ops],
                             "start_ns": np.arange(len(ops))}, dtype="int64")
    n = len(calls)
    call_frame = pd.DataFrame({"pid": [p for p, _ in calls],
                               "correlation_id": [c for _, c in calls],
                               "start_ns": np.arange(n) * 10, "end_ns": np.arange(n) * 10 + 5,
                               "global_tid": np.arange(n) + 100, "tid": np.arange(n) + 7},
                              dtype="int64")
    names = pd.Series([f"call{i % 3}" for i in range(n)], dtype=object)
    call_frame["name"] = as_text_category(names) if categorical else names  # as the readers
    return op_frame, call_frame


def _check(ops: list[tuple[int, int]], calls: list[tuple[int, int]],
           how: Literal["left", "inner"], categorical: bool = False) -> None:
    op_frame, call_frame = _frames(ops, calls, categorical)
    for columns in (correlation.DEFAULT_CALL_COLUMNS, ("tid", "start_ns")):
        expected = op_frame.merge(correlation.launch_calls(call_frame, columns),
                                  on=correlation.JOIN_KEY, how=how)
        got = correlation.join_launch_calls(op_frame, call_frame, columns, how=how)
        pd.testing.assert_frame_equal(got, expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(KEYS, max_size=30), st.lists(KEYS, max_size=30),
       st.sampled_from(["left", "inner"]), st.booleans(), st.booleans())
def test_join_equals_merge(ops: list[tuple[int, int]], calls: list[tuple[int, int]],
                           how: Literal["left", "inner"], categorical: bool,
                           in_key_order: bool) -> None:
    """Same rows, order, columns and dtypes as the merge (duplicate calls: the first wins;
    unmatched operations: NaN and float64 with ``left``), also for the readers' Categorical
    name column (gathered by codes), and for calls already in key order (no sort)."""
    _check(ops, sorted(calls) if in_key_order else calls, how, categorical)


@settings(max_examples=100, deadline=None)
@given(st.lists(WIDE_KEYS, max_size=20), st.lists(WIDE_KEYS, max_size=20),
       st.sampled_from(["left", "inner"]))
def test_join_with_keys_too_wide_to_pack(ops: list[tuple[int, int]],
                                         calls: list[tuple[int, int]],
                                         how: Literal["left", "inner"]) -> None:
    _check(ops, calls, how)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(KEYS, WIDE_KEYS), max_size=25),
       st.lists(st.one_of(KEYS, WIDE_KEYS), max_size=25))
def test_launch_rows_are_the_merge_rows(ops: list[tuple[int, int]],
                                        calls: list[tuple[int, int]]) -> None:
    """``launch_rows``: each operation's first call with its key (-1: none), by packed keys
    or, when they do not pack, by a merge: the rows a merge with a row number gives; the
    same when the operations are looked up a few at a time (``LOOKUP_BLOCK``)."""
    from infraprof.int_widths import narrowed

    op_frame, call_frame = _frames(ops, calls)
    first: dict[tuple[int, int], int] = {}
    for row, key in enumerate(calls):
        first.setdefault(key, row)
    want = [first.get(key, -1) for key in ops]
    # int64 ids, and the ids in their narrowest types as the tables hold them (int32 keys)
    narrow_ops, narrow_calls = (frame.assign(**{column: narrowed(frame[column])
                                                for column in correlation.JOIN_KEY})
                                for frame in (op_frame, call_frame))
    for op_table, call_table in ((op_frame, call_frame), (narrow_ops, narrow_calls)):
        assert correlation.launch_rows(op_table, call_table).tolist() == want
        whole = correlation.LOOKUP_BLOCK
        try:
            correlation.LOOKUP_BLOCK = 3
            assert correlation.launch_rows(op_table, call_table).tolist() == want
        finally:
            correlation.LOOKUP_BLOCK = whole


def test_call_rows_first_row_wins() -> None:
    ops, calls = _frames([(1, 5), (1, 6), (2, 5)], [(1, 6), (1, 5), (1, 5), (3, 5)])
    rows = correlation.call_rows(ops, calls)
    assert rows is not None
    assert rows.tolist() == [1, 0, -1]


def test_column_view_shares_values_and_copies_on_write() -> None:
    frame = pd.DataFrame({"a": np.arange(5), "b": np.arange(5) * 2, "c": list("vwxyz")}).copy()
    view = column_view(frame, ["a", "c"])
    assert list(view.columns) == ["a", "c"]
    assert np.shares_memory(view["a"].to_numpy(), frame["a"].to_numpy())
    view.loc[0, "a"] = 99
    assert frame.loc[0, "a"] == 0
    release_free_memory()  # a no-op or malloc_trim: never raises
