"""Gate policy (TOML + CLI overrides) and the baseline store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from infraprof.errors import InputError, UsageError
from infraprof.gate import baseline
from infraprof.gate.policy import load_policy, parse_absolute, parse_relative
from tests.gate_helpers import synthetic_runs


def test_pyproject_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.infraprof.gate]\nmax-regression = "3%"\nalpha = 0.05\nmissing = "warn"\n'
        'report-only = ["kernel:*"]\n'
        '[tool.infraprof.gate.metric."step:*"]\nmax-regression = "250us"\n'
        'direction = "lower"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    policy = load_policy(start=sub)
    assert policy.alpha == 0.05 and policy.missing == "warn"
    assert policy.defaults.max_regression == pytest.approx(0.03)
    step = policy.for_metric("step:duration:p50_ns")
    assert step.abs_threshold == 250_000 and step.max_regression == 0
    assert policy.for_metric("kernel:k:total_ns").report_only
    flags = load_policy(start=sub, overrides={"alpha": 0.001, "max_regression": "10"})
    assert flags.alpha == 0.001 and flags.defaults.max_regression == pytest.approx(0.10)
    assert flags.missing == "warn"


def test_infraprof_toml_wins_and_gate_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.infraprof.gate]\nalpha = 0.05\n")
    (tmp_path / "infraprof.toml").write_text("[gate]\nalpha = 0.02\nmin-samples = 5\n")
    policy = load_policy(start=tmp_path)
    assert policy.alpha == 0.02 and policy.min_samples == 5


@pytest.mark.parametrize("toml", ['[tool.infraprof.gate]\nalpha = 2\n',
                                  '[tool.infraprof.gate]\nmissing = "ignore"\n',
                                  '[tool.infraprof.gate]\nbogus = 1\n',
                                  '[tool.infraprof.gate\n'])
def test_bad_config_is_usage_error(tmp_path: Path, toml: str) -> None:
    (tmp_path / "pyproject.toml").write_text(toml)
    with pytest.raises(UsageError):
        load_policy(start=tmp_path)


def test_threshold_parsing() -> None:
    assert parse_relative("5%", "x") == pytest.approx(0.05)
    assert parse_absolute("1.5ms", "x") == 1.5e6 and parse_absolute(10, "x") == 10
    with pytest.raises(UsageError):
        parse_relative("five", "x")


def test_baseline_store_roundtrip(tmp_path: Path) -> None:
    db = tmp_path / "base.db"
    runs = synthetic_runs(np.random.default_rng(0), k=3)
    ids = baseline.save_runs(db, runs, commit="abc123", branch="main", host="h", gpu="A100")
    ids += baseline.save_runs(db, runs[:1], commit="def456", branch="feature", host="h")
    assert len(ids) == 4
    main_runs = baseline.query_runs(db, branch="main")
    assert [r.id for r in main_runs] == sorted(ids[:3], reverse=True)
    assert main_runs[0].metrics.samples == runs[2].samples
    assert [r.commit for r in baseline.query_runs(db, commit="def")] == ["def456"]
    with sqlite3.connect(db) as conn:
        n = conn.execute("select count(*) from metric_values where metric = ?",
                         ("step:duration:p50_ns",)).fetchone()[0]
    assert n == 4
    with pytest.raises(InputError):
        baseline.query_runs(tmp_path / "nope.db")


def test_baseline_cli_and_gate_against_store(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_gate import run_cli

    rng = np.random.default_rng(5)
    files = []
    for i, run in enumerate([*synthetic_runs(rng, k=5), *synthetic_runs(rng, k=5,
                                                                        slowdown=0.1)]):
        path = tmp_path / f"run{i}.json"
        path.write_text(json.dumps(run.to_dict()))
        files.append(str(path))
    db = str(tmp_path / "store.db")
    code, out, err = run_cli(["baseline", "save", "--db", db, "--branch", "main",
                              "--commit", "c0ffee", *files[:5]], capsys, monkeypatch)
    assert code == 0 and "saved 5 run(s)" in out, err
    code, out, _ = run_cli(["baseline", "list", "--db", db, "-f", "json"], capsys,
                           monkeypatch)
    assert code == 0 and len(json.loads(out)) == 5
    code, out, _ = run_cli(["baseline", "show", "--db", db, "-m", "step:*"], capsys,
                           monkeypatch)
    assert code == 0 and "step:duration:p50_ns" in out
    cand = [x for f in files[5:] for x in ("--cand", f)]
    code, out, _ = run_cli(["gate", "--base-db", db, "--base-branch", "main", *cand,
                            "-m", "step:*", "-f", "json"], capsys, monkeypatch)
    doc = json.loads(out)
    assert code == 1 and doc["metrics"][0]["verdict"] == "regression"
    assert doc["metrics"][0]["runs_base"] == 5
    same = [x for f in files[:5] for x in ("--cand", f)]
    code, _, _ = run_cli(["gate", "--base-db", db, *same], capsys, monkeypatch)
    assert code == 0
    code, _, err = run_cli(["gate", "--base-db", db, "--base-branch", "nope", *same], capsys,
                           monkeypatch)
    assert code == 3 and err.startswith("infraprof: error:")
