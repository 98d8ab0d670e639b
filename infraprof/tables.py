"""Column specifications of the normalized trace tables.

This module is the shared vocabulary between ``readers`` (which fill the tables) and
``model`` (which holds them). Conventions:

* time is integer nanoseconds on the capture's own timeline (``*_ns`` columns);
* sizes are bytes (``bytes`` or ``*_bytes``), rates carry their unit in the name;
* ids from the trace keep their meaning (``global_tid`` is nsys' packed
  ``vm << 48 | pid << 24 | tid``); ``pid``/``tid`` are decoded from it;
* nullable integers use pandas' ``Int64`` dtype; ``"int"`` in a spec (ids of the large tables:
  device, stream, context, correlation, process and thread ids) is an integer column held in
  the narrowest signed type holding its values (:func:`narrowed`; ``int64`` when empty), and
  ``"Int"`` its nullable form (pandas ``Int8`` … ``Int64``): at 10 M kernels an ``int8``
  device id is 10 MB where ``int64`` is 80 MB. Consumers widen (``to_numpy(np.int64)``)
  before any arithmetic that could leave the type; text is ``object`` (``str`` or ``None``) or,
  for the name columns of the large tables (``"category"`` in a spec), a pandas ``Categorical``
  whose categories are the distinct strings sorted lexicographically (an ``object`` Index), so
  that a sorted ``groupby``/``sort_values`` on the codes orders exactly as on the strings;
  nulls are code -1. :func:`conform` turns any text column into that form
  (:func:`as_text_category`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.int_widths import narrowed

# pandas 3 stores its default ``str`` dtype in pyarrow when pyarrow is installed (the ``fast``
# extra installs it for the Arrow-native SQLite read). The analyses' intermediate text arrays
# then cost twice the memory of the Python storage pandas uses without pyarrow (1 M kernels:
# peak RSS 1.5 vs 0.74 GiB, docs/performance.md "Round 5"), so infraprof keeps the Python
# storage whether or not pyarrow is installed.
pd.set_option("mode.string_storage", "python")

TableSpec = Mapping[str, str]

KERNELS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int",
    "context_id": "int",
    "stream_id": "int",
    "correlation_id": "int",
    "global_pid": "int64",
    "pid": "int",
    "name": "category",
    "short_name": "category",
    "mangled_name": "category",
    "grid_x": "int64",
    "grid_y": "int64",
    "grid_z": "int64",
    "block_x": "int64",
    "block_y": "int64",
    "block_z": "int64",
    "registers_per_thread": "int64",
    "static_smem_bytes": "int64",
    "dynamic_smem_bytes": "int64",
}

API_CALLS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "pid": "int",
    "tid": "int",
    "correlation_id": "int",
    "name": "category",
    "api": "category",
    "return_value": "Int64",
    "callchain_id": "Int",
}

MEMCPY: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int",
    "context_id": "int",
    "stream_id": "int",
    "correlation_id": "int",
    "global_pid": "int64",
    "pid": "int",
    "bytes": "int64",
    "copy_kind": "int64",
    "direction": "object",
    "src_kind": "object",
    "dst_kind": "object",
}

MEMSET: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "int",
    "context_id": "int",
    "stream_id": "int",
    "correlation_id": "int",
    "global_pid": "int64",
    "pid": "int",
    "bytes": "int64",
    "mem_kind": "object",
}

SYNCS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "device_id": "Int64",
    "context_id": "Int64",
    "stream_id": "Int64",
    "correlation_id": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "sync_type": "Int64",
    "api_name": "object",
    "kind": "object",
}

NVTX: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "Int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "end_global_tid": "Int64",
    "name": "category",
    "domain": "category",
    "event_type": "int64",
    "kind": "object",
}

OSRT: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "name": "category",
    "callchain_id": "Int64",
}

CPU_SAMPLES: Final[TableSpec] = {
    "start_ns": "int64",
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "callchain_id": "int64",
}

CALLCHAIN_FRAMES: Final[TableSpec] = {
    "source": "object",
    "callchain_id": "int64",
    "depth": "int64",
    "symbol": "category",
    "module": "category",
}

PROFILER_OVERHEAD: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_tid": "int64",
    "name": "object",
}

THREADS: Final[TableSpec] = {
    "global_tid": "int64",
    "pid": "int64",
    "tid": "int64",
    "name": "object",
}

PROCESSES: Final[TableSpec] = {
    "global_pid": "int64",
    "pid": "int64",
    "name": "object",
}

UM_CPU_FAULTS: Final[TableSpec] = {
    "start_ns": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "address": "Int64",
}

UM_GPU_FAULTS: Final[TableSpec] = {
    "start_ns": "int64",
    "end_ns": "int64",
    "global_pid": "int64",
    "pid": "int64",
    "device_id": "int64",
    "address": "Int64",
    "faults": "int64",
}

GPUS: Final[TableSpec] = {
    "device_id": "int64",
    "name": "object",
    "sm_count": "Int64",
    "memory_bandwidth_bytes_per_s": "Int64",
    "clock_rate_hz": "Int64",
    "total_memory_bytes": "Int64",
    "compute_major": "Int64",
    "compute_minor": "Int64",
    "bus_location": "object",
    "used": "bool",
}

ANALYSIS_OMITS: Final[Mapping[str, tuple[str, ...]]] = {
    "kernels": ("context_id", "global_pid", "mangled_name", "grid_x", "grid_y", "grid_z",
                "block_x", "block_y", "block_z", "registers_per_thread", "static_smem_bytes",
                "dynamic_smem_bytes"),
    "api_calls": ("return_value", "tid"),
}
"""Columns no analysis reads unless Nsight Compute reports are joined (kernel launch
configuration) or the trace is exported (``infraprof export``): a reader asked for the
analysis columns only leaves them out of these tables (absent, never filled with nulls).
A kernel's ``global_pid`` is still read, to decode its ``pid``, and then dropped (8 MB at
1 M kernels); an API call's ``tid`` is ``decode_tid(global_tid)`` where a consumer needs it
(8 MB at 1 M calls)."""


def projected(spec: TableSpec, table: str, all_columns: bool) -> TableSpec:
    """``spec`` without the :data:`ANALYSIS_OMITS` columns of ``table`` unless
    ``all_columns``."""
    if all_columns or table not in ANALYSIS_OMITS:
        return spec
    omitted = set(ANALYSIS_OMITS[table])
    return {col: dtype for col, dtype in spec.items() if col not in omitted}



def as_frame(value: object) -> pd.DataFrame:
    """Narrow a pandas result to ``DataFrame`` (pandas-stubs often infer ``Any``)."""
    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"expected a DataFrame, got {type(value).__name__}")
    return value


def column_view(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame[columns]`` without copying: a frame of ``frame``'s own column arrays (pandas
    copies the values of a list selection out of a consolidated block: 8 MB per column at
    1 M rows). Copy-on-write keeps ``frame`` unchanged when the view is modified."""
    return as_frame(pd.DataFrame({column: frame[column] for column in columns}, copy=False))


