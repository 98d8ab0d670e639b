"""Integer codes for text columns (kernel and API names), for cheap groupbys.

pandas factorizes an object column of strings by hashing each row's UTF-8 bytes; for long
demangled C++ kernel names that costs ~1 µs per row, every groupby. The readers give every row
of one name the same ``str`` object, so :func:`text_codes` factorizes the objects' identities
(integers) and then only the few distinct objects by value: the same codes as
``pd.factorize(values)`` (order of first appearance), exact even when equal strings are
different objects. A Categorical column (the nsys reader's name columns,
:func:`infraprof.tables.text_category`) already holds codes: they are used directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.int_widths import narrowest_int
from infraprof.tables import as_text_category, codes_present

Codes = npt.NDArray[np.int64]


def text_codes(values: pd.Series) -> tuple[Codes, npt.NDArray[np.object_]]:
    """``(codes, uniques)`` as ``pd.factorize(values)`` for a column without nulls: codes
    number the distinct values in order of first appearance; ``uniques[codes]`` equals
    ``values``. A Categorical's codes are renumbered (an integer factorize, no hashing of
    texts)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        by_category, used = pd.factorize(values.cat.codes.to_numpy())
        texts = np.asarray(values.cat.categories, dtype=object)
        return by_category.astype(np.int64, copy=False), texts[used]
    objects = values.to_numpy(dtype=object)
    if objects.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=object)
    identities = np.fromiter(map(id, objects), dtype=np.int64, count=objects.size)
    by_object, _ = pd.factorize(identities)
    # first row of each object: codes number objects by first appearance, so the first
    # occurrences come in code order
    first_rows = pd.Series(by_object).drop_duplicates().index.to_numpy()
    by_value, uniques = pd.factorize(pd.Series(objects[first_rows], dtype=object))
    codes: Codes = by_value.astype(np.int64)[by_object]
    return codes, np.asarray(uniques, dtype=object)


def first_rows_by_code(codes: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.intp]:
    """The row of each code's first appearance, in code order, for codes numbered by first
    appearance (:func:`text_codes`, ``pd.factorize``): the rows where the running maximum
    grows (``np.unique(codes, return_index=True)[1]`` without its sort). For keys numbered
    otherwise: :func:`infraprof.analyses.gap_table.first_appearances`."""
    if not codes.size:
        return np.empty(0, dtype=np.intp)
    running = np.maximum.accumulate(codes)
    grows = np.empty(codes.size, dtype=bool)
    grows[0] = True
    np.greater(running[1:], running[:-1], out=grows[1:])
    return np.flatnonzero(grows)


def factorized_text(values: pd.Series) -> tuple[Codes, npt.NDArray[np.object_]]:
    """``pd.factorize(values.to_numpy(object), use_na_sentinel=False)`` of a text column that
    may hold nulls: codes in order of first appearance, a null is a value of its own (NaN in
    ``uniques``, as pandas gives). A Categorical's codes are renumbered (no hashing of
    texts)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes, used = pd.factorize(values.cat.codes.to_numpy())
        texts = np.array([*values.cat.categories, np.nan], dtype=object)  # code -1: NaN
        return codes.astype(np.int64), texts[used]
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def sorted_text_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """:func:`text_codes` numbered in ascending text order instead (the order in which a
    sorted ``groupby`` lists its groups): ``(codes, index)``, ``index[codes]`` equals
    ``values``; ``index`` is an object Index named as ``values``. A Categorical's categories
    are already sorted: its codes are only renumbered over the categories present, in the
    narrowest integer type (one byte for a few hundred names: 70 MB less than int64 at
    10 M rows); other columns' codes are int64."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = as_text_category(values)  # sorted categories (the readers' already are)
        category_codes = values.cat.codes.to_numpy()  # the Categorical's own width
        categories = values.cat.categories
        present = codes_present(category_codes, len(categories))
        kept = np.flatnonzero(present)
        renumber = (np.cumsum(present, dtype=np.int64) - 1).astype(
            narrowest_int(-1, max(len(kept) - 1, 0)))
        return renumber[category_codes], pd.Index(np.asarray(categories, dtype=object)[kept],
                                                  dtype=object, name=values.name)
    codes, uniques = text_codes(values)
    order = np.array(sorted(range(uniques.size), key=lambda i: uniques[i]), dtype=np.int64)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    sorted_codes: Codes = rank[codes]
    return sorted_codes, pd.Index(uniques[order], dtype=object, name=values.name)
