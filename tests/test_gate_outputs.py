"""Gate outputs: JUnit (schema-valid), GitHub annotations/summary, OpenMetrics, GitLab."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from infraprof.gate import github
from infraprof.gate.gitlab import render_gitlab
from infraprof.gate.junit import render_junit
from infraprof.gate.metrics import RunMetrics
from infraprof.gate.openmetrics import render_openmetrics
from infraprof.gate.policy import Policy
from infraprof.gate.text import render_markdown, render_table
from infraprof.gate.verdict import GateResult, compare
from tests.gate_helpers import synthetic_runs

XSD = Path(__file__).parent / "data" / "junit.xsd"


def _result(n_metrics: int = 3, slowdown: float = 0.2) -> GateResult:
    rng = np.random.default_rng(0)
    base, cand = synthetic_runs(rng, k=3), synthetic_runs(rng, k=3, slowdown=slowdown)
    odd = 'odd "name", 50% \r\n: <x>&'
    for i in range(n_metrics):
        for run in base:
            run.samples[f"nvtx:{odd}{i}"] = run.samples["step:duration"]
            run.values[f"nvtx:{odd}{i}:total_ns"] = 1.0
        for run in cand:
            run.samples[f"nvtx:{odd}{i}"] = run.samples["step:duration"]
            run.values[f"nvtx:{odd}{i}:total_ns"] = 1.0
        for run in (*base, *cand):
            run.values[f"nvtx:{odd}{i}:p50_ns"] = 1.0
    base[0].values["gpu:busy_ns"] = 5.0  # missing on the candidate side
    policy = Policy(top_ranges=n_metrics, bootstrap_resamples=200)
    return compare(base, cand, policy)


def test_junit_validates_against_schema() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    result = _result()
    text = render_junit(result)
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(text)
    assert f'tests="{len(result.results)}"' in text
    assert text.count("<failure") == sum(r.failed for r in result.results) > 0
    assert re.search(r'message="step:duration:p50_ns \+\d+\.\d %.*CI', text)  # the numbers


def test_junit_passing_run_validates() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(XSD)).validate(render_junit(_result(slowdown=0.0)))


def test_github_escaping() -> None:
    assert github.escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert github.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    lines = github.annotation_lines(_result())
    assert lines and all(line.startswith(("::error ", "::warning ")) for line in lines)
    for line in lines:
        assert "\n" not in line and "\r" not in line
        title = line.split("::")[1]
        assert ":" not in title.split("title=", 1)[1] and "," not in title.split("=", 1)[1]


def test_github_annotation_limit_and_summary_size(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = _result(n_metrics=30)
    lines = github.annotation_lines(result)
    assert sum(x.startswith("::error") for x in lines) == github.MAX_PER_KIND
    assert sum(x.startswith("::warning") for x in lines) <= github.MAX_PER_KIND
    small = github.summary_markdown(result, budget=2000)
    assert len(small.encode()) <= 2000 and "more metrics" in small
    summary = tmp_path / "summary.md"
    summary.write_text("x" * (github.SUMMARY_LIMIT_BYTES - 3000))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert github.write_step_summary(result) == summary
    assert summary.stat().st_size <= github.SUMMARY_LIMIT_BYTES


def test_openmetrics_text() -> None:
    text = render_openmetrics(_result())
    assert text.endswith("# EOF\n")
    assert 'infraprof_gate_value_seconds{metric="step:duration:p50_ns",side="base"}' in text
    assert '\\"name\\"' in text and "\r" not in text
    assert "infraprof_gate_passed 0" in text


def test_gitlab_code_quality() -> None:
    issues = json.loads(render_gitlab(_result()))
    assert issues
    assert {i["severity"] for i in issues} <= {"info", "minor", "major", "critical", "blocker"}
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert json.loads(render_gitlab(_result()))[0]["fingerprint"] == issues[0]["fingerprint"]
    for issue in issues:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity",
                              "location"}
        assert issue["location"]["lines"]["begin"] == 1


def test_table_and_markdown() -> None:
    result = _result()
    table = render_table(result, width=160)
    assert "step:duration:p50_ns" in table and "FAILED" in table
    md = render_markdown(result)
    assert md.startswith("### ❌") and "\\|" not in md.split("\n")[0]


def test_run_metrics_roundtrip_and_rejects_garbage() -> None:
    run = RunMetrics("x", values={"a:calls": 3.0}, samples={"s": [1.0, 2.5]},
                     context={"gpu": "A100"})
    assert RunMetrics.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    from infraprof.errors import InputError

    with pytest.raises(InputError):
        RunMetrics.from_dict({"schema": "something/else"})
