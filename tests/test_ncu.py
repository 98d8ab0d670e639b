"""Nsight Compute readers (.ncu-rep, CSV raw/details) and the kernel analysis/join."""

from __future__ import annotations

import math
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from infraprof.analyses import ncu_findings, ncu_kernels
from infraprof.errors import InputError, ToolError
from infraprof.inputs import load_ncu, load_trace
from infraprof.model.kernel_metrics import KernelMetrics
from infraprof.readers import ncu_report
from infraprof.readers.ncu_metrics import parse_number, short_name_of, to_base

MW = "ncar-miniweather-ncu"
STEMS = [f"{MW}/MW_Baseline", f"{MW}/MW_DivToMult", "esmm-sgemm-ncu/profile",
         "esmm-sgemm-ncu/profile_output"]
BYTE_COLUMNS = {"dram_read_bytes", "dram_write_bytes"}


@cache
def _load(path: str) -> KernelMetrics:
    return load_ncu(Path(path))


def load(traces: Path, rel: str) -> KernelMetrics:
    return _load(str(traces / rel))


def by_short(km: KernelMetrics, short: str) -> pd.Series:
    rows = km.kernels[km.kernels["short_name"] == short]
    assert len(rows) == 1, short
    return rows.iloc[0]


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


# --- units and names (no real traces needed) ------------------------------------------------

@pytest.mark.parametrize(("value", "unit", "expected"), [
    (6.19, "msecond", 6.19e6), (11.36, "usecond", 11360), (5, "nsecond", 5),
    (21058944, "ns", 21058944), (532.39, "cycle/usecond", 532.39e6),
    (6.24, "cycle/nsecond", 6.24e9), (138.48, "Gbyte/second", 138.48e9),
    (1.573, "Mbyte", 1.573e6), (8.192, "Kbyte", 8192), (1.024, "Kbyte/cycle", 1024),
    (4963609951.19, "hz", 4963609951.19), (1.9e11, "byte/s", 1.9e11), (61.8, "%", 61.8),
    (34, "register/thread", 34), (7, "", 7), (3, "SM", 3),
])
def test_to_base(value: float, unit: str, expected: float) -> None:
    assert to_base(value, unit) == pytest.approx(expected)


def test_parse_number_strips_thousands_separators() -> None:
    assert parse_number("4,963,609,951.19") == pytest.approx(4963609951.19)
    assert parse_number("21,058,944") == 21058944
    assert parse_number("cudaFuncCachePreferNone") is None
    assert parse_number("") is None


@pytest.mark.parametrize(("name", "short"), [
    ("basic(int, int, int, const float *, const float *, float *)", "basic"),
    ("void one_blocktiling<(int)64, (int)64>(int, float *)", "one_blocktiling"),
    ("void cutlass::Kernel<cutlass::gemm::X<(int)1>>(T1::Params)", "Kernel"),
    ("copy_blocked[v1,abc](Array<long long, 1, C>, long long)", "copy_blocked"),
    ("semi_discrete_step_232_gpu", "semi_discrete_step_232_gpu"),
])
def test_short_name_of(name: str, short: str) -> None:
    assert short_name_of(name) == short


@pytest.mark.parametrize(("sm", "mem", "waves", "bound"), [
    (85, 30, None, "compute"), (30, 85, None, "memory"), (70.3, 44.6, None, "compute"),
    (52.4, 80.7, None, "memory"), (65, 70, None, "balanced"), (20, 50, 0.3, "latency"),
    (None, 50, None, "unknown"),
])
def test_classify_bound(sm: float | None, mem: float | None, waves: float | None,
                        bound: str) -> None:
    assert ncu_kernels.classify_bound(sm, mem, waves)[0] == bound


def test_missing_wheel_is_tool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncu_report", None)
    with pytest.raises(ToolError, match="pip install ncu-report"):
        ncu_report.import_ncu_report()


