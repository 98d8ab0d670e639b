"""``infraprof export``: Chrome trace-event JSON checked structurally against the format
(required fields per phase, µs timestamps with ns precision, nested ``X`` slices, paired flows,
names for every process and thread), speedscope and collapsed stacks, and CLI errors."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers_cli import run_main
from helpers_reports import DEMO, MINIWEATHER, report_for
from helpers_traces import TraceFiles

from infraprof import tables as table_schema
from infraprof.analyses.attribution import CATEGORIES
from infraprof.analyses.cpu_stacks import idle_mask
from infraprof.ranking import Report
from infraprof.render.chrome_trace import render_chrome_trace
from infraprof.render.stacks import SPEEDSCOPE_SCHEMA, render_speedscope

REQUIRED = {
    "X": {"name", "cat", "ph", "ts", "dur", "pid", "tid"},
    "b": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "e": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"},
    "f": {"name", "cat", "ph", "ts", "pid", "tid", "id", "bp"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "M": {"name", "ph", "pid", "args"},
}




@pytest.fixture(scope="module")
def mw(trace_files: TraceFiles) -> Report:
    return report_for(trace_files.path(MINIWEATHER))


def _check_structure(data: dict[str, Any], report: Report) -> list[dict[str, Any]]:
    assert data["displayTimeUnit"] == "ns"
    events: list[dict[str, Any]] = data["traceEvents"]
    for ev in events:
        assert REQUIRED[ev["ph"]] <= ev.keys(), ev
        assert isinstance(ev["pid"], int)
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
            assert isinstance(ev["tid"], int)
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
    # Metadata names every process and thread that has events.
    procs = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]) for e in events
               if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks = {(e["pid"], e["tid"]) for e in events if e["ph"] != "M"}
    assert {p for p, _ in tracks} <= procs and tracks <= threads
    assert all(e["args"]["name"] for e in events if e["name"].endswith("_name"))
    # Complete slices nest per track (tolerance: float rounding of ns / 1000).
    by_track: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            by_track[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_track.values():
        stack: list[float] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + 1e-6:
                stack.pop()
            assert not stack or end <= stack[-1] + 1e-6
            stack.append(end)
    # Async pairs and flows are paired by id.
    pairs = Counter((e["cat"], e["id"], e["ph"]) for e in events if e["ph"] in "be")
    assert all(pairs[(c, i, "e")] == n for (c, i, ph), n in pairs.items() if ph == "b")
    flows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for e in events:
        if e["ph"] in "sf":
            assert e["ph"] not in flows[e["id"]], f"flow id {e['id']} reused"
            flows[e["id"]][e["ph"]] = e
    for pair in flows.values():
        assert pair.keys() == {"s", "f"} and pair["f"]["bp"] == "e"
        assert pair["s"]["ts"] <= pair["f"]["ts"]
    return events


def test_chrome_trace_of_a_real_trace(mw: Report) -> None:
    data = json.loads(render_chrome_trace(mw))
    events = _check_structure(data, mw)
    t = mw.trace
    kernels = [e for e in events if e["ph"] == "X" and e["cat"] == "kernel"]
    assert len(kernels) == len(t.kernels)
    # µs as floats with the nanoseconds kept.
    assert sorted(round(e["ts"] * 1000) for e in kernels) == sorted(t.kernels["start_ns"])
    assert sorted(round(e["dur"] * 1000) for e in kernels) == sorted(
        t.kernels["end_ns"] - t.kernels["start_ns"])
    assert any(e["ts"] != int(e["ts"]) for e in kernels)
    api = [e for e in events if e.get("cat") == "cuda_api" and e["ph"] in "Xb"]
    osrt = [e for e in events if e.get("cat") == "osrt" and e["ph"] in "Xb"]
    assert len(api) == len(t.api_calls) and len(osrt) == len(t.osrt)
    gaps = [e for e in events if e.get("cat") == "gpu_idle"]
    assert mw.analysis is not None and len(gaps) == mw.analysis.gaps_attributed > 0
    assert {e["args"]["cause"] for e in gaps} <= set(CATEGORIES)
    assert sum(1 for e in events if e["ph"] == "s") == len(t.gpu_ops())
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert "GPU 0: Quadro GP100" in names


def test_chrome_trace_of_the_demo_trace() -> None:
    report = report_for(DEMO)
    events = _check_structure(json.loads(render_chrome_trace(report)), report)
    nvtx = [e for e in events if e.get("cat") == "nvtx"]
    assert {"step", "load_batch", "compute"} <= {e["name"] for e in nvtx}


def test_speedscope_of_a_real_trace(mw: Report) -> None:
    data = json.loads(render_speedscope(mw))
    assert data["$schema"] == SPEEDSCOPE_SCHEMA
    frames = data["shared"]["frames"]
    total = 0
    for p in data["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "none"
        assert len(p["samples"]) == len(p["weights"]) == p["endValue"]
        assert all(0 <= i < len(frames) for s in p["samples"] for i in s)
        total += sum(p["weights"])
    with_chain = set(mw.trace.callchains.query("source == 'sampling'")["callchain_id"])
    assert total == int(mw.trace.cpu_samples["callchain_id"].isin(with_chain).sum()) > 0
    idle = json.loads(render_speedscope(mw, idle_only=True))
    n_idle = sum(sum(p["weights"]) for p in idle["profiles"])
    assert 0 < n_idle < total


def test_idle_mask_matches_the_gaps(mw: Report) -> None:
    assert mw.analysis is not None
    (tl,) = mw.analysis.timelines
    times = np.array([tl.gaps.starts[0], tl.gaps.ends[0], tl.gaps.starts[0] - 1,
                      tl.gaps.ends[0] - 1], dtype=np.int64)
    assert idle_mask(mw.analysis.timelines, times).tolist() == [True, False, False, True]


def test_cli_collapsed_idle_only(trace_files: TraceFiles, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "idle.folded"
    code, _, err = run_main(["export", str(trace_files.path(MINIWEATHER)), "--idle-only",
                             "-o", str(out)], monkeypatch, capsys)
    assert code == 0, err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines and all(line.rsplit(" ", 1)[1].isdigit() for line in lines)
    assert all(";" in line and "\t" not in line for line in lines)
    assert "wrote" in err


def test_cli_chrome_is_streamed_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``-o x.json`` and ``--to chrome`` write the same document as the renderer."""
    a, b = tmp_path / "a.json", tmp_path / "b.trace"
    assert run_main(["export", str(DEMO), "-o", str(a)], monkeypatch, capsys)[0] == 0
    assert run_main(["export", str(DEMO), "--to", "chrome", "-o", str(b)], monkeypatch,
                    capsys)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text(encoding="utf-8"))
    _check_structure(data, report_for(DEMO))
    assert data == json.loads(render_chrome_trace(report_for(DEMO)))


