"""The host details of the gaps with host activity, as columns (one table for all gaps).

A gap with host activity (the launch call ended after the gap began; ~3 % of a real trace's
gaps, ~25 k at 1 M kernels, ~250 k at 10 M) is split by :mod:`~infraprof.analyses.host_paint`
into category runs, and carries its top calls, its drain call, the drain that exposed host work
and the innermost NVTX range per category. :class:`HostColumns` holds all of that as numpy
columns, one row per run / call / NVTX spot, each tagged with its gap's *host index* (the
position of the gap among the host rows, ascending). Consumers aggregate these columns; the
per-gap :class:`HostDetail` record (dicts and lists) is built only
for the gaps a renderer or an example asks for (``HostColumns`` is a read-only mapping
``table row -> HostDetail`` that builds each value on access).

Category codes are :data:`CODES` (a code is the painting priority: larger paints over smaller).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

import numpy as np
import pandas as pd

from infraprof.tables import positions_of

CODES = ("unknown", "host-cpu", "host-wait", "launch-overhead", "allocation", "memcpy", "sync")
CODE = {cat: code for code, cat in enumerate(CODES)}


@dataclass(frozen=True, slots=True)
class HostDetail:
    """What a gap with host activity was split into: ``parts`` (category → ns, sums to the gap),
    the top 5 ``calls`` overlapping it, the ``drain`` call that blocked the host across the
    gap's start, the innermost NVTX range per category (``where``), the drain that exposed
    host work (``exposed_by``) and each category's time ``segments``."""

    parts: dict[str, int]
    calls: list[dict[str, Any]]
    drain: dict[str, Any] | None
    where: dict[str, str]
    exposed_by: str | None
    segments: dict[str, list[tuple[int, int]]]


def _empty(dtype: Any = np.int64) -> np.ndarray:
    return np.empty(0, dtype=dtype)


def gap_code_key(gap: np.ndarray, code: np.ndarray) -> np.ndarray:
    """One int64 key per (host index, category code) pair, ordered as the pairs are."""
    return np.asarray(gap, dtype=np.int64) * len(CODES) + np.asarray(code, dtype=np.int64)


def missing(values: np.ndarray) -> np.ndarray:
    """Which values of an object array are None (a bool array)."""
    return np.asarray(np.equal(values, cast(Any, None)), dtype=bool)


def texts(values: np.ndarray) -> np.ndarray:
    """``str`` of each value of an object array, None kept (``str`` called once per distinct
    value)."""
    out = np.full(len(values), None, dtype=object)
    present = ~missing(values)
    if present.any():
        codes, distinct = pd.factorize(values[present], use_na_sentinel=False)
        out[present] = np.array([str(x) for x in distinct], dtype=object)[codes]
    return out


@dataclass(frozen=True)
class PartRows:
    """One row per (gap, category) with time in it, by host index and then in the order of the
    category's first run in the gap (a :class:`HostDetail`'s ``parts`` order): ``gap`` (host
    index), ``code`` (:data:`CODES`), ``ns`` (> 0), ``order`` (the part's position in its
    gap)."""

    gap: np.ndarray
    code: np.ndarray
    ns: np.ndarray
    order: np.ndarray


