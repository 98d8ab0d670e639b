"""Integer codes of text columns that may hold nulls, built on
:func:`~infraprof.analyses.names.text_codes` (no hashing of every row's text)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from infraprof.analyses.names import text_codes


def row_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``column``, an int64 code of its value, and the values (object array;
    ``values[codes]`` equals the column, nulls as NaN). Equal texts have one code; the
    nulls are one more value, NaN, numbered last (as ``pd.factorize(...,
    use_na_sentinel=False)`` merges them, numbered in order of first appearance instead)."""
    nulls = column.isna().to_numpy()
    if not nulls.any():
        return text_codes(column)
    codes = np.full(len(column), -1, dtype=np.int64)
    present, uniques = text_codes(column[~nulls])
    codes[~nulls] = present
    codes[nulls] = len(uniques)
    return codes, np.append(np.asarray(uniques, dtype=object), np.array([np.nan], object))
