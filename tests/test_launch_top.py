"""``launch._largest_first`` against the full stable descending sort it shortcuts (equal
latencies: the earlier kernel first, whatever the sort implementation does with ties)."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
