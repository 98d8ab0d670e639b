"""Text columns as Categoricals (``tables.text_category`` and its helpers): ``coalesce_text``
and ``as_text_category`` give the values and the canonical form (sorted categories, every
one used) that plain pandas operations on object columns define, shortcuts included."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof import tables

TEXTS = st.lists(st.one_of(st.none(), st.sampled_from(["b", "a", "c<&>", "", "a\n"])),
                 min_size=0, max_size=30)


def _categorical(values: list[str | None], canonical: bool) -> pd.Series:
    """``values`` as a text category (canonical) or as pandas' own Categorical (categories
    in order of appearance, an unused one added)."""
    if canonical:
        return tables.as_text_category(pd.Series(values, dtype=object))
    present = list(dict.fromkeys(v for v in values if v is not None))
    return pd.Series(pd.Categorical(values, categories=[*present[::-1], "zz-unused"]))


def _is_canonical(column: pd.Series) -> bool:
    categories = list(column.cat.categories)
    codes = column.cat.codes.to_numpy()
    return categories == sorted(set(categories)) and set(codes[codes >= 0]) == set(
        range(len(categories)))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), canonical=st.booleans())
def test_coalesce_text_is_where_notna(data: st.DataObject, canonical: bool) -> None:
    """``first`` where it has a value, else ``second``; canonical; ``first`` itself (no new
    column) when it has no null and is canonical already."""
    first_values = data.draw(TEXTS)
    second_values = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(["x", "a"])),
                                       min_size=len(first_values),
                                       max_size=len(first_values)))
    first = _categorical(first_values, canonical)
    second = pd.Series(second_values, dtype=object)
    out = tables.coalesce_text(first, second)
    want = [f if f is not None else s for f, s in zip(first_values, second_values, strict=True)]
    assert tables.plain_text(out).tolist() == want
    assert _is_canonical(out)
    if canonical and None not in first_values:
        assert out is first


@settings(max_examples=200, deadline=None)
@given(values=TEXTS, canonical=st.booleans())
def test_as_text_category_is_canonical(values: list[str | None], canonical: bool) -> None:
    """Any Categorical or object column comes back canonical with the same texts; a
    canonical one is returned as it is."""
    column = _categorical(values, canonical)
    out = tables.as_text_category(column)
    assert tables.plain_text(out).tolist() == values
    assert _is_canonical(out)
    assert (out is column) == canonical


@settings(max_examples=200, deadline=None)
@given(codes=st.lists(st.integers(-1, 9), max_size=40), count=st.integers(0, 10),
       width=st.sampled_from([np.int8, np.int16, np.int32, np.int64]))
def test_every_code_used_is_the_bincount_rule(codes: list[int], count: int,
                                               width: type[np.signedinteger]) -> None:
    """The presence table answers as ``np.bincount`` of the non-null codes does."""
    array = np.array([c for c in codes if c < count], dtype=width)
    valid = array[array >= 0].astype(np.int64)
    want = bool(np.bincount(valid, minlength=count)[:count].all()) if count else True
    assert tables._every_code_used(array, count) == want
