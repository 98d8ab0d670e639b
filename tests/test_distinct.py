"""``distinct.distinct``: ``np.unique`` through a sort, for every integer width and others."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.distinct import distinct

_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.float64, np.bool_]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**7), 2**7 - 1), max_size=60), st.sampled_from(_DTYPES),
       st.integers(0, 2**40))
def test_distinct_is_np_unique(values: list[int], dtype: type, scale: int) -> None:
    """The sorted distinct values and their dtype, as ``np.unique`` gives them (wide
    integers spread over their range by ``scale``; narrow ones and other dtypes as is)."""
    array = np.array(values).astype(dtype)
    if np.dtype(dtype).itemsize >= 4 and np.dtype(dtype).kind in "iu":
        array = (np.abs(np.array(values, dtype=np.int64)) * (scale % 2**20 + 1)).astype(dtype)
    got, want = distinct(array), np.unique(array)
    assert got.dtype == want.dtype
    assert got.tolist() == want.tolist()


def test_distinct_of_concatenated_sorted_runs() -> None:
    """Keys built from sorted columns (as the host painting's): many distinct int64 values
    in a few sorted runs, the case where a hash table is slow."""
    base = np.cumsum(np.full(50_000, 7, dtype=np.int64))
    keys = np.concatenate([base, base + 3, base + 7, base[::3]])
    assert distinct(keys).tolist() == np.unique(keys).tolist()
    assert distinct(np.empty(0, dtype=np.int64)).size == 0
