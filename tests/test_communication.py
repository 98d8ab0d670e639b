"""Exposed communication (issue 14): overlap maths (hypothesis) and the comm.exposed finding."""

from __future__ import annotations

import pandas as pd
from helpers_synthetic import GTID, PID, trace
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof import tables as table_schema
from infraprof.analyses.communication import collective_of, device_comm
from infraprof.analyses.kernel_classes import classify_kernels
from infraprof.ranking import build_report
from infraprof.render.terminal import render_terminal

NCCL = "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm *, unsigned long, ncclWork *)"


def _covered(points: list[tuple[int, int]]) -> set[int]:
    """Brute force: every covered nanosecond (test sizes keep this small)."""
    return {t for s, e in points for t in range(s, e)}


def _frame(comm: list[tuple[int, int]], compute: list[tuple[int, int]]) -> pd.DataFrame:
    rows = [(s, e, NCCL) for s, e in comm] + [(s, e, "sm80_xmma_gemm") for s, e in compute]
    k = pd.DataFrame({"start_ns": [r[0] for r in rows], "end_ns": [r[1] for r in rows],
                      "device_id": 0, "name": [r[2] for r in rows]})
    k["dur_ns"] = k["end_ns"] - k["start_ns"]
    return pd.concat([k, classify_kernels(k["name"])], axis=1)


_spans = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 60)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=12)


@given(_spans.filter(bool), _spans)
@settings(max_examples=150, deadline=None)
def test_overlap_plus_exposed_is_comm_and_matches_brute_force(
        comm: list[tuple[int, int]], compute: list[tuple[int, int]]) -> None:
    (dev,), exposed = device_comm(_frame(comm, compute))
    c, k = _covered(comm), _covered(compute)
    assert dev.comm_ns == len(c)
    assert dev.compute_ns == len(k)
    assert dev.overlap_ns == len(c & k)
    assert dev.exposed_ns == len(c - k)
    assert 0 <= dev.exposed_ns <= dev.comm_ns
    assert dev.overlap_ns + dev.exposed_ns == dev.comm_ns
    # per kernel: duration minus the compute beside it, never negative
    assert (exposed >= 0).all()
    assert int(exposed.sum()) >= dev.exposed_ns


def test_collective_names() -> None:
    assert collective_of(NCCL) == "AllReduce"
    assert collective_of("ncclDevKernel_ReduceScatter_Sum_f32_RING_LL") == "ReduceScatter"
    assert collective_of("ncclKernel_AllGather_RING_LL_Sum_int8_t") == "AllGather"
    assert collective_of("ncclKernel_Broadcast_RING_LL_Sum_int8_t") == "Broadcast"
    assert collective_of("ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t") == "SendRecv"
    assert collective_of("ncclKernel_Reduce_RING_LL_Sum_half") == "Reduce"
    assert collective_of("ncclKernel_mystery") == "other"


def test_comm_exposed_finding_with_nvtx_range() -> None:
    # comm 0-1000 (compute beside it 200-700) and 5000-6000 (alone); compute 2000-4000.
    kernels = [(0, 1_000, NCCL, 20), (200, 500, "sm80_xmma_gemm", 7),
               (2_000, 2_000, "sm80_xmma_gemm", 7),
               (5_000, 1_000, "ncclKernel_Broadcast_RING_LL_Sum_int8_t", 20)]
    nvtx = table_schema.conform(pd.DataFrame([
        {"start_ns": 2_900, "end_ns": 3_100, "global_tid": GTID, "pid": PID, "tid": PID,
         "name": "ncclBroadcast", "domain": None, "event_type": 59, "kind": "range"},
        {"start_ns": -5_000, "end_ns": 7_000, "global_tid": GTID, "pid": PID, "tid": PID,
         "name": "step 3", "domain": None, "event_type": 59, "kind": "range"}]),
        table_schema.NVTX)
    report = build_report(trace(kernels, nvtx=nvtx))
    (found,) = [f for f in report.findings if f.id == "comm.exposed"]
    ev = found.evidence
    assert ev["comm_ns"] == 2_000 and ev["overlap_ns"] == 500 and ev["exposed_ns"] == 1_500
    assert found.impact_ns == 1_500
    assert ev["overlap_ratio"] == 0.25
    assert {c["collective"]: c["exposed_ns"] for c in ev["collectives"]} == {
        "Broadcast": 1_000, "AllReduce": 500}
    # launches 2 µs before each kernel: the Broadcast's (3000) inside both ranges
    assert ev["exposed_nvtx_ranges"] == [{"name": "step <n>", "exposed_ns": 1_500},
                                         {"name": "ncclBroadcast", "exposed_ns": 1_000}]
    comm = report.to_dict()["kernel_classes"]["devices"][0]["communication"]
    assert comm == {"device_id": 0, "comm_kernels": 2, "comm_ns": 2_000, "compute_ns": 2_500,
                    "overlap_ns": 500, "exposed_ns": 1_500, "overlap_ratio": 0.25}
    assert "Communication on device 0" in render_terminal(report)


def test_no_comm_kernels_no_finding() -> None:
    report = build_report(trace([(0, 1_000, "sm80_xmma_gemm")]))
    assert not any(f.id == "comm.exposed" for f in report.findings)
