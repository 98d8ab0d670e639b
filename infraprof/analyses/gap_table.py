"""The columnar gap table: every listed GPU idle gap as one row of numpy columns.

A real trace has about one idle gap per kernel (1.06 M gaps at 1 M kernels), and ~97 % of
them need no per-gap work: their whole length is one category, ``dependency`` (the next
operation's launch call had returned before the GPU went idle) or ``unknown`` (no launch call
was found). :class:`GapTable` holds every gap as a row of integer columns (~35 bytes a
row, 16 of them the bounds: one device's are its timeline's own arrays);
only the gaps with host activity (the launch call ended after the gap began) carry a
:class:`~infraprof.analyses.host_columns.HostDetail` (the painted parts, calls, drain, NVTX
``where``, segments), held as columns (:class:`~infraprof.analyses.host_columns.HostColumns`)
that build a row's record on access. Rows are ordered by gap start, then device (stable).

Consumers aggregate the columns with numpy/pandas and loop only over :meth:`GapTable.host_rows`;
a renderer that draws individual gaps turns a bounded set of rows into light
:class:`GapAttribution` records with :meth:`GapTable.records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from infraprof.analyses.host_columns import CODES, HostColumns
from infraprof.analyses.names import factorized_text
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.int_widths import narrowest_int
from infraprof.model.correlation import launch_rows
from infraprof.tables import as_frame

CATEGORIES = (
    "sync", "memcpy", "allocation", "launch-overhead", "host-cpu", "host-wait", "dependency",
    "unknown",
)
DEPENDENCY = CATEGORIES.index("dependency")
UNKNOWN = CATEGORIES.index("unknown")
HOST_ROW = -1  # ``GapTable.category`` of a row with host activity (see ``GapTable.host``)


def main_category(parts: dict[str, int]) -> str:
    """A gap's cause: its largest part (the first of equal parts, in the parts' order);
    ``unknown`` for a gap without parts."""
    return max(parts.items(), key=lambda kv: kv[1])[0] if parts else "unknown"


@dataclass(slots=True)
class GapAttribution:
    """One gap and how its length splits into categories (``parts`` sums to ``dur_ns``): the
    record view of one :class:`GapTable` row."""

    device_id: int
    start_ns: int
    end_ns: int
    parts: dict[str, int]
    next_op: dict[str, Any]
    launch: dict[str, Any] | None
    global_tid: int | None
    nvtx: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)
    drain: dict[str, Any] | None = None
    where: dict[str, str] = field(default_factory=dict)
    exposed_by: str | None = None
    segments: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def dur_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def category(self) -> str:
        return main_category(self.parts)


def _empty(dtype: type = np.int64) -> np.ndarray:
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True)
class LaunchCalls:
    """The API-call columns a :class:`GapTable`'s ``call`` rows point into (int64): the
    trace's own ``api_calls`` columns, not copies, so a gap's launch fields cost 4 bytes (its
    row) instead of 24 (200 MB less at 10 M gaps); each access gathers them."""

    start_ns: np.ndarray = field(default_factory=_empty)
    end_ns: np.ndarray = field(default_factory=_empty)
    global_tid: np.ndarray = field(default_factory=_empty)
    correlation_id: np.ndarray = field(default_factory=_empty)

    @classmethod
    def of(cls, api_calls: pd.DataFrame) -> LaunchCalls:
        """The columns of ``api_calls``: views in their own integer types (the correlation id
        is in its narrowest one: an int64 copy would be 97 MB held at 12 M calls)."""
        return cls(*(api_calls[column].to_numpy()
                     for column in ("start_ns", "end_ns", "global_tid", "correlation_id")))

    def at(self, call: np.ndarray, column: str) -> np.ndarray:
        """``column`` at the rows ``call``; 0 where ``call`` is -1."""
        source: np.ndarray = getattr(self, column)
        if not len(source):
            return np.zeros(len(call), dtype=np.int64)
        # mode="clip": a gap without a launch (call -1) reads row 0, then 0 is written
        values: np.ndarray = np.take(source, call, mode="clip")
        values[call < 0] = 0
        return values


@dataclass(frozen=True)
class Deviations:
    """An int64 column held as where it differs from a default that is computed on access:
    the ``rows`` (ascending) and their ``values``; every value (``rows`` None) when so many
    rows differ that the positions would cost more than the column."""

    values: np.ndarray = field(default_factory=_empty)
    rows: np.ndarray | None = None

    @classmethod
    def of(cls, values: np.ndarray, default: np.ndarray) -> Deviations:
        """``values`` against ``default`` (same length)."""
        differ = np.flatnonzero(values != default)
        if 3 * len(differ) > 2 * len(values):  # 12 bytes a differing row, 8 a dense one
            return cls(values)
        rows = differ.astype(np.int32) if len(values) < 2**31 else differ
        return cls(values[differ], rows)

    def at(self, rows: np.ndarray, default: np.ndarray) -> np.ndarray:
        """The values at ``rows`` (positions), given the default's values there."""
        if self.rows is None:
            return np.asarray(self.values[rows])
        out = np.array(default, dtype=np.int64)
        if len(self.rows) and len(rows):
            found = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
            hit = self.rows[found] == rows
            out[hit] = self.values[found[hit]]
        return out


