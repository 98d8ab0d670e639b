"""The analysis registry, settings, --disable, `infraprof config` and the library API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SAMPLE_TRACES
from helpers_cli import run_main

import infraprof
from infraprof.analyses import registry
from infraprof.analyses.context import AnalysisContext
from infraprof.analyses.findings import severity_for
from infraprof.analyses.launch import kernel_launches, launch_latencies
from infraprof.analyses.registry import ANALYSES, build_config, finding_ids
from infraprof.errors import UsageError
from infraprof.inputs.traces import load_trace
from infraprof.int_widths import narrowest_int

DEMO = SAMPLE_TRACES / "demo_host_stall.sqlite"
MW_BASE = "ncar-miniweather-nsys/miniweather_baseline.sqlite"


def _documented_ids() -> set[str]:
    text = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
    return set(re.findall(r"`([a-z_]+\.[a-z_*-]+)`", text))


def test_every_finding_id_is_documented() -> None:
    documented = _documented_ids()
    missing = [fid for fid in finding_ids() if fid not in documented]
    assert not missing, f"add these ids to docs/findings.md: {missing}"


def test_registry_ids_are_unique_and_requirements_come_first() -> None:
    ids = [a.id for a in ANALYSES]
    assert len(ids) == len(set(ids))
    assert len(finding_ids()) == len(set(finding_ids()))
    for i, analysis in enumerate(ANALYSES):
        assert all(r in ids[:i] for r in analysis.requires), analysis.id


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_findings_use_declared_ids_and_the_one_severity_rule(name: str) -> None:
    report = infraprof.analyze(SAMPLE_TRACES / name)
    declared = set(finding_ids())
    for finding in report.findings:
        assert finding.id in declared
        expected = "info" if finding.impact_ns == 0 else severity_for(finding.share)
        assert finding.severity == expected, finding.id


def test_disable_finding_and_analysis() -> None:
    full = {f.id for f in infraprof.analyze(DEMO).findings}
    assert "gap.sync" in full and "host.bound" not in full
    assert "gap.sync" not in {f.id for f in infraprof.analyze(DEMO, disable=["gap.sync"]).findings}
    no_gaps = infraprof.analyze(DEMO, disable=["attribution"])
    assert not any(f.id.startswith("gap.") for f in no_gaps.findings)  # gaps requires it
    assert no_gaps.to_dict()["timeline"]["gaps_attributed"] == 0
    assert not any(f.id.startswith("copy.") for f in
                   infraprof.analyze(DEMO, disable=["copy.*"]).findings)


def test_disable_rejects_unknown_and_core_ids() -> None:
    with pytest.raises(UsageError, match="names no analysis or finding"):
        build_config(cli={"disable": ["gap.nonsense"]})
    with pytest.raises(UsageError, match="cannot be disabled"):
        build_config(cli={"disable": ["summary"]})


def test_cli_disable_and_bad_disable(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["analyze", str(DEMO), "-f", "json", "--disable", "gap.sync"],
                            monkeypatch, capsys)
    assert code == 0 and "gap.sync" not in {f["id"] for f in json.loads(out)["findings"]}
    code, _, err = run_main(["analyze", str(DEMO), "--disable", "nope"], monkeypatch, capsys)
    assert code == 2 and err.startswith("infraprof: error:") and err.count("\n") == 1


def test_pyproject_threshold_changes_result_and_config_shows_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = {f.id: f for f in infraprof.analyze(DEMO).findings}
    assert "404 of 480" in base["launch.latency"].title  # default threshold 1.2 ms
    (tmp_path / "pyproject.toml").write_text(
        '[tool.infraprof]\nlaunch-latency-threshold = "5ms"\ntop = 4\n'
        '[tool.infraprof.gate]\nmax-regression = "3%"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(["analyze", str(DEMO), "-f", "json"], monkeypatch, capsys)
    latency = next(f for f in json.loads(out)["findings"] if f["id"] == "launch.latency")
    assert code == 0 and latency["evidence"]["threshold_ns"] == 5_000_000
    assert latency["evidence"]["launches_over_threshold"] < 404
    code, out, _ = run_main(["config", "-f", "json"], monkeypatch, capsys)
    doc = json.loads(out)
    rows = {r["key"]: r for r in doc["settings"]}
    source = str(tmp_path / "pyproject.toml")
    assert rows["launch-latency-threshold"] == {**rows["launch-latency-threshold"],
                                                "value": 5_000_000, "source": source}
    assert rows["top"]["value"] == 4 and rows["top"]["source"] == source
    assert rows["short-kernel"]["source"] == "default"
    gate = {r["key"]: r for r in doc["gate"]}
    assert gate["gate.max-regression"]["value"] == 0.03
    assert gate["gate.max-regression"]["source"] == source
    assert gate["gate.alpha"]["source"] == "default"
    code, out, _ = run_main(["config", "-f", "json", "--config", str(tmp_path / "x.toml")],
                            monkeypatch, capsys)
    assert code == 2


def test_flags_override_the_file(tmp_path: Path) -> None:
    (tmp_path / "infraprof.toml").write_text('host-bound-share = "50%"\n')
    from infraprof.config import load_config_file

    found = load_config_file(start=tmp_path)
    config = build_config(found.analysis, found.source, {"host-bound-share": "0.2"})
    assert config.params["host_bound"].share == 0.2
    assert config.values["host-bound-share"].source == "command line"
    with pytest.raises(UsageError, match="unknown setting"):
        build_config({"lauch-latency-threshold": "1ms"}, "x.toml")
    with pytest.raises(UsageError, match="fraction"):
        build_config({"host-bound-share": "nan"}, "x.toml")


def test_library_equals_cli_json_on_sample(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["analyze", str(DEMO), "-f", "json"], monkeypatch, capsys)
    assert code == 0
    assert json.loads(json.dumps(infraprof.analyze(DEMO).to_dict())) == json.loads(out)


@pytest.mark.realtraces
@pytest.mark.parametrize("rel", [MW_BASE, "nsightful/power_iteration__baseline.sqlite",
                                 "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite"])
def test_library_equals_cli_json_on_shared(rel: str, shared_traces: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_traces / rel
    code, out, _ = run_main(["analyze", str(path), "-f", "json"], monkeypatch, capsys)
    assert code == 0
    report = infraprof.analyze(path)
    assert json.loads(json.dumps(report.to_dict())) == json.loads(out)
    assert list(report.kernels["name"])[:1] == [json.loads(out)["kernels"][0]["name"]]


@pytest.mark.realtraces
def test_library_compare_matches_cli(shared_traces: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = shared_traces / MW_BASE
    cand = shared_traces / "ncar-miniweather-nsys/miniweather_async.nsys2022.4-export.sqlite"
    result = infraprof.compare(base, cand)
    code, out, _ = run_main(["compare", "-b", str(base), "-c", str(cand), "-f", "json"],
                            monkeypatch, capsys)
    assert code in (0, 1)
    assert json.loads(out)["metrics"] == json.loads(json.dumps(result.to_dict()["metrics"]))
    sync = {r.metric: r for r in result.results}["sync:calls"]
    assert sync.base == 6669 and sync.cand is not None and sync.cand < sync.base


def test_python_api_doc_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    first = blocks[0].replace('"run.sqlite"', repr(str(DEMO)))
    namespace: dict[str, object] = {}
    exec(compile(first, "python-api.md", "exec"), namespace)
    assert namespace["doc"] == infraprof.analyze(DEMO).to_dict()
    assert "ms" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_released_context_values_change_no_result(name: str, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    """Dropping context values between analyses (RELEASED_AFTER) only costs a recomputation:
    the report is the one of a run that keeps every value."""
    released = infraprof.analyze(SAMPLE_TRACES / name).to_dict()
    monkeypatch.setattr(registry, "RELEASED_AFTER", {})
    assert infraprof.analyze(SAMPLE_TRACES / name).to_dict() == released


def test_release_names_are_context_values() -> None:
    ids = [a.id for a in ANALYSES]
    assert set(registry.RELEASED_AFTER) <= set(ids)
    ctx = AnalysisContext(load_trace(DEMO))
    for names in registry.RELEASED_AFTER.values():
        ctx.release(names)  # every name is a cached value (or gpu_ops)
    with pytest.raises(ValueError, match="no cached value"):
        ctx.release(["trace"])
    ops = ctx.trace.gpu_ops()
    ctx.release(["gpu_ops"])
    assert ctx.trace.gpu_ops() is not ops and ctx.trace.gpu_ops().equals(ops)


def test_released_launches_keep_their_latencies() -> None:
    """The launch join's release keeps its latencies: ``launch_latencies`` then gives what
    a fresh computation gives, without a second join."""
    from infraprof.analyses import launch

    ctx = AnalysisContext(load_trace(DEMO))
    fresh = launch.launch_latencies(ctx.trace)
    assert len(fresh) > 0
    held = ctx.launches["latency_ns"].to_numpy()
    assert ctx.launch_latencies().tolist() == fresh.tolist() == held.tolist()
    ctx.release(["launches"])
    assert ctx.held("launches") is None
    kept = ctx.launch_latencies()
    assert kept.tolist() == fresh.tolist() and ctx.launch_latencies() is kept
    ctx.release(["launch_latency"])  # then computed again
    again = ctx.launch_latencies()
    assert again is not kept and again.tolist() == fresh.tolist()


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_gpu_ops_equal_the_concatenated_and_sorted_tables(name: str) -> None:
    """``Trace.gpu_ops`` (columns gathered one at a time in start order) equals the frame
    pandas builds: the tables concatenated, then sorted by start, end; the times int64, the
    ids in the narrowest integer type that holds them (one byte for these devices and
    streams)."""
    trace = load_trace(SAMPLE_TRACES / name)
    cols = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "pid"]
    parts = [t for t in (trace.kernels, trace.memcpy, trace.memset) if len(t)]
    ops = trace.gpu_ops()
    if not parts:
        assert ops.empty
        return
    expected = pd.concat([t[cols] for t in parts], ignore_index=True)
    order = np.lexsort((expected["end_ns"].to_numpy(), expected["start_ns"].to_numpy()))
    pd.testing.assert_frame_equal(ops[cols], expected.iloc[order].reset_index(drop=True),
                                  check_dtype=False)
    assert [str(ops[c].dtype) for c in cols[:2]] == ["int64", "int64"]
    for column in cols[2:]:
        values = expected[column].to_numpy()
        width = np.dtype(narrowest_int(int(values.min()), int(values.max())))
        assert ops[column].dtype == width
        assert np.iinfo(width).bits == 8 or column not in ("device_id", "stream_id")
    kinds = np.repeat([
        k for k, t in (("kernel", trace.kernels), ("memcpy", trace.memcpy),
                       ("memset", trace.memset)) if len(t)], [len(t) for t in parts])
    assert ops["kind"].astype(str).tolist() == kinds[order].tolist()


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_op_columns_are_the_tables_one_after_the_other(name: str) -> None:
    """``Trace.op_columns``: kernels, memcpys, memsets in table order, the values of their
    columns, in the tables' common integer type (narrow ids stay narrow)."""
    trace = load_trace(SAMPLE_TRACES / name)
    tables = [t for t in (trace.kernels, trace.memcpy, trace.memset) if len(t)]
    got = trace.op_columns("pid", "correlation_id", "start_ns")
    for column, values in got.items():
        want = [v for t in tables for v in t[column].tolist()]
        assert values.tolist() == want
        if tables:
            assert values.dtype == np.result_type(*(t[column].dtype for t in tables))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_op_values_gather_op_columns(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Trace.op_values(column, rows)`` is ``op_columns(column)[column][rows]`` for rows in
    any order, repeated, across the three tables' boundaries, a few rows per block."""
    import infraprof.model.trace as trace_module

    monkeypatch.setattr(trace_module, "_GATHER_BLOCK", 7)
    trace = load_trace(SAMPLE_TRACES / name)
    rng = np.random.default_rng(len(name))
    for column in ("start_ns", "end_ns", "pid", "device_id"):
        whole = trace.op_columns(column)[column]
        for rows in (np.arange(len(whole)), rng.integers(0, max(len(whole), 1), 50),
                     np.arange(len(whole))[::-3], np.empty(0, dtype=np.int64)):
            rows = rows[rows < len(whole)]
            got = trace.op_values(column, rows)
            assert got.tolist() == whole[rows].tolist()
            assert got.dtype == whole.dtype


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_trace_ids_are_in_their_narrowest_type(name: str) -> None:
    """The id columns of the large tables (``"int"``/``"Int"`` in their specs) hold the
    export's values in the narrowest integer type (checked against SQL on the export)."""
    import sqlite3

    trace = load_trace(SAMPLE_TRACES / name)
    with sqlite3.connect(f"file:{SAMPLE_TRACES / name}?mode=ro", uri=True) as db:
        for table, frame, column, sql in (
                ("CUPTI_ACTIVITY_KIND_KERNEL", trace.kernels, "stream_id", "streamId"),
                ("CUPTI_ACTIVITY_KIND_KERNEL", trace.kernels, "correlation_id", "correlationId"),
                ("CUPTI_ACTIVITY_KIND_RUNTIME", trace.api_calls, "correlation_id",
                 "correlationId"),
                ("CUPTI_ACTIVITY_KIND_RUNTIME", trace.api_calls, "pid",
                 "(globalTid >> 24) & 16777215")):
            low, high, rows = db.execute(
                f"SELECT min({sql}), max({sql}), count(*) FROM {table}").fetchone()
            assert len(frame) <= rows
            if rows:
                assert frame[column].dtype == np.dtype(narrowest_int(low, high)), column
                assert frame[column].min() >= low and frame[column].max() <= high
    chains = trace.api_calls["callchain_id"]
    assert str(chains.dtype) in ("Int8", "Int16", "Int32", "Int64")
    assert chains.notna().any() or str(chains.dtype) == "Int8" or chains.empty


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_launch_latencies_equal_the_launch_join(name: str) -> None:
    """``launch_latencies`` (one gather) is the launch join's ``latency_ns``, same order."""
    trace = load_trace(SAMPLE_TRACES / name)
    expected = kernel_launches(trace)["latency_ns"].to_numpy()
    assert np.array_equal(launch_latencies(trace), expected)
    ctx = AnalysisContext(trace)
    assert np.array_equal(ctx.launch_latencies(), expected)  # without the join held
    assert len(ctx.launches) == len(expected)
    assert np.array_equal(ctx.launch_latencies(), expected)  # from the held join


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_step_metrics_same_with_or_without_held_timelines(name: str) -> None:
    """The per-step GPU idle comes from the held device timelines' busy intervals when every
    operation is a step process's, else from the operations' columns (the gate, without
    timelines): the same samples either way, also for a capture without GPU work."""
    from infraprof.analyses.run_metrics import run_metrics

    trace = load_trace(SAMPLE_TRACES / name)
    fresh = run_metrics(AnalysisContext(trace))
    ctx = AnalysisContext(trace)
    assert ctx.held("timelines") is None
    assert isinstance(ctx.timelines, list) and ctx.held("timelines") is ctx.timelines
    held = run_metrics(ctx)
    assert "step:gpu_idle" in fresh.samples
    assert held.values == fresh.values and held.samples.keys() == fresh.samples.keys()
    for key, values in fresh.samples.items():
        assert np.array_equal(held.samples[key], values)
