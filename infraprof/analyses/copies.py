"""Memory-copy rules: pageable async copies, synchronous copies, achieved bandwidth.

* ``copy.pageable_async`` (as nsys ``cuda-async-memcpy``): a copy issued by an ``*Async`` API
  whose source or destination is pageable host memory — the driver stages it synchronously.
* ``copy.sync`` (as nsys ``cuda-sync-memcpy``): copies issued by synchronous APIs, except
  host-to-device copies of at most 64 000 bytes (nsys' exemption) and same-device copies.
* Achieved bandwidth per direction against the link's peak: PCIe 4.0 x16 ≈ 25 GB/s practical
  per direction is used as reference for host<->device copies unless the GPU is a Hopper/SXM part
  (PCIe 5.0, ≈ 50 GB/s); copies under 1 MB are excluded from the bandwidth figure since latency
  dominates them.

Impact is 0 for these rule findings: the GPU idle they cause is counted once, in ``gap.memcpy``.
They carry the GPU idle time of their own copies in the evidence for cross-reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from infraprof.analyses.api_classes import SYNC_MEMCPY_EXEMPT_BYTES, is_blocking_copy_api
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding, info_finding
from infraprof.model import Trace
from infraprof.model.correlation import join_launch_calls
from infraprof.tables import fill_text, map_distinct

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext


@dataclass(frozen=True)
class CopyParams:
    pcie_bytes_per_s: float = 25e9
    min_bw_bytes: int = 1_000_000


def _copies_with_api(trace: Trace) -> pd.DataFrame:
    return join_launch_calls(trace.memcpy, trace.api_calls)


def _site_list(frame: pd.DataFrame) -> list[dict[str, Any]]:
    g = frame.groupby(["api_name", "direction"], dropna=False)
    rows = g.agg(count=("bytes", "size"), bytes=("bytes", "sum"),
                 api_ns=("api_dur", "sum")).reset_index()
    rows = rows.sort_values("api_ns", ascending=False).head(5)
    return [{"api": None if pd.isna(r.api_name) else str(r.api_name),
             "direction": str(r.direction), "count": int(r.count), "bytes": int(r.bytes),
             "host_blocked_ns": int(r.api_ns)} for r in rows.itertuples()]


def copy_findings(trace: Trace) -> list[Finding]:
    """Rule findings for pageable async copies and synchronous copies (see module doc)."""
    if trace.memcpy.empty:
        return []
    c = _copies_with_api(trace)
    c["api_dur"] = (c["api_end_ns"] - c["api_start_ns"]).fillna(0)
    names = fill_text(c["api_name"], "")
    pageable = (c["src_kind"] == "Pageable") | (c["dst_kind"] == "Pageable")
    is_async = names.str.contains("Async", case=False)
    out = []
    pa = c[pageable & is_async]
    if len(pa):
        out.append(info_finding(
            "copy.pageable_async", "memcpy",
            f"{len(pa)} asynchronous copies use pageable host memory "
            f"({pa['bytes'].sum() / 1e6:.1f} MB) and are therefore synchronous",
            {"copies": len(pa), "bytes": int(pa["bytes"].sum()),
                      "gpu_copy_ns": int((pa["end_ns"] - pa["start_ns"]).sum()),
                      "sites": _site_list(pa), "rule": "nsys cuda-async-memcpy"},
            "Allocate the host buffers pinned (cudaMallocHost / "
                           "tensor.pin_memory()) so the copies overlap with compute."))
    blocking = map_distinct(names, lambda n: is_blocking_copy_api(str(n))).astype(bool)
    small_h2d = (c["direction"] == "HtoD") & (c["bytes"] <= SYNC_MEMCPY_EXEMPT_BYTES)
    same_dev = c["direction"] == "DtoD"
    sc = c[blocking & ~small_h2d & ~same_dev]
    if len(sc):
        out.append(info_finding(
            "copy.sync", "memcpy",
            f"{len(sc)} synchronous copies block the host "
            f"({sc['api_dur'].sum() / 1e6:.2f} ms in the API calls)",
            {"copies": len(sc), "bytes": int(sc["bytes"].sum()),
                      "host_blocked_ns": int(sc["api_dur"].sum()),
                      "sites": _site_list(sc), "rule": "nsys cuda-sync-memcpy (64000 B H2D "
                                                        "exemption)"},
            "Use cudaMemcpyAsync from pinned memory on a stream and synchronize "
                           "once, when the data is needed."))
    return out


def copy_bandwidth(trace: Trace, params: CopyParams | None = None) -> list[dict[str, Any]]:
    """Achieved bandwidth per direction for copies ≥ ``min_bw_bytes`` vs a PCIe reference."""
    p = params or CopyParams()
    m = trace.memcpy
    big = m[m["bytes"] >= p.min_bw_bytes]
    rows = []
    for direction, g in big.groupby("direction"):
        secs = float((g["end_ns"] - g["start_ns"]).sum()) / 1e9
        bw = float(g["bytes"].sum()) / secs if secs > 0 else 0.0
        ref = p.pcie_bytes_per_s if direction in ("HtoD", "DtoH") else None
        rows.append({"direction": str(direction), "copies": len(g), "bytes": int(g["bytes"].sum()),
                     "achieved_bytes_per_s": round(bw, 1),
                     "reference_bytes_per_s": ref,
                     "share_of_reference": None if ref is None else round(bw / ref, 4)})
    return rows


def _run(ctx: AnalysisContext, params: CopyParams) -> Output:
    return Output(findings=copy_findings(ctx.trace),
                  tables={"bandwidth": copy_bandwidth(ctx.trace, params)})


COPIES = Analysis(
    id="copies", summary="nsys' pageable-async and synchronous copy rules; achieved bandwidth",
    finding_ids=("copy.pageable_async", "copy.sync"), params_type=CopyParams, run=_run)
