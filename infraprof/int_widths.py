"""Integer columns in the narrowest signed type that holds their values.

The ids of the large trace tables (device, stream, context, correlation, process and thread
ids: ``"int"``/``"Int"`` in :mod:`infraprof.tables`' specs) and the analyses' codes are
held in one, two or four bytes where their values allow (at 10 M kernels an ``int8``
device id is 10 MB where ``int64`` is 80 MB). A consumer widens (``to_numpy(np.int64)``)
before arithmetic that could leave the type.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd


def narrowest_int(low: int, high: int) -> type[np.signedinteger[Any]]:
    """The narrowest signed integer type holding every value from ``low`` to ``high``."""
    for width in (np.int8, np.int16, np.int32):
        if np.iinfo(width).min <= low and high <= np.iinfo(width).max:
            return width
    return np.int64


def narrowest_array(values: np.ndarray) -> np.ndarray:
    """Integer ``values`` in the narrowest signed type holding them (:func:`narrowest_int`;
    ``int64`` when empty); ``values`` itself when that is their type already."""
    width = narrowest_int(int(values.min()), int(values.max())) if len(values) else np.int64
    return values.astype(width, copy=False)


def narrowed(column: pd.Series, nullable: bool = False) -> pd.Series:
    """The integers of ``column`` in the narrowest signed type holding them
    (:func:`narrowest_int`; ``int64`` when empty). ``nullable``: a pandas nullable integer
    column (``Int8`` … ``Int64``, nulls kept; ``Int8`` when every value is null); otherwise a
    numpy one. Values are converted as ``astype("Int64")``/``astype("int64")`` would (a
    null in a non-nullable column raises ``ValueError``)."""
    integers = isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu"
    if nullable and not integers:
        masked = column.astype("Int64")
        nulls = np.asarray(masked.isna(), dtype=bool)
        values = masked.to_numpy(dtype=np.int64, na_value=0)
        present = values[~nulls]
        width = (narrowest_int(int(present.min()), int(present.max())) if len(present)
                 else np.int8 if len(values) else np.int64)
        plain = values.astype(width, copy=False)
    else:
        plain = narrowest_array(column.to_numpy() if integers and column.dtype.kind == "i"
                                else column.to_numpy(dtype=np.int64) if integers
                                else column.astype(np.int64).to_numpy())
        nulls = None
    if not nullable:
        return cast(pd.Series, pd.Series(plain, index=column.index))
    mask = np.zeros(len(plain), dtype=bool) if nulls is None else nulls
    return cast(pd.Series, pd.Series(pd.arrays.IntegerArray(plain, mask), index=column.index))


def plain_integers(column: pd.Series) -> bool:
    """Whether ``column`` holds numpy integers that convert to int64 without loss (no
    nullable extension dtype, no uint64)."""
    dtype = column.dtype
    return isinstance(dtype, np.dtype) and (dtype.kind == "i" or (
        dtype.kind == "u" and dtype.itemsize < 8))
