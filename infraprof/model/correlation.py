"""The one correlation join: GPU operations ↔ the CUDA API calls that launched them.

nsys gives every kernel, memcpy and memset the ``correlationId`` of the runtime/driver call that
enqueued it. Correlation ids are unique per *process* only, so the join key is
``(pid, correlation_id)``. A few exports hold the same call twice (the saxpy trace); the first
row per key wins, so every operation matches at most one call.

Columns taken from the call are renamed so they never collide with the operation's own:
``start_ns → api_start_ns``, ``end_ns → api_end_ns``, ``name → api_name``, ``tid → api_tid``;
``global_tid`` keeps its name (the launching thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.int_widths import plain_integers

JOIN_KEY = ["pid", "correlation_id"]
CALL_COLUMN_NAMES = {"start_ns": "api_start_ns", "end_ns": "api_end_ns", "name": "api_name",
                     "tid": "api_tid", "global_tid": "global_tid"}
DEFAULT_CALL_COLUMNS = ("start_ns", "end_ns", "name", "global_tid")


def launch_calls(api_calls: pd.DataFrame,
                 columns: Sequence[str] = DEFAULT_CALL_COLUMNS) -> pd.DataFrame:
    """One row per ``(pid, correlation_id)`` of ``api_calls``: the key plus ``columns``,
    renamed as the module docstring says."""
    picked = table_schema.first_per_key(api_calls[[*JOIN_KEY, *columns]], JOIN_KEY)
    return table_schema.as_frame(picked.rename(columns={c: CALL_COLUMN_NAMES[c]
                                                        for c in columns}))


def join_launch_calls(ops: pd.DataFrame, api_calls: pd.DataFrame,
                      columns: Sequence[str] = DEFAULT_CALL_COLUMNS,
                      how: Literal["left", "inner"] = "left") -> pd.DataFrame:
    """``ops`` (kernels, memcpys, memsets or :meth:`Trace.gpu_ops`) with the launching call's
    ``columns`` added. ``how="left"`` keeps operations whose call is not in the trace (their
    call columns are NaN); ``"inner"`` keeps only matched ones. Row order follows ``ops``.

    The join runs on row numbers (:func:`call_rows`) and takes only ``columns`` of the
    matched calls, instead of a pandas merge of both frames (which copies every column of
    both and hashes the keys): the same rows, columns and dtypes (an integer call column with
    an unmatched operation becomes float64 with NaN, as the merge made it)."""
    plain = all(str(api_calls[c].dtype) in ("int64", "object", "category") for c in columns
                ) and not any(
        CALL_COLUMN_NAMES[c] in ops.columns for c in columns)
    rows = call_rows(ops, api_calls) if plain else None
    if rows is None:
        joined = ops.merge(launch_calls(api_calls, columns), on=JOIN_KEY, how=how)
        return table_schema.as_frame(joined)
    matched = rows >= 0
    if how == "inner" and not matched.all():
        ops, rows, matched = ops.iloc[np.flatnonzero(matched)], rows[matched], matched[matched]
    out = ops.reset_index(drop=True)
    missing = None if matched.all() else ~matched
    for column in columns:
        values = _taken(api_calls[column], rows, missing)  # object stays object, never str
        out[CALL_COLUMN_NAMES[column]] = pd.Series(values, index=out.index, dtype=values.dtype,
                                                   copy=False)
    return table_schema.as_frame(out)


def launch_rows(ops: pd.DataFrame, api_calls: pd.DataFrame) -> np.ndarray:
    """Per row of ``ops`` (``pid, correlation_id``): the position in ``api_calls`` of its
    launching call (the first row per key, as :func:`join_launch_calls` joins), -1 when the
    trace has none: :func:`call_rows`, or a merge on the key when it cannot pack them."""
    rows = call_rows(ops, api_calls)
    if rows is not None:
        return rows
    if ops.empty or api_calls.empty:
        return np.full(len(ops), -1, dtype=np.int64)
    keys = table_schema.first_per_key(
        api_calls[JOIN_KEY].assign(call_row=np.arange(len(api_calls))), JOIN_KEY)
    found = ops[JOIN_KEY].merge(keys, on=JOIN_KEY, how="left", sort=False)
    return np.asarray(found["call_row"].fillna(-1).to_numpy(dtype=np.int64))


def call_rows(ops: pd.DataFrame, api_calls: pd.DataFrame) -> np.ndarray | None:
    """Per row of ``ops``: the position in ``api_calls`` of the first call with its ``(pid,
    correlation_id)``, or -1 when none has (int32 when the calls' rows fit it). None when a
    key column is not of plain integers (the caller then merges), or when either frame is
    empty. Both keys are packed into one
    sortable int64 (pid as its rank among the calls' pids) and looked up with
    ``searchsorted`` (the calls are sorted by key only when they are not in key order
    already: one process's calls usually are); None too when they do not fit."""
    if not all(plain_integers(frame[c]) for frame in (ops, api_calls)
               for c in JOIN_KEY):
        return None
    if api_calls.empty or ops.empty:
        return None
    call_pid = api_calls["pid"].to_numpy()
    call_corr = api_calls["correlation_id"].to_numpy()
    op_corr = ops["correlation_id"].to_numpy()
    low = min(int(call_corr.min()), int(op_corr.min()))
    span = max(int(call_corr.max()), int(op_corr.max())) - low + 1
    pids, call_pid_rank = _ranks(call_pid)
    if span <= 0 or len(pids) * span >= 2**62:
        return None
    # the keys built in place: every temporary is 8 MB per million rows (4 in int32: keys
    # below 2**31 from ids that are int32 already, as the narrowed tables hold them)
    narrow = len(pids) * span < 2**31 and max(call_corr.dtype.itemsize,
                                             op_corr.dtype.itemsize) <= 4
    call_key = _packed(call_pid_rank, span, call_corr, low, np.int32 if narrow else np.int64)
    del call_pid_rank
    order: np.ndarray | None = None  # None: the calls are in key order already (the usual)
    if not bool(np.all(call_key[1:] >= call_key[:-1])):
        order = np.argsort(call_key, kind="stable")  # equal keys: the first row first
    sorted_key = call_key if order is None else call_key[order]
    del call_key
    op_pid = ops["pid"].to_numpy()
    # call rows: 4 bytes an operation where they fit (40 MB fewer at 10 M)
    rows = np.empty(len(ops), dtype=np.int32 if len(api_calls) < 2**31 else np.int64)
    for lo in range(0, len(ops), LOOKUP_BLOCK):  # the operations' keys a block at a time
        hi = min(lo + LOOKUP_BLOCK, len(ops))
        rows[lo:hi] = _looked_up(sorted_key, order, pids, span, low, op_pid[lo:hi],
                                 op_corr[lo:hi])
    return rows


LOOKUP_BLOCK = 1 << 20
"""Operations looked up at a time by :func:`call_rows` (its temporaries: a few arrays of
this length, not of every operation: ~0.2 GB less at 10 M kernels)."""


def _looked_up(sorted_key: np.ndarray, order: np.ndarray | None, pids: np.ndarray, span: int,
               low: int, op_pid: np.ndarray, op_corr: np.ndarray) -> np.ndarray:
    """:func:`call_rows` of one block of operations: the row of each one's call in the calls
    (``sorted_key``: their packed keys in key order, ``order``: their rows in that order,
    None for the identity), -1 for none."""
    op_rank = None  # one process (the usual): every rank is 0, no rank array
    if len(pids) > 1:
        op_rank = np.searchsorted(pids, op_pid)
        np.minimum(op_rank, len(pids) - 1, out=op_rank)
    op_key = _packed(op_rank, span, op_corr, low, sorted_key.dtype.type)  # no cast to search
    found = np.searchsorted(sorted_key, op_key)
    np.minimum(found, len(sorted_key) - 1, out=found)
    hit = sorted_key[found] == op_key
    del op_key
    hit &= (op_pid == pids[0]) if op_rank is None else (pids[op_rank] == op_pid)
    rows: np.ndarray = found if order is None else order[found]
    rows[~hit] = -1
    return rows


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The distinct ``values`` (ascending) and each value's rank among them (None when there
    is one distinct value: every rank is 0; ``np.unique`` would sort a copy)."""
    if len(values) and values.min() == values.max():
        return values[:1].copy(), None
    return np.unique(values, return_inverse=True)


def _packed(rank: np.ndarray | None, span: int, corr: np.ndarray, low: int,
            width: type[np.signedinteger[Any]]) -> np.ndarray:
    """``rank * span + (corr - low)`` in ``width`` (``rank`` None: all 0; the caller checks
    that the keys and ``corr`` fit it)."""
    key = corr.astype(width)  # a new array
    key -= low
    if rank is not None:
        key += rank.astype(width) * span
    return key


def _taken(column: pd.Series, rows: np.ndarray, missing: np.ndarray | None) -> Any:
    """``column``'s values at ``rows``; NaN at ``missing`` (integers then as float64). A
    Categorical stays one (its codes are gathered; null at ``missing``), as in a merge."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()[rows]
        if missing is not None:
            codes[missing] = -1
        return pd.Categorical.from_codes(codes, dtype=column.dtype, validate=False)
    values: np.ndarray = column.to_numpy()[rows]
    if missing is None:
        return values
    if values.dtype.kind in "iub":
        values = values.astype(np.float64)
    values[missing] = np.nan
    return values