@dataclass(frozen=True, eq=False)
class HostColumns(Mapping[int, HostDetail]):
    """Host details of the gaps of ``rows`` (table rows, ascending; host index ``i`` is
    ``rows[i]``). Columns, each group by host index (ascending):

    * runs (``run_*``): the gap's category runs ``[lo, hi)`` in time order (the ``segments``);
    * calls (``call_*``): the gap's top calls (at most 5) in their listed order;
    * NVTX spots (``where_*``): per category, its innermost NVTX range (``where``);
    * per gap: the drain call (``drain_code`` -1: none) and ``exposed_by`` (None: none).

    Names are object arrays; ``str`` is applied when a record is built."""

    rows: np.ndarray = field(default_factory=_empty)
    run_gap: np.ndarray = field(default_factory=_empty)
    run_code: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    run_lo: np.ndarray = field(default_factory=_empty)
    run_hi: np.ndarray = field(default_factory=_empty)
    call_gap: np.ndarray = field(default_factory=_empty)
    call_name: np.ndarray = field(default_factory=lambda: _empty(object))
    call_start: np.ndarray = field(default_factory=_empty)
    call_end: np.ndarray = field(default_factory=_empty)
    call_code: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    drain_name: np.ndarray = field(default_factory=lambda: _empty(object))
    drain_start: np.ndarray = field(default_factory=_empty)
    drain_end: np.ndarray = field(default_factory=_empty)
    drain_code: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    drain_blocked: np.ndarray = field(default_factory=_empty)
    exposed_by: np.ndarray = field(default_factory=lambda: _empty(object))
    where_gap: np.ndarray = field(default_factory=_empty)
    where_code: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    where_name: np.ndarray = field(default_factory=lambda: _empty(object))

    # -- the mapping: table row -> HostDetail, built on access --------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows.tolist())

    def __getitem__(self, row: int) -> HostDetail:
        i = int(np.searchsorted(self.rows, row))
        if i >= len(self.rows) or int(self.rows[i]) != row:
            raise KeyError(row)
        return self.detail(i)

    def detail(self, i: int) -> HostDetail:
        """The record of host index ``i`` (what the per-gap algorithm gives)."""
        lo, hi = (int(x) for x in np.searchsorted(self.run_gap, [i, i + 1]))
        segments: dict[str, list[tuple[int, int]]] = {}
        for code, a, b in zip(self.run_code[lo:hi].tolist(), self.run_lo[lo:hi].tolist(),
                              self.run_hi[lo:hi].tolist(), strict=True):
            segments.setdefault(CODES[code], []).append((a, b))
        parts = {cat: sum(b - a for a, b in spans) for cat, spans in segments.items()}
        lo, hi = (int(x) for x in np.searchsorted(self.call_gap, [i, i + 1]))
        calls = [{"name": str(name), "start_ns": s, "dur_ns": e - s, "category": CODES[c]}
                 for name, s, e, c in zip(self.call_name[lo:hi].tolist(),
                                          self.call_start[lo:hi].tolist(),
                                          self.call_end[lo:hi].tolist(),
                                          self.call_code[lo:hi].tolist(), strict=True)]
        drain = None
        if int(self.drain_code[i]) >= 0:
            drain = {"name": str(self.drain_name[i]), "start_ns": int(self.drain_start[i]),
                     "end_ns": int(self.drain_end[i]),
                     "category": CODES[int(self.drain_code[i])],
                     "blocked_before_gap_ns": int(self.drain_blocked[i])}
        lo, hi = (int(x) for x in np.searchsorted(self.where_gap, [i, i + 1]))
        where = {CODES[c]: str(name) for c, name in zip(self.where_code[lo:hi].tolist(),
                                                         self.where_name[lo:hi].tolist(),
                                                         strict=True)}
        exposed = self.exposed_by[i]
        return HostDetail(parts, calls, drain, where, None if exposed is None else str(exposed),
                          segments)

    # -- columnar views ------------------------------------------------------------------------

    def parts(self) -> PartRows:
        """The parts of every gap (see :class:`PartRows`): run lengths summed per (gap,
        category), ordered by each category's first run. Computed once per table (the gap
        findings, the idle breakdown, the causes and the frame pools all read them)."""
        return self._parts

    @cached_property
    def _parts(self) -> PartRows:
        key = gap_code_key(self.run_gap, self.run_code)
        by_key = np.argsort(key, kind="stable")
        sorted_key = key[by_key]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) \
            else _empty()
        distinct, first = sorted_key[starts], by_key[starts]  # first: each key's first run
        lengths = (self.run_hi - self.run_lo).astype(np.int64)[by_key]
        sums = np.add.reduceat(lengths, starts) if len(starts) else _empty()
        order = np.argsort(first, kind="stable")  # runs are by gap: first run order is by gap
        gap = distinct[order] // len(CODES)
        position = np.arange(len(order)) - np.searchsorted(gap, gap, side="left")
        parts = PartRows(gap, (distinct[order] % len(CODES)).astype(np.int8), sums[order],
                         position)
        for column in (parts.gap, parts.code, parts.ns, parts.order):
            column.setflags(write=False)  # shared by every reader of the cached parts
        return parts

    def spot_of(self, gap: np.ndarray, code: np.ndarray) -> np.ndarray:
        """The ``where`` name of each (host index, code) pair (object; None: none)."""
        return _lookup(self.where_gap, self.where_code, self.where_name, gap, code)

    def first_call_of(self, gap: np.ndarray, code: np.ndarray) -> np.ndarray:
        """The name of the first listed call of each (host index, code) pair's category
        (object; None: none)."""
        return _lookup(self.call_gap, self.call_code, self.call_name, gap, code)

    def main_codes(self) -> np.ndarray:
        """Per host index: the code of its largest part (the first of equal parts, in parts
        order), -1 for a gap without parts."""
        parts = self.parts()
        out = np.full(len(self.rows), -1, dtype=np.int64)
        if len(parts.gap):
            best = np.lexsort((parts.order, -parts.ns, parts.gap))
            lead = best[np.r_[True, parts.gap[best][1:] != parts.gap[best][:-1]]]
            out[parts.gap[lead]] = parts.code[lead]
        return out


