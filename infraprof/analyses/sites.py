"""Where a gap's idle time is charged (its *site*) and how each cause is worded.

Sites: the dominant call (API or OS-runtime name) for blocking categories — the call whose
drain exposed the time when there is one —, the innermost NVTX range of the launching thread
for host work (numbers normalised, ``step 12`` → ``step <n>``; else ``(no NVTX range)``),
``kernel launches`` for launch overhead and ``stream N`` for dependencies.
"""

from __future__ import annotations

import re

from infraprof.analyses.gap_table import GapAttribution

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


def idle_text(ns: int) -> str:
    """Idle time as finding titles print it (``68.0 ms``, ``1.25 s``, ``575 µs``)."""
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"
