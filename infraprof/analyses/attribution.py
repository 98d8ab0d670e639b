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
(~97 % of a real trace's gaps) stay columns; only gaps with host activity are painted, one by
one in time order (the slack pool of rule 3 is sequential per thread).
"""

from __future__ import annotations

import bisect
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
    HostDetail,
    listed_gaps,
)
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model import Trace
from infraprof.model.correlation import join_launch_calls
from infraprof.tables import column_view

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

_API_TO_CAT = {
    "sync": "sync", "memcpy": "memcpy", "allocation": "allocation", "launch": "launch-overhead",
    "cuda-other": "launch-overhead",
}
_PRIORITY = {  # larger paints over smaller
    "unknown": 0, "host-cpu": 1, "host-wait": 2, "launch-overhead": 3, "allocation": 4,
    "memcpy": 5, "sync": 6,
}
_DRAIN = ("sync", "memcpy", "allocation")
_EXPOSABLE = ("host-cpu", "launch-overhead", "host-wait")


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


class _ThreadIndex:
    """Per-thread sorted activity arrays, built lazily."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        # row numbers per thread, not a copy of every column per thread (1.2 M calls: 100 MB)
        self.api_calls = column_view(trace.api_calls, ["start_ns", "end_ns", "name"])
        self.api_rows = {int(str(k)): rows for k, rows in
                         trace.api_calls.groupby("global_tid", sort=False).indices.items()}
        osrt = trace.osrt
        self.osrt_by_tid = {int(str(k)): g for k, g in osrt.groupby("global_tid", sort=False)}
        rng = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
        self.nvtx_by_tid = {int(str(k)): g for k, g in rng.groupby("global_tid", sort=False)}
        self.cache: dict[int, dict[str, Any]] = {}

    def get(self, gtid: int) -> dict[str, Any]:
        if gtid in self.cache:
            return self.cache[gtid]
        rows = self.api_rows.get(gtid)
        a = None if rows is None else self.api_calls.iloc[rows]
        o = self.osrt_by_tid.get(gtid)
        n = self.nvtx_by_tid.get(gtid)
        entry: dict[str, Any] = {"traced": a is not None or o is not None}
        if a is not None:
            entry["api"] = _Calls.of(a, lambda name: _API_TO_CAT[api_category(name)])
        if o is not None:
            entry["os"] = _Calls.of(o, osrt_category)
        if n is not None:
            n = n.sort_values("start_ns")
            entry["nv_s"] = n["start_ns"].to_numpy(dtype=np.int64)
            entry["nv_e"] = n["end_ns"].to_numpy(dtype=np.int64)
            entry["nv_name"] = n["name"].to_numpy(dtype=object)
        self.cache[gtid] = entry
        return entry


class _Calls(NamedTuple):
    """One thread's calls sorted by start; ``emax`` is the running maximum of the ends."""

    s: np.ndarray
    e: np.ndarray
    emax: np.ndarray
    name: np.ndarray
    cat: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, classify: Callable[[str], str]) -> _Calls:
        f = frame.sort_values("start_ns")
        ends = f["end_ns"].to_numpy(dtype=np.int64)
        names = f["name"].to_numpy(dtype=object)
        codes, uniques = pd.factorize(names, use_na_sentinel=False)
        classes = np.array([classify(str(x)) for x in uniques], dtype=object)
        return cls(f["start_ns"].to_numpy(dtype=np.int64), ends, np.maximum.accumulate(ends),
                   names, classes[codes] if len(names) else np.empty(0, dtype=object))

    def overlaps(self, g0: np.ndarray, g1: np.ndarray) -> _Overlaps:
        """The calls overlapping each ``[g0[i], g1[i])``, in start order, for all gaps at
        once (two ``searchsorted`` over the gaps, one gather)."""
        hi = np.searchsorted(self.s, g1, side="left")
        lo = np.searchsorted(self.emax, g0, side="right")
        counts = np.maximum(hi - lo, 0)
        gap = np.repeat(np.arange(len(g0)), counts)
        first = np.cumsum(counts) - counts
        idx = np.repeat(lo, counts) + np.arange(int(counts.sum())) - np.repeat(first, counts)
        keep = self.e[idx] > g0[gap]
        idx, gap = idx[keep], gap[keep]
        offsets = np.searchsorted(gap, np.arange(len(g0) + 1), side="left")
        items = list(zip(self.s[idx].tolist(), self.e[idx].tolist(),
                         map(str, self.cat[idx].tolist()), map(str, self.name[idx].tolist()),
                         strict=True))
        return _Overlaps(offsets.tolist(), items)


