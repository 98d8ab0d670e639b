"""Issue 14 acceptance on the shared nersc-sc22-dl exports (and the saxpy capture): layout
conversions, exposed communication and what a blocking copy waited for, each against plain
SQL on the SQLite file and an interval union written here, independently of infraprof."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
from helpers_traces import TraceFiles, ro_connect

from infraprof.inputs import load_trace
from infraprof.ranking import Report, build_report
from infraprof.render.terminal import render_terminal

DL = "nersc-sc22-dl/"
FOUR_GPU = DL + "4gpu_baseline.nsys-rep.nsys2022.4-export.sqlite.gz"
BASELINE = DL + "baseline.nsys2022.4-export.sqlite.gz"
SAXPY = "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite"

pytestmark = pytest.mark.realtraces

LAYOUT_SQL = """
SELECT count(*), coalesce(sum(k."end" - k.start), 0)
FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.demangledName
WHERE s.value LIKE '%nchwToNhwc%' OR s.value LIKE '%nhwcToNchw%'
   OR s.value LIKE '%transpose%' OR s.value LIKE '%permute%'
"""


@cache
def _report(path: Path) -> Report:
    return build_report(load_trace(path))


def _finding(report: Report, fid: str) -> Any:
    found = [f for f in report.findings if f.id == fid]
    assert len(found) == 1, fid
    return found[0]


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _length(spans: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in spans)


def _intersection(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Total length of the intersection of two unions (two-pointer walk)."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


@pytest.mark.parametrize("rel, nchw_launches, nchw_ns", [
    (FOUR_GPU, 5_841, 330_958_532), (BASELINE, 5_546, 1_055_746_006)])
def test_layout_conversion_matches_sql(trace_files: TraceFiles, rel: str, nchw_launches: int,
                                       nchw_ns: int) -> None:
    path = trace_files.path(rel)
    with ro_connect(path) as conn:
        count, total = conn.execute(LAYOUT_SQL).fetchone()
        kernel_ns = conn.execute('SELECT sum("end" - start) FROM CUPTI_ACTIVITY_KIND_KERNEL'
                                 ).fetchone()[0]
    found = _finding(_report(path), "kernel.layout_conversion")
    ev = found.evidence
    assert (ev["launches"], ev["layout_ns"]) == (count, total)
    assert found.impact_ns == total
    assert ev["kernel_ns"] == kernel_ns
    nchw = next(g for g in ev["groups"] if g["group"] == "nchw<->nhwc")
    assert (nchw["count"], nchw["total_ns"]) == (nchw_launches, nchw_ns)  # the figures
    assert f"{100 * total / kernel_ns:.1f} % of GPU kernel time" in found.title


def test_exposed_communication_matches_sql_and_interval_union(trace_files: TraceFiles) -> None:
    path = trace_files.path(FOUR_GPU)
    with ro_connect(path) as conn:
        rows = conn.execute(
            'SELECT k.deviceId, k.start, k."end", s.value LIKE \'nccl%\' FROM '
            "CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName").fetchall()
    assert {r[0] for r in rows} == {0}
    comm = _union([(s, e) for _, s, e, is_comm in rows if is_comm])
    compute = _union([(s, e) for _, s, e, is_comm in rows if not is_comm])
    comm_ns, overlap = _length(comm), _intersection(comm, compute)
    report = _report(path)
    found = _finding(report, "comm.exposed")
    ev = found.evidence
    assert ev["comm_ns"] == comm_ns
    assert ev["overlap_ns"] == overlap
    assert ev["exposed_ns"] == found.impact_ns == comm_ns - overlap
    assert ev["overlap_ratio"] == round(overlap / comm_ns, 6)
    assert ev["collectives"][0]["collective"] == "AllReduce"
    assert ev["collectives"][0]["count"] == sum(1 for r in rows if r[3]) == 472
    assert ev["exposed_nvtx_ranges"], "NCCL's own NVTX ranges enclose the launches"
    device = report.to_dict()["kernel_classes"]["devices"][0]
    assert device["communication"]["exposed_ns"] == comm_ns - overlap
    assert {c["class"]: c["count"] for c in device["classes"]}["communication"] == 472


def test_gpu_bound_headline_on_the_ddp_rank(trace_files: TraceFiles) -> None:
    report = _report(trace_files.path(FOUR_GPU))
    bound = report.to_dict()["kernel_classes"]["gpu_bound"]
    devices = report.to_dict()["summary"]["devices"]
    assert bound["busy_ns"] == sum(d["busy_ns"] for d in devices)
    assert bound["gpu_bound"] and bound["busy_share"] > 0.95
    assert report.findings[0].id == "kernel.layout_conversion"
    assert report.findings[1].id == "comm.exposed"
    text = render_terminal(report, width=160)
    assert "GPU-bound: the GPUs are busy 96.7 %" in text


def test_blocking_copy_waited_for_kernels_and_pageable_copies(trace_files: TraceFiles) -> None:
    path = trace_files.path(SAXPY)
    with ro_connect(path) as conn:
        calls = conn.execute(
            'SELECT r.start, r."end" FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON '
            "s.id = r.nameId WHERE s.value = 'cudaMemcpy' OR s.value LIKE 'cudaMemcpy\\_v%' "
            "ESCAPE '\\'").fetchall()
        kernels = conn.execute('SELECT start, "end" FROM CUPTI_ACTIVITY_KIND_KERNEL').fetchall()
        copies = conn.execute('SELECT start, "end", bytes, srcKind, dstKind FROM '
                              "CUPTI_ACTIVITY_KIND_MEMCPY WHERE copyKind = 2").fetchall()
    blocked = _union(calls)
    d2h = _union([(s, e) for s, e, *_ in copies])
    inside = [(b, _intersection(blocked, [(s, e)]) / (e - s)) for s, e, b, *_ in copies]
    wait = _finding(_report(path), "gap.memcpy").evidence["during_wait"]
    assert wait["blocked_ns"] == _length(blocked)
    assert wait["kernel_ns"] == _intersection(blocked, _union(kernels))
    assert wait["memcpy_ns"]["DtoH"] == _intersection(blocked, d2h)
    assert wait["memcpy_bytes"]["DtoH"] == round(sum(b * f for b, f in inside))
    assert all(dst == 0 for *_, dst in copies)  # destination pageable host memory
    assert wait["memcpy_pageable_bytes"]["DtoH"] == wait["memcpy_bytes"]["DtoH"]
