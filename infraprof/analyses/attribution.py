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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from infraprof.analyses.api_classes import api_category, osrt_category
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model import Trace
from infraprof.model.correlation import join_launch_calls

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

CATEGORIES = (
    "sync", "memcpy", "allocation", "launch-overhead", "host-cpu", "host-wait", "dependency",
    "unknown",
)
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


@dataclass(slots=True)
class GapAttribution:
    """One gap and how its length splits into categories (``parts`` sums to ``dur_ns``)."""

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
        return max(self.parts.items(), key=lambda kv: kv[1])[0]


class _ThreadIndex:
    """Per-thread sorted activity arrays, built lazily."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        api = trace.api_calls
        self.api_by_tid = {int(str(k)): g for k, g in api.groupby("global_tid", sort=False)}
        osrt = trace.osrt
        self.osrt_by_tid = {int(str(k)): g for k, g in osrt.groupby("global_tid", sort=False)}
        rng = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
        self.nvtx_by_tid = {int(str(k)): g for k, g in rng.groupby("global_tid", sort=False)}
        self.cache: dict[int, dict[str, Any]] = {}

    def get(self, gtid: int) -> dict[str, Any]:
        if gtid in self.cache:
            return self.cache[gtid]
        a = self.api_by_tid.get(gtid)
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

    def overlapping(self, a: int, b: int) -> np.ndarray:
        """Indices of the calls overlapping ``[a, b)``."""
        hi = int(np.searchsorted(self.s, b, side="left"))
        lo = int(np.searchsorted(self.emax, a, side="right"))
        if hi <= lo:
            return np.empty(0, dtype=np.int64)
        idx = np.arange(lo, hi)
        return idx[self.e[idx] > a]


def _innermost_nvtx(entry: dict[str, Any], t: int) -> str | None:
    if "nv_s" not in entry:
        return None
    s, e = entry["nv_s"], entry["nv_e"]
    hi = int(np.searchsorted(s, t, side="right"))
    best: tuple[int, str] | None = None
    for i in range(max(0, hi - 64), hi):
        if s[i] <= t < e[i] and (best is None or s[i] >= best[0]):
            best = (int(s[i]), str(entry["nv_name"][i]))
    return best[1] if best else None


def _innermost_nvtx_many(entry: dict[str, Any], times: np.ndarray) -> list[str | None]:
    """:func:`_innermost_nvtx` for many instants at once (same 64-range look-back): the
    latest-starting range among the 64 starting at or before ``t`` that is still open at ``t``."""
    if "nv_s" not in entry:
        return [None] * len(times)
    s, e, names = entry["nv_s"], entry["nv_e"], entry["nv_name"]
    hi = np.searchsorted(s, times, side="right")
    best = np.full(len(times), -1, dtype=np.int64)
    for back in range(1, 65):
        i = hi - back
        todo = (i >= 0) & (best < 0)
        if not todo.any():
            break
        hit = todo & (e[np.where(todo, i, 0)] > times)
        best[hit] = i[hit]
    return [None if b < 0 else str(names[b]) for b in best.tolist()]


def _paint(a: int, b: int, spans: list[tuple[int, int, str]], base: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Elementary segments of ``[a, b)`` and the winning category of each."""
    bounds = np.unique(np.array([a, b, *[x for s, e, _ in spans for x in (s, e)]],
                                dtype=np.int64))
    bounds = bounds[(bounds >= a) & (bounds <= b)]
    cats = np.full(len(bounds) - 1, base, dtype=object)
    prio = np.zeros(len(bounds) - 1, dtype=np.int64)
    for s, e, cat in spans:
        i0 = int(np.searchsorted(bounds, s))
        i1 = int(np.searchsorted(bounds, e))
        p = _PRIORITY[cat]
        sel = slice(i0, i1)
        mask = prio[sel] <= p
        cats[sel] = np.where(mask, cat, cats[sel])
        prio[sel] = np.where(mask, p, prio[sel])
    return bounds, cats


def _attribute_host(g0: int, g1: int, launch: dict[str, Any], entry: dict[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]],
                               dict[str, Any] | None]:
    spans: list[tuple[int, int, str]] = []
    calls: list[dict[str, Any]] = []
    drain: dict[str, Any] | None = None
    for key in ("api", "os"):
        table: _Calls | None = entry.get(key)
        if table is None:
            continue
        for i in table.overlapping(g0, g1):
            s, e, cat = int(table.s[i]), int(table.e[i]), str(table.cat[i])
            name = str(table.name[i])
            spans.append((max(s, g0), min(e, g1), cat))
            calls.append({"name": name, "start_ns": s, "dur_ns": e - s, "category": cat})
            if cat in _DRAIN and s < g0 <= e and (drain is None or s < drain["start_ns"]):
                drain = {"name": name, "start_ns": s, "end_ns": e, "category": cat,
                         "blocked_before_gap_ns": g0 - s}
    q0 = max(int(launch["end_ns"]), g0)
    queue = [(q0, q0, "launch-overhead")] if g0 < q0 < g1 else []
    bounds, cats = _paint(g0, g1, [*spans, *queue], "host-cpu" if entry["traced"] else "unknown")
    if q0 < g1:
        cats[bounds[:-1] >= q0] = "launch-overhead"
    calls.sort(key=lambda c: -min(c["dur_ns"], g1 - max(c["start_ns"], g0)))
    return bounds, cats, calls[:5], drain