RAW_CSV = "\n".join([
    "==PROF== Connected to process 1 (/bin/app)",
    "==PROF== Disconnected from process 1",
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
    '"gpu__time_duration.sum","sm__throughput.avg.pct_of_peak_sustained_elapsed",'
    '"dram__bytes.sum.per_second","launch__grid_size"',
    '"","","","","","","","usecond","%","Gbyte/second",""',
    '"0","1","app","h","k(int)","1","7","1,234.50","12.5","100.25","4,096"',
    "",
])


def test_raw_csv_with_prof_lines(tmp_path: Path) -> None:
    p = tmp_path / "live.csv"
    p.write_text(RAW_CSV)
    km = load_ncu(p)
    row = km.kernels.iloc[0]
    assert km.meta.format == "csv-raw"
    assert row["duration_ns"] == pytest.approx(1234500)
    assert row["dram_throughput_bytes_per_s"] == pytest.approx(100.25e9)
    assert row["grid_size"] == 4096 and row["short_name"] == "k"
    assert math.isnan(row["cpi"]) and row["device_name"] is None  # missing, not 0
    assert not km.has_stalls


@pytest.mark.parametrize(("name", "content"), [
    ("random.ncu-rep", bytes(range(256)) * 40),
    ("empty.ncu-rep", b""),
    ("empty.csv", b""),
    ("other.csv", b"a,b,c\n1,2,3\n"),
    ("binary.csv", b"\xff\xfe\x00\x81" * 100),
])
def test_bad_input_is_input_error(tmp_path: Path, name: str, content: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError) as exc:
        load_ncu(p)
    assert str(p) in exc.value.message and "\n" not in exc.value.message


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_ncu(tmp_path / "nope.ncu-rep")


# --- real reports -----------------------------------------------------------------------------

def _all_ncu_files(traces: Path) -> list[Path]:
    files = [*traces.glob("*/*.ncu-rep"), *traces.glob("*/*.ncu2022.3-*.csv"),
             traces / "nsightful" / "copy_blocked.csv"]
    return sorted(files)


@pytest.mark.realtraces
def test_every_shared_ncu_file_loads(shared_traces: Path) -> None:
    files = _all_ncu_files(shared_traces)
    assert len(files) == 13
    for f in files:
        km = load_ncu(f)
        assert len(km.kernels) > 0, f
        assert km.kernels["launch_id"].is_unique
        assert (km.kernels["duration_ns"] > 0).all(), f
        assert km.kernels["sm_sol_pct"].notna().all(), f


@pytest.mark.realtraces
def test_truncated_report_is_input_error(shared_traces: Path, tmp_path: Path) -> None:
    data = (shared_traces / f"{MW}/MW_Baseline.ncu-rep").read_bytes()
    for cut in (20, 300_000, len(data) - 1):
        p = tmp_path / f"cut{cut}.ncu-rep"
        p.write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated"):
            load_ncu(p)


@pytest.mark.realtraces
@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("page", ["raw", "details"])
def test_rep_and_csv_agree(shared_traces: Path, stem: str, page: str) -> None:
    rep = load(shared_traces, f"{stem}.ncu-rep")
    csv = load(shared_traces, f"{stem}.ncu2022.3-{page}.csv")
    assert list(rep.kernels["launch_id"]) == list(csv.kernels["launch_id"])
    compared = 0
    for col in rep.kernels.columns:
        if col == "mangled_name":
            continue
        for a, b in zip(rep.kernels[col], csv.kernels[col], strict=True):
            if _missing(b):
                continue
            assert not _missing(a), (col, b)
            compared += 1
            if isinstance(a, str):
                assert a == b, col
            else:
                atol = 1e3 if col in BYTE_COLUMNS else 6e-3  # 6 (raw) / 2 (details) decimals
                assert math.isclose(float(a), float(b), rel_tol=5e-3, abs_tol=atol), (col, a, b)
    assert compared >= 6 * len(rep.kernels)
    if page == "raw":
        merged = rep.stalls.merge(csv.stalls, on=["launch_id", "reason"], how="outer")
        assert len(merged) == len(rep.stalls) == len(csv.stalls)
        for fam in ("ratio_per_issue_active", "pcsamp_count"):
            x, y = merged[f"{fam}_x"], merged[f"{fam}_y"]
            assert ((x - y).abs() <= 1e-5 * x.abs().clip(lower=1) + 1e-6).all() or \
                (x.isna() & y.isna()).all()
    else:
        key = ["launch_id", "rule", "type"]
        assert sorted(map(tuple, rep.rules[key].fillna("").values.tolist())) == \
            sorted(map(tuple, csv.rules[key].fillna("").values.tolist()))


