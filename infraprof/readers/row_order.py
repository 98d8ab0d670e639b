"""The row order of ``SELECT … ORDER BY key`` without SQLite's sorter (one definition for the
sqlite3 and the Arrow reads): a **stable** sort of the key column as read in table (rowid)
order, NULLs (read as ``INT64_MIN``) first. SQLite's sorter keeps rows with equal keys in scan
order, so the two orders are the same, ties included (docs/performance.md, "Round 5: reader")."""

from __future__ import annotations

import numpy as np


def stable_order(keys: np.ndarray) -> np.ndarray | None:
    """Indices that put ``keys`` (int64) in ``ORDER BY`` order, or None when they are in that
    order already (no copy of the rows is needed: most nsys tables are written in time order)."""
    if keys.size < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return None
    return np.argsort(keys, kind="stable")