def as_series(value: object) -> pd.Series:
    """Narrow a pandas result to ``Series`` (pandas-stubs often infer ``Any``)."""
    if not isinstance(value, pd.Series):
        raise TypeError(f"expected a Series, got {type(value).__name__}")
    return value


_EMPTY_DTYPES: Final[Mapping[str, str]] = {"int": "int64", "Int": "Int64"}


def empty(spec: TableSpec) -> pd.DataFrame:
    """An empty table with the columns and dtypes of ``spec`` (``"int"``/``"Int"`` columns:
    ``int64``/``Int64``)."""
    return as_frame(pd.DataFrame({
        c: text_category(np.empty(0, dtype=np.int64), []) if d == "category"
        else pd.Series([], dtype=cast(Any, _EMPTY_DTYPES.get(d, d))) for c, d in spec.items()}))


def text_category(codes: npt.ArrayLike, texts: Sequence[object],
                  index: pd.Index | None = None) -> pd.Series:
    """The text column ``texts[codes]`` (code -1 or a ``None`` text: null) as a Categorical
    with the distinct strings sorted lexicographically as categories (an ``object`` Index):
    equal texts become one category, unused ones are dropped. ``texts`` is small (one entry
    per distinct value); the rows are only remapped (numpy ``take``)."""
    row_codes = np.asarray(codes)
    if row_codes.dtype.kind not in "iu":
        row_codes = row_codes.astype(np.int64)
    if row_codes.size and row_codes.min() < -1:  # every negative code is a null
        row_codes = np.where(row_codes < 0, -1, row_codes)
    distinct = sorted({t for t in texts if t is not None})  # type: ignore[type-var]
    position = {text: i for i, text in enumerate(distinct)}
    small = np.int32 if len(distinct) >= 2**15 - 1 else np.int16
    # the last entry, -1, is what code -1 takes (numpy's negative index): no pass for nulls
    remap = np.array([position.get(t, -1) if t is not None else -1 for t in texts] + [-1],
                     dtype=small)
    rows = remap[row_codes]
    present = codes_present(rows, len(distinct))
    if not present.all():
        keep = np.flatnonzero(present)
        renumber = np.full(len(distinct) + 1, -1, dtype=small)
        renumber[keep] = np.arange(keep.size)
        rows = renumber[rows]
        distinct = [distinct[i] for i in keep]
        small = np.int32 if len(distinct) >= 2**15 - 1 else np.int16
    categories = pd.Index(distinct, dtype=object)
    values = pd.Categorical.from_codes(rows.astype(small, copy=False),
                                       dtype=pd.CategoricalDtype(categories))
    return as_series(pd.Series(values, index=index))


