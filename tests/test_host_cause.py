"""Native host frames (nsys CPU samples), phases and the host CPU profile (issue 13).

Unit tests on synthetic callchains check the frame selection; real exports with CPU samples
(NCAR miniWeather) check the acceptance: the "(no NVTX range)" host finding splits into MPI-IO
component loading (``ompi_file_open``) and the output writer (``miniweather_output``), and the
one-time ``cuMemHostAlloc`` gap of the async build is in phase ``startup``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_traces import TraceFiles

from infraprof import tables
from infraprof.analyses.gap_findings import gap_findings
from infraprof.analyses.native_frames import (
    calls_in_windows,
    chain_keys,
    is_meaningful,
    module_name,
    native_stacks,
    short_symbol,
    summarize_pool,
    thread_samples_in_windows,
)
from infraprof.analyses.phases import kernel_period, nvtx_steps
from infraprof.inputs import load_trace
from infraprof.ranking import build_report

MW = "ncar-miniweather-nsys/"
ROOT = Path(__file__).resolve().parents[1]


def _chains(stacks: dict[int, list[tuple[str, str]]]) -> pd.DataFrame:
    """Synthetic SAMPLING callchains: leaf first, as nsys stores them (depth 0 = leaf)."""
    rows = [("sampling", cid, depth, sym, mod) for cid, frames in stacks.items()
            for depth, (sym, mod) in enumerate(frames)]
    frame = pd.DataFrame(rows, columns=["source", "callchain_id", "depth", "symbol", "module"])
    return tables.conform(frame, tables.CALLCHAIN_FRAMES)


LIBC = "/usr/lib64/libc-2.17.so"
APP = "/home/u/build/openacc"
MPI = "/opt/openmpi/lib/libmpi.so.40.30.1"
PAL = "/opt/openmpi/lib/libopen-pal.so.40.30.1"
CUT = ("[Max depth]", "[Max depth]")


def test_module_names_and_system_frames() -> None:
    assert module_name(MPI) == "libmpi"
    assert module_name(LIBC) == "libc"
    assert module_name("/usr/lib64/ld-2.17.so") == "ld"
    assert module_name(APP) == "openacc"
    assert not is_meaningful("memcpy", "libc")
    assert not is_meaningful("0x2b4bc9ee4000", "libcuda")
    assert not is_meaningful("[Max depth]", "[Max depth]")
    assert not is_meaningful("[Broken backtraces]", "[Broken backtraces]")
    assert not is_meaningful("MAIN_", "openacc")
    assert not is_meaningful("cuStreamSynchronize", "libcuda")
    assert is_meaningful("ompi_file_open", "libmpi")
    assert is_meaningful("miniweather_output", "openacc")


def test_short_symbol_for_titles() -> None:
    assert short_symbol("cudaError cudaMalloc<double>(double**, unsigned long)") == (
        "cudaMalloc<double>")
    assert short_symbol("llvm::FPPassManager::runOnFunction(llvm::Function&)") == (
        "llvm::FPPassManager::runOnFunction")
    assert short_symbol("std::abs(double)") == "std::abs"
    assert short_symbol("miniweather_output") == "miniweather_output"
    long = "f<" + ", ".join(["std::vector<int>"] * 9) + ">(int)"
    assert short_symbol(long) == "f<…>"
    assert not is_meaningful("pybind11::cpp_function::dispatcher(_object*)", "libtorch_python")
    assert not is_meaningful("PyObject_Call", "libtorch_python")


def test_cut_stack_names_its_outermost_library_api() -> None:
    """A stack cut by nsys inside MPI-IO names ``ompi_file_open`` and says it was cut."""
    chains = _chains({
        1: [("strlen", LIBC), ("mca_base_component_find", PAL), ("ompi_file_open", MPI), CUT],
        2: [("mca_base_component_find", PAL), ("ompi_file_open", MPI), CUT],
        3: [("memcpy", LIBC), CUT],  # system frames only
    })
    stacks = native_stacks(chains)
    pool = pd.DataFrame({"callchain_id": chain_keys([1, 2, 3], "sampling"),
                         "weight": [1.0, 1.0, 1.0]})
    summary = summarize_pool(pool, stacks)
    assert summary.named is not None
    assert (summary.named["function"], summary.named["module"]) == ("ompi_file_open", "libmpi")
    assert summary.cut is True
    assert summary.samples == 3 and summary.system_only_samples == 1
    assert [f["function"] for f in summary.path] == ["ompi_file_open",
                                                     "mca_base_component_find"]
    assert summary.self_frames[0]["function"] == "mca_base_component_find"
    one, two = chain_keys([1, 2], "sampling")
    assert stacks.root.to_dict() == {one: "ompi_file_open (libmpi)",
                                     two: "ompi_file_open (libmpi)"}


def test_enclosing_frames_are_context_and_whole_stack_is_not_cut() -> None:
    """Frames every sample passes through are context; the first one below names the pool."""
    chains = _chains({
        1: [("ncmpii_in_swapn", APP), ("ncmpi_put_vara_double_all", APP),
            ("miniweather_output", APP), ("run", APP), ("MAIN_", APP), CUT],
        2: [("ncmpi_put_vara_double_all", APP), ("miniweather_output", APP), ("run", APP),
            ("MAIN_", APP), CUT],
        3: [("compute", APP), ("run", APP), ("MAIN_", APP), CUT],
    })
    stacks = native_stacks(chains)
    pool = pd.DataFrame({"callchain_id": chain_keys([1, 2, 3, 1], "sampling"),
                         "weight": [1.0, 1.0, 1.0, 1.0]})
    summary = summarize_pool(pool, stacks)
    assert summary.named is not None
    assert summary.named["function"] == "miniweather_output"
    assert summary.named["samples"] == 3
    assert summary.named["share_of_idle"] == 0.75
    assert summary.cut is False  # MAIN_ (known) is above it; the cut is above MAIN_
    assert [f["function"] for f in summary.path] == [
        "run", "miniweather_output", "ncmpi_put_vara_double_all", "ncmpii_in_swapn"]


def test_samples_in_windows_vectorised() -> None:
    samples = pd.DataFrame({"global_tid": [7, 7, 7, 8], "start_ns": [30, 10, 20, 15],
                            "callchain_id": [3, 1, 2, 9]})
    windows = pd.DataFrame({"job": [0, 1, 2], "global_tid": [7, 7, 8],
                            "start_ns": [10, 15, 0], "end_ns": [21, 31, 15]})
    got = thread_samples_in_windows(samples, windows)
    assert sorted(map(tuple, got[["job", "callchain_id"]].to_numpy().tolist())) == [
        (0, 1), (0, 2), (1, 2), (1, 3)]


def test_calls_in_windows_weights_by_overlap() -> None:
    calls = pd.DataFrame({"start_ns": [0, 5, 40], "end_ns": [100, 8, 45],
                          "global_tid": [7, 7, 7], "callchain_id": [11, 12, 13]})
    windows = pd.DataFrame({"job": [0, 1, 2], "global_tid": [7, 7, 9],
                            "start_ns": [4, 42, 0], "end_ns": [10, 60, 99]})
    got = calls_in_windows(calls, windows)
    assert sorted(map(tuple, got.to_numpy().tolist())) == [
        (0, 11, 6), (0, 12, 3), (1, 11, 18), (1, 13, 3)]


def test_kernel_period() -> None:
    init, step = [9, 8], [0, 1, 2, 1]
    codes = np.array(init + step * 10 + [7], dtype=np.int64)
    assert kernel_period(codes) == (4, 2, 41)
    assert kernel_period(np.arange(20)) is None


@pytest.mark.realtraces
def test_miniweather_host_finding_splits_by_native_code(trace_files: TraceFiles) -> None:
    path = trace_files.path(MW + "miniweather_baseline.nsys2022.4-export.sqlite")
    report = build_report(load_trace(path, None))
    host = [f for f in report.findings if f.id == "gap.host-cpu"]
    named = {f.evidence["native_frame"]["function"]: f for f in host}
    assert set(named) == {"ompi_file_open", "miniweather_output"}
    loading, writer = named["ompi_file_open"], named["miniweather_output"]
    assert "`ompi_file_open` (libmpi)" in loading.title and "stack cut" in loading.title
    assert loading.evidence["native_stack_cut"] is True
    assert loading.phase == "startup" and writer.phase == "steady"
    assert "ncmpi_put_vara_double_all" in [f["function"] for f in writer.evidence["native_path"]]
    assert "`miniweather_output` (openacc)" in writer.title
    # The split partitions the site: idle time and gaps add up to the unsplit finding's
    # (the aggregation without split keys: 119.4 ms in 13 gaps).
    ctx = report.analysis.context if report.analysis else None
    assert ctx is not None
    unsplit = [f for f in gap_findings(ctx.attributions, ctx.timelines, ctx.thread_names)
               if f.id == "gap.host-cpu"]
    assert len(unsplit) == 1 and unsplit[0].evidence["gpu_idle_ns"] == 119_445_924
    assert sum(f.evidence["gpu_idle_ns"] for f in host) == unsplit[0].evidence["gpu_idle_ns"]
    assert sum(f.evidence["gaps"] for f in host) == unsplit[0].evidence["gaps"] == 13
    assert sum(f.impact_ns for f in host) == unsplit[0].impact_ns
    # The 84 ms gap (73 samples) plus two unsampled ~0.1 ms gaps next to it at start-up.
    assert loading.evidence["gaps"] == 3 and loading.evidence["native_samples"] == 73
    assert writer.evidence["gaps"] == 10
    # Evidence keys of the existing contract come first, unchanged in order.
    assert list(writer.evidence)[:3] == ["site", "gpu_idle_ns", "gaps"]
    assert list(writer.evidence)[-6:] == [
        "native_frame", "native_path", "native_self_frames", "native_stack_cut",
        "native_samples", "native_system_only_samples"]
    # pwrite waits are not sampled: the OS-runtime backtraces name the writer.
    pwrite = [f for f in report.findings if f.evidence.get("site") == "pwrite"]
    assert len(pwrite) == 1
    path = [f["function"] for f in pwrite[0].evidence["native_path"]]
    assert path[:3] == ["miniweather_output", "nfmpi_put_vara_double_all_",
                        "ncmpi_put_vara_double_all"]
    data = report.to_dict()
    assert data["phases"]["method"] == "kernel-period"
    assert data["host_profile"]["source"] == "nsys-sampling"
    assert data["host_profile"]["samples"] == len(report.trace.cpu_samples) == 2407
    assert all(list(f)[-1] == "phase" for f in data["findings"])


@pytest.mark.realtraces
@pytest.mark.parametrize("name", ["miniweather_async", "miniweather_async_collapsed"])
def test_miniweather_async_host_alloc_is_startup(trace_files: TraceFiles, name: str) -> None:
    path = trace_files.path(MW + name + ".nsys2022.4-export.sqlite")
    report = build_report(load_trace(path, None))
    alloc = [f for f in report.findings if f.evidence.get("site") == "cuMemHostAlloc"]
    assert len(alloc) == 1 and alloc[0].evidence["gaps"] == 1
    assert alloc[0].phase == "startup"
    device = report.to_dict()["phases"]["devices"][0]
    gap = alloc[0].evidence["examples"][0]
    assert gap["gap_start_ns"] < device["steady"][0]


def test_pyspy_profile_alone_names_hot_function(tmp_path: Path) -> None:
    """``infraprof analyze PROFILE`` on a py-spy raw profile alone: the host profile leads and
    ``host.profile`` names the hottest function; infraprof's bootstrap frames never appear."""
    from typer.testing import CliRunner

    from infraprof.cli import app

    raw = tmp_path / "profile.txt"
    boot = "main (/x/infraprof/capture/bootstrap.py:190)"
    raw.write_text(
        f"{boot};<module> (app.py:13);hidden_batch_loader (app.py:4) 71\n"
        f"{boot};<module> (app.py:13);train (app.py:9) 24\n"
        f"{boot};_infraprof_sync_pulse (/x/infraprof/capture/bootstrap.py:60) 30\n"
        f"{boot};<module> (app.py:13);_find_and_load (<frozen importlib._bootstrap>:1007);"
        f"<module> (numpy/__init__.py:1) 5\n", encoding="utf-8")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["analyze", str(raw), "-f", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    prof = data["host_profile"]
    assert prof["source"] == "py-spy" and prof["samples"] == 100
    assert prof["hottest"] == {"frame": "hidden_batch_loader() app.py:4", "share": 0.71,
                               "samples": 71}
    text = json.dumps(prof)
    assert "bootstrap" not in text and "importlib" not in text
    finding = next(f for f in data["findings"] if f["id"] == "host.profile")
    assert finding["title"] == "71 % of samples in `hidden_batch_loader() app.py:4`"
    table = CliRunner().invoke(app, ["analyze", str(raw), "--width", "120"])
    assert table.exit_code == 0
    assert table.output.index("Host CPU profile") < table.output.index("Ranked findings")


def test_nvtx_steps_prefers_step_names_then_repeated_top_level() -> None:
    def nvtx(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
        frame = pd.DataFrame({"kind": "range", "name": [r[0] for r in rows],
                              "start_ns": [r[1] for r in rows],
                              "end_ns": pd.array([r[2] for r in rows], dtype="Int64"),
                              "global_tid": 1})
        return frame

    loop = [("outer", 0, 100)] + [(f"step {i}", 10 * i, 10 * i + 5) for i in range(1, 5)]
    found = nvtx_steps(nvtx(loop))
    assert found is not None and found[0] == "step <n>" and len(found[1]) == 4
    # No step-like name: the most repeated top-level range (nested ones do not count).
    flat = [("io", 0, 10), ("inner", 1, 2), ("inner", 3, 4), ("inner", 5, 6), ("inner", 7, 8),
            ("io", 20, 30), ("io", 40, 50)]
    found = nvtx_steps(nvtx(flat))
    assert found is not None and found[0] == "io" and len(found[1]) == 3
    assert nvtx_steps(nvtx([("init", 0, 10)])) is None


def test_cpu_only_nsys_samples_give_host_profile_finding() -> None:
    """A CPU-only trace with nsys CPU samples: the host profile names the hot native frame."""
    from infraprof.model.trace import Trace, TraceMeta

    chains = _chains({
        1: [("memcpy", LIBC), ("pack_rows", APP), ("write_output", APP), ("main", APP)],
        2: [("pack_rows", APP), ("write_output", APP), ("main", APP)],
        3: [("solve", APP), ("main", APP)],
    })
    ids = [1] * 5 + [2] * 2 + [3] * 3
    samples = tables.conform(pd.DataFrame({
        "start_ns": range(len(ids)), "global_tid": 42, "pid": 1, "tid": 42,
        "callchain_id": ids}), tables.CPU_SAMPLES)
    trace = Trace(TraceMeta(source="synthetic", sqlite_path=""), cpu_samples=samples,
                  callchains=chains)
    report = build_report(trace)
    prof = report.to_dict()["host_profile"]
    assert prof["source"] == "nsys-sampling" and prof["samples"] == 10
    assert prof["hottest"] == {"frame": "write_output (openacc)", "share": 0.7, "samples": 7}
    thread = prof["threads"][0]
    assert thread["self"][0] == {"frame": "pack_rows (openacc)", "samples": 7, "share": 0.7}
    assert {r["frame"]: r["samples"] for r in thread["inclusive"]} == {
        "pack_rows (openacc)": 7, "write_output (openacc)": 7, "solve (openacc)": 3}
    finding = next(f for f in report.findings if f.id == "host.profile")
    assert finding.title == "70 % of samples in `write_output (openacc)`"
