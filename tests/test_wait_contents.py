"""What a blocking call waited for (issue 14): the ``during_wait`` evidence, Unified Memory
page-fault tables (nsys' documented layout) and the terminal line."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_TRACES
from helpers_cli import run_main
from helpers_synthetic import GTID, PID, trace
from hypothesis import given
from hypothesis import strategies as st

from infraprof import intervals
from infraprof import tables as table_schema
from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_findings import _site_totals
from infraprof.analyses.wait_contents import _covered_ns, _overlapping, during_wait, link_peaks
from infraprof.inputs import load_trace
from infraprof.ranking import build_report
from infraprof.render.evidence import during_wait_line, evidence_lines
from infraprof.render.terminal import render_terminal

SYNC = {"start_ns": 0, "end_ns": 10_000, "global_tid": GTID, "pid": PID, "tid": PID,
        "correlation_id": 900, "name": "cudaStreamSynchronize", "api": "runtime"}


def _copy(start: int, end: int, direction: str, size: int, host: str = "Pageable") -> dict:  # type: ignore[type-arg]
    src, dst = (host, "Device") if "HtoD" in direction else ("Device", host)
    return {"start_ns": start, "end_ns": end, "device_id": 0, "context_id": 1, "stream_id": 7,
            "correlation_id": 5_000 + start, "global_pid": GTID & ~0xFFFFFF, "pid": PID,
            "bytes": size, "copy_kind": 2, "direction": direction, "src_kind": src,
            "dst_kind": dst}


def _waiting_trace(with_um: bool = True) -> pd.DataFrame:
    copies = table_schema.conform(pd.DataFrame([
        _copy(6_000, 8_000, "DtoH", 2_000_000),
        _copy(9_000, 11_000, "HtoD", 1_000_000, host="Pinned"),  # half inside the wait
        _copy(20_000, 21_000, "DtoH", 5_000),  # outside
        _copy(3_000, 3_500, "UVM HtoD", 65_536, host="Managed")]), table_schema.MEMCPY)
    um: dict[str, pd.DataFrame] = {}
    if with_um:
        um["um_cpu_faults"] = table_schema.conform(pd.DataFrame(
            {"start_ns": [500, 50_000], "global_pid": GTID & ~0xFFFFFF, "pid": PID,
             "address": [4096, 8192]}), table_schema.UM_CPU_FAULTS)
        um["um_gpu_faults"] = table_schema.conform(pd.DataFrame(
            {"start_ns": [2_000, 40_000], "end_ns": [2_300, 40_100],
             "global_pid": GTID & ~0xFFFFFF, "pid": PID, "device_id": 0,
             "address": [4096, 4096], "faults": [3, 7]}), table_schema.UM_GPU_FAULTS)
    return trace([(1_000, 5_000, "sm80_xmma_gemm"), (12_000, 1_000, "late_kernel")],
                 api=[SYNC], memcpy=copies, **um)


def test_during_wait_figures() -> None:
    wait = during_wait(_waiting_trace(), "cudaStreamSynchronize")
    assert wait is not None
    assert wait["blocked_ns"] == 10_000
    assert wait["kernel_ns"] == 5_000
    assert wait["memcpy_ns"] == {"DtoH": 2_000, "HtoD": 1_000, "UVM HtoD": 500}
    assert wait["memcpy_bytes"] == {"DtoH": 2_000_000, "HtoD": 500_000, "UVM HtoD": 65_536}
    assert wait["memcpy_pageable_bytes"] == {"DtoH": 2_000_000, "HtoD": 0, "UVM HtoD": 0}
    assert wait["achieved_bytes_per_s"]["DtoH"] == 1e12  # 2 MB in 2 µs
    assert wait["link_peak_bytes_per_s"] == {"DtoH": 32e9, "HtoD": 32e9, "UVM HtoD": 32e9}
    assert wait["um_faults"] == 1 + 3  # one CPU fault, one GPU group of 3 inside the wait
    assert wait["um_fault_ns"] == 300
    assert wait["um_migrated_bytes"] == 65_536
    # 0-1000 idle, 1000-6000 kernel, 6000-8000 DtoH, 8000-9000 idle, 9000-10000 HtoD
    assert wait["gpu_idle_ns"] == 2_000
    keys = list(wait)
    assert keys[keys.index("kernel_ns"):keys.index("kernel_ns") + 3] == [
        "kernel_ns", "memcpy_ns", "memcpy_bytes"]


def test_during_wait_without_um_tables_and_unknown_sites() -> None:
    wait = during_wait(_waiting_trace(with_um=False), "cudaStreamSynchronize")
    assert wait is not None and wait["um_faults"] == 0 and wait["um_fault_ns"] == 0
    assert during_wait(_waiting_trace(), "cudaDeviceSynchronize") is None


def test_link_peak_assumption_by_compute_capability() -> None:
    for major, pcie in ((7, 16e9), (8, 32e9), (9, 64e9)):
        t = trace([(0, 10, "k")], compute_major=major)
        peaks = link_peaks(t, ["HtoD", "DtoD", "PtoP", "HtoH"])
        assert peaks["HtoD"] == pcie and peaks["HtoH"] is None
        assert peaks["DtoD"] == 1_555_200_000_000
        assert peaks["PtoP"] == {7: 150e9, 8: 300e9, 9: 450e9}[major]


def test_terminal_line_reads_like_the_issue() -> None:
    wait = {"site": "cudaStreamSynchronize", "blocked_ns": 8_700_000, "kernel_ns": 6_100_000,
            "memcpy_ns": {"DtoH": 2_300_000}, "memcpy_bytes": {"DtoH": 1_200_000_000},
            "memcpy_pageable_bytes": {"DtoH": 1_200_000_000},
            "achieved_bytes_per_s": {"DtoH": 3.1e9}, "link_peak_bytes_per_s": {"DtoH": 16e9},
            "um_faults": 12, "um_fault_ns": 300_000, "um_migrated_bytes": 0, "gpu_idle_ns": 0}
    assert during_wait_line(wait) == (
        "cudaStreamSynchronize 8.7 ms = 6.1 ms kernels + 2.3 ms D2H (1.20 GB pageable, "
        "3.1 GB/s of 16 GB/s) + 300 µs UM faults (12 faults, 0 B migrated)")
    finding = Finding("gap.sync", "sync", "t", "info", 1, 0.0,
                      {"site": "cudaStreamSynchronize", "site_calls": 1,
                       "site_host_blocked_ns": 8_700_000, "during_wait": wait})
    assert during_wait_line(wait) in evidence_lines(finding)


def _um_export(tmp_path: Path) -> tuple[Path, int, int]:
    """demo_sync_heavy with UM fault rows in nsys' own (empty) UM tables; returns the copy and
    the first cudaMemcpy call's start and globalTid."""
    path = tmp_path / "um.sqlite"
    shutil.copyfile(SAMPLE_TRACES / "demo_sync_heavy.sqlite", path)
    conn = sqlite3.connect(path)
    start, gtid = conn.execute(
        "SELECT r.start, r.globalTid FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s "
        "ON s.id = r.nameId WHERE s.value LIKE 'cudaMemcpy%' ORDER BY r.start LIMIT 1").fetchone()
    first = conn.execute("SELECT min(start) FROM CUPTI_ACTIVITY_KIND_RUNTIME").fetchone()[0]
    gpid = gtid & ~0xFFFFFF
    conn.executemany(
        "INSERT INTO CUDA_UM_CPU_PAGE_FAULT_EVENTS (start, globalPid, address, originalFaultPc, "
        "CpuInstruction, module, unresolvedFaultPc) VALUES (?, ?, ?, ?, 0, 0, 0)",
        [(start + 10, gpid, 0x7F0000001000, 0x400000), (first - 1_000, gpid, 0x7F0000002000, 0)])
    conn.executemany(
        "INSERT INTO CUDA_UM_GPU_PAGE_FAULT_EVENTS (start, \"end\", globalPid, deviceId, address, "
        "numberOfPageFaults, faultAccessType) VALUES (?, ?, ?, 0, ?, ?, 1)",
        [(start + 20, start + 520, gpid, 0x7F0000001000, 4),
         (first - 5_000, first - 4_000, gpid, 0x7F0000003000, 9)])
    conn.commit()
    conn.close()
    return path, int(start), int(gtid)