def is_text_category(values: pd.Series) -> bool:
    """Whether ``values`` is a Categorical column (as :func:`text_category` makes)."""
    return isinstance(values.dtype, pd.CategoricalDtype)


def as_text_category(values: pd.Series) -> pd.Series:
    """``values`` (text with ``None``/NaN nulls, or a Categorical) as :func:`text_category`
    does: distinct strings sorted as categories, every one used. A Categorical that already
    is one is returned as it is."""
    if is_text_category(values):
        categories = values.cat.categories
        codes = values.cat.codes.to_numpy()
        if categories.dtype == object and categories.is_monotonic_increasing \
                and categories.is_unique and _every_code_used(codes, len(categories)):
            return values
        texts: list[object] = list(categories)
        return text_category(values.cat.codes.to_numpy(), texts, values.index)
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return text_category(codes, [str(u) for u in uniques], values.index)


def codes_present(codes: np.ndarray, count: int) -> np.ndarray:
    """Per code ``0 … count-1``, whether it occurs in ``codes`` (a null's -1 marks an extra
    slot): no widened copy of the codes, as a ``bincount`` made (120 MB at 12 M rows)."""
    seen = np.zeros(count + 1, dtype=bool)
    seen[codes] = True
    return seen[:count]


def _every_code_used(codes: np.ndarray, count: int) -> bool:
    return bool(codes_present(codes, count).all())  # each code 0 … count-1 (-1: null)


def plain_text(values: pd.Series) -> pd.Series:
    """A text column as an ``object`` Series of ``str`` with ``None`` for nulls (what the
    object columns hold; a Categorical's ``astype(object)`` gives NaN for nulls)."""
    return as_series(values.astype(object).where(values.notna(), None))


def fill_text(values: pd.Series, text: str) -> pd.Series:
    """``values.fillna(text)`` for a text column; a Categorical stays one (``text`` becomes a
    category in its sorted place when a row needs it)."""
    if not is_text_category(values):
        return values.fillna(text)
    codes = values.cat.codes.to_numpy()
    if codes.size == 0 or codes.min() >= 0:
        return values
    categories = values.cat.categories
    return text_category(np.where(codes < 0, len(categories), codes),
                         [*categories, text], values.index)


def coalesce_text(first: pd.Series, second: pd.Series) -> pd.Series:
    """``first`` where it is not null, else ``second`` (two text columns of one index); a
    Categorical result (sorted categories of both) when either is one."""
    if not (is_text_category(first) or is_text_category(second)):
        return as_series(first.where(first.notna(), second))
    first = as_text_category(first)
    if not first.hasnans:  # nothing to fill: ``first`` is the answer (the usual kernel name)
        return first
    second = as_text_category(second)
    first_codes = first.cat.codes.to_numpy().astype(np.int64)
    second_codes = second.cat.codes.to_numpy().astype(np.int64)
    offset = len(first.cat.categories)
    codes = np.where(first_codes >= 0, first_codes,
                     np.where(second_codes >= 0, second_codes + offset, -1))
    return text_category(codes, [*first.cat.categories, *second.cat.categories], first.index)


def map_text(values: pd.Series, transform: Any) -> pd.Series:
    """``values.map(transform)`` for a Categorical text column, computed once per category
    (``transform`` returns ``str`` or ``None``); nulls stay null; the result is a Categorical
    with sorted categories again (texts that become equal merge)."""
    values = as_text_category(values)
    texts = [transform(text) for text in values.cat.categories]
    return text_category(values.cat.codes.to_numpy(), texts, values.index)


def map_distinct(values: pd.Series, transform: Any) -> pd.Series:
    """``values.map(transform)`` with ``transform`` called once per distinct value (a null,
    None or NaN, is passed as None, and only when there is one), broadcast back by codes: an
    ``object`` Series with the index of ``values``. For the text and enum columns of large
    tables, whose distinct values are few."""
    if is_text_category(values):
        codes, distinct = values.cat.codes.to_numpy(), list(values.cat.categories)
    else:
        found, uniques = pd.factorize(values, use_na_sentinel=True)
        codes, distinct = np.asarray(found), list(uniques)
    nulls = [transform(None)] if codes.size and codes.min() < 0 else [None]
    results = np.array([transform(value) for value in distinct] + nulls, dtype=object)
    return as_series(pd.Series(results[codes], index=values.index, dtype=object))


