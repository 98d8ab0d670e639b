"""What the GPU did while the host was blocked: the ``during_wait`` evidence of the
``gap.sync``, ``gap.memcpy`` and ``gap.allocation`` findings.

A sync hides the work it waits for (kernels, H2D/D2H copies, PCIe contention, Unified Memory
page faults). For a finding whose site is the call ``S``, the *blocked time* is the union, per
process, of every ``S`` call's ``[start, end)`` (CUDA API calls, else OS-runtime calls of that
name) — the same calls as ``site_calls``. Over the blocked time of each process and that
process's GPU work on every device it used:

* ``kernel_ns``: covered by the union of its kernels;
* ``memcpy_ns[direction]``: covered by the union of its copies of that direction;
  ``memcpy_bytes[direction]``: copy bytes pro-rated by the part of each copy inside the blocked
  time; ``memcpy_pageable_bytes`` the part whose host side is pageable memory;
  ``achieved_bytes_per_s`` = those bytes over the summed in-wait copy time;
* ``link_peak_bytes_per_s``: the nominal peak the bandwidth is compared with. nsys exports no
  PCIe generation or NVLink topology, so it is assumed from the compute capability: PCIe x16
  gen 3 (16 GB/s) before 8.0, gen 4 (32 GB/s) for 8.x, gen 5 (64 GB/s) for 9.0+; peer copies
  NVLink 150/300/450 GB/s for 7.x/8.x/9.x; device-to-device copies the device memory bandwidth;
* ``um_faults``: Unified Memory CPU page faults (``CUDA_UM_CPU_PAGE_FAULT_EVENTS``) starting in
  the blocked time plus GPU page faults (``numberOfPageFaults`` of
  ``CUDA_UM_GPU_PAGE_FAULT_EVENTS`` rows overlapping it); ``um_fault_ns`` the blocked time
  covered by GPU fault groups; ``um_migrated_bytes`` the in-wait bytes of UM copies (``UVM *``
  directions);
* ``gpu_idle_ns``: blocked time with no GPU operation of the process at all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof.analyses.findings import Finding
from infraprof.model import Trace
from infraprof.tables import as_frame

WAIT_CATEGORIES: Final = ("sync", "memcpy", "allocation")
HOST_DIRECTIONS: Final = ("HtoD", "DtoH", "UVM HtoD", "UVM DtoH")
PEER_DIRECTIONS: Final = ("PtoP",)
_PCIE_BY_MAJOR: Final = ((9, 64e9), (8, 32e9), (0, 16e9))
_NVLINK_BY_MAJOR: Final = ((9, 450e9), (8, 300e9), (7, 150e9))


def _nominal(table: tuple[tuple[int, float], ...], major: int) -> float | None:
    return next((peak for floor, peak in table if major >= floor), None)


def link_peaks(trace: Trace, directions: list[str]) -> dict[str, float | None]:
    """The nominal peak (bytes/s) of each copy direction on this trace's GPUs (module doc)."""
    used = trace.used_gpus()
    majors = pd.to_numeric(used["compute_major"], errors="coerce").dropna()
    major = int(majors.min()) if len(majors) else 0
    mem = pd.to_numeric(used["memory_bandwidth_bytes_per_s"], errors="coerce").dropna()
    out: dict[str, float | None] = {}
    for d in directions:
        if d in HOST_DIRECTIONS:
            out[d] = _nominal(_PCIE_BY_MAJOR, major)
        elif d in PEER_DIRECTIONS:
            out[d] = _nominal(_NVLINK_BY_MAJOR, major)
        elif d == "DtoD" and len(mem):
            out[d] = float(mem.min())
        else:
            out[d] = None
    return out


def blocked_by_pid(trace: Trace, site: str) -> dict[int, intervals.Intervals]:
    """Union of the ``site`` calls' time per process (API calls, else OS-runtime calls)."""
    calls = trace.api_calls[trace.api_calls["name"] == site]
    if calls.empty:
        calls = trace.osrt[trace.osrt["name"] == site]
    return {int(str(pid)): intervals.union(c["start_ns"].to_numpy(), c["end_ns"].to_numpy())
            for pid, c in calls.groupby("pid")}