def _lookup(groups: np.ndarray, codes: np.ndarray, values: np.ndarray, gap: np.ndarray,
            code: np.ndarray) -> np.ndarray:
    """``values`` of the first row of ``(groups, codes)`` equal to each ``(gap, code)``
    (rows grouped by ``groups``), None where there is none."""
    out = np.full(len(gap), None, dtype=object)
    if not len(groups) or not len(gap):
        return out
    keys, first = np.unique(gap_code_key(groups, codes), return_index=True)
    at, found = positions_of(keys, gap_code_key(gap, code))
    out[found] = values[first[at[found]]]
    return out


_PER_GAP = ("drain_name", "drain_start", "drain_end", "drain_code", "drain_blocked",
            "exposed_by")
_GROUPED = {"run": ("code", "lo", "hi"), "call": ("name", "start", "end", "code"),
            "where": ("code", "name")}


def combine(pieces: list[tuple[np.ndarray, HostColumns]]) -> HostColumns:
    """One :class:`HostColumns` of pieces whose ``rows`` are positions into their own table
    rows (``(table_rows, piece)``; each table row in one piece only), rows ascending."""
    pieces = [(table_rows, piece) for table_rows, piece in pieces if len(piece)]
    if not pieces:
        return HostColumns()
    rows = np.concatenate([table_rows[piece.rows] for table_rows, piece in pieces])
    order = np.argsort(rows, kind="stable")
    host_index = np.empty(len(rows), dtype=np.int64)
    host_index[order] = np.arange(len(rows))
    first = np.cumsum([0] + [len(piece) for _, piece in pieces])
    columns: dict[str, np.ndarray] = {"rows": rows[order]}
    for name in _PER_GAP:
        columns[name] = np.concatenate([getattr(piece, name) for _, piece in pieces])[order]
    for group, fields in _GROUPED.items():
        starts = first[:-1].tolist()
        gap = np.concatenate([host_index[start + getattr(piece, f"{group}_gap")]
                              for start, (_, piece) in zip(starts, pieces, strict=True)])
        by_gap = np.argsort(gap, kind="stable")
        columns[f"{group}_gap"] = gap[by_gap]
        for name in fields:
            values = np.concatenate([getattr(piece, f"{group}_{name}") for _, piece in pieces])
            columns[f"{group}_{name}"] = values[by_gap]
    return HostColumns(**columns)