@pytest.mark.realtraces
def test_values_equal_ncu_report(shared_traces: Path) -> None:
    ncu_module = pytest.importorskip("ncu_report")
    path = shared_traces / f"{MW}/MW_Baseline.ncu-rep"
    km = load(shared_traces, f"{MW}/MW_Baseline.ncu-rep")
    rng = ncu_module.load_report(str(path)).range_by_idx(0)
    checks = {
        "duration_ns": "gpu__time_duration.sum",
        "sm_sol_pct": "sm__throughput.avg.pct_of_peak_sustained_elapsed",
        "mem_sol_pct": "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
        "dram_read_bytes": "dram__bytes_read.sum",
        "dram_throughput_bytes_per_s": "dram__bytes.sum.per_second",
        "cpi": "smsp__average_warp_latency_per_inst_issued.ratio",
        "l2_hit_pct": "lts__t_sector_hit_rate.pct",
    }
    for j in range(rng.num_actions()):
        action = rng.action_by_idx(j)
        row = km.kernels.iloc[j]
        assert row["name"] == action.name(action.NameBase_DEMANGLED)
        for col, metric in checks.items():
            assert row[col] == action.metric_by_name(metric).as_double(), col
        stalls = km.stalls[km.stalls["launch_id"] == j].set_index("reason")
        assert stalls.loc["no_instruction", "pcsamp_count"] == action.metric_by_name(
            "smsp__pcsamp_warps_issue_stalled_no_instructions").as_double()
        assert stalls.loc["long_scoreboard", "ratio_per_issue_active"] == action.metric_by_name(
            "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio"
        ).as_double()
        assert "no_instructions" not in stalls.index
    semi = by_short(km, "semi_discrete_step_232_gpu")
    pc = km.stalls[(km.stalls["launch_id"] == semi["launch_id"])
                   & (km.stalls["reason"] == "long_scoreboard")]["pcsamp_count"].iloc[0]
    assert pc == 239557


# README table: (duration ms, SM SOL %, Mem SOL %, DRAM GB/s, long_scoreboard ratio, CPI)
MW_FIGURES = {
    "compute_tendencies_x_279_gpu": ((6.19, 70.3, 44.6, 400, 2.83, 14.4),
                                     (3.48, 52.4, 80.7, 724, 8.59, 19.8)),
    "semi_discrete_step_232_gpu": ((5.62, 23.3, 74.4, 663, 42.3, 49.9),
                                   (5.59, 23.4, 74.6, 667, 42.5, 50.3)),
}