def first_per_key(frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """``frame.drop_duplicates(key, keep="first")``, without hashing every key column when
    the column ``key[-1]`` alone repeats no value (then no row's key repeats and ``frame``
    itself is the answer; a correlation id, the usual last key column, is unique per process
    in almost every export, and increasing in time order when one thread makes the calls:
    then not even that column is hashed)."""
    last = frame[key[-1]]
    if pd.api.types.is_integer_dtype(last.dtype) and not last.hasnans:
        # a numpy column as it is (a narrow id column is not widened), a nullable one in int64
        values = last.to_numpy() if isinstance(last.dtype, np.dtype) else last.to_numpy(
            dtype=np.int64)
        if bool(np.all(values[1:] > values[:-1])):  # increasing: unique, no hash needed
            return frame
    if not bool(last.duplicated().any()):
        return frame
    return as_frame(frame.drop_duplicates(list(key), keep="first"))


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Return ``frame`` with exactly the columns of ``spec``, in order, cast to its dtypes
    (``"int"``/``"Int"``: :func:`narrowed`).

    Missing columns are filled with nulls (nullable dtypes) or raise ``KeyError`` (non-null
    dtypes), so a reader cannot silently drop a required column. The columns are not stacked
    into one 2-D block per dtype (``copy=False``): that copy of every integer column took
    2.2 s at 10 M kernels.
    """
    out: dict[str, pd.Series] = {}
    n = len(frame)
    for col, dtype in spec.items():
        if col in frame.columns:
            series = frame[col]
            if dtype == "object":
                out[col] = plain_text(series)
            elif dtype == "category":
                out[col] = as_text_category(series)
            elif dtype in ("int", "Int"):
                out[col] = narrowed(series, nullable=dtype == "Int")
            else:
                out[col] = series.astype(cast(Any, dtype))
        elif dtype in ("Int64", "Int", "object"):
            out[col] = pd.Series([None] * n, dtype=cast(Any, _EMPTY_DTYPES.get(dtype, dtype)))
        elif dtype == "category":
            out[col] = text_category(np.full(n, -1, dtype=np.int64), [])
        else:
            raise KeyError(f"required column {col!r} missing")
    return as_frame(pd.DataFrame(out, index=pd.RangeIndex(n), copy=False))


IntArray = npt.NDArray[np.int64]


def positions_of(keys: npt.ArrayLike, wanted: npt.ArrayLike
                 ) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Where each of ``wanted`` is in ``keys`` (distinct values, any order): its position
    (0 where absent) and whether it is there. One sort of ``keys``, one search."""
    keys, wanted = np.asarray(keys), np.asarray(wanted)
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    order = np.argsort(keys, kind="stable")
    at = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    found = np.asarray(keys[order][at] == wanted, dtype=bool)
    return np.where(found, order[at], 0).astype(np.int64), found


def positions_by_value(values: np.ndarray) -> list[tuple[int, IntArray]]:
    """Each distinct integer of ``values`` (ascending) and its positions (ascending): one
    stable sort, then slices (no group-by frames)."""
    if not len(values):
        return []
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    firsts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return [(int(ordered[lo]), order[lo:hi]) for lo, hi in
            zip(firsts.tolist(), [*firsts[1:].tolist(), len(order)], strict=True)]


def rows_by_value(values: np.ndarray) -> list[tuple[int, IntArray | None]]:
    """:func:`positions_by_value`, with None for the positions when every row holds the one
    value (a single device or stream: no sort and no row numbers)."""
    if len(values) and values.min() == values.max():
        return [(int(values[0]), None)]
    return [(value, rows) for value, rows in positions_by_value(values)]


def largest_positions(values: np.ndarray, count: int) -> IntArray:
    """``np.argsort(-values, kind="stable")[:count]`` (the ``count`` largest, ties: the
    earlier position first) without sorting every value: a partition finds the count-th
    largest, and only the positions at or above it are sorted."""
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    if count >= len(values):
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, len(values) - count)[len(values) - count]
    candidates = np.flatnonzero(values >= threshold)
    by_size: IntArray = candidates[np.lexsort((candidates, -values[candidates]))]
    return by_size[:count]


def decode_pid(global_id: npt.ArrayLike) -> IntArray:
    """PID from an nsys ``globalTid``/``globalPid``: bits 24-47."""
    ids: IntArray = np.asarray(global_id, dtype=np.int64)
    return (ids >> 24) & 0xFFFFFF


def decode_tid(global_tid: npt.ArrayLike) -> IntArray:
    """TID from an nsys ``globalTid``: bits 0-23."""
    ids: IntArray = np.asarray(global_tid, dtype=np.int64)
    return ids & 0xFFFFFF