@dataclass(frozen=True)
class GapTable:
    """Every listed gap (see the module docstring). Columns (one value per row, ns for times):
    ``g0, g1, device``; the next operation's ``op_kind``/``op_name`` (codes into ``kinds``/
    ``names``), ``op_stream``, ``op_start``, ``op_corr`` (held as :class:`Deviations` from the
    gap's end and from the launch call's correlation id: ``next_start``, ``next_corr``); its
    launch call: ``has_launch``,
    ``api_name`` (code into ``api_names``), ``call`` (the call's row in ``calls``, -1 without
    a launch; its ``api_start``, ``api_end`` and ``gtid`` are read through it, 0 without a
    launch); ``nvtx``: the launching thread's innermost NVTX range at the launch (code into
    ``nvtx_names``, -1 for none); ``category``: index into :data:`CATEGORIES` of a
    single-category gap, :data:`HOST_ROW` for a gap with host activity, detailed in ``host``."""

    g0: np.ndarray = field(default_factory=_empty)
    g1: np.ndarray = field(default_factory=_empty)
    device: np.ndarray = field(default_factory=_empty)
    op_kind: np.ndarray = field(default_factory=_empty)
    op_name: np.ndarray = field(default_factory=_empty)
    op_stream: np.ndarray = field(default_factory=_empty)
    next_start: Deviations = field(default_factory=Deviations)
    next_corr: Deviations = field(default_factory=Deviations)
    has_launch: np.ndarray = field(default_factory=lambda: _empty(np.bool_))
    api_name: np.ndarray = field(default_factory=_empty)
    call: np.ndarray = field(default_factory=_empty)
    nvtx: np.ndarray = field(default_factory=_empty)
    category: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    kinds: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    api_names: tuple[str, ...] = ()
    nvtx_names: tuple[str, ...] = ()
    host: HostColumns = field(default_factory=HostColumns)
    calls: LaunchCalls = field(default_factory=lambda: LaunchCalls())

    def __len__(self) -> int:
        return len(self.g0)

    @property
    def api_start(self) -> np.ndarray:
        """Start (ns) of each gap's launch call, 0 without a launch."""
        return self.launch_values("start_ns")

    @property
    def api_end(self) -> np.ndarray:
        """End (ns) of each gap's launch call, 0 without a launch."""
        return self.launch_values("end_ns")

    @property
    def gtid(self) -> np.ndarray:
        """``global_tid`` of each gap's launching thread, 0 without a launch."""
        return self.launch_values("global_tid")

    @property
    def op_start(self) -> np.ndarray:
        """Start (ns) of each gap's next operation."""
        return self.op_start_at(np.arange(len(self)))

    @property
    def op_corr(self) -> np.ndarray:
        """Correlation id of each gap's next operation."""
        return self.op_corr_at(np.arange(len(self)))

    def op_start_at(self, rows: np.ndarray) -> np.ndarray:
        """:attr:`op_start` at ``rows`` (a new array)."""
        return self.next_start.at(rows, self.g1[rows])

    def op_corr_at(self, rows: np.ndarray) -> np.ndarray:
        """:attr:`op_corr` at ``rows`` (a new array)."""
        return self.next_corr.at(rows, self.launch_values("correlation_id", rows))

    def launch_instants(self, rows: slice) -> np.ndarray:
        """The instant whose NVTX range names each gap of ``rows``: ``min(launch start, gap
        end)``, 0 without a launch (a new array)."""
        at = self.calls.at(self.call[rows], "start_ns")
        np.minimum(at, self.g1[rows], out=at)
        return at

    def launch_values(self, column: str, rows: np.ndarray | None = None) -> np.ndarray:
        """``column`` of :class:`LaunchCalls` at the launch call of each gap of ``rows``
        (default: all), int64, 0 for a gap without a launch (a new array)."""
        return self.calls.at(self.call if rows is None else self.call[rows], column)

    @property
    def dur(self) -> np.ndarray:
        """Gap lengths (ns)."""
        return np.asarray(self.g1 - self.g0)

    def host_rows(self) -> np.ndarray:
        """Rows with host activity, in table order."""
        return np.flatnonzero(self.category == HOST_ROW)

    def records(self, rows: np.ndarray | None = None) -> list[GapAttribution]:
        """The gaps of ``rows`` (default: all, in table order) as records."""
        idx = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        cols = zip(idx.tolist(), self.g0[idx].tolist(), self.g1[idx].tolist(),
                   self.device[idx].tolist(), self.op_kind[idx].tolist(),
                   self.op_name[idx].tolist(), self.op_stream[idx].tolist(),
                   self.op_start_at(idx).tolist(), self.op_corr_at(idx).tolist(),
                   self.has_launch[idx].tolist(), self.api_name[idx].tolist(),
                   self.launch_values("start_ns", idx).tolist(),
                   self.launch_values("end_ns", idx).tolist(),
                   self.launch_values("global_tid", idx).tolist(), self.nvtx[idx].tolist(),
                   strict=True)
        out: list[GapAttribution] = []
        for row, g0, g1, device, kind, name, stream, start, corr, launched, api, a0, a1, gtid, \
                nv in cols:
            next_op = {"kind": self.kinds[kind], "name": self.names[name], "stream_id": stream,
                       "start_ns": start, "correlation_id": corr}
            if not launched:
                out.append(GapAttribution(device, g0, g1, {"unknown": g1 - g0}, next_op, None,
                                          None, None))
                continue
            launch = {"name": self.api_names[api], "start_ns": a0, "end_ns": a1}
            nvtx = None if nv < 0 else self.nvtx_names[nv]
            detail = self.host.get(row)
            if detail is None:
                out.append(GapAttribution(device, g0, g1, {"dependency": g1 - g0}, next_op,
                                          launch, gtid, nvtx))
                continue
            out.append(GapAttribution(device, g0, g1, detail.parts, next_op, launch, gtid, nvtx,
                                      detail.calls, detail.drain, detail.where,
                                      detail.exposed_by, detail.segments))
        return out

    def cause_codes(self) -> np.ndarray:
        """Index into :data:`CATEGORIES` of each gap's cause (:func:`main_category`), int8."""
        cause = self.category.astype(np.int8)
        by_code = np.array([CATEGORIES.index(cat) for cat in (*CODES, "unknown")], dtype=np.int8)
        cause[self.host.rows] = by_code[self.host.main_codes()]  # -1: no parts -> unknown
        return cause

