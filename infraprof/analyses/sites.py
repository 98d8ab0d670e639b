"""Where a gap's idle time is charged (its *site*) and how each cause is worded.

Sites: the dominant call (API or OS-runtime name) for blocking categories — the call whose
drain exposed the time when there is one —, the innermost NVTX range of the launching thread
for host work (numbers normalised, ``step 12`` → ``step <n>``; else ``(no NVTX range)``),
``kernel launches`` for launch overhead and ``stream N`` for dependencies.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from infraprof.analyses.gap_table import GapAttribution, GapTable
from infraprof.analyses.host_columns import CODES, PartRows, missing, texts

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


def part_sites(table: GapTable, parts: PartRows) -> np.ndarray:
    """:func:`site_of` of every part of the gaps with host activity (``parts`` of
    ``table.host``), as an object array of ``str``: the same rules on columns."""
    host = table.host
    rows = host.rows[parts.gap]
    cats = np.array(CODES, dtype=object)[parts.code]
    site = np.full(len(rows), "(unknown)", dtype=object)
    blocking = np.isin(cats, ("sync", "memcpy", "allocation"))
    by_drain = blocking & (host.drain_code[parts.gap] == parts.code)
    site[by_drain] = host.drain_name[parts.gap[by_drain]]
    open_ = ~by_drain & (blocking | (cats == "host-wait"))
    call = host.first_call_of(parts.gap, parts.code)
    by_call = open_ & ~missing(call)
    site[by_call] = call[by_call]
    open_ &= ~by_call
    exposed = host.exposed_by[parts.gap]
    by_exposed = open_ & ~missing(exposed) & (cats != "host-wait")
    site[by_exposed] = exposed[by_exposed]
    open_ &= ~by_exposed
    by_launch = open_ & (cats == "memcpy") & table.has_launch[rows]
    site[by_launch] = np.array(table.api_names, dtype=object)[table.api_name[rows[by_launch]]]
    site[cats == "launch-overhead"] = "kernel launches"
    streams, which = np.unique(table.op_stream[rows[cats == "dependency"]], return_inverse=True)
    site[cats == "dependency"] = np.array([f"stream {s}" for s in streams.tolist()],
                                          dtype=object)[which]
    host_side = ((cats == "host-cpu") | (cats == "host-wait")) & ~by_call
    where = nvtx_label(table, parts, host_side)
    site[host_side] = _normalized(where, "(no NVTX range)")
    return texts(site)


def nvtx_label(table: GapTable, parts: PartRows, mask: np.ndarray) -> np.ndarray:
    """``where.get(category) or launch NVTX range`` of the parts of ``mask`` (object; None
    where both are missing or empty)."""
    gap, code = parts.gap[mask], parts.code[mask]
    spot = table.host.spot_of(gap, code)
    nvtx = table.nvtx[table.host.rows[gap]]
    names = np.array([*table.nvtx_names, None], dtype=object)
    launch = names[np.where(nvtx >= 0, nvtx, len(table.nvtx_names))]
    empty = missing(spot) | np.equal(spot, "")
    out = np.where(empty, launch, spot)
    out[np.equal(out, "")] = None
    return out


def _normalized(names: np.ndarray, absent: str) -> np.ndarray:
    """:func:`_normalize` of each name (once per distinct name), ``absent`` for None."""
    out = np.full(len(names), absent, dtype=object)
    present = ~missing(names)
    if present.any():
        codes, distinct = pd.factorize(names[present], use_na_sentinel=False)
        out[present] = np.array([_normalize(str(x)) for x in distinct], dtype=object)[codes]
    return out


def idle_text(ns: int) -> str:
    """Idle time as finding titles print it (``68.0 ms``, ``1.25 s``, ``575 µs``)."""
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"
