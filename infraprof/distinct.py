"""Sorted distinct values of integer arrays, by sorting rather than hashing.

numpy 2.3 and later answer a plain ``np.unique(values)`` from a hash table, whose cost grows
faster than the rows for integer arrays of many distinct values on this machine (measured
with numpy 2.4: 4 M distinct int64 timestamps 2.7 s, against 0.01 s for a stable sort, which
is a merge of presorted runs: the keys analyses build are concatenations of sorted columns).
:func:`distinct` gives the same values through a sort.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_HASHED_WIDTH = 2
"""Integers of at most this many bytes keep ``np.unique`` (few possible values: its
hash table stays small)."""


def distinct(values: npt.ArrayLike) -> np.ndarray:
    """``np.unique(values)`` (the sorted distinct values of a 1-D array): for integers wider
    than two bytes from one stable sort and a comparison of neighbours; other dtypes through
    ``np.unique`` itself."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu" or array.dtype.itemsize <= _HASHED_WIDTH or array.ndim != 1:
        return np.unique(array)
    ordered = np.sort(array, kind="stable")
    if ordered.size < 2:
        return ordered
    first = np.empty(ordered.size, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]
