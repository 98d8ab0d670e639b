"""Shortcuts that skip work when rows are in order or unique already must give exactly what
the full operation gives: ``stable_order`` (``ORDER BY`` of a key), ``first_per_key``
(``drop_duplicates(keep="first")``) and the runtime table's (start, longest first) order."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.readers.row_order import by_start_longest_first, stable_order
from infraprof.tables import first_per_key

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
SMALL = st.integers(0, 4)  # few distinct values: ties and repeats are common


@SETTINGS
@given(st.lists(st.integers(-3, 3), max_size=30))
def test_stable_order_is_a_stable_argsort(keys: list[int]) -> None:
    values = np.array(keys, dtype=np.int64)
    order = stable_order(values)
    expected = np.argsort(values, kind="stable")
    got = np.arange(len(values)) if order is None else order
    assert np.array_equal(got, expected)
    if len(values) > 1 and np.all(np.diff(values) >= 0):
        assert order is None  # sorted input: nothing to reorder


@SETTINGS
@given(st.lists(st.tuples(SMALL, SMALL, SMALL), max_size=30))
def test_first_per_key_is_drop_duplicates(rows: list[tuple[int, int, int]]) -> None:
    frame = pd.DataFrame(rows, columns=["pid", "name", "correlation_id"], dtype="int64")
    expected = frame.drop_duplicates(["pid", "correlation_id"], keep="first")
    pd.testing.assert_frame_equal(first_per_key(frame, ["pid", "correlation_id"]), expected)


@SETTINGS
@given(st.lists(st.tuples(SMALL, SMALL), max_size=30), st.booleans())
def test_start_then_longest_first_is_the_stable_sort(pairs: list[tuple[int, int]],
                                                     presorted: bool) -> None:
    frame = pd.DataFrame(pairs, columns=["start_ns", "end_ns"], dtype="int64")
    if presorted:  # as the reader gives it: sorted by start only
        frame = frame.sort_values("start_ns", kind="stable").reset_index(drop=True)
    frame["row"] = np.arange(len(frame))
    expected = frame.sort_values(["start_ns", "end_ns"], ascending=[True, False],
                                 kind="stable")
    pd.testing.assert_frame_equal(by_start_longest_first(frame), expected)


@SETTINGS
@given(st.lists(st.tuples(SMALL, SMALL), max_size=30))
def test_start_end_order_is_the_lexsort(pairs: list[tuple[int, int]]) -> None:
    from infraprof.model.trace import _start_end_order

    start = np.array([p[0] for p in pairs], dtype=np.int64)
    end = np.array([p[1] for p in pairs], dtype=np.int64)
    order = _start_end_order(start, end)
    expected = np.lexsort((end, start))
    assert np.array_equal(np.arange(len(start)) if order is None else order, expected)


@SETTINGS
@given(st.lists(st.integers(0, 50), max_size=40), st.sampled_from([0, 2**40, -5]))
def test_distinct_ids_is_np_unique(ids: list[int], shift: int) -> None:
    from infraprof.readers.row_order import distinct_ids

    values = np.array(ids, dtype=np.int64) + shift  # shifted: the sorting fallback
    distinct, inverse = distinct_ids(values)
    expected, expected_inverse = np.unique(values, return_inverse=True)
    assert np.array_equal(distinct, expected) and distinct.dtype == np.int64
    assert np.array_equal(inverse, expected_inverse.reshape(-1))


def test_first_per_key_increasing_and_nullable() -> None:
    frame = pd.DataFrame({"pid": [1, 1, 2], "correlation_id": pd.array([3, 5, 9], "Int64")})
    assert first_per_key(frame, ["pid", "correlation_id"]) is frame  # increasing: unique
    frame = pd.DataFrame({"pid": [1, 2, 1], "correlation_id": pd.array([5, None, 5], "Int64")})
    expected = frame.drop_duplicates(["pid", "correlation_id"], keep="first")
    pd.testing.assert_frame_equal(first_per_key(frame, ["pid", "correlation_id"]), expected)


def test_op_columns_are_gpu_ops_rows_in_table_order() -> None:
    """``Trace.op_columns``: the rows of ``gpu_ops`` (same multiset), kernels first, in table
    order; the kernel rows are the first ``len(kernels)``."""
    from pathlib import Path

    from infraprof.inputs import load_input

    trace = load_input(Path(__file__).parent.parent / "sample_traces" /
                       "demo_sync_heavy.sqlite", None, use_cache=False).trace
    columns = ("pid", "start_ns", "end_ns", "correlation_id")
    got = trace.op_columns(*columns)
    ops = trace.gpu_ops()
    assert len(trace.memcpy) and len(trace.kernels)
    rows = sorted(zip(*(got[c].tolist() for c in columns), strict=True))
    assert rows == sorted(zip(*(ops[c].tolist() for c in columns), strict=True))
    n = len(trace.kernels)
    assert got["start_ns"][:n].tolist() == trace.kernels["start_ns"].tolist()
    assert got["start_ns"][n:n + len(trace.memcpy)].tolist() == trace.memcpy["start_ns"].tolist()


@given(st.sets(st.integers(-50, 50), max_size=20), st.lists(st.integers(-60, 60), max_size=30),
       st.randoms(use_true_random=False))
def test_positions_of_is_a_dict_lookup(keys: set[int], wanted: list[int], rnd: object) -> None:
    """``positions_of``: each wanted value's position in the distinct keys (any order), 0 and
    not found where absent."""
    from infraprof.tables import positions_of

    order = sorted(keys)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    where = {k: i for i, k in enumerate(order)}
    at, found = positions_of(np.array(order, dtype=np.int64), np.array(wanted, dtype=np.int64))
    assert found.tolist() == [w in where for w in wanted]
    assert at.tolist() == [where.get(w, 0) for w in wanted]
