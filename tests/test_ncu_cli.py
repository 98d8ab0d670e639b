"""Nsight Compute on the command line: `analyze X.ncu-rep`, `--ncu`, capture --ncu, suggestions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_TRACES, nsys_required
from helpers_traces import TraceFiles

PY = sys.executable
MW_NCU = "ncar-miniweather-ncu/MW_Baseline.ncu-rep"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "infraprof", *args], capture_output=True, text=True,
                          timeout=300, env=env or {**os.environ, "COLUMNS": "200"})


@pytest.mark.realtraces
def test_analyze_ncu_report_alone(trace_files: TraceFiles) -> None:
    run = _run("analyze", str(trace_files.path(MW_NCU)), "-f", "json")
    assert run.returncode == 0, run.stderr
    kernels = json.loads(run.stdout)["ncu"]["kernels"]
    assert [k["short_name"] for k in kernels][:2] == ["compute_tendencies_x_279_gpu",
                                                       "semi_discrete_step_232_gpu"]
    assert kernels[1]["bound"] == "memory"
    assert kernels[1]["stalls"][0]["reason"] == "long_scoreboard"
    table = _run("analyze", str(trace_files.path(MW_NCU)), "--width", "160")
    assert "long_scoreboard" in table.stdout and "semi_discrete_step_232_gpu" in table.stdout


@pytest.mark.realtraces
def test_analyze_ncu_csv_without_stalls_says_so(trace_files: TraceFiles) -> None:
    run = _run("analyze", str(trace_files.path("esmm-sgemm-ncu/profile.ncu2022.3-raw.csv")),
               "-f", "json")
    assert run.returncode == 0, run.stderr
    kernels = json.loads(run.stdout)["ncu"]["kernels"]
    assert kernels[0]["short_name"] == "basic"
    assert all(k["stalls"] == [] and "no warp-stall metrics" in k["stalls_note"]
               for k in kernels)


@pytest.mark.realtraces
def test_ncu_joined_onto_nsys_timeline(trace_files: TraceFiles) -> None:
    nsys = trace_files.path("ncar-miniweather-nsys/miniweather_baseline.sqlite")
    run = _run("analyze", str(nsys), "--ncu", str(trace_files.path(MW_NCU)), "-f", "json")
    assert run.returncode == 0, run.stderr
    ids = {f["id"] for f in json.loads(run.stdout)["findings"]}
    assert "kernel.gpu_mismatch" in ids and ids & {"kernel.compute_bound",
                                                   "kernel.memory_bound"}
    assert "kernel.profile_suggestion" not in ids


def test_suggestion_when_no_ncu() -> None:
    run = _run("analyze", str(SAMPLE_TRACES / "demo_host_stall.sqlite"), "-f", "json")
    hint = [f for f in json.loads(run.stdout)["findings"]
            if f["id"] == "kernel.profile_suggestion"]
    assert hint and hint[0]["impact_ns"] == 0
    cmd = hint[0]["evidence"]["kernels"][0]["command"]
    assert cmd.startswith("infraprof capture --ncu --kernel ") and "--launch-count" in cmd


def _ncu_or_skip() -> str:
    path = shutil.which("ncu")
    if path is None:
        if nsys_required():
            pytest.fail("ncu is required in CI (scripts/install-nsight.sh installs it)")
        pytest.skip("ncu not installed")
    return path


def test_capture_ncu_on_a_cpu_only_app_records_no_kernels(tmp_path: Path) -> None:
    _ncu_or_skip()
    app = tmp_path / "app.py"
    app.write_text("print('no gpu here')\n")
    out = tmp_path / "cap"
    run = _run("capture", "--no-nsys", "--ncu", "--launch-count", "1", "-o", str(out), "--",
               PY, str(app))
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ncu"]["status"] == "no-kernels"
    assert "--clock-control none" in manifest["ncu"]["command"]
    assert "profiled no kernels" in run.stderr


def test_capture_ncu_permission_denied_is_explained(tmp_path: Path) -> None:
    fake = tmp_path / "ncu"
    fake.write_text("#!/bin/sh\necho '==ERROR== ERR_NVGPUCTRPERM - The user does not have "
                    "permission to access NVIDIA GPU Performance Counters'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "cap"
    env = {**os.environ, "INFRAPROF_NCU": str(fake), "COLUMNS": "200"}
    run = _run("capture", "--no-nsys", "--ncu", "-o", str(out), "--", "true", env=env)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ncu"]["status"] == "permission"
    assert "NVreg_RestrictProfilingToAdminUsers=0" in run.stderr


@pytest.mark.realtraces
def test_compare_two_ncu_reports_shows_the_change(trace_files: TraceFiles) -> None:
    base = trace_files.path("ncar-miniweather-ncu/MW_Baseline.ncu-rep")
    cand = trace_files.path("ncar-miniweather-ncu/MW_DivToMult.ncu-rep")
    run = _run("compare", "--base", str(base), "--cand", str(cand), "-f", "json")
    assert run.returncode == 0, run.stderr
    rows = {r["metric"]: r for r in json.loads(run.stdout)["metrics"]}
    dur = rows["ncu:compute_tendencies_x_279_gpu:duration_ns"]
    assert dur["base"] == pytest.approx(6.19e6, rel=0.01)
    assert dur["cand"] == pytest.approx(3.48e6, rel=0.01)
    ls = rows["ncu:compute_tendencies_x_279_gpu:stall:long_scoreboard"]
    assert ls["base"] == pytest.approx(2.83, abs=0.01)
    assert ls["cand"] == pytest.approx(8.59, abs=0.01)


@pytest.mark.realtraces
def test_html_with_ncu_shows_stalls(trace_files: TraceFiles, tmp_path: Path) -> None:
    nsys = trace_files.path("ncar-miniweather-nsys/miniweather_baseline.sqlite")
    out = tmp_path / "r.html"
    run = _run("analyze", str(nsys), "--ncu", str(trace_files.path(MW_NCU)), "-o", str(out))
    assert run.returncode == 0, run.stderr
    html = out.read_text(encoding="utf-8")
    assert "Warp stalls of the profiled kernels (ncu)" in html
    assert "long_scoreboard" in html
