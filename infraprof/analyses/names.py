"""Integer codes for text columns (kernel and API names), for cheap groupbys.

pandas factorizes an object column of strings by hashing each row's UTF-8 bytes; for long
demangled C++ kernel names that costs ~1 µs per row, every groupby. The readers give every row
of one name the same ``str`` object, so :func:`text_codes` factorizes the objects' identities
(integers) and then only the few distinct objects by value: the same codes as
``pd.factorize(values)`` (order of first appearance), exact even when equal strings are
different objects.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

Codes = npt.NDArray[np.int64]


def text_codes(values: pd.Series) -> tuple[Codes, npt.NDArray[np.object_]]:
    """``(codes, uniques)`` as ``pd.factorize(values)`` for a column without nulls: codes
    number the distinct values in order of first appearance; ``uniques[codes]`` equals
    ``values``."""
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


def sorted_text_codes(values: pd.Series) -> tuple[Codes, pd.Index]:
    """:func:`text_codes` numbered in ascending text order instead (the order in which a
    sorted ``groupby`` lists its groups): ``(codes, index)``, ``index[codes]`` equals
    ``values``; ``index`` is an object Index named as ``values``."""
    codes, uniques = text_codes(values)
    order = np.array(sorted(range(uniques.size), key=lambda i: uniques[i]), dtype=np.int64)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    sorted_codes: Codes = rank[codes]
    return sorted_codes, pd.Index(uniques[order], dtype=object, name=values.name)