@pytest.mark.realtraces
@pytest.mark.parametrize("kernel", sorted(MW_FIGURES))
@pytest.mark.parametrize(("variant", "index"), [("MW_Baseline", 0), ("MW_DivToMult", 1)])
@pytest.mark.parametrize("ext", ["ncu-rep", "ncu2022.3-raw.csv"])
def test_miniweather_figures(shared_traces: Path, kernel: str, variant: str, index: int,
                             ext: str) -> None:
    km = load(shared_traces, f"{MW}/{variant}.{ext}")
    row = by_short(km, kernel)
    st = km.stalls[(km.stalls["launch_id"] == row["launch_id"])].set_index("reason")
    got = (row["duration_ns"] / 1e6, row["sm_sol_pct"], row["mem_sol_pct"],
           row["dram_throughput_bytes_per_s"] / 1e9,
           st.loc["long_scoreboard", "ratio_per_issue_active"], row["cpi"])
    for g, want in zip(got, MW_FIGURES[kernel][index], strict=True):
        assert f"{g:.3g}" == f"{want:.3g}", (g, want)  # the README rounds to 3 figures
    assert st["ratio_per_issue_active"].sum() == pytest.approx(row["cpi"], rel=0.01)


@pytest.mark.realtraces
def test_miniweather_diagnosis(shared_traces: Path) -> None:
    base = {d.short_name: d for d in ncu_kernels.diagnose(
        load(shared_traces, f"{MW}/MW_Baseline.ncu-rep"))}
    after = {d.short_name: d for d in ncu_kernels.diagnose(
        load(shared_traces, f"{MW}/MW_DivToMult.ncu-rep"))}
    assert base["compute_tendencies_x_279_gpu"].bound == "compute"
    assert after["compute_tendencies_x_279_gpu"].bound == "memory"
    semi = base["semi_discrete_step_232_gpu"]
    assert semi.bound == "memory"
    assert semi.top_stalls[0].reason == "long_scoreboard"
    assert semi.top_stalls[0].share == pytest.approx(0.85, abs=0.01)
    assert semi.stall_basis == "cpi" and semi.stalls_note is None
    assert "memory" in semi.top_stalls[0].explanation
    roof = base["compute_tendencies_x_279_gpu"].rooflines
    assert roof and roof[0].precision == "fp64"
    assert roof[0].arithmetic_intensity > 0 and roof[0].ridge_point > 0
    assert semi.occupancy is not None and "registers" in semi.occupancy
    assert 0 < semi.headroom < 1


@pytest.mark.realtraces
@pytest.mark.parametrize("ext", ["ncu-rep", "ncu2022.3-raw.csv", "ncu2022.3-details.csv"])
def test_esmm_basic_set_ladder_without_stalls(shared_traces: Path, ext: str) -> None:
    km = load(shared_traces, f"esmm-sgemm-ncu/profile.{ext}")
    ladder = km.kernels.sort_values("duration_ns", ascending=False)["short_name"].tolist()
    assert ladder == [
        "basic", "gmem_coalesce", "smem_blocking", "one_blocktiling", "one_d_vec",
        "two_blocktiling", "vectorized_blocktiling", "one_warptiling", "warptiling",
        "ampere_sgemm_128x64_nn", "ampere_sgemm_128x64_nn",
    ]
    assert by_short(km, "basic")["duration_ns"] / 1e6 == pytest.approx(10.78, abs=0.006)
    assert not km.has_stalls and km.stalls.empty
    assert km.kernels["cpi"].isna().all()  # missing, never 0
    for d in ncu_kernels.diagnose(km):
        assert d.stalls == () and d.stalls_note == ncu_kernels.NO_STALLS_NOTE
        assert d.bound in {"compute", "memory", "latency", "balanced"}


@pytest.mark.realtraces
def test_copy_blocked_newer_details_layout(shared_traces: Path) -> None:
    km = load(shared_traces, "nsightful/copy_blocked.csv")
    assert km.meta.format == "csv-details"
    row = km.kernels.iloc[0]
    assert row["short_name"] == "copy_blocked"
    assert row["duration_ns"] == 21058944
    assert row["dram_throughput_bytes_per_s"] == pytest.approx(196456177859.63)
    assert (row["block_x"], row["block_y"], row["grid_x"], row["cc"]) == (256, 1, 1024, "7.5")
    assert row["sm_count"] == 40 and row["cpi"] == pytest.approx(933.13)
    assert len(km.rules) == 11
    assert km.rules["type"].value_counts().to_dict() == {"OPT": 8, "INF": 2, "WRN": 1}
    assert km.rules["estimated_speedup_pct"].max() == pytest.approx(98.86)
    (d,) = ncu_kernels.diagnose(km)
    assert d.headroom_source == "ncu estimated speedup" and d.headroom == ncu_kernels.MAX_HEADROOM


