"""Integer codes of text columns equal pandas' factorize (order of first appearance), also
when equal strings are different objects; name columns as Categoricals of sorted texts
(``infraprof.tables.text_category`` and its helpers) hold the same values as object columns."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof import tables as table_schema
from infraprof.analyses.api_classes import api_categories, api_category
from infraprof.analyses.names import (
    factorized_text,
    first_rows_by_code,
    sorted_text_codes,
    text_codes,
)
from infraprof.readers.nsys_sqlite import _Strings
from infraprof.readers.sqlite_db import SqliteFile

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


# --- name columns as Categoricals (infraprof.tables.text_category) ---------------------------

TEXTS = st.lists(st.one_of(st.none(), st.sampled_from(["b", "a", "ä", "", "a\x00b", "B"])),
                 min_size=0, max_size=8)


def _as_object(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype=object)


@given(TEXTS, st.data())
@settings(max_examples=80, deadline=None)
def test_text_category_holds_sorted_distinct_texts(texts: list[str | None],
                                                   data: st.DataObject) -> None:
    """Rows ``texts[code]`` (-1: null); equal texts are one category, categories sorted as
    Python sorts the strings, unused ones dropped, an object Index."""
    codes = data.draw(st.lists(st.integers(-1, len(texts) - 1), max_size=30))
    column = table_schema.text_category(np.array(codes, dtype=np.int64), texts)
    expected = [texts[c] if c >= 0 else None for c in codes]
    assert [None if pd.isna(v) else v for v in column.tolist()] == expected
    assert list(column.cat.categories) == sorted({t for t in expected if t is not None})
    assert column.cat.categories.dtype == object
    assert table_schema.as_text_category(column) is column
    again = table_schema.as_text_category(_as_object(expected))
    assert again.cat.codes.tolist() == column.cat.codes.tolist()


@given(TEXTS, st.data(), st.sampled_from([np.int8, np.int16, np.int32, np.int64]))
@settings(max_examples=80, deadline=None)
def test_text_category_takes_any_integer_codes(texts: list[str | None], data: st.DataObject,
                                               dtype: type) -> None:
    """Codes of any signed integer width (as the readers' Categoricals hold them); every
    negative code is a null, not only -1."""
    codes = data.draw(st.lists(st.integers(-3, len(texts) - 1), max_size=30))
    column = table_schema.text_category(np.array(codes, dtype=dtype), texts)
    expected = [texts[c] if c >= 0 else None for c in codes]
    assert [None if pd.isna(v) else v for v in column.tolist()] == expected
    assert list(column.cat.categories) == sorted({t for t in expected if t is not None})


@given(TEXTS, TEXTS)
@settings(max_examples=80, deadline=None)
def test_fill_coalesce_map_match_object_columns(first: list[str | None],
                                                second: list[str | None]) -> None:
    size = min(len(first), len(second))
    a, b = _as_object(first[:size]), _as_object(second[:size])
    ca, cb = table_schema.as_text_category(a), table_schema.as_text_category(b)
    filled = table_schema.fill_text(ca, "<unknown>")
    assert filled.tolist() == a.fillna("<unknown>").tolist()
    assert list(filled.cat.categories) == sorted(set(filled.tolist()))
    both = table_schema.coalesce_text(ca, cb)
    assert [None if pd.isna(v) else v for v in both.tolist()] == \
        a.where(a.notna(), b).tolist()
    upper = table_schema.map_text(ca, lambda text: text.upper())
    assert [None if pd.isna(v) else v for v in upper.tolist()] == \
        [None if v is None else v.upper() for v in a.tolist()]
    assert list(upper.cat.categories) == sorted(set(upper.dropna().tolist()))


@given(NAMES, st.booleans())
@settings(max_examples=60, deadline=None)
def test_codes_of_a_categorical_equal_the_object_path(values: list[str], nulls: bool) -> None:
    """text_codes, sorted_text_codes and factorized_text give the same codes and texts for a
    Categorical (its codes used directly) as for the object column."""
    series = pd.Series([None if nulls and i % 3 == 0 else v for i, v in enumerate(values)],
                       dtype=object, name="name")
    category = table_schema.as_text_category(series)
    codes, texts = factorized_text(category)
    expected_codes, expected_texts = factorized_text(series)
    assert codes.tolist() == expected_codes.tolist()
    assert [str(t) for t in texts] == [str(t) for t in expected_texts]  # a null: NaN in both
    full = pd.Series(values, dtype=object, name="name")
    for function in (text_codes, sorted_text_codes):
        got_codes, got_texts = function(table_schema.as_text_category(full))
        want_codes, want_texts = function(full)
        assert got_codes.tolist() == want_codes.tolist()
        assert list(got_texts) == list(want_texts)


class _NoStringTable:
    def __init__(self) -> None:
        self.tables: set[str] = set()


def test_reader_strings_become_one_sorted_category_per_text() -> None:
    """``_Strings.map``: equal strings under different ids are one category; null and
    unknown ids are null; the categories are sorted."""
    strings = _Strings(cast(SqliteFile, _NoStringTable()))
    strings.cache.update({7: "b", 3: "a", 9: "b", 4: "ä"})
    ids = pd.Series([7, 3, None, 9, 12, 4, 7], dtype="Int64")
    names = strings.map(ids)
    assert [None if pd.isna(v) else v for v in names.tolist()] == \
        ["b", "a", None, "b", None, "ä", "b"]
    assert list(names.cat.categories) == ["a", "b", "ä"]
    assert names.cat.codes.tolist() == [1, 0, -1, 1, -1, 2, 1]


def test_conform_makes_text_columns_categoricals() -> None:
    frame = table_schema.conform(pd.DataFrame({
        "start_ns": [1, 2], "end_ns": [2, 3], "global_tid": [5, 5], "pid": [0, 0],
        "tid": [5, 5], "name": ["z", None]}), table_schema.OSRT)
    assert isinstance(frame["name"].dtype, pd.CategoricalDtype)
    assert list(frame["name"].cat.categories) == ["z"]
    assert frame["name"].isna().tolist() == [False, True]
    empty = table_schema.empty(table_schema.KERNELS)
    assert isinstance(empty["name"].dtype, pd.CategoricalDtype)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["cudaMemcpy", "cudaMemcpyAsync", "", "ncclAllReduce", None]),
                max_size=40), st.booleans())
def test_map_distinct_is_the_per_row_map(values: list[str | None], categorical: bool) -> None:
    """Once per distinct value, nulls passed as None: equal to ``Series.map`` row by row over
    the same values as ``plain_text`` gives them (``str`` or None), index kept."""
    calls: list[str | None] = []

    def transform(text: str | None) -> str:
        calls.append(text)
        return f"<{text}>"
    index = np.arange(len(values)) * 3
    series = (pd.Series(pd.Categorical(values), index=index) if categorical
              else pd.Series(values, index=index, dtype=object))
    got = table_schema.map_distinct(series, transform)
    expected = table_schema.plain_text(series).map(lambda text: f"<{text}>")
    assert got.dtype == object and got.index.equals(series.index)
    assert got.tolist() == expected.tolist()
    assert len(calls) == len(set(values))


@given(st.integers(-2**63, 2**63 - 1), st.integers(0, 2**64))
def test_narrowest_int_holds_the_range_and_no_narrower_does(low: int, extra: int) -> None:
    """``int_widths.narrowest_int``: the range ``low .. high`` fits the type chosen, and does
    not fit the next narrower one."""
    from infraprof.int_widths import narrowest_int

    high = min(low + extra, 2**63 - 1)
    chosen = np.iinfo(narrowest_int(low, high))
    assert chosen.min <= low and high <= chosen.max
    narrower = {16: np.int8, 32: np.int16, 64: np.int32}.get(chosen.bits)
    if narrower is not None:
        assert low < np.iinfo(narrower).min or high > np.iinfo(narrower).max


def test_plain_integers() -> None:
    """Numpy integers that convert to int64 without loss; not nullable or uint64 columns."""
    from infraprof.int_widths import plain_integers

    assert all(plain_integers(pd.Series([1], dtype=d)) for d in ("int8", "int64", "uint32"))
    assert not any(plain_integers(pd.Series([1], dtype=d)) for d in ("Int64", "uint64",
                                                                       "float64", "object"))


@given(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), max_size=30),
       st.booleans())
def test_narrowed_keeps_every_value_in_the_narrowest_type(values: list[int | None],
                                                           nullable: bool) -> None:
    """``int_widths.narrowed``: the same integers (and nulls, for a nullable column) in the
    narrowest signed type holding them; int64 when empty, Int8 when every value is null;
    a null in a non-nullable column raises as ``astype("int64")`` does."""
    from infraprof.int_widths import narrowed, narrowest_int

    column = pd.Series(values, dtype="Int64", index=np.arange(len(values)) * 2)
    present = [v for v in values if v is not None]
    if not nullable and len(present) < len(values):
        with pytest.raises(ValueError):
            narrowed(column)
        return
    got = narrowed(column if nullable else column.astype("int64"), nullable=nullable)
    width = (np.dtype(narrowest_int(min(present), max(present))) if present
             else np.dtype(np.int8 if values else np.int64))
    assert got.index.equals(column.index)
    if nullable:
        assert str(got.dtype) == width.name.capitalize()
        assert [None if pd.isna(v) else int(v) for v in got] == values
    else:
        assert got.dtype == width and got.tolist() == values


def test_narrowed_converts_as_astype_does() -> None:
    """Floats holding integers and NaN (a column built from records with a missing key)
    become a nullable column; a NaN in a non-nullable one raises."""
    from infraprof.int_widths import narrowed

    got = narrowed(pd.Series([1.0, np.nan, 300.0]), nullable=True)
    assert str(got.dtype) == "Int16" and got.isna().tolist() == [False, True, False]
    assert narrowed(pd.Series([2.0, 5.0])).dtype == np.int8
    with pytest.raises(ValueError):
        narrowed(pd.Series([1.0, np.nan]))


@given(st.lists(st.integers(0, 6), max_size=60))
def test_first_rows_by_code_are_uniques_first_rows(values: list[int]) -> None:
    """For codes numbered by first appearance (``pd.factorize``), the rows of each code's
    first appearance, in code order, as ``np.unique(..., return_index=True)`` gives them."""
    codes, _ = pd.factorize(np.array(values, dtype=np.int64))
    want = np.unique(codes, return_index=True)[1]
    assert first_rows_by_code(codes).tolist() == want.tolist()