def _expose(bounds: np.ndarray, cats: np.ndarray, drain: dict[str, Any] | None,
            slack: dict[str, Any], g1: int) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3 with a per-thread slack pool: host work after a drain call is re-attributed to it
    while the pool (time the host spent blocked before gaps) lasts."""
    if drain is not None:
        slack["ns"] = min(slack["ns"] + int(drain["blocked_before_gap_ns"]), slack["cap"])
        slack["category"] = drain["category"]
        slack["name"] = drain["name"]
    if slack["ns"] <= 0 or slack["category"] is None:
        return bounds, cats
    after = min(int(drain["end_ns"]), g1) if drain is not None else int(bounds[0])
    i = 0
    while i < len(cats) and slack["ns"] > 0:
        length = int(bounds[i + 1] - bounds[i])
        if bounds[i] < after or cats[i] not in _EXPOSABLE:
            i += 1
            continue
        if length > slack["ns"]:
            cut = int(bounds[i]) + int(slack["ns"])
            bounds = np.insert(bounds, i + 1, cut)
            cats = np.insert(cats, i + 1, cats[i])
            length = int(slack["ns"])
        cats[i] = slack["category"]
        slack["ns"] -= length
        slack["used"] = True
        i += 1
    return bounds, cats


def _where(entry: dict[str, Any], bounds: np.ndarray, cats: np.ndarray) -> dict[str, str]:
    """Innermost NVTX range at the middle of each category's longest segment."""
    lengths = np.diff(bounds)
    best: dict[str, tuple[int, int]] = {}
    for i, (cat, n) in enumerate(zip(cats, lengths, strict=True)):
        if n > best.get(str(cat), (-1, 0))[0]:
            best[str(cat)] = (int(n), i)
    out = {}
    for cat, (_, i) in best.items():
        name = _innermost_nvtx(entry, int(bounds[i] + lengths[i] // 2))
        if name is not None:
            out[cat] = name
    return out


def _parts(bounds: np.ndarray, cats: np.ndarray, p: AttributionParams
           ) -> tuple[dict[str, int], dict[str, list[tuple[int, int]]]]:
    """Per-category totals and time segments (adjacent segments merged), after rule 4."""
    total: dict[str, int] = {}
    for cat, n in zip(cats, np.diff(bounds), strict=True):
        total[str(cat)] = total.get(str(cat), 0) + int(n)
    cpu = total.get("host-cpu", 0)
    rename = {"host-cpu": "launch-overhead"} if 0 < cpu < p.launch_host_max_ns else {}
    segments: dict[str, list[tuple[int, int]]] = {}
    for cat, a, b in zip(cats, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if b <= a:
            continue
        c = rename.get(str(cat), str(cat))
        seg = segments.setdefault(c, [])
        if seg and seg[-1][1] == a:
            seg[-1] = (seg[-1][0], b)
        else:
            seg.append((a, b))
    parts = {c: sum(b - a for a, b in s) for c, s in segments.items()}
    return {k: v for k, v in parts.items() if v > 0}, segments


def attribute_gaps(trace: Trace, timelines: list[DeviceTimeline],
                   params: AttributionParams | None = None) -> list[GapAttribution]:
    """Attribute every listed gap of ``timelines`` (see the module docstring)."""
    p = params or AttributionParams()
    ops = trace.gpu_ops()
    if ops.empty:
        return []
    joined = join_launch_calls(ops, trace.api_calls)
    index = _ThreadIndex(trace)
    g, gtids, launch_at = _gap_table(joined, timelines)
    nvtx = _launch_nvtx(gtids, launch_at, index)
    pools: dict[int, dict[str, Any]] = {}
    out: list[GapAttribution] = []
    rows = zip(g["g0"], g["g1"], g["device"], g["kind"], g["name"], g["stream"], g["start"],
               g["corr"], g["no_launch"], g["api_name"], g["api_start"], g["api_end"], g["gtid"],
               nvtx, strict=True)
    for g0, g1, device, kind, name, stream, start, corr, no_launch, api_name, a0, a1, gtid, nv \
            in rows:
        next_op = {"kind": kind, "name": name, "stream_id": stream, "start_ns": start,
                   "correlation_id": corr}
        if no_launch:
            out.append(GapAttribution(device, g0, g1, {"unknown": g1 - g0}, next_op, None, None,
                                      None))
            continue
        launch: dict[str, Any] = {"name": str(api_name), "start_ns": a0, "end_ns": a1}
        if a1 <= g0:
            out.append(GapAttribution(device, g0, g1, {"dependency": g1 - g0}, next_op, launch,
                                      gtid, nv))
            continue
        entry = index.get(gtid)
        bounds, cats, calls, drain = _attribute_host(g0, g1, launch, entry)
        if p.drain_exposure:
            pool = pools.setdefault(gtid, {"ns": 0, "category": None, "name": None,
                                           "cap": p.max_run_ahead_ns, "used": False})
            pool["used"] = False
            bounds, cats = _expose(bounds, cats, drain, pool, g1)
        parts, segments = _parts(bounds, cats, p)
        out.append(GapAttribution(device, g0, g1, parts, next_op, launch, gtid,
                                  nv, calls, drain, _where(entry, bounds, cats),
                                  str(pool["name"]) if p.drain_exposure and pool["used"]
                                  else None, segments))
    return out


def _gap_table(joined: pd.DataFrame, timelines: list[DeviceTimeline]
               ) -> tuple[dict[str, list[Any]], np.ndarray, np.ndarray]:
    """Every listed gap with its next operation and that operation's launch call, as columns
    (Python lists), ordered by gap start then device (stable); plus, as arrays, the launching
    thread of each gap (-1 when no launch call was found) and the instant whose NVTX range names
    the gap (``min(launch start, gap end)``)."""
    parts: list[dict[str, np.ndarray]] = []
    for tl in timelines:
        d = joined[joined["device_id"] == tl.device_id]
        d = d.iloc[np.argsort(d["start_ns"].to_numpy(dtype=np.int64), kind="stable")]
        start = d["start_ns"].to_numpy(dtype=np.int64)
        idx = np.minimum(np.searchsorted(start, tl.gaps.ends, side="left"), len(d) - 1)
        parts.append({
            "g0": tl.gaps.starts.astype(np.int64), "g1": tl.gaps.ends.astype(np.int64),
            "device": np.full(len(idx), tl.device_id, dtype=np.int64),
            "start": start[idx], "kind": d["kind"].to_numpy(dtype=object)[idx],
            "name": d["name"].to_numpy(dtype=object)[idx],
            "stream": d["stream_id"].to_numpy(dtype=np.int64)[idx],
            "corr": d["correlation_id"].to_numpy(dtype=np.int64)[idx],
            "api_start": d["api_start_ns"].to_numpy(dtype=np.float64)[idx],
            "api_end": d["api_end_ns"].to_numpy(dtype=np.float64)[idx],
            "api_name": d["api_name"].to_numpy(dtype=object)[idx],
            "gtid": d["global_tid"].to_numpy(dtype=np.float64)[idx],
        })
    if not parts:
        return {"g0": [], "g1": [], "device": []}, np.empty(0, np.int64), np.empty(0, np.int64)
    cols = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    order = np.argsort(cols["device"], kind="stable")
    order = order[np.argsort(cols["g0"][order], kind="stable")]
    cols = {key: col[order] for key, col in cols.items()}
    no_launch = np.isnan(cols["api_start"])
    launch_at = np.minimum(np.where(no_launch, 0, cols["api_start"]).astype(np.int64), cols["g1"])
    table: dict[str, list[Any]] = {key: col.tolist() for key, col in cols.items()}
    table["no_launch"] = no_launch.tolist()
    table["kind"] = [str(x) for x in table["kind"]]
    table["name"] = [str(x) for x in table["name"]]
    for key in ("api_start", "api_end", "gtid"):  # int(float) of each, 0 without a launch
        table[key] = np.where(no_launch, 0, cols[key]).astype(np.int64).tolist()
    return table, np.where(no_launch, -1, cols["gtid"]).astype(np.int64), launch_at


def _launch_nvtx(gtids: np.ndarray, at: np.ndarray, index: _ThreadIndex) -> list[str | None]:
    """Innermost NVTX range of each gap's launching thread at ``at`` (None without one)."""
    out: list[str | None] = [None] * len(gtids)
    for gtid in pd.unique(gtids[gtids >= 0]).tolist():
        rows = np.flatnonzero(gtids == gtid)
        for row, name in zip(rows.tolist(), _innermost_nvtx_many(index.get(int(gtid)), at[rows]),
                             strict=True):
            out[row] = name
    return out


def _run_attribution(ctx: AnalysisContext, params: AttributionParams) -> Output:
    breakdown = dict.fromkeys(CATEGORIES, 0)
    for a in ctx.attributions:
        for category, ns in a.parts.items():
            breakdown[category] += ns
    return Output(tables={"attributions": ctx.attributions, "idle_breakdown_ns": breakdown,
                          "gaps_attributed": len(ctx.attributions)})


ATTRIBUTION = Analysis(
    id="attribution", summary="every nanosecond of every GPU idle gap gets one cause",
    finding_ids=(), params_type=AttributionParams, run=_run_attribution,
    settings=(Setting("drain-cap", "max_run_ahead_ns", "duration",
                      "run-ahead a sync's drain may re-attribute to it (default 5ms)"),))
