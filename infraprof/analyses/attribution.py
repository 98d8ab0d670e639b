"""Gap cause attribution: for every GPU idle gap, what the host was doing and why the GPU waited.

For a gap ``[g0, g1)`` on a device, the *next* GPU operation (the one starting at ``g1``) is
joined to its launching API call (correlation id + process) and thread::

    GPU     ==op A==|.............. gap ..............|==op B==
    host T  [sync A.....]  python work   [read]  [launch B]
                    ^g0                                   ^g1
            |drain|  tail |  host-cpu    |host-wait| launch |queue|

1. If B's launch call ended before ``g0``, B was already queued when the GPU went idle: the
   gap is a ``dependency`` (B waited on an event, another stream or device).
2. Otherwise every nanosecond of the gap is classified by what the launching thread was doing,
   highest priority first: inside a CUDA call (``sync`` > ``memcpy`` > ``allocation`` >
   ``launch-overhead`` for launch and other CUDA calls), inside a blocking OS-runtime call
   (``host-wait``), inside another OS call (``host-cpu``), else ``host-cpu`` (``unknown`` when
   the thread is not traced at all). After B's launch call returned, the rest is queue latency
   (``launch-overhead``).
3. *Drain exposure*: when the host was blocked in a draining call (a sync, a blocking copy or an
   allocation) that started before ``g0`` and returned inside the gap, the host could not have
   queued its next work earlier. Without that call it would have run ahead by the time it spent
   blocked before ``g0``. That time goes into a per-thread slack pool (capped at
   ``max_run_ahead_ns``); host work (``host-cpu``, ``host-wait``, ``launch-overhead``) that
   follows a drain in later gaps is re-attributed to the drain's category while the pool lasts.
4. Per-launch host overhead: when a gap's remaining ``host-cpu`` time is below
   ``launch_host_max_ns`` (default 50 µs), it is framework/driver work between back-to-back
   launches and counts as ``launch-overhead``.
5. Profiler overhead is excluded earlier (``timeline``); no nanosecond is counted twice, and the
   categories of a gap always sum to its length.

No launch call found (correlation missing) -> ``unknown``.

The result is a :class:`~infraprof.analyses.gap_table.GapTable`: cases 1 and "no launch call"
(~97 % of a real trace's gaps) stay columns; only gaps with host activity are painted, all
gaps of one launching thread at once (:mod:`~infraprof.analyses.host_paint`: segments and
priorities on sorted arrays, the slack pool of rule 3 as a prefix scan over the thread's gaps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from infraprof.analyses.api_classes import api_category, osrt_category
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.gap_table import (
    CATEGORIES,
    GapAttribution,
    GapTable,
    code_width,
    listed_gaps,
)
from infraprof.analyses.host_columns import CODE, CODES, HostColumns, combine
from infraprof.analyses.host_paint import PaintParams, ThreadGaps, expand, host_details
from infraprof.analyses.names import factorized_text
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model import Trace
from infraprof.tables import column_view, positions_by_value

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

_API_TO_CAT = {
    "sync": "sync", "memcpy": "memcpy", "allocation": "allocation", "launch": "launch-overhead",
    "cuda-other": "launch-overhead",
}


@dataclass(frozen=True)
class AttributionParams:
    """Knobs of the attribution heuristic (all ns).

    ``launch_host_max_ns``: host CPU time in a gap below which it counts as per-launch overhead
    (default 50 µs, HTA's launch-delay scale). ``drain_exposure``: apply rule 3 (default on).
    ``max_run_ahead_ns``: cap of the per-thread slack pool of rule 3 — how far ahead of the GPU a
    host can queue work (the launch queue is finite; default 5 ms).
    """

    launch_host_max_ns: int = 50_000
    drain_exposure: bool = True
    max_run_ahead_ns: int = 5_000_000


def _any(rows: np.ndarray | None) -> bool:
    """Whether :meth:`_RowsByThread.rows` found any row (None: every row, some)."""
    return rows is None or bool(len(rows))


def _taken(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``values[rows]``; ``values`` itself for None (every row)."""
    return values if rows is None else values[rows]


class _RowsByThread:
    """The rows (ascending) of each thread in a ``global_tid`` column: for the first
    :data:`SCANNED_THREADS` threads asked for, one comparison over the column each (no
    group-by of 12 M calls: ~0.4 GB of temporaries and 97 MB of row numbers held); after
    that, one stable sort by thread serves every other thread."""

    def __init__(self, threads: np.ndarray) -> None:
        self.threads = threads
        self.scans = 0
        self.grouped: dict[int, np.ndarray] | None = None

    def rows(self, gtid: int) -> np.ndarray | None:
        """Thread ``gtid``'s rows; None when it has every row (and there are some): no
        row numbers (97 MB for a single thread's 12 M calls)."""
        if self.grouped is None and self.scans < SCANNED_THREADS:
            self.scans += 1
            mine = self.threads == gtid
            return None if len(mine) and bool(mine.all()) else np.flatnonzero(mine)
        if self.grouped is None:
            self.grouped = {gtid: rows for gtid, rows in positions_by_value(self.threads)}
        return self.grouped.get(gtid, np.empty(0, dtype=np.int64))


SCANNED_THREADS = 16


class _ThreadIndex:
    """Per-thread sorted activity arrays, built lazily for the threads asked for (those that
    launched the gaps; :class:`_RowsByThread`)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.api_calls = column_view(trace.api_calls, ["start_ns", "end_ns", "name"])
        self.api_rows = _RowsByThread(trace.api_calls["global_tid"].to_numpy())
        self.osrt = trace.osrt
        self.osrt_rows = _RowsByThread(trace.osrt["global_tid"].to_numpy())
        self.ranges = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
        self.range_rows = _RowsByThread(self.ranges["global_tid"].to_numpy())
        self.cache: dict[int, dict[str, Any]] = {}
        self.nvtx_cache: dict[int, dict[str, Any]] = {}

    def get(self, gtid: int) -> dict[str, Any]:
        """Everything of thread ``gtid``: its calls (``api``, ``os``) and NVTX ranges."""
        if gtid in self.cache:
            return self.cache[gtid]
        rows, os_rows = self.api_rows.rows(gtid), self.osrt_rows.rows(gtid)
        entry: dict[str, Any] = {"traced": _any(rows) or _any(os_rows)}
        if _any(rows):
            entry["api"] = _Calls.of(self.api_calls, lambda name: _API_TO_CAT[api_category(name)],
                                     rows)
        if _any(os_rows):
            entry["os"] = _Calls.of(self.osrt if os_rows is None else self.osrt.iloc[os_rows],
                                    osrt_category)
        entry.update(self.nvtx_of(gtid))
        self.cache[gtid] = entry
        return entry

    def forget(self, gtid: int) -> None:
        """Drop thread ``gtid``'s calls (its NVTX ranges stay); a later :meth:`get` reads
        them again."""
        self.cache.pop(gtid, None)

    def nvtx_of(self, gtid: int) -> dict[str, Any]:
        """Only the NVTX ranges of thread ``gtid`` (``nv_s, nv_e, nv_name`` in start order;
        empty without ranges): the launch ranges need no call arrays (30 MB for 1.2 M)."""
        if gtid not in self.nvtx_cache:
            mine = self.range_rows.rows(gtid)
            found: dict[str, Any] = {}
            if _any(mine):
                n = (self.ranges if mine is None else self.ranges.iloc[mine]).sort_values(
                    "start_ns")
                found = {"nv_s": n["start_ns"].to_numpy(dtype=np.int64),
                         "nv_e": n["end_ns"].to_numpy(dtype=np.int64),
                         "nv_name": n["name"].to_numpy(dtype=object)}
            self.nvtx_cache[gtid] = found
        return self.nvtx_cache[gtid]


class _Calls(NamedTuple):
    """One thread's calls sorted by start; ``emax`` is the running maximum of the ends;
    ``code``: each call's category as its :data:`~infraprof.analyses.host_paint.CODES` code;
    a call's name is ``texts[name_code]`` (codes of 1-4 bytes: the thread's 12 M calls of a
    10 M kernel trace hold 24 MB of codes instead of 97 MB of object pointers)."""

    s: np.ndarray
    e: np.ndarray
    emax: np.ndarray
    name_code: np.ndarray
    texts: np.ndarray
    code: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, classify: Callable[[str], str],
           rows: np.ndarray | None = None) -> _Calls:
        """The calls at positions ``rows`` of ``frame`` (None: all) in the order of
        ``frame.sort_values("start_ns")``, gathered per column (no copy of the frame's rows
        and a sorted copy of that: ~40 bytes a call, 1.2 M calls on the main thread). Calls
        already in strictly increasing start order (the usual) are not sorted; a
        Categorical's codes are kept as the name codes (its categories, then NaN, the texts)."""
        starts = _taken(frame["start_ns"].to_numpy(dtype=np.int64), rows)
        order = rows  # None: every row, in frame order (views, no copies)
        if not bool(np.all(starts[1:] > starts[:-1])):  # ties: the order sort_values gives
            by_start = np.argsort(starts, kind="quicksort")
            order, starts = (by_start if rows is None else rows[by_start]), starts[by_start]
            del by_start
        ends = _taken(frame["end_ns"].to_numpy(dtype=np.int64), order)
        names = frame["name"]
        if isinstance(names.dtype, pd.CategoricalDtype):
            # -1 (null): the last text, NaN
            codes = _taken(names.cat.codes.to_numpy(), order)
            texts = np.array([*names.cat.categories, np.nan], dtype=object)
        else:
            codes, texts = factorized_text(names if order is None else names.iloc[order])
        by_class = np.array([CODE[classify(str(x))] for x in texts], dtype=np.int8)
        # one thread's calls rarely nest: their ends are then their running maximum already
        ends_max = ends if bool(np.all(ends[1:] >= ends[:-1])) else np.maximum.accumulate(ends)
        return cls(starts, ends, ends_max, codes, texts,
                   by_class[codes] if len(starts) else np.empty(0, dtype=np.int8))

    def names(self, calls: np.ndarray) -> np.ndarray:
        """The names (object: ``str``, NaN for a null) of the calls at positions ``calls``."""
        return self.texts[self.name_code[calls]] if len(calls) else np.empty(0, dtype=object)

    def overlaps(self, g0: np.ndarray, g1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(gap, call)`` of every call overlapping ``[g0[i], g1[i])``, by gap, then in
        start order (two ``searchsorted`` over all gaps, one gather)."""
        hi = np.searchsorted(self.s, g1, side="left")
        lo = np.searchsorted(self.emax, g0, side="right")
        counts = np.maximum(hi - lo, 0)
        gap = np.repeat(np.arange(len(g0)), counts)
        call = expand(lo, counts)
        keep = self.e[call] > g0[gap]
        return gap[keep], call[keep]


def _innermost_nvtx_rows(entry: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """The innermost NVTX range open at each of ``times`` on one thread: the latest-starting
    range among the 64 starting at or before ``t`` that is still open at ``t`` (ties: the
    later one in start order), as its position in ``entry["nv_s"]`` (-1: none open). Only
    the instants still without a range are looked at in each of the 64 steps back."""
    best = np.full(len(times), -1, dtype=np.int64)
    if "nv_s" not in entry:
        return best
    s, e = entry["nv_s"], entry["nv_e"]
    hi = np.searchsorted(s, times, side="right")
    todo = np.flatnonzero(hi > 0)  # instants still looking back (none found yet)
    for back in range(1, 65):
        i = hi[todo] - back
        todo, i = todo[i >= 0], i[i >= 0]
        if not todo.size:
            break
        hit = e[i] > times[todo]
        best[todo[hit]] = i[hit]
        todo = todo[~hit]
    return best


def _innermost_nvtx_many(entry: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """The name of :func:`_innermost_nvtx_rows` at each of ``times``: an object array of
    ``str``, None where no range is open."""
    out = np.full(len(times), None, dtype=object)
    best = _innermost_nvtx_rows(entry, times)
    found = best >= 0
    distinct, which = np.unique(best[found], return_inverse=True)
    texts = np.array([str(entry["nv_name"][b]) for b in distinct.tolist()], dtype=object)
    out[found] = texts[which]
    return out


def attribute_table(trace: Trace, timelines: list[DeviceTimeline],
                    params: AttributionParams | None = None) -> GapTable:
    """Attribute every listed gap of ``timelines`` (see the module docstring), as a
    :class:`GapTable`: single-category gaps as columns only, gaps with host activity painted
    per launching thread."""
    ops = trace.gpu_ops()
    if ops.empty:
        return GapTable()
    table = listed_gaps(ops, trace.api_calls, timelines)
    del ops
    # the operations table is not read again (its rows were gathered): not held while the
    # host gaps are painted (~250 MB at 10 M operations; a later gpu_ops() builds it again)
    trace.release_gpu_ops()
    index = _ThreadIndex(trace)
    nvtx, nvtx_names = _launch_nvtx(table, index)
    host = _host_details(table, index, params or AttributionParams())
    return replace(table, nvtx=nvtx, nvtx_names=nvtx_names, host=host)


def attribute_gaps(trace: Trace, timelines: list[DeviceTimeline],
                   params: AttributionParams | None = None) -> list[GapAttribution]:
    """:func:`attribute_table` as one record per gap (for tests and small traces)."""
    return attribute_table(trace, timelines, params).records()


def _host_details(table: GapTable, index: _ThreadIndex, p: AttributionParams) -> HostColumns:
    """Paint the gaps with host activity (rules 2-4), thread by thread; the drain slack pool
    of each thread runs over its host gaps in time order. Rows in table order."""
    rows = table.host_rows()
    pieces = []
    for gtid, positions in positions_by_value(table.launch_values("global_tid", rows)):
        mine = rows[positions]
        pieces.append((mine, _thread_details(index.get(gtid), table.g0[mine], table.g1[mine],
                                             table.launch_values("end_ns", mine), p)))
        index.forget(gtid)  # each thread is painted once: only one thread's calls are held
    return combine(pieces)


def _thread_details(entry: dict[str, Any], g0: np.ndarray, g1: np.ndarray,
                    launch_end: np.ndarray, p: AttributionParams) -> HostColumns:
    """:func:`_host_details` of one thread's host gaps (in time order), painted all at once
    (:mod:`~infraprof.analyses.host_paint`)."""
    found = [(table, *table.overlaps(g0, g1)) for key in ("api", "os")
             if (table := entry.get(key)) is not None]
    gap = np.concatenate([np.empty(0, dtype=np.int64), *[gap for _, gap, _ in found]])
    order = np.argsort(gap, kind="stable")  # by gap: API calls, then OS-runtime calls

    def column(field: str, dtype: type) -> np.ndarray:
        parts = [table.names(call) if field == "name" else getattr(table, field)[call]
                 for table, _, call in found]
        return np.concatenate([np.empty(0, dtype=dtype), *parts])[order]

    gaps = ThreadGaps(g0, g1, launch_end, bool(entry["traced"]), gap[order],
                      column("s", np.int64), column("e", np.int64), column("code", np.int8),
                      column("name", object))
    params = PaintParams(p.launch_host_max_ns, p.drain_exposure, p.max_run_ahead_ns)
    return host_details(gaps, params, lambda at: _innermost_nvtx_many(entry, at))


LAUNCH_NVTX_BLOCK = 1 << 20
"""Gaps looked up at a time by :func:`_launch_nvtx` (its temporaries: a few arrays of this
many int64 values, ~8 MB each, instead of as many as there are gaps: ~0.7 GB at 10 M)."""


def _launch_nvtx(table: GapTable, index: _ThreadIndex) -> tuple[np.ndarray, tuple[str, ...]]:
    """Innermost NVTX range of each gap's launching thread at its launch instant
    (:meth:`~infraprof.analyses.gap_table.GapTable.launch_instants`), as codes (-1: none,
    or no launching thread) and the distinct names (codes as ``pd.factorize`` of the names
    gives: by first appearance, equal names one code). The gaps are looked up in blocks of
    :data:`LAUNCH_NVTX_BLOCK` (their threads and instants gathered per block), each
    thread's ranges named by ids into one list of distinct texts, and each block's ids
    numbered as it is done (:class:`_FirstSeen`): no array of every gap but the codes."""
    texts: dict[str, int] = {}
    text_ids: dict[int, np.ndarray] = {}  # thread -> text id of each of its ranges
    numbering = _FirstSeen()
    codes = np.full(len(table), -1, dtype=np.int32)
    for lo in range(0, len(table), LAUNCH_NVTX_BLOCK):
        block = slice(lo, lo + LAUNCH_NVTX_BLOCK)
        gtids = table.calls.at(table.call[block], "global_tid")
        gtids[~table.has_launch[block]] = -1
        at = table.launch_instants(block)
        named = np.full(len(gtids), -1, dtype=np.int32)  # text id of each gap's range
        for gtid, rows in positions_by_value(gtids):
            entry = index.nvtx_of(gtid) if gtid >= 0 else {}
            if "nv_s" not in entry:
                continue
            if gtid not in text_ids:
                by_name, distinct = pd.factorize(entry["nv_name"], use_na_sentinel=False)
                ids = [texts.setdefault(str(text), len(texts)) for text in distinct]
                text_ids[gtid] = np.array(ids, dtype=np.int32)[by_name]
            best = _innermost_nvtx_rows(entry, at[rows])
            named[rows] = np.where(best >= 0, text_ids[gtid][np.maximum(best, 0)], -1)
        codes[block] = numbering.codes(named, len(texts))
    names = np.array(list(texts), dtype=object)[numbering.ids()]
    return codes.astype(code_width(len(names))), tuple(str(x) for x in names)


class _FirstSeen:
    """Codes numbering non-negative ids by first appearance over the blocks given in order
    (as ``pd.factorize`` of all of them numbers them; -1 stays -1)."""

    def __init__(self) -> None:
        self.code_of = np.empty(0, dtype=np.int64)  # per id: its code, -1 not seen yet
        self.count = 0

    def codes(self, ids: np.ndarray, id_count: int) -> np.ndarray:
        """The codes of ``ids`` (values below ``id_count``), numbering the new ones."""
        if len(self.code_of) < id_count:
            self.code_of = np.concatenate((self.code_of, np.full(
                id_count - len(self.code_of), -1, dtype=np.int64)))
        seen = ids >= 0
        if not seen.any():
            return np.full(len(ids), -1, dtype=np.int64)
        distinct, first = np.unique(ids[seen], return_index=True)
        new = self.code_of[distinct] < 0
        fresh = distinct[new][np.argsort(first[new], kind="stable")]
        self.code_of[fresh] = np.arange(self.count, self.count + len(fresh))
        self.count += len(fresh)
        return np.where(seen, self.code_of[np.maximum(ids, 0)], -1)

    def ids(self) -> np.ndarray:
        """The id of each code, in code order."""
        numbered = np.flatnonzero(self.code_of >= 0)
        out = np.empty(self.count, dtype=np.int64)
        out[self.code_of[numbered]] = numbered
        return out


def idle_breakdown(table: GapTable) -> dict[str, int]:
    """Idle ns per category over all gaps (every category present, in :data:`CATEGORIES`
    order)."""
    breakdown = dict.fromkeys(CATEGORIES, 0)
    dur = table.dur
    for code, category in enumerate(CATEGORIES):
        breakdown[category] += int(dur[table.category == code].sum())
    parts = table.host.parts()
    for code, category in enumerate(CODES):
        breakdown[category] += int(parts.ns[parts.code == code].sum())
    return breakdown


def _run_attribution(ctx: AnalysisContext, params: AttributionParams) -> Output:
    return Output(tables={"attributions": ctx.attributions,
                          "idle_breakdown_ns": idle_breakdown(ctx.attributions),
                          "gaps_attributed": len(ctx.attributions)})


ATTRIBUTION = Analysis(
    id="attribution", summary="every nanosecond of every GPU idle gap gets one cause",
    finding_ids=(), params_type=AttributionParams, run=_run_attribution,
    settings=(Setting("drain-cap", "max_run_ahead_ns", "duration",
                      "run-ahead a sync's drain may re-attribute to it (default 5ms)"),))