def _covered(blocked: intervals.Intervals, frame: pd.DataFrame) -> int:
    return _covered_ns(blocked, frame["start_ns"].to_numpy(), frame["end_ns"].to_numpy())


def _overlapping(blocked: intervals.Intervals, starts: np.ndarray, ends: np.ndarray
                 ) -> np.ndarray:
    """Per ``[starts[i], ends[i])``: whether it overlaps ``blocked`` (disjoint, sorted): the
    first blocked interval ending after the start begins before the end."""
    if len(blocked) == 0:
        return np.zeros(len(starts), dtype=bool)
    first = np.searchsorted(blocked.ends, starts, side="right")
    inside = first < len(blocked)
    # gathered at a clamped index, not through masked copies (8 MB each at 1 M operations)
    np.minimum(first, len(blocked) - 1, out=first)
    inside &= blocked.starts[first] < ends
    return inside


OPS_BLOCK = 1 << 20  # operations tested at a time by _overlapping_ops


def _overlapping_ops(table: pd.DataFrame, pid: int, blocked: intervals.Intervals
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the operations of ``table`` (kernels, memcpys or memsets) of
    process ``pid`` that overlap ``blocked``, tested in blocks of :data:`OPS_BLOCK` rows on
    the table's own columns (no concatenated copy of every operation)."""
    if table.empty:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    pids = table["pid"].to_numpy()
    starts = table["start_ns"].to_numpy(dtype=np.int64)
    ends = table["end_ns"].to_numpy(dtype=np.int64)
    rows = np.concatenate([np.empty(0, dtype=np.int64), *(
        lo + np.flatnonzero((pids[lo:lo + OPS_BLOCK] == pid) & _overlapping(
            blocked, starts[lo:lo + OPS_BLOCK], ends[lo:lo + OPS_BLOCK]))
        for lo in range(0, len(table), OPS_BLOCK))])
    return starts[rows], ends[rows]


def _covered_ns(blocked: intervals.Intervals, starts: np.ndarray, ends: np.ndarray) -> int:
    """ns of ``blocked`` covered by the union of ``[starts, ends)``."""
    return intervals.intersect(blocked, intervals.union(starts, ends)).total_ns


def _copy_parts(blocked: intervals.Intervals, copies: pd.DataFrame) -> pd.DataFrame:
    """Per copy: ``in_ns`` (its time inside the blocked union) and pro-rated bytes."""
    s, e = copies["start_ns"].to_numpy(np.int64), copies["end_ns"].to_numpy(np.int64)
    inside = intervals.overlap_each(blocked, s, e)
    dur = e - s
    point = (dur <= 0) & (intervals.overlap_each(blocked, s, s + 1) > 0)
    frac = np.where(dur > 0, inside / np.maximum(dur, 1), point.astype(np.float64))
    host = copies["src_kind"].where(copies["direction"].isin(["HtoD", "UVM HtoD"]),
                                    copies["dst_kind"])
    return as_frame(pd.DataFrame({"direction": copies["direction"].to_numpy(), "in_ns": inside,
                                  "bytes": copies["bytes"].to_numpy(np.float64) * frac,
                                  "pageable": (host == "Pageable").to_numpy()}))


def _faults(trace: Trace, pid: int, blocked: intervals.Intervals) -> tuple[int, int]:
    """``(fault count, GPU fault-group ns)`` of ``pid`` inside the blocked time."""
    cpu = trace.um_cpu_faults[trace.um_cpu_faults["pid"] == pid]
    t = cpu["start_ns"].to_numpy(np.int64)
    count = int((intervals.overlap_each(blocked, t, t + 1) > 0).sum())
    gpu = trace.um_gpu_faults[trace.um_gpu_faults["pid"] == pid]
    if len(gpu):
        s, e = gpu["start_ns"].to_numpy(np.int64), gpu["end_ns"].to_numpy(np.int64)
        hit = intervals.overlap_each(blocked, s, np.maximum(e, s + 1)) > 0
        count += int(gpu["faults"].to_numpy(np.int64)[hit].sum())
        return count, intervals.intersect(blocked, intervals.union(s, e)).total_ns
    return count, 0


def during_wait(trace: Trace, site: str) -> dict[str, Any] | None:
    """The ``during_wait`` evidence for blocking call ``site`` (module docstring), or None
    when the trace holds no such call."""
    blocked = blocked_by_pid(trace, site)
    if not blocked:
        return None
    kernel_ns = idle_ns = um_faults = um_fault_ns = 0
    parts = []
    for pid, span in blocked.items():
        # only the operations that overlap the blocked time can cover part of it
        found = [_overlapping_ops(table, pid, span)
                 for table in (trace.kernels, trace.memcpy, trace.memset)]
        kernel_ns += _covered_ns(span, *found[0])
        idle_ns += span.total_ns - _covered_ns(span, *(np.concatenate(
            [bounds[side] for bounds in found]) for side in (0, 1)))
        faults, fault_ns = _faults(trace, pid, span)
        um_faults, um_fault_ns = um_faults + faults, um_fault_ns + fault_ns
        copies = trace.memcpy[trace.memcpy["pid"] == pid]
        if len(copies):
            by_dir = {str(d): _covered(span, c) for d, c in copies.groupby("direction")}
            parts.append((_copy_parts(span, copies), by_dir))
    copy = _copy_evidence(trace, parts)
    migrated = copy.pop("um_migrated_bytes")
    return {"site": site, "blocked_ns": sum(s.total_ns for s in blocked.values()),
            "kernel_ns": int(kernel_ns), **copy, "um_faults": int(um_faults),
            "um_fault_ns": int(um_fault_ns), "um_migrated_bytes": migrated,
            "gpu_idle_ns": int(idle_ns)}


def _copy_evidence(trace: Trace, parts: list[tuple[pd.DataFrame, dict[str, int]]]
                   ) -> dict[str, Any]:
    """The ``memcpy_*``, bandwidth and peak keys from the per-process copy parts."""
    union_ns: dict[str, int] = {}
    for _, by_dir in parts:
        for d, ns in by_dir.items():
            union_ns[d] = union_ns.get(d, 0) + ns
    dirs = sorted(d for d, ns in union_ns.items() if ns > 0)
    copy = pd.concat([p for p, _ in parts]) if parts else _copy_parts(
        intervals.union([], []), trace.memcpy.iloc[:0])
    size = {str(d): float(v) for d, v in copy.groupby("direction")["bytes"].sum().items()}
    in_ns = {str(d): float(v) for d, v in copy.groupby("direction")["in_ns"].sum().items()}
    pageable = {str(d): float(v) for d, v in copy[copy["pageable"].astype(bool)].groupby(
        "direction")["bytes"].sum().items()}
    return {
        "memcpy_ns": {d: int(union_ns[d]) for d in dirs},
        "memcpy_bytes": {d: round(size.get(d, 0.0)) for d in dirs},
        "memcpy_pageable_bytes": {d: round(pageable.get(d, 0.0)) for d in dirs},
        "achieved_bytes_per_s": {d: round(size.get(d, 0.0) * 1e9 / in_ns[d], 1)
                                 for d in dirs if in_ns.get(d)},
        "link_peak_bytes_per_s": link_peaks(trace, dirs),
        "um_migrated_bytes": round(sum(size.get(d, 0.0) for d in dirs if d.startswith("UVM"))),
    }


def with_during_wait(finding: Finding, trace: Trace) -> Finding:
    """``finding`` with ``during_wait`` appended as its last evidence key (blocking-call
    findings only; others, and sites with no calls in the trace, are returned unchanged)."""
    if finding.category not in WAIT_CATEGORIES:
        return finding
    found = during_wait(trace, str(finding.evidence.get("site")))
    if found is None:
        return finding
    return replace(finding, evidence={**finding.evidence, "during_wait": found})