def test_um_tables_are_read_and_counted_in_the_wait(tmp_path: Path) -> None:
    path, _, gtid = _um_export(tmp_path)
    t = load_trace(path)
    assert len(t.um_cpu_faults) == 2 and len(t.um_gpu_faults) == 1 + 1
    assert t.um_gpu_faults["faults"].tolist() == [9, 4]  # ordered by start
    assert set(t.um_cpu_faults["pid"]) == {(gtid >> 24) & 0xFFFFFF}
    report = build_report(t)
    (memcpy,) = [f for f in report.findings if f.id == "gap.memcpy"]
    assert list(memcpy.evidence)[-1] == "during_wait"
    wait = memcpy.evidence["during_wait"]
    assert wait["site"] == "cudaMemcpy"
    assert wait["um_faults"] == 1 + 4 and wait["um_fault_ns"] == 500
    assert "UM faults (5 faults" in render_terminal(report)


def test_exports_without_um_tables_read_empty(tmp_path: Path) -> None:
    path = tmp_path / "no_um.sqlite"
    shutil.copyfile(SAMPLE_TRACES / "demo_sync_heavy.sqlite", path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE CUDA_UM_CPU_PAGE_FAULT_EVENTS")
    conn.execute("DROP TABLE CUDA_UM_GPU_PAGE_FAULT_EVENTS")
    conn.commit()
    conn.close()
    t = load_trace(path)
    assert t.um_cpu_faults.empty and t.um_gpu_faults.empty
    wait = next(f for f in build_report(t).findings if f.id == "gap.memcpy").evidence[
        "during_wait"]
    assert wait["um_faults"] == 0


def test_um_table_without_its_columns_is_bad_input(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken_um.sqlite"
    shutil.copyfile(SAMPLE_TRACES / "demo_sync_heavy.sqlite", path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE CUDA_UM_GPU_PAGE_FAULT_EVENTS")
    conn.execute("CREATE TABLE CUDA_UM_GPU_PAGE_FAULT_EVENTS (start INTEGER, address INTEGER)")
    conn.commit()
    conn.close()
    code, _, err = run_main(["analyze", str(path), "-f", "json"], monkeypatch, capsys)
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infraprof: error:")
    assert str(path) in lines[0] and "CUDA_UM_GPU_PAGE_FAULT_EVENTS" in lines[0]
    assert "end, globalPid, deviceId" in lines[0]


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=12),
       st.lists(st.tuples(st.integers(-5, 220), st.integers(-3, 40)), max_size=30))
def test_overlapping_filter_keeps_every_covering_operation(
        blocked_spans: list[tuple[int, int]], ops: list[tuple[int, int]]) -> None:
    """Filtering the operations to those overlapping the blocked time (memory: the union of
    only those) gives the same covered ns as the union of them all, and keeps exactly the
    operations with a positive overlap or a point inside."""
    blocked = intervals.union(np.array([s for s, _ in blocked_spans], dtype=np.int64),
                              np.array([s + d for s, d in blocked_spans], dtype=np.int64))
    starts = np.array([s for s, _ in ops], dtype=np.int64)
    ends = np.array([s + d for s, d in ops], dtype=np.int64)
    near = _overlapping(blocked, starts, ends)
    assert _covered_ns(blocked, starts[near], ends[near]) == _covered_ns(blocked, starts, ends)
    positive = intervals.overlap_each(blocked, starts, np.maximum(ends, starts)) > 0
    assert not (positive & ~near).any()


def test_site_totals_match_a_groupby_by_name() -> None:
    """``site_calls`` / ``site_host_blocked_ns`` come from integer codes: the same figures as
    a groupby on the name column (equal names that are different objects included)."""
    names = ["cudaFree", "cudaMalloc", "".join(["cuda", "Free"]), "cudaMemcpy", "cudaMalloc"]
    calls = pd.DataFrame({"start_ns": [0, 5, 9, 20, 30], "end_ns": [4, 8, 19, 25, 2**40],
                          "name": pd.Series(names, dtype=object)})
    count, total = _site_totals(calls)
    pd.testing.assert_series_equal(count, calls.groupby("name")["end_ns"].count(),
                                   check_names=False, check_index_type=False)
    pd.testing.assert_series_equal(
        total, (calls["end_ns"] - calls["start_ns"]).groupby(calls["name"]).sum(),
        check_names=False, check_index_type=False)


@pytest.mark.parametrize("name", ["demo_sync_heavy.sqlite", "demo_host_stall.sqlite"])
def test_during_wait_same_in_any_block_size(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operations overlapping the blocked time are tested table by table in blocks: the
    evidence is the same for blocks of 5 rows as for one block (sample traces)."""
    from infraprof.analyses import wait_contents

    t = load_trace(SAMPLE_TRACES / name)
    sites = ["cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy"]
    whole = [during_wait(t, site) for site in sites]
    assert any(found and found["kernel_ns"] for found in whole)
    monkeypatch.setattr(wait_contents, "OPS_BLOCK", 5)
    assert [during_wait(t, site) for site in sites] == whole