FIRSTS_BLOCK = 1 << 20  # positions per ``minimum.at`` pass of :func:`first_appearances`


def first_appearances(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The key values ``0 .. size - 1`` that occur in ``keys``, in order of first appearance,
    and the position of each first appearance: ``minimum.at`` over a dense array of ``size``
    in blocks of :data:`FIRSTS_BLOCK` positions (no hash table, a bounded ``arange``)."""
    firsts = np.full(size, len(keys), dtype=np.int64)
    for lo in range(0, len(keys), FIRSTS_BLOCK):
        block = keys[lo:lo + FIRSTS_BLOCK]
        np.minimum.at(firsts, block, np.arange(lo, lo + len(block)))
    used = np.flatnonzero(firsts < len(keys))
    used = used[np.argsort(firsts[used], kind="stable")]
    return used, firsts[used]


def code_width(count: int) -> type[np.signedinteger[Any]]:
    """The narrowest signed integer type holding the codes ``-1 .. count - 1`` and ``count``
    itself (a marker one past the last code; :func:`~infraprof.int_widths.narrowest_int`): a
    column of codes per gap: 10 M gaps hold 10 MB of int8 codes instead of 40 MB of int32."""
    return narrowest_int(-1, count)


def _codes(row_codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes (:func:`code_width`) of the gathered ``values[row_codes]`` numbered by first
    appearance and the distinct values as ``str`` (as ``pd.factorize`` of the gathered
    values: equal values have one row code). ``row_codes`` index ``values``: the first row
    of each is found by :func:`first_appearances`; no hash table."""
    used, _ = first_appearances(row_codes, len(values))
    number = np.full(len(values), -1, dtype=code_width(len(used)))
    number[used] = np.arange(len(used))
    return number[row_codes], tuple(str(x) for x in values[used])


def gathered_text(column: pd.Series, rows: np.ndarray, blank: np.ndarray | None = None
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """The texts of ``column`` at ``rows`` (``""`` where ``blank``; those rows are not read),
    as codes (:func:`code_width`) numbered by first appearance and the distinct texts as
    ``str``: what ``pd.factorize(gathered, use_na_sentinel=False)`` gives (a null is
    ``"nan"``, a blank shares the code of a real ``""``). A Categorical's codes are gathered
    in their own width (a blank row's position, -1 or any, is overwritten), no text hashed."""
    picked = np.asarray(rows, dtype=np.int64)
    if not len(column):
        codes, values = np.zeros(len(picked), dtype=np.int64), np.empty(0, dtype=object)
    elif isinstance(column.dtype, pd.CategoricalDtype):
        values = np.array([*column.cat.categories, np.nan], dtype=object)
        codes = column.cat.codes.to_numpy()[picked].astype(
            code_width(len(values) + 1))  # room for the blank code
        codes[codes < 0] = len(values) - 1  # a null: the NaN text
    else:
        picked = picked if blank is None else np.where(blank, 0, picked)
        codes, values = factorized_text(column.iloc[picked])
    if blank is not None:
        code, values = _blank_code(values)
        codes[blank] = code
    return _codes(codes, values)


def _next_operations(joined: pd.DataFrame, timelines: list[DeviceTimeline]
                     ) -> dict[str, np.ndarray]:
    """Every listed gap (``g0, g1, device``) and the row of ``joined`` (the operations) of its
    next operation
    (``source``: the first one on that device starting at or after the gap's end), ordered
    by gap start, then device (stable)."""
    start = joined["start_ns"].to_numpy(dtype=np.int64)
    device_ids = joined["device_id"].to_numpy()
    parts: dict[str, list[np.ndarray]] = {"g0": [], "g1": [], "device": [], "source": []}
    for tl in timelines:
        # this device's rows of `joined` in start order, then the first at or after each end
        # (the operations of a single device in start order: no row list, no sort)
        alone = len(timelines) == 1 and bool(np.all(device_ids == tl.device_id))
        rows = None if alone else np.flatnonzero(device_ids == tl.device_id)
        starts = start if rows is None else start[rows]
        if not bool(np.all(starts[1:] >= starts[:-1])):
            rows = np.argsort(starts, kind="stable") if rows is None else rows[
                np.argsort(starts, kind="stable")]
            starts = start[rows]
        after = np.searchsorted(starts, tl.gaps.ends, side="left")
        del starts
        np.minimum(after, (len(start) if rows is None else len(rows)) - 1, out=after)
        found = after if rows is None else rows[after]
        # operation rows: 4 bytes a gap where they fit
        parts["source"].append(found.astype(np.int32) if len(start) < 2**31 else found)
        parts["g0"].append(np.asarray(tl.gaps.starts, dtype=np.int64))
        parts["g1"].append(np.asarray(tl.gaps.ends, dtype=np.int64))
        # one device's column as a read-only broadcast of its id (8 bytes, not 8 per row)
        parts["device"].append(np.broadcast_to(np.int64(tl.device_id), len(after)))
    # one device's gaps are the timeline's own arrays (no copy: 16 MB at 1 M gaps)
    cols = {key: (part[0] if len(part) == 1 else np.concatenate(part)) if part else _empty()
            for key, part in parts.items()}
    if len(timelines) > 1:  # one device's gaps are in start order already
        order = np.argsort(cols["device"], kind="stable")
        order = order[np.argsort(cols["g0"][order], kind="stable")]
        if np.any(order != np.arange(len(order))):
            cols = {key: column[order] for key, column in cols.items()}
    return cols


def _blank_code(values: np.ndarray) -> tuple[int, np.ndarray]:
    """The row code of ``""`` among ``values`` (appended when absent)."""
    blank = np.flatnonzero(np.array([isinstance(v, str) and v == "" for v in values],
                                    dtype=bool))
    if len(blank):
        return int(blank[0]), values
    return len(values), np.append(values, np.array([""], dtype=object))


def listed_gaps(ops: pd.DataFrame, api_calls: pd.DataFrame, timelines: list[DeviceTimeline]
                ) -> GapTable:
    """Every listed gap of ``timelines`` with its next operation (the first one of ``ops``
    on that device starting at or after the gap's end) and that operation's launch call (in
    ``api_calls``, :func:`~infraprof.model.correlation.launch_rows`), as a table without NVTX
    names or host details (the instant whose NVTX range names a gap:
    :meth:`GapTable.launch_instants`). Only the gaps' rows are gathered: no joined copy of
    every operation."""
    gaps = _next_operations(ops, timelines)
    if not len(gaps["g0"]):
        return GapTable()
    source = gaps.pop("source")
    # gathered in the operations' own types (ids: their narrowest, int_widths.narrowed); the
    # start only once the launch calls are found (80 MB fewer while they are, at 10 M gaps)
    corr = ops["correlation_id"].to_numpy()[source]
    call = launch_rows(as_frame(pd.DataFrame({"pid": ops["pid"].to_numpy()[source],
                                              "correlation_id": corr}, copy=False)),
                       api_calls)
    no_launch = call < 0
    if len(api_calls) < 2**31:  # rows of the calls: 4 bytes a gap
        call = call.astype(np.int32, copy=False)
    calls = LaunchCalls.of(api_calls)
    next_corr = Deviations.of(corr, calls.at(call, "correlation_id"))
    del corr
    next_start = Deviations.of(ops["start_ns"].to_numpy()[source], gaps["g1"])
    category = np.where(calls.at(call, "end_ns") <= gaps["g0"], np.int8(DEPENDENCY),
                        np.int8(HOST_ROW))
    category[no_launch] = UNKNOWN
    kind, kinds = gathered_text(ops["kind"], source)
    name, names = gathered_text(ops["name"], source)
    stream = ops["stream_id"].to_numpy()[source]
    del source
    api_name, api_names = gathered_text(api_calls["name"], call, no_launch)
    table = GapTable(
        gaps["g0"], gaps["g1"], gaps["device"], kind, name, stream, next_start, next_corr,
        ~no_launch, api_name, call, np.full(len(no_launch), -1, dtype=np.int32),
        category, kinds, names, api_names, calls=calls)
    return table