class _Overlaps(NamedTuple):
    """Calls overlapping each of a thread's gaps: gap ``i``'s are
    ``items[offsets[i]:offsets[i + 1]]``, as ``(start, end, category, name)``."""

    offsets: list[int]
    items: list[tuple[int, int, str, str]]

    def of(self, i: int) -> list[tuple[int, int, str, str]]:
        return self.items[self.offsets[i]:self.offsets[i + 1]]


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


Painted = tuple[list[int], list[str]]  # segment bounds (len n + 1) and each segment's category


def _paint(a: int, b: int, spans: list[tuple[int, int, str]], base: str) -> Painted:
    """Elementary segments of ``[a, b)`` and the winning category of each (a gap has a few
    segments: plain Python beats numpy here)."""
    bounds = sorted({x for x in (a, b, *[x for s, e, _ in spans for x in (s, e)]) if a <= x <= b})
    cats = [base] * (len(bounds) - 1)
    prio = [0] * (len(bounds) - 1)
    for s, e, cat in spans:
        p = _PRIORITY[cat]
        for i in range(bisect.bisect_left(bounds, s), bisect.bisect_left(bounds, e)):
            if prio[i] <= p:
                cats[i] = cat
                prio[i] = p
    return bounds, cats


def _attribute_host(g0: int, g1: int, launch_end: int, traced: bool,
                    found: list[tuple[int, int, str, str]]
                    ) -> tuple[list[int], list[str], list[dict[str, Any]],
                               dict[str, Any] | None]:
    """Paint one gap from the calls overlapping it (API calls, then OS-runtime calls)."""
    spans: list[tuple[int, int, str]] = []
    calls: list[dict[str, Any]] = []
    drain: dict[str, Any] | None = None
    for s, e, cat, name in found:
        spans.append((max(s, g0), min(e, g1), cat))
        calls.append({"name": name, "start_ns": s, "dur_ns": e - s, "category": cat})
        if cat in _DRAIN and s < g0 <= e and (drain is None or s < drain["start_ns"]):
            drain = {"name": name, "start_ns": s, "end_ns": e, "category": cat,
                     "blocked_before_gap_ns": g0 - s}
    q0 = max(launch_end, g0)
    queue = [(q0, q0, "launch-overhead")] if g0 < q0 < g1 else []
    bounds, cats = _paint(g0, g1, [*spans, *queue], "host-cpu" if traced else "unknown")
    if q0 < g1:
        cats = ["launch-overhead" if lo >= q0 else cat
                for lo, cat in zip(bounds[:-1], cats, strict=True)]
    calls.sort(key=lambda c: -min(c["dur_ns"], g1 - max(c["start_ns"], g0)))
    return bounds, cats, calls[:5], drain


