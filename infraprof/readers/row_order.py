"""The row order of ``SELECT … ORDER BY key`` without SQLite's sorter (one definition for the
sqlite3 and the Arrow reads): a **stable** sort of the key column as read in table (rowid)
order, NULLs (read as ``INT64_MIN``) first. SQLite's sorter keeps rows with equal keys in scan
order, so the two orders are the same, ties included (docs/performance.md, "Round 5: reader")."""

from __future__ import annotations

import numpy as np
import pandas as pd

from infraprof.tables import as_frame


def stable_order(keys: np.ndarray) -> np.ndarray | None:
    """Indices that put ``keys`` (int64) in ``ORDER BY`` order, or None when they are in that
    order already (no copy of the rows is needed: most nsys tables are written in time order)."""
    if keys.size < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return None
    return np.argsort(keys, kind="stable")


def by_start_longest_first(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (sorted by ``start_ns``) in (``start_ns``, ``end_ns`` descending) order, as a
    stable sort gives it; ``frame`` itself when that is its order already."""
    start, end = frame["start_ns"], frame["end_ns"]
    if start.dtype == end.dtype == np.int64:
        begin, finish = start.to_numpy(), end.to_numpy()
        later = begin[1:] > begin[:-1]
        if bool(np.all(later | ((begin[1:] == begin[:-1]) & (finish[1:] <= finish[:-1])))):
            return frame
    return as_frame(frame.sort_values(["start_ns", "end_ns"], ascending=[True, False],
                                        kind="stable"))
