"""Collective communication kernels (NCCL) per device and how much of them compute hides.

Per device, with ``C`` the union of its ``communication``-class kernels and ``K`` the union of
its other kernels (compute)::

    comm     |=====C=====|        |==C==|
    compute     |==K==|  |===K===|
    overlap     ^^^^^^^                     |C ∩ K|
    exposed  ^^^       ^^^        ^^^^^^^   |C| − |C ∩ K|   (no compute beside it)

so ``overlap_ns + exposed_ns == comm_ns`` and ``exposed_ns <= comm_ns`` exactly.

``comm.exposed``: the exposed communication time of all devices. **Impact**: the exposed time
(an upper bound: perfect overlap with compute — bucketed all-reduce during backward, gradient
accumulation — would hide it). Evidence: overlap ratio, the collectives by operation
(``AllReduce``/``Broadcast``/``AllGather``/``ReduceScatter``/``Reduce``/``SendRecv``, parsed
from the kernel name) and the NVTX ranges, on the launching thread, that enclose the launch
calls of kernels with exposed time (nested ranges each count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.model import Trace
from infraprof.model.correlation import join_launch_calls
from infraprof.tables import fill_text, map_distinct

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

COLLECTIVE_RE: Final = re.compile(
    r"(AllReduce|ReduceScatter|AllGather|Broadcast|AllToAll|SendRecv|Reduce|Send|Recv)",
    re.IGNORECASE)
_DIGITS: Final = re.compile(r"\d+")


@dataclass(frozen=True)
class CommParams:
    """``min_exposed_share``: exposed share of the active span below which ``comm.exposed``
    stays silent (0.001); ``top``: collectives and NVTX ranges listed (5)."""

    min_exposed_share: float = 0.001
    top: int = 5


@dataclass(frozen=True)
class DeviceComm:
    """Communication on one device: union times in ns (see the module docstring)."""

    device_id: int
    comm_ns: int
    compute_ns: int
    overlap_ns: int
    kernels: int

    @property
    def exposed_ns(self) -> int:
        return self.comm_ns - self.overlap_ns

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "comm_kernels": self.kernels,
                "comm_ns": self.comm_ns, "compute_ns": self.compute_ns,
                "overlap_ns": self.overlap_ns, "exposed_ns": self.exposed_ns,
                "overlap_ratio": round(self.overlap_ns / self.comm_ns, 6) if self.comm_ns
                else 0.0}


def comm_overlap(comm: intervals.Intervals, compute: intervals.Intervals) -> int:
    """``|comm ∩ compute|`` of two disjoint interval sets."""
    return intervals.intersect(comm, compute).total_ns


def collective_of(name: str) -> str:
    """``AllReduce`` for ``ncclKernel_AllReduce_RING_LL_Sum_float`` (``other`` if unnamed)."""
    m = COLLECTIVE_RE.search(name)
    if m is None:
        return "other"
    word = m.group(1).lower()
    return {"allreduce": "AllReduce", "reducescatter": "ReduceScatter",
            "allgather": "AllGather", "broadcast": "Broadcast", "alltoall": "AllToAll",
            "sendrecv": "SendRecv", "reduce": "Reduce", "send": "Send", "recv": "Recv"}[word]


def device_comm(kernels: pd.DataFrame) -> tuple[list[DeviceComm], pd.Series]:
    """Per-device communication summaries, and each communication kernel's exposed ns (its
    duration minus its overlap with that device's compute union), indexed like ``kernels``.
    Devices without communication kernels are skipped before anything is gathered (masks
    over the columns, no copy of a device's rows)."""
    is_comm = (kernels["class"] == "communication").to_numpy(dtype=bool)
    comm_rows = np.flatnonzero(is_comm)
    exposed_ns = np.zeros(len(comm_rows), dtype=np.int64)
    out = []
    if len(comm_rows):
        devices = kernels["device_id"].to_numpy()
        starts, ends = kernels["start_ns"].to_numpy(), kernels["end_ns"].to_numpy()
        durations = kernels["dur_ns"].to_numpy()
        for device in np.unique(devices[comm_rows]).tolist():
            mine = devices == device
            rows = np.flatnonzero(mine & is_comm)
            compute_mask = mine & ~is_comm
            comm = intervals.union(starts[rows], ends[rows])
            compute = intervals.union(starts[compute_mask], ends[compute_mask])
            del compute_mask, mine
            covered = intervals.overlap_each(compute, starts[rows], ends[rows])
            exposed_ns[np.searchsorted(comm_rows, rows)] = durations[rows] - covered
            out.append(DeviceComm(int(device), comm.total_ns, compute.total_ns,
                                  comm_overlap(comm, compute), len(rows)))
    return out, pd.Series(exposed_ns, index=kernels.index[comm_rows], dtype="int64")


def _collectives(comm: pd.DataFrame, top: int) -> list[dict[str, Any]]:
    ops = map_distinct(comm["name"], collective_of)  # once per distinct name
    g = comm.assign(op=ops).groupby("op").agg(count=("dur_ns", "size"), total_ns=("dur_ns", "sum"),
                                              exposed_ns=("exposed_ns", "sum"))
    g = g.sort_values(["exposed_ns", "total_ns"], ascending=False).head(top)
    return [{"collective": str(op), "count": int(r["count"]), "total_ns": int(r["total_ns"]),
             "exposed_ns": int(r["exposed_ns"])} for op, r in g.iterrows()]


def exposed_nvtx(trace: Trace, comm: pd.DataFrame, top: int) -> list[dict[str, Any]]:
    """NVTX ranges (names with numbers normalised) enclosing, on the launching thread, the
    launch calls of communication kernels with exposed time: exposed ns per range name."""
    launched = join_launch_calls(comm[comm["exposed_ns"] > 0], trace.api_calls,
                                 ("start_ns", "global_tid"), how="inner")
    nvtx = trace.nvtx[(trace.nvtx["kind"] == "range") & trace.nvtx["end_ns"].notna()]
    totals: dict[str, int] = {}
    for gtid, calls in launched.groupby("global_tid"):
        ranges = nvtx[nvtx["global_tid"] == gtid]
        if ranges.empty:
            continue
        calls = calls.sort_values("api_start_ns")
        t = calls["api_start_ns"].to_numpy(dtype=np.int64)
        cum = np.concatenate(([0], np.cumsum(calls["exposed_ns"].to_numpy(dtype=np.int64))))
        lo = np.searchsorted(t, ranges["start_ns"].to_numpy(dtype=np.int64), side="left")
        hi = np.searchsorted(t, ranges["end_ns"].to_numpy(dtype=np.int64), side="right")
        inside = pd.Series(cum[hi] - cum[lo], index=ranges.index)
        names = map_distinct(fill_text(ranges["name"], ""), lambda n: _DIGITS.sub("<n>", str(n)))
        for name, ns in inside.groupby(names).sum().items():
            totals[str(name)] = totals.get(str(name), 0) + int(ns)
    ranked = sorted(((n, v) for n, v in totals.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": n, "exposed_ns": v} for n, v in ranked[:top]]


def exposed_finding(trace: Trace, kernels: pd.DataFrame, devices: list[DeviceComm],
                    exposed: pd.Series, active_span_ns: int, params: CommParams
                    ) -> Finding | None:
    """``comm.exposed`` (module docstring), or None without enough exposed time."""
    comm_ns = sum(d.comm_ns for d in devices)
    exposed_ns = sum(d.exposed_ns for d in devices)
    if not comm_ns or exposed_ns / (active_span_ns or 1) < params.min_exposed_share:
        return None
    comm = kernels.loc[exposed.index].assign(exposed_ns=exposed)
    ratio = 1 - exposed_ns / comm_ns
    return impact_finding(
        "comm.exposed", "communication",
        f"Exposed communication: {exposed_ns / 1e6:.1f} ms of {comm_ns / 1e6:.1f} ms of "
        f"collective kernels run with no compute beside them ({100 * ratio:.1f} % overlapped)",
        exposed_ns, active_span_ns,
        {"exposed_ns": exposed_ns, "comm_ns": comm_ns,
         "overlap_ns": sum(d.overlap_ns for d in devices), "overlap_ratio": round(ratio, 6),
         "comm_kernels": len(comm), "devices": [d.to_dict() for d in devices],
         "collectives": _collectives(comm, params.top),
         "exposed_nvtx_ranges": exposed_nvtx(trace, comm, params.top)},
        "Overlap communication with compute: let DDP all-reduce gradient buckets during the "
        "backward pass (tune bucket_cap_mb, avoid a sync before the optimizer step), accumulate "
        "gradients over several micro-batches (no_sync), or use fewer, larger collectives.")


def _run(ctx: AnalysisContext, params: CommParams) -> Output:
    kernels = ctx.classified_kernels
    devices, exposed = device_comm(kernels)
    found = exposed_finding(ctx.trace, kernels, devices, exposed, ctx.active_span_ns, params)
    return Output(findings=[found] if found else [],
                  tables={"devices": [d.to_dict() for d in devices]})


COMMUNICATION = Analysis(
    id="communication",
    summary="collective (NCCL) kernels per device: overlap with compute and exposed time",
    finding_ids=("comm.exposed",), params_type=CommParams, run=_run,
    requires=("kernel_classes",))