def _expose(bounds: list[int], cats: list[str], drain: dict[str, Any] | None,
            slack: dict[str, Any], g1: int) -> None:
    """Rule 3 with a per-thread slack pool: host work after a drain call is re-attributed to it
    while the pool (time the host spent blocked before gaps) lasts (``bounds`` and ``cats``
    are changed in place)."""
    if drain is not None:
        slack["ns"] = min(slack["ns"] + int(drain["blocked_before_gap_ns"]), slack["cap"])
        slack["category"] = drain["category"]
        slack["name"] = drain["name"]
    if slack["ns"] <= 0 or slack["category"] is None:
        return
    after = min(int(drain["end_ns"]), g1) if drain is not None else bounds[0]
    i = 0
    while i < len(cats) and slack["ns"] > 0:
        length = bounds[i + 1] - bounds[i]
        if bounds[i] < after or cats[i] not in _EXPOSABLE:
            i += 1
            continue
        if length > slack["ns"]:
            bounds.insert(i + 1, bounds[i] + int(slack["ns"]))
            cats.insert(i + 1, cats[i])
            length = int(slack["ns"])
        cats[i] = slack["category"]
        slack["ns"] -= length
        slack["used"] = True
        i += 1


def _where_points(bounds: list[int], cats: list[str]) -> list[tuple[str, int]]:
    """The middle of each category's longest segment (the first of equal ones), in order of
    the categories' first segments: where its innermost NVTX range is looked up."""
    best: dict[str, tuple[int, int]] = {}
    for i, cat in enumerate(cats):
        n = bounds[i + 1] - bounds[i]
        if n > best.get(cat, (-1, 0))[0]:
            best[cat] = (n, i)
    return [(cat, bounds[i] + n // 2) for cat, (n, i) in best.items()]


def _parts(bounds: list[int], cats: list[str], p: AttributionParams
           ) -> tuple[dict[str, int], dict[str, list[tuple[int, int]]]]:
    """Per-category totals and time segments (adjacent segments merged), after rule 4."""
    total: dict[str, int] = {}
    for cat, a, b in zip(cats, bounds[:-1], bounds[1:], strict=True):
        total[cat] = total.get(cat, 0) + b - a
    cpu = total.get("host-cpu", 0)
    rename = {"host-cpu": "launch-overhead"} if 0 < cpu < p.launch_host_max_ns else {}
    segments: dict[str, list[tuple[int, int]]] = {}
    for cat, a, b in zip(cats, bounds[:-1], bounds[1:], strict=True):
        if b <= a:
            continue
        c = rename.get(cat, cat)
        seg = segments.setdefault(c, [])
        if seg and seg[-1][1] == a:
            seg[-1] = (seg[-1][0], b)
        else:
            seg.append((a, b))
    parts = {c: sum(b - a for a, b in s) for c, s in segments.items()}
    return {k: v for k, v in parts.items() if v > 0}, segments


def attribute_table(trace: Trace, timelines: list[DeviceTimeline],
                    params: AttributionParams | None = None) -> GapTable:
    """Attribute every listed gap of ``timelines`` (see the module docstring), as a
    :class:`GapTable`: single-category gaps as columns only, gaps with host activity painted
    one by one."""
    ops = trace.gpu_ops()
    if ops.empty:
        return GapTable()
    joined = join_launch_calls(ops, trace.api_calls)
    index = _ThreadIndex(trace)
    table, launch_at = listed_gaps(joined, timelines)
    nvtx, nvtx_names = _launch_nvtx(np.where(table.has_launch, table.gtid, -1), launch_at, index)
    host = _host_details(table, index, params or AttributionParams())
    return replace(table, nvtx=nvtx, nvtx_names=nvtx_names, host=host)


def attribute_gaps(trace: Trace, timelines: list[DeviceTimeline],
                   params: AttributionParams | None = None) -> list[GapAttribution]:
    """:func:`attribute_table` as one record per gap (for tests and small traces)."""
    return attribute_table(trace, timelines, params).records()


def _host_details(table: GapTable, index: _ThreadIndex, p: AttributionParams
                  ) -> dict[int, HostDetail]:
    """Paint the gaps with host activity (rules 2-4), thread by thread; the drain slack pool
    of each thread runs over its host gaps in time order. Keyed by row, in table order."""
    rows = table.host_rows()
    details: dict[int, HostDetail] = {}
    for gtid, positions in _by_thread(table.gtid[rows]):
        mine = rows[positions]
        details.update(_thread_details(index.get(gtid), mine, table.g0[mine], table.g1[mine],
                                       table.api_end[mine], p))
    return {row: details[row] for row in rows.tolist()}


def _by_thread(gtids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Each distinct thread of ``gtids`` (ascending) and its positions (ascending)."""
    if not len(gtids):
        return []
    order = np.argsort(gtids, kind="stable")
    ordered = gtids[order]
    firsts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return [(int(ordered[lo]), order[lo:hi]) for lo, hi in
            zip(firsts.tolist(), [*firsts[1:].tolist(), len(order)], strict=True)]


def _thread_details(entry: dict[str, Any], rows: np.ndarray, g0: np.ndarray, g1: np.ndarray,
                    launch_end: np.ndarray, p: AttributionParams) -> dict[int, HostDetail]:
    """:func:`_host_details` of one thread's host gaps (in time order): the overlapping calls
    and the NVTX ranges of ``where`` are looked up for all of them at once."""
    found = [table.overlaps(g0, g1) for key in ("api", "os")
             if (table := entry.get(key)) is not None]
    pool: dict[str, Any] = {"ns": 0, "category": None, "name": None,
                            "cap": p.max_run_ahead_ns, "used": False}
    queries: list[tuple[dict[str, str], str, int]] = []
    out: dict[int, HostDetail] = {}
    for i, (row, a, b, a1) in enumerate(zip(rows.tolist(), g0.tolist(), g1.tolist(),
                                            launch_end.tolist(), strict=True)):
        calls_in = [item for overlaps in found for item in overlaps.of(i)]
        bounds, cats, calls, drain = _attribute_host(a, b, a1, entry["traced"], calls_in)
        exposed_by = None
        if p.drain_exposure:
            pool["used"] = False
            _expose(bounds, cats, drain, pool, b)
            exposed_by = str(pool["name"]) if pool["used"] else None
        parts, segments = _parts(bounds, cats, p)
        where: dict[str, str] = {}
        queries.extend((where, cat, t) for cat, t in _where_points(bounds, cats))
        out[row] = HostDetail(parts, calls, drain, where, exposed_by, segments)
    at = np.array([t for _, _, t in queries], dtype=np.int64)
    for (where, cat, _), name in zip(queries, _innermost_nvtx_many(entry, at).tolist(),
                                     strict=True):
        if name is not None:
            where[cat] = name
    return out


def _launch_nvtx(gtids: np.ndarray, at: np.ndarray, index: _ThreadIndex
                 ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Innermost NVTX range of each gap's launching thread at ``at``, as int32 codes (-1: none,
    or no launching thread: ``gtids`` < 0) and the distinct names (codes as
    ``pd.factorize`` of the names gives: by first appearance, equal names one code)."""
    ranges = np.full(len(gtids), -1, dtype=np.int64)  # range number over all threads
    texts: list[str] = []
    for gtid, rows in _by_thread(gtids):
        if gtid >= 0:
            entry = index.get(gtid)
            best = _innermost_nvtx_rows(entry, at[rows])
            ranges[rows] = np.where(best >= 0, best + len(texts), -1)
            texts.extend(map(str, entry.get("nv_name", ())))
    found = ranges >= 0
    by_range, distinct = pd.factorize(ranges[found])
    by_text, names = pd.factorize(np.array([texts[r] for r in distinct.tolist()], dtype=object))
    codes = np.full(len(gtids), -1, dtype=np.int32)
    codes[found] = np.asarray(by_text, dtype=np.int32)[by_range]
    return codes, tuple(str(x) for x in names)


def idle_breakdown(table: GapTable) -> dict[str, int]:
    """Idle ns per category over all gaps (every category present, in :data:`CATEGORIES`
    order)."""
    breakdown = dict.fromkeys(CATEGORIES, 0)
    dur = table.dur
    for code, category in enumerate(CATEGORIES):
        breakdown[category] += int(dur[table.category == code].sum())
    for detail in table.host.values():
        for category, ns in detail.parts.items():
            breakdown[category] += ns
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
