"""The gate on real traces (before/after pairs) and through the CLI."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infraprof.gate.metrics import RunMetrics, load_run, metrics_from_json, metrics_from_trace
from infraprof.gate.policy import MetricPolicy, Policy
from infraprof.gate.verdict import Verdict, compare, compare_metric
from infraprof.inputs import load_trace
from infraprof.ranking import build_report

MW = "ncar-miniweather-nsys"
MW_BASE = f"{MW}/miniweather_baseline.nsys2022.4-export.sqlite"
MW_ASYNC = f"{MW}/miniweather_async.nsys2022.4-export.sqlite"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``infraprof.cli.main`` in-process; returns (exit code, stdout, stderr)."""
    from infraprof.cli import main

    monkeypatch.setattr(sys, "argv", ["infraprof", *args])
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def mw(shared_traces: Path) -> dict[str, RunMetrics]:
    return {"baseline": load_run(shared_traces / MW_BASE),
            "async": load_run(shared_traces / MW_ASYNC)}


@pytest.fixture(scope="session")
def sc22(shared_traces: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sc22")
    out = {}
    for key, name in (("4gpu", "4gpu_baseline.nsys-rep.nsys2022.4-export.sqlite"),
                      ("baseline", "baseline.nsys2022.4-export.sqlite")):
        target = folder / name
        with gzip.open(shared_traces / "nersc-sc22-dl" / f"{name}.gz", "rb") as src, \
                target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        out[key] = target
    return out


@pytest.mark.realtraces
def test_miniweather_steps_come_from_device_syncs(mw: dict[str, RunMetrics]) -> None:
    for run in mw.values():
        assert run.context["steps"] == "sync (299 steps)"
        assert len(run.samples["step:duration"]) == 299
        assert "nvtx" not in " ".join(run.values)  # no NVTX in these traces


@pytest.mark.realtraces
def test_miniweather_baseline_is_a_regression_relative_to_async(
        mw: dict[str, RunMetrics]) -> None:
    result = compare([mw["async"]], [mw["baseline"]], Policy())
    by = {r.metric: r for r in result.results}
    for m in ("step:duration:p50_ns", "step:sync:p50_ns", "step:gpu_idle:p50_ns"):
        assert by[m].verdict is Verdict.REGRESSION and by[m].failed, by[m].describe()
    assert by["step:duration:p50_ns"].change == pytest.approx(0.53, abs=0.03)
    assert by["sync:calls"].verdict is Verdict.REGRESSION
    assert by["launch:calls"].verdict is Verdict.UNCHANGED
    assert result.exit_code == 1


@pytest.mark.realtraces
def test_miniweather_async_judged_faster(mw: dict[str, RunMetrics]) -> None:
    result = compare([mw["baseline"]], [mw["async"]], Policy())
    by = {r.metric: r for r in result.results}
    for m in ("step:duration:p50_ns", "step:sync:p50_ns", "step:gpu_idle:p50_ns",
              "sync:calls"):
        assert by[m].verdict is Verdict.IMPROVEMENT, by[m].describe()
    # queueing raises launch latency on purpose: reported, not gated
    assert by["launch:latency:p50_ns"].verdict is Verdict.REGRESSION
    assert not by["launch:latency:p50_ns"].failed
    assert by["sync:api_ns"].cand < by["sync:api_ns"].base  # type: ignore[operator]
    assert result.exit_code == 0


@pytest.mark.realtraces
def test_gate_cli_exit_codes_on_miniweather(shared_traces: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    base, cand = str(shared_traces / MW_ASYNC), str(shared_traces / MW_BASE)
    junit = tmp_path / "gate.xml"
    code, out, err = run_cli(["gate", "--base", base, "--cand", cand, "--junit", str(junit)],
                             capsys, monkeypatch)
    assert code == 1
    assert "step:duration:p50_ns" in out and "regression" in out
    assert err.startswith("infraprof: error: gate failed on") and err.count("\n") == 1
    assert "<failure" in junit.read_text()
    code, out, _ = run_cli(["gate", "--base", cand, "--cand", base, "-f", "json"], capsys,
                           monkeypatch)
    assert code == 0 and json.loads(out)["passed"] is True
    code, out, _ = run_cli(["compare", "--base", base, "--cand", cand], capsys, monkeypatch)
    assert code == 0


@pytest.mark.realtraces
def test_identical_inputs_pass(shared_traces: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(shared_traces / MW_BASE)
    code, out, _ = run_cli(["gate", "-b", path, "-c", path, "-f", "json"], capsys, monkeypatch)
    doc = json.loads(out)
    assert code == 0 and doc["counts"]["regression"] == 0 and doc["counts"]["missing"] == 0


@pytest.mark.realtraces
def test_same_trace_steps_split_gives_no_false_alarms(mw: dict[str, RunMetrics]) -> None:
    """Noise only: the 299 per-step durations of one run, randomly split into two runs (K=1)
    or into 5 + 5 runs, 200 seeds each; statistical rule alone (threshold off)."""
    steps = np.asarray(mw["baseline"].samples["step:duration"])
    policy = Policy(defaults=MetricPolicy(max_regression=0.0), alpha=0.05,
                    bootstrap_resamples=500)
    metric = "step:duration:p50_ns"
    rates = []
    for k in (1, 5):
        alarms = 0
        for seed in range(200):
            perm = np.random.default_rng(seed).permutation(steps)
            parts = np.array_split(perm, 2 * k)
            runs = [RunMetrics(f"s{i}", samples={"step:duration": list(p)},
                               values={metric: float(np.median(p))})
                    for i, p in enumerate(parts)]
            r = compare_metric(metric, runs[:k], runs[k:], policy)
            alarms += r.verdict is Verdict.REGRESSION
        rates.append(alarms / 200)
    print(f"false-alarm rate, miniweather steps split K=1 / K=5: {rates}")
    assert max(rates) <= 0.05 + 0.02
    default = compare_metric(metric, [RunMetrics("a", samples={"step:duration": list(
        steps[::2])})], [RunMetrics("b", samples={"step:duration": list(steps[1::2])})],
        Policy())
    assert default.verdict is not Verdict.REGRESSION


@pytest.mark.realtraces
def test_sc22_4gpu_vs_baseline_runs(sc22: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["compare", "-b", str(sc22["baseline"]), "-c", str(sc22["4gpu"]),
                              "-f", "json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    names = {m["metric"] for m in doc["metrics"]}
    assert "nvtx:forward:p50_ns" in names and "step:duration:p50_ns" in names
    # numbered NVTX ranges ("step 17", "step 18", ...) pool into one per-step sample set
    step = next(m for m in doc["metrics"] if m["metric"] == "nvtx:step <n>:p50_ns")
    assert step["n_base"] >= 50 and step["level"] == "samples"
    # the same comparison from saved gate-metrics JSON, reversed, through `gate`
    paths = {}
    for key in ("4gpu", "baseline"):
        paths[key] = tmp_path / f"{key}.json"
        paths[key].write_text(json.dumps(load_run(sc22[key]).to_dict()))
    code, _, err = run_cli(["gate", "-b", str(paths["4gpu"]), "-c", str(paths["baseline"]),
                            "--missing", "warn"], capsys, monkeypatch)
    assert code in (0, 1) and "internal error" not in err


@pytest.mark.realtraces
def test_analyze_json_inputs(shared_traces: Path, tmp_path: Path) -> None:
    trace = load_trace(shared_traces / MW_BASE)
    doc = build_report(trace).to_dict()
    full = metrics_from_trace(trace)
    # analyze and gate share one computation: the JSON carries the gate's metrics
    assert doc["gate_samples"] == json.loads(json.dumps(full.to_dict()))
    plain = metrics_from_json({k: v for k, v in doc.items() if k != "gate_samples"},
                              "plain.json")
    assert plain.values["sync:calls"] == 6669 and not plain.samples
    path = tmp_path / "analyze.json"
    path.write_text(json.dumps(doc))
    again = load_run(path)
    assert again.samples == full.samples and again.values == full.values
    assert RunMetrics.from_dict(full.to_dict()).values == full.values
    # JSON without samples against a trace: sample-only metrics are missing, never a pass
    result = compare([plain], [full], Policy())
    missing = {r.metric for r in result.results if r.verdict is Verdict.MISSING}
    assert "step:duration:p50_ns" in missing and result.failed
    warn = compare([plain], [full], Policy(missing="warn"))
    assert not warn.failed and warn.count(Verdict.MISSING) == len(missing)


def test_missing_metric_fails_or_warns_per_config() -> None:
    base = [RunMetrics("b", values={"sync:calls": 5.0, "memcpy:bytes": 10.0})]
    cand = [RunMetrics("c", values={"sync:calls": 5.0})]
    r = compare(base, cand, Policy())
    assert r.failed and r.results[0].verdict is Verdict.MISSING
    assert "present in 1/1 baseline and 0/1 candidate runs" in r.results[0].reason
    assert not compare(base, cand, Policy(missing="warn")).failed


def test_bad_input_exit_3_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    env = {**os.environ, "COLUMNS": "400"}
    for args in (["--base", str(bad), "--cand", str(bad)],
                 ["--base", str(broken), "--cand", str(broken)],
                 ["--base", str(tmp_path / "nope"), "--cand", str(bad)]):
        proc = subprocess.run([sys.executable, "-m", "infraprof", "gate", *args],
                              capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith("infraprof: error: ")
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_repeat_folder_counts_as_k_runs(tmp_path: Path) -> None:
    from infraprof.gate.metrics import expand_runs

    for k in (1, 2, 10):
        (tmp_path / "runs" / f"run-{k}").mkdir(parents=True)
    (tmp_path / "runs" / "run-x").mkdir()
    single = tmp_path / "one.sqlite"
    single.write_bytes(b"")
    got = expand_runs([tmp_path / "runs", single])
    assert [p.name for p in got] == ["run-1", "run-2", "run-10", "one.sqlite"]
