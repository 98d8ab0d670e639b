"""Turn gap attributions into ranked findings with recoverable-time estimates.

Each finding covers one cause (category + site); the idle nanoseconds behind different findings
never overlap, because every nanosecond of every gap has exactly one category.

Recoverable time (``impact_ns``) per category:

* ``sync``, ``memcpy``, ``allocation``, ``launch-overhead``, ``dependency``, ``unknown``: the
  attributed idle time (drain exposure already bounds it by what the host could have run ahead;
  launch overhead disappears with CUDA graphs or fusion).
* ``host-cpu``, ``host-wait``: host work can only hide behind GPU work. With double buffering
  (prefetch the next batch / write output from another thread) a host phase overlaps the GPU work
  issued since the previous gap with host work on that device, so a gap recovers
  ``min(its host-side idle, GPU busy time since that previous gap)``, shared between its
  host-cpu and host-wait parts in proportion.

Sites: the dominant call (API or OS-runtime name) for blocking categories, the innermost NVTX
range of the launching thread for host work (else ``(no NVTX range)``), and the kernel names for
launch overhead.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from infraprof.analyses.attribution import GapAttribution
from infraprof.analyses.findings import Finding, Severity
from infraprof.analyses.timeline import DeviceTimeline

RECOMMENDATIONS = {
    "sync": "Remove or defer the synchronization: keep work queued (async copies into pinned "
            "buffers, events instead of device/stream syncs, read results back once per step).",
    "memcpy": "Make the copies asynchronous from pinned (page-locked) memory, batch small "
              "copies, and avoid per-iteration device-to-host read-backs (.item(), .cpu()).",
    "allocation": "Allocate once and reuse (a caching allocator or memory pool, "
                  "cudaMallocAsync); avoid cudaFree/cudaMalloc in the loop (cudaFree syncs).",
    "launch-overhead": "Launch fewer, larger kernels: capture the loop in a CUDA graph, fuse "
                       "small kernels, or batch work per launch.",
    "host-cpu": "Move the host work off the critical path: overlap it with GPU work (a worker "
                "thread or process, prefetching), or speed it up (profile the host code).",
    "host-wait": "The host blocked in I/O, locks or sleeps: prefetch/pipeline data loading "
                 "(more loader workers, pinned memory, async I/O) so the GPU never waits.",
    "dependency": "Work was queued but waited on another stream, event or device: check "
                  "cross-stream waits and load balance between streams/devices.",
    "unknown": "The launching call was not traced; capture with `-t cuda` to attribute it.",
}
WHAT = {
    "sync": "the host was blocked in synchronization",
    "memcpy": "the host was blocked in memory copies",
    "allocation": "the host was in memory allocation",
    "launch-overhead": "kernel launch overhead (host launch cost and queue latency)",
    "host-cpu": "the host thread was busy on the CPU",
    "host-wait": "the host thread waited (I/O, locks, sleeps)",
    "dependency": "queued work waited on another stream/event/device",
    "unknown": "the launching call is unknown",
}


@dataclass(frozen=True)
class GapFindingParams:
    """``max_sites``: sites listed per finding (default 5); ``examples``: example gaps (3)."""

    max_sites: int = 5
    examples: int = 3


def severity_for(share: float) -> Severity:
    """high ≥ 20 % of the GPU active span, medium ≥ 5 %, low ≥ 1 %, else info."""
    if share >= 0.20:
        return "high"
    if share >= 0.05:
        return "medium"
    if share >= 0.01:
        return "low"
    return "info"


_DIGITS = re.compile(r"\d+")


def _normalize(name: str) -> str:
    """Group per-iteration names (``IO 190``, ``data copy in 12``) into one site."""
    return _DIGITS.sub("<n>", name)


def site_of(a: GapAttribution, category: str) -> str:
    """The site a gap's ``category`` time is charged to (see the module docstring)."""
    if category in ("sync", "memcpy", "allocation") and a.drain is not None and (
            a.drain["category"] == category):
        return str(a.drain["name"])
    if category in ("sync", "memcpy", "allocation", "host-wait"):
        for c in a.calls:
            if c["category"] == category:
                return str(c["name"])
        if a.exposed_by is not None and category != "host-wait":
            return a.exposed_by
        if a.launch is not None and category == "memcpy":
            return str(a.launch["name"])
    if category == "launch-overhead":
        return "kernel launches"
    if category == "dependency":
        return f"stream {a.next_op['stream_id']}"
    if category in ("host-cpu", "host-wait"):
        where = a.where.get(category) or a.nvtx
        return _normalize(where) if where else "(no NVTX range)"
    return "(unknown)"


