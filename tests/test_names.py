"""Integer codes of text columns equal pandas' factorize (order of first appearance), also
when equal strings are different objects."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.api_classes import api_categories, api_category
from infraprof.analyses.names import sorted_text_codes, text_codes

NAMES = st.lists(st.sampled_from(["b", "a", "void k<int>(float*)", "", "ä", "a\x00b"]),
                 max_size=60)


def _fresh(values: list[str]) -> pd.Series:
    """The values as distinct ``str`` objects (as a Kineto trace or a join may hold them)."""
    return pd.Series(["".join(list(v)) + "" for v in values], dtype=object)


@given(NAMES, st.booleans())
@settings(max_examples=60, deadline=None)
def test_text_codes_equal_factorize(values: list[str], fresh: bool) -> None:
    series = _fresh(values) if fresh else pd.Series(values, dtype=object)
    codes, uniques = text_codes(series)
    expected_codes, expected_uniques = pd.factorize(series)
    assert codes.tolist() == expected_codes.tolist()
    assert list(uniques) == list(expected_uniques)


@given(NAMES)
@settings(max_examples=60, deadline=None)
def test_sorted_codes_follow_a_sorted_groupby(values: list[str]) -> None:
    series = _fresh(values).rename("name")
    codes, index = sorted_text_codes(series)
    assert list(index[codes]) == values
    assert list(index) == sorted(set(values))
    sizes = series.to_frame().groupby("name").size()
    assert list(sizes.index) == list(index)
    assert pd.Series(codes).value_counts().sort_index().tolist() == sizes.tolist()


def test_api_categories_by_codes_match_a_map_of_every_row() -> None:
    """``api_categories`` classifies each distinct name once through integer codes: the
    same category per row as mapping every row's text (nulls as ``""``)."""
    names = pd.Series(["cudaStreamSynchronize", None, "cudaLaunchKernel",
                       "".join(["cudaStream", "Synchronize"]), "cudaMemcpy", ""], dtype=object)
    text = names.fillna("").astype(str)
    expected = [api_category(str(name)) for name in text]
    assert api_categories(names).tolist() == expected
    assert api_categories(names.iloc[:0]).tolist() == []