@pytest.fixture(scope="module")
def mw_trace(shared_traces: Path):  # type: ignore[no-untyped-def]
    return load_trace(shared_traces / "ncar-miniweather-nsys" / "miniweather_baseline.sqlite")


@pytest.mark.realtraces
def test_join_miniweather_nsys_with_ncu(shared_traces: Path, mw_trace) -> None:  # type: ignore[no-untyped-def]
    km = load(shared_traces, f"{MW}/MW_Baseline.ncu-rep")
    findings = ncu_kernels.join_ncu(mw_trace, km)
    assert all(f.category == "kernel" for f in findings)
    by_id: dict[str, list] = {}  # type: ignore[type-arg]
    for f in findings:
        by_id.setdefault(f.id, []).append(f)
    (gpu,) = by_id["kernel.gpu_mismatch"]
    assert "Tesla V100-SXM2-32GB" in gpu.title and "Quadro GP100" in gpu.title
    assert gpu.impact_ns == 0 and gpu.severity == "info"
    ct = next(f for f in by_id["kernel.compute_bound"]
              if f.evidence["nsys_kernel"] == "compute_tendencies_x_278_gpu")
    assert ct.title.startswith("kernel compute_tendencies_x_279_gpu: 40 % of GPU time, "
                               "compute-bound (SM 70 % of peak), top stall ")
    assert ct.evidence["nsys_gpu_time_ns"] == 24104314
    assert ct.impact_ns == pytest.approx(24104314 * ct.evidence["headroom"], rel=1e-3)
    assert ct.evidence["match"].startswith("OpenACC function, nearest line")
    semi = next(f for f in by_id["kernel.memory_bound"]
                if f.evidence["nsys_kernel"] == "semi_discrete_step_231_gpu")
    assert "DRAM 74 % of peak" in semi.title and "long_scoreboard 85 % of CPI" in semi.title
    assert not by_id.get("kernel.not_in_timeline")
    hot = {f.evidence["nsys_kernel"] for f in by_id["kernel.not_profiled"]}
    assert "compute_tendencies_z_334_gpu" in hot
    assert all(f.impact_ns == 0 for f in by_id["kernel.not_profiled"])
    total = int((mw_trace.kernels["end_ns"] - mw_trace.kernels["start_ns"]).sum())
    assert sum(f.impact_ns for f in findings) < total


@pytest.mark.realtraces
def test_ncu_kernel_absent_from_timeline(shared_traces: Path, mw_trace) -> None:  # type: ignore[no-untyped-def]
    km = load(shared_traces, "esmm-sgemm-ncu/profile_output.ncu-rep")
    findings = ncu_kernels.join_ncu(mw_trace, km)
    absent = [f for f in findings if f.id == "kernel.not_in_timeline"]
    assert len(absent) == 4 and all(f.impact_ns == 0 for f in absent)
    assert any(f.id == "kernel.gpu_mismatch" for f in findings)


@pytest.mark.realtraces
def test_profiling_suggestions_without_ncu(mw_trace) -> None:  # type: ignore[no-untyped-def]
    sugg = ncu_findings.profiling_suggestions(mw_trace)
    assert [s.short_name for s in sugg][:2] == ["compute_tendencies_z_334_gpu",
                                                "compute_tendencies_x_278_gpu"]
    text = ncu_findings.suggestion_text(sugg)
    assert ("infraprof capture --ncu --kernel '^compute_tendencies_z_334_gpu$' "
            "--launch-count 1 -- ") in text