class _BusyIndex:
    """GPU busy time between two instants per device in O(log n): the prefix sums of each
    device's busy intervals are built once (``iv.overlap_total`` rebuilds them per query)."""

    def __init__(self, timelines: dict[int, DeviceTimeline]) -> None:
        self.timelines = timelines
        self.prefix: dict[int, tuple[list[int], list[int], np.ndarray, np.ndarray]] = {}

    def _covered_before(self, device: int, t: int) -> int:
        if device not in self.prefix:
            busy = self.timelines[device].busy
            lengths = np.cumsum(busy.ends - busy.starts)
            self.prefix[device] = ([0, *lengths.tolist()], busy.starts.tolist(), busy.starts,
                                   busy.ends)
        prefix, starts, _, ends = self.prefix[device]
        idx = bisect.bisect_right(starts, t)
        if idx == 0:
            return 0
        return prefix[idx - 1] + max(min(t, int(ends[idx - 1])) - starts[idx - 1], 0)

    def between(self, device: int, t0: int, t1: int) -> int:
        """Same as ``iv.overlap_total(timelines[device].busy, t0, t1)`` (0 without one)."""
        tl = self.timelines.get(device)
        if tl is None or t1 <= t0 or len(tl.busy) == 0:
            return 0
        return self._covered_before(device, t1) - self._covered_before(device, t0)


def gap_findings(attributions: list[GapAttribution], timelines: list[DeviceTimeline],
                 thread_names: dict[int, str], params: GapFindingParams | None = None
                 ) -> list[Finding]:
    """Aggregate attributions into findings, one per (category, site) with positive impact."""
    p = params or GapFindingParams()
    by_dev = {t.device_id: t for t in timelines}
    active = sum(t.span_ns for t in timelines) or 1
    acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"idle": 0, "impact": 0, "gaps": 0, "examples": [], "threads": set(),
                 "nvtx": defaultdict(int), "calls": defaultdict(lambda: [0, 0]),
                 "kernels": defaultdict(int)})
    last_host: dict[int, int] = {}
    busy = _BusyIndex(by_dev)
    for a in sorted(attributions, key=lambda x: x.start_ns):
        host_ns = a.parts.get("host-cpu", 0) + a.parts.get("host-wait", 0)
        budget = 0
        if host_ns:
            prev = last_host.get(a.device_id, by_dev[a.device_id].span_start_ns)
            budget = min(host_ns, busy.between(a.device_id, prev, a.start_ns))
            last_host[a.device_id] = a.end_ns
        for cat, ns in a.parts.items():
            site = site_of(a, cat)
            rec = acc[(cat, site)]
            rec["idle"] += ns
            if cat in ("host-cpu", "host-wait"):
                rec["impact"] += budget * ns // host_ns
            else:
                rec["impact"] += ns
            rec["gaps"] += 1
            if a.global_tid is not None:
                rec["threads"].add(a.global_tid)
            rec["nvtx"][a.where.get(cat) or a.nvtx or "(none)"] += ns
            if cat == "launch-overhead":
                rec["kernels"][a.next_op["name"]] += ns
            for c in a.calls:
                if c["category"] == cat:
                    rec["calls"][c["name"]][0] += 1
                    rec["calls"][c["name"]][1] += int(c["dur_ns"])
            if len(rec["examples"]) < p.examples or ns > rec["examples"][-1]["attributed_ns"]:
                rec["examples"].append({
                    "device_id": a.device_id, "gap_start_ns": a.start_ns,
                    "gap_end_ns": a.end_ns, "attributed_ns": ns,
                    "next_op": a.next_op["name"], "launch_call": a.launch and a.launch["name"],
                    "drain_call": a.drain and a.drain["name"], "nvtx": a.nvtx,
                    "calls": a.calls[:3],
                })
                rec["examples"].sort(key=lambda e: -e["attributed_ns"])
                del rec["examples"][p.examples:]
    findings = []
    for (cat, site), rec in acc.items():
        if rec["impact"] <= 0:
            continue
        share = rec["impact"] / active
        threads = sorted(rec["threads"])
        calls = sorted(rec["calls"].items(), key=lambda kv: -kv[1][1])[: p.max_sites]
        nvtx = sorted(rec["nvtx"].items(), key=lambda kv: -kv[1])[: p.max_sites]
        title = f"{site}: GPU idle {idle_text(rec['idle'])} in {rec['gaps']} gaps; {WHAT[cat]}"
        findings.append(Finding(
            id=f"gap.{cat}",
            category=cat,
            title=title,
            severity=severity_for(share),
            impact_ns=int(rec["impact"]),
            share=share,
            evidence={
                "site": site,
                "gpu_idle_ns": int(rec["idle"]),
                "gaps": int(rec["gaps"]),
                "threads": [{"global_tid": t, "tid": t & 0xFFFFFF,
                             "name": thread_names.get(t)} for t in threads[:5]],
                "nvtx_ranges": [{"name": n, "idle_ns": int(v)} for n, v in nvtx],
                "calls_in_gaps": [{"name": n, "count": c, "in_gap_call_ns": d}
                                  for n, (c, d) in calls],
                "examples": rec["examples"],
                "next_ops": [{"name": n, "idle_ns": int(v)} for n, v in sorted(
                    rec["kernels"].items(), key=lambda kv: -kv[1])[: p.max_sites]],
                "not_recoverable_ns": int(rec["idle"] - rec["impact"]),
            },
            recommendation=RECOMMENDATIONS[cat],
        ))
    return findings


def idle_text(ns: int) -> str:
    """Idle time as finding titles print it (``68.0 ms``, ``1.25 s``, ``575 µs``)."""
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"