def test_chrome_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.json"
    code, _, err = run_main(["export", str(DEMO), "-o", str(out), "--window", "step:1"],
                            monkeypatch, capsys)
    assert code == 0, err
    report = report_for(DEMO)
    events = _check_structure(json.loads(out.read_text(encoding="utf-8")), report)
    whole = json.loads(render_chrome_trace(report))["traceEvents"]
    assert 0 < sum(e["ph"] == "X" for e in events) < sum(e["ph"] == "X" for e in whole)
    assert sum(1 for e in events if e["ph"] == "X" and e["name"].startswith("step")) == 1


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--to", "speedscope"], 3, "no CPU samples"),
    (["--to", "chrome", "--idle-only"], 2, "--idle-only applies"),
    (["-o", "out.bin"], 2, "give --to"),
])
def test_cli_errors(argv: list[str], code: int, message: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    got, _, err = run_main(["export", str(DEMO), *argv], monkeypatch, capsys)
    assert got == code and message in err


def test_overlapping_ranges_become_async_pairs() -> None:
    report = report_for(DEMO)
    gtid = int(report.trace.nvtx["global_tid"].iloc[0])
    pid, tid = gtid >> 24 & 0xFFFFFF, gtid & 0xFFFFFF
    # nvtxRangeStart/End ranges that cross: [100, 300) and [200, 400) on one thread.
    extra = pd.DataFrame({"start_ns": [100, 200], "end_ns": [300, 400], "global_tid": [gtid] * 2,
                          "pid": [pid] * 2, "tid": [tid] * 2, "name": ["a", "b"],
                          "domain": [None, None], "event_type": [60, 60],
                          "kind": ["range", "range"]})
    nvtx = table_schema.conform(pd.concat([report.trace.nvtx, extra], ignore_index=True),
                                table_schema.NVTX)
    crossed = replace(report, trace=replace(report.trace, nvtx=nvtx))
    events = _check_structure(json.loads(render_chrome_trace(crossed)), crossed)
    begins = [e for e in events if e["ph"] == "b"]
    assert [(e["name"], e["ts"]) for e in begins] == [("b", 0.2)]
    assert sum(1 for e in events if e["ph"] == "X" and e["name"] == "a") == 1


def _pyspy_chrometrace(path: Path) -> None:
    """py-spy --threads chrometrace: thread 11 runs main→hot for 80 ms then main→idle for
    20 ms; thread 12 runs worker for 30 ms (100 Hz: 8 + 2 + 3 samples)."""
    def ev(ph: str, name: str, ts_ms: float, tid: int, line: int = 0) -> dict[str, Any]:
        args = {"filename": "/src/app.py", "line": line} if line else {}
        return {"ph": ph, "name": name, "ts": ts_ms * 1000, "pid": 1, "tid": tid,
                "args": args}

    main_thread, worker = 'thread (11): "MainThread"', "thread (12)"
    events = [ev("B", main_thread, 0, 1), ev("B", "main", 0, 1, 3), ev("B", "hot", 0, 1, 7),
              ev("E", "hot", 80, 1), ev("B", "idle; wait", 80, 1, 9), ev("E", "idle; wait", 100, 1),
              ev("E", "main", 100, 1), ev("E", main_thread, 100, 1),
              ev("B", worker, 0, 2), ev("B", "worker", 0, 2, 20), ev("E", "worker", 30, 2),
              ev("E", worker, 30, 2)]
    path.write_text(json.dumps(events), encoding="utf-8")


def test_cli_speedscope_and_collapsed_of_pyspy_samples_agree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A trace without nsys CPU samples exports its py-spy samples (a capture folder's, or
    --pyspy) to speedscope too, with the same stacks and counts as --to collapsed."""
    trace = tmp_path / "pyspy.chrometrace.json"
    _pyspy_chrometrace(trace)
    base = ["export", str(DEMO), "--pyspy", str(trace)]
    code, collapsed, err = run_main([*base, "--to", "collapsed"], monkeypatch, capsys)
    assert code == 0, err
    code, text, err = run_main([*base, "--to", "speedscope"], monkeypatch, capsys)
    assert code == 0, err
    doc = json.loads(text)
    assert doc["$schema"] == SPEEDSCOPE_SCHEMA
    frames = doc["shared"]["frames"]
    from_speedscope: Counter[str] = Counter()
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["endValue"] == sum(p["weights"])
        for sample, weight in zip(p["samples"], p["weights"], strict=True):
            from_speedscope[";".join([p["name"], *(frames[i]["name"] for i in sample)])] += weight
    from_collapsed: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, count = line.rsplit(" ", 1)
        root, *rest = stack.split(";")
        from_collapsed[";".join([root, *(f.split(" (")[0] for f in rest)])] += int(count)
    assert from_speedscope == from_collapsed == {
        "thread (11): \"MainThread\";main;hot": 8, "thread (11): \"MainThread\";main;idle: wait": 2,
        "thread (12);worker": 3}
    assert {"name": "hot", "file": "/src/app.py:7"} in frames
