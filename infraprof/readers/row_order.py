"""Reader shortcuts that replace a sort by a linear pass when the data allows it (one
definition for the sqlite3 and the Arrow reads):

* the row order of ``SELECT … ORDER BY key`` without SQLite's sorter: a **stable** sort of the
  key column as read in table (rowid) order, NULLs (read as ``INT64_MIN``) first, skipped
  when the rows are in order already. SQLite's sorter keeps rows with equal keys in scan
  order, so the two orders are the same, ties included (docs/performance.md, "Round 5:
  reader");
* the runtime calls' (start, longest first) order, checked before sorting;
* the distinct ids of a column (``np.unique`` with its inverse) through a presence table
  when the ids are small non-negative integers, as StringIds ids are."""

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


def distinct_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` of integer ids: the sorted distinct ids and each
    id's index among them. Ids in ``[0, 4 × len(ids) + 2^20)`` (StringIds ids, thread ids)
    are ranked through a presence table instead of a sort: linear time, and the table is
    bounded by that range (8 bytes per slot)."""
    if ids.size == 0 or int(ids.min()) < 0 or int(ids.max()) >= 4 * ids.size + (1 << 20):
        distinct, inverse = np.unique(ids, return_inverse=True)
        return distinct, inverse.reshape(-1)
    present = np.zeros(int(ids.max()) + 1, dtype=bool)
    present[ids] = True
    distinct = np.flatnonzero(present)
    rank = np.zeros(len(present), dtype=np.int64)
    rank[distinct] = np.arange(len(distinct))
    return distinct.astype(np.int64), rank[ids]
