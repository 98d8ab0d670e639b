"""End-to-end `infraprof capture` with real nsys and py-spy on sample_apps/stall_app.py, plus
fault tests (exit code, SIGKILL, Ctrl-C, missing py-spy). CPU-only: no GPU needed.

Every capture runs nsys with ``--sample=none --cpuctxsw=none`` (the default) under
infraprof's own watchdog, and a hang is retried once, then xfailed with a clear message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infraprof.analyses.range_frames import range_breakdown, range_name_breakdown
from infraprof.inputs import load_capture_pyspy, load_trace

pytestmark = pytest.mark.nsys

ROOT = Path(__file__).resolve().parents[1]
STALL_APP = ROOT / "sample_apps" / "stall_app.py"
PY = sys.executable
STEPS = 8
SECRET = "INFRAPROF_TEST_SECRET_VALUE_93127"


def _env(nsys_bin: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, INFRAPROF_NSYS=nsys_bin, INFRAPROF_NSYS_FINALIZE_TIMEOUT_S="45",
               INFRAPROF_TEST_SECRET=SECRET, **extra)
    env.pop("CI", None)  # no progress spinner either way; keep analyze output plain
    return env


def _capture(nsys_bin: str, out: Path, args: list[str], **extra: str
             ) -> subprocess.CompletedProcess[str]:
    """``infraprof capture -o out ARGS`` with one retry when nsys hangs (watchdog → exit 4)."""
    for attempt in range(2):
        if attempt:  # the hung attempt left a partial folder; capture into a fresh one
            shutil.rmtree(out, ignore_errors=True)
        run = subprocess.run([PY, "-m", "infraprof", "capture", "-o", str(out), *args],
                             env=_env(nsys_bin, **extra), capture_output=True, text=True,
                             timeout=180)
        if not (run.returncode == 4 and "did not finish" in run.stderr):
            return run
    pytest.xfail("nsys hung twice after the app exited (known nsys 2022.4 collector hang)")


@pytest.fixture(scope="module")
def stall_capture(nsys_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture") / "stall"
    run = _capture(nsys_bin, out, [str(STALL_APP), "--steps", str(STEPS)])  # `capture ./app args`
    assert run.returncode == 0, run.stderr
    assert f"stall_app: {STEPS} steps" in run.stdout
    return out


def test_capture_folder_layout_and_manifest(stall_capture: Path) -> None:
    for name in ("report.nsys-rep", "report.sqlite", "pyspy.chrometrace.json", "pyspy.raw.txt",
                 "manifest.json"):
        assert (stall_capture / name).is_file() and (stall_capture / name).stat().st_size, name
    text = (stall_capture / "manifest.json").read_text()
    assert SECRET not in text, "manifest must not contain environment variables"
    m = json.loads(text)
    assert m["command"] == [str(STALL_APP), "--steps", str(STEPS)]
    assert m["exit_code"] == 0 and m["tools"]["nsys"] and m["tools"]["py-spy"]
    assert "--sample=none" in m["nsys_argv"] and "--cpuctxsw=none" in m["nsys_argv"]
    assert {"realtime_ns", "monotonic_ns"} <= set(m["clock_anchor"])
    assert (m["start_utc"] <= m["end_utc"] and m["gpus"] == []) or isinstance(m["gpus"], list)
    assert len(m["sync"]["pulses"]) == 6 and m["sync"]["exit_status"] == 0
    align = m["alignment"]
    assert align["pyspy"]["method"] == "sync-pulses" and align["nsys"]["method"] == "nvtx-marks"
    assert 0 < align["error_ns"] < 50_000_000
    assert "thread (" in (stall_capture / "pyspy.raw.txt").read_text()


def test_nvtx_events_survive(stall_capture: Path) -> None:
    """nvtx 0.2.12–0.2.17 lose every event under nsys 2022.4; the pinned 0.2.11 must not."""
    with sqlite3.connect(stall_capture / "report.sqlite") as db:
        n = db.execute("SELECT count(*) FROM NVTX_EVENTS WHERE eventType IN (34, 59)").fetchone()
    assert n[0] >= 3 * STEPS


def test_analyze_accepts_the_capture_folder(stall_capture: Path, nsys_bin: str) -> None:
    run = subprocess.run([PY, "-m", "infraprof", "analyze", str(stall_capture), "--no-color"],
                         env=_env(nsys_bin), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "step" in run.stdout


def test_per_step_host_breakdown_names_the_stall_function(stall_capture: Path) -> None:
    trace = load_trace(stall_capture)
    aligned = load_capture_pyspy(stall_capture, trace.nvtx, trace.meta.session_start_utc_ns)
    assert aligned is not None and aligned.alignment is not None and aligned.samples is not None
    err, period = aligned.alignment.error_ns, aligned.period_ns
    steps = range_breakdown(trace.nvtx, aligned.samples, aligned.frames, err, period,
                            names=["step"])
    assert len(steps) == STEPS
    named = []
    for r in steps:
        top = r.window.top
        assert top is not None, r.window.refused
        # truth: 30 ms sleep + 10 ms collate of a ~60 ms step
        if top.function == "load_batch" and 0.45 <= top.share <= 0.9 and top.samples >= 10:
            named.append(r.instance)
    # a step on a loaded machine (CPU-bound compute stretched, sampling delayed) may tip; the
    # stall must still be named in all but at most two steps, and in the pooled breakdown
    assert len(named) >= STEPS - 2, [(r.instance, r.window.frames) for r in steps]
    pooled = range_name_breakdown(trace.nvtx, aligned.samples, aligned.frames, err, period)
    assert pooled["step"].top is not None and pooled["step"].top.function == "load_batch"
    assert [c[0] for c in pooled["step"].context][-1] == "run"
    assert "bootstrap" not in " ".join(f for f, _, _ in pooled["step"].context)


def test_app_exit_code_is_propagated(nsys_bin: str, tmp_path: Path) -> None:
    app = tmp_path / "fail.py"
    app.write_text("import sys, time\ntime.sleep(0.1)\nsys.exit(3)\n")
    run = _capture(nsys_bin, tmp_path / "c", ["--no-pyspy", "--", PY, str(app)])
    assert run.returncode == 3, run.stderr
    assert (tmp_path / "c" / "report.nsys-rep").is_file()
    assert (tmp_path / "c" / "report.sqlite").is_file()
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["exit_code"] == 3


def test_app_killed_by_sigkill(nsys_bin: str, tmp_path: Path) -> None:
    app = tmp_path / "die.py"
    app.write_text("import os, time\ntime.sleep(0.3)\nos.kill(os.getpid(), 9)\n")
    run = _capture(nsys_bin, tmp_path / "c", ["--", PY, str(app)])
    assert run.returncode == 128 + signal.SIGKILL, run.stderr
    assert (tmp_path / "c" / "report.nsys-rep").is_file()
    load_trace(tmp_path / "c")  # still analysable


def test_sigint_finalizes_the_report(nsys_bin: str, tmp_path: Path) -> None:
    code = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen(
        [PY, "-m", "infraprof", "capture", "--no-pyspy", "-o", str(tmp_path / "c"), "--", PY,
         "-c", code], env=_env(nsys_bin), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "ready" in line or not line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert (tmp_path / "c" / "report.nsys-rep").is_file()
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["interrupted"] is True and m["report"] == "report.nsys-rep"


def test_pyspy_missing_continues_without_it(nsys_bin: str, tmp_path: Path) -> None:
    run = _capture(nsys_bin, tmp_path / "c", [str(STALL_APP), "--steps", "1"],
                   INFRAPROF_PYSPY=str(tmp_path / "no-py-spy"))
    assert run.returncode == 0, run.stderr
    assert "py-spy not found; continuing without Python frames" in " ".join(run.stderr.split())
    assert (tmp_path / "c" / "report.sqlite").is_file()
    assert not (tmp_path / "c" / "pyspy.chrometrace.json").exists()


def test_repeat_and_nsys_arg_passthrough(nsys_bin: str, tmp_path: Path) -> None:
    run = _capture(nsys_bin, tmp_path / "c", ["--repeat", "2", "--no-pyspy", "--nsys-arg",
                                              "--trace=nvtx,osrt", "--", PY, "-c", "pass"])
    assert run.returncode == 0, run.stderr
    for k in (1, 2):
        m = json.loads((tmp_path / "c" / f"run-{k}" / "manifest.json").read_text())
        assert "--trace=nvtx,osrt" in m["nsys_argv"]
        assert "--trace=cuda,nvtx,osrt" not in m["nsys_argv"]
        assert (tmp_path / "c" / f"run-{k}" / "report.sqlite").is_file()
