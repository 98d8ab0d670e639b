"""``infraprof export --to perfetto``: the protobuf file decoded by an independent wire walker
(``helpers_protobuf``) and checked against the trace tables: packets, tracks, slices per
track with their exact ns times and names, flows, gap causes and finding ids; hostile names;
``--window`` and ``--max-events``; output safety (FIFO, device, terminal, guessed formats)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from helpers_cli import run_main
from helpers_devices import null_device
from helpers_protobuf import Decoded, decode, slices
from helpers_reports import DEMO, MINIWEATHER, ROOT, report_for
from helpers_traces import TraceFiles

from infraprof.errors import UsageError
from infraprof.model.correlation import join_launch_calls
from infraprof.model.trace import Trace
from infraprof.ranking import Report, build_report
from infraprof.render.export_window import parse_window
from infraprof.render.perfetto_trace import write_perfetto
from infraprof.render.timeline_export import GPU_PID_BASE, build_plan

POWER = "nsightful/power_iteration__baseline.sqlite"
SAMPLES = sorted((ROOT / "sample_traces").glob("demo_*.sqlite"))


def _export(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str], *extra: str) -> Decoded:
    out = tmp_path / "trace.perfetto-trace"
    code, _, err = run_main(["export", str(path), "-o", str(out), *extra], monkeypatch, capsys)
    assert code == 0, err
    return decode(out.read_bytes())


def _key(decoded: Decoded, uuid: int) -> tuple[int, str, int]:
    """(pid, kind, id) of a track: a host thread (and its overlap lanes), a stream, gaps."""
    track = decoded.tracks[uuid]
    if "tid" in track:
        return track["pid"], "thread", track["tid"]
    parent = decoded.tracks[track["parent"]]
    name = track["name"].split(" (overlapping ")[0]
    if name.startswith("stream "):
        return parent["pid"], "stream", int(name.split()[1])
    if name.startswith("GPU idle"):
        return parent["pid"], "gaps", 0
    if name.startswith("py-spy "):
        return parent["pid"], "py-spy", int(name.split()[1])
    return parent["pid"], "thread", int(name.rsplit("(", 1)[1].rstrip(")"))


def _per_track(decoded: Decoded) -> dict[tuple[int, str, int], list[tuple[int, int, str]]]:
    out: dict[tuple[int, str, int], list[tuple[int, int, str]]] = {}
    for uuid, events in decoded.events.items():
        spans = [(s, e, ev.name or "") for s, e, ev in slices(events)]
        out.setdefault(_key(decoded, uuid), []).extend(spans)
    return out


def _expected(report: Report) -> dict[tuple[int, str, int], list[tuple[int, int, str]]]:
    """The model's slices per track, computed from the trace tables directly."""
    t = report.trace
    out: dict[tuple[int, str, int], list[tuple[int, int, str]]] = {}

    def add(frame: pd.DataFrame, key_cols: tuple[str, str], kind: str, names: pd.Series,
            instant: bool = False) -> None:
        ends = frame["start_ns"] if instant else frame["end_ns"]
        for a, b, s, e, n in zip(frame[key_cols[0]], frame[key_cols[1]], frame["start_ns"],
                                 ends, names, strict=True):
            pid = GPU_PID_BASE + int(a) if kind == "stream" else int(a)
            out.setdefault((pid, kind, int(b)), []).append((int(s), max(int(e), int(s)),
                                                            str(n)))

    add(t.kernels, ("device_id", "stream_id"), "stream", t.kernels["name"])
    add(t.memcpy, ("device_id", "stream_id"), "stream", "memcpy " + t.memcpy["direction"])
    add(t.memset, ("device_id", "stream_id"), "stream", pd.Series(["memset"] * len(t.memset)))
    add(t.api_calls, ("pid", "tid"), "thread", t.api_calls["name"])
    add(t.osrt, ("pid", "tid"), "thread", t.osrt["name"])
    ranges = t.nvtx[(t.nvtx["kind"] == "range") & t.nvtx["end_ns"].notna()]
    add(ranges, ("pid", "tid"), "thread", ranges["name"])
    marks = t.nvtx[t.nvtx["kind"] == "mark"]
    add(marks, ("pid", "tid"), "thread", marks["name"], instant=True)
    assert report.analysis is not None
    for g in report.analysis.attributions.records():
        out.setdefault((GPU_PID_BASE + g.device_id, "gaps", 0), []).append(
            (g.start_ns, g.end_ns, f"idle: {g.category}"))
    return out


def _check_against_model(decoded: Decoded, report: Report) -> None:
    got, want = _per_track(decoded), _expected(report)
    assert got.keys() == want.keys()
    for key in want:
        assert Counter(got[key]) == Counter(want[key]), key
    # flows: every operation joined to its launching call carries its call's flow id
    ops = report.trace.gpu_ops()
    joined = join_launch_calls(ops, report.trace.api_calls, how="inner")
    calls = joined[["pid", "correlation_id"]].drop_duplicates()
    events = [ev for evs in decoded.events.values() for ev in evs if ev.kind == 1]
    terminating = [f for ev in events for f in ev.terminating]
    on_ops = sum(1 for ev in events if ev.category in ("kernel", "memcpy", "memset")
                 and (ev.flows or ev.terminating))
    starts = {f for ev in events if ev.category == "cuda_api" for f in ev.flows}
    assert len(terminating) == len(set(terminating)) == len(calls) == len(starts)
    assert on_ops == len(joined) and set(terminating) == starts


def _check_gaps(decoded: Decoded, report: Report) -> None:
    found = {f.id for f in report.findings}
    gaps = [ev for evs in decoded.events.values() for ev in evs if ev.category == "gpu_idle"]
    assert gaps
    for ev in gaps:
        cause = ev.args["cause"]
        assert ev.name == f"idle: {cause}"
        assert ev.args.get("finding_id") == (f"gap.{cause}" if f"gap.{cause}" in found
                                             else None)
    assert any("finding_id" in ev.args for ev in gaps)


@pytest.mark.parametrize("rel", [MINIWEATHER, POWER])
def test_perfetto_of_shared_traces_matches_the_model(
        rel: str, trace_files: TraceFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(rel)
    decoded = _export(path, tmp_path, monkeypatch, capsys)
    report = report_for(path)
    _check_against_model(decoded, report)
    _check_gaps(decoded, report)
    names = {t.get("process_name") for t in decoded.tracks.values()}
    assert any(str(n).startswith("GPU 0: ") for n in names)
    size = (tmp_path / "trace.perfetto-trace").stat().st_size
    assert size <= 120 * sum(len(v) for v in _expected(report).values()) + 100_000


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_perfetto_of_sample_traces_matches_the_model(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _check_against_model(_export(path, tmp_path, monkeypatch, capsys), report_for(path))


def test_chrome_and_perfetto_draw_the_same_slices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    decoded = _export(DEMO, tmp_path, monkeypatch, capsys)
    out = tmp_path / "t.json"
    assert run_main(["export", str(DEMO), "-o", str(out)], monkeypatch, capsys)[0] == 0
    events = json.loads(out.read_text(encoding="utf-8"))["traceEvents"]
    chrome = Counter((e["name"], round(e["ts"] * 1000)) for e in events if e["ph"] in "Xbi")
    proto = Counter((ev.name, ev.ts) for evs in decoded.events.values() for ev in evs
                    if ev.kind in (1, 3))
    assert chrome == proto
    assert sum(1 for e in events if e["ph"] == "s") == sum(
        len(ev.terminating) + len(ev.flows) for evs in decoded.events.values() for ev in evs
        if ev.category != "cuda_api")


def test_hostile_names_survive(tmp_path: Path) -> None:
    report = report_for(DEMO)
    names = ['q"uote <b>&amp;', "new\nline", "nul\x00byte", "lone \udc80 surrogate"]
    kernels = report.trace.kernels.copy()
    kernels["name"] = [names[i % len(names)] for i in range(len(kernels))]
    hostile = replace(report, trace=replace(report.trace, kernels=kernels))
    chunks: list[bytes] = []
    write_perfetto(build_plan(hostile), chunks.append)
    decoded = decode(b"".join(chunks))
    got = {ev.name for evs in decoded.events.values() for ev in evs if ev.category == "kernel"}
    assert got == {*names[:3], "lone ? surrogate"}


def test_window_keeps_what_overlaps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    report = report_for(DEMO)
    lo, hi = parse_window("step:2-3", report.trace)
    decoded = _export(DEMO, tmp_path, monkeypatch, capsys, "--window", "step:2-3")
    spans = [s for evs in decoded.events.values() for s in slices(evs)]
    assert spans and all(s < hi and (e > lo or s >= lo) for s, e, _ in spans)
    want = _expected(report)
    inside = sum(1 for v in want.values() for s, e, _ in v if s < hi and (e > lo or s >= lo))
    assert len(spans) == inside < sum(len(v) for v in want.values())
    steps = [ev for s, e, ev in spans if ev.name and ev.name.startswith("step")]
    assert len(steps) == 2
    # durations count from the trace's first event
    first = min(s for v in want.values() for s, _, _ in v)
    assert parse_window("1ms:2.5ms", report.trace) == (first + 1_000_000, first + 2_500_000)
    assert parse_window("200us:", report.trace)[0] == first + 200_000


@pytest.mark.parametrize("window", ["bogus", "2s:1s", "1x:2s", "step:99", "step:3-2", "1:2:3"])
def test_bad_windows(window: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.pftrace"
    code, _, err = run_main(["export", str(DEMO), "-o", str(out), "--window", window],
                            monkeypatch, capsys)
    assert code == 2 and err.count("infraprof: error:") == 1 and "--window" in err
    assert not out.exists()


def test_max_events_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.perfetto-trace"
    code, _, err = run_main(["export", str(DEMO), "-o", str(out), "--max-events", "100"],
                            monkeypatch, capsys)
    assert code == 2 and "--window" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())
    total = build_plan(report_for(DEMO)).event_count()
    assert run_main(["export", str(DEMO), "-o", str(out), "--max-events", str(total)],
                    monkeypatch, capsys)[0] == 0
    assert out.stat().st_size > 0


def test_perfetto_is_not_written_to_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run_main(["export", str(DEMO), "--to", "perfetto"], monkeypatch, capsys)
    assert code == 2 and "binary" in err and out == ""


def test_formats_guessed_from_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.perfetto-trace", "a.pftrace"):
        out = tmp_path / name
        assert run_main(["export", str(DEMO), "-o", str(out)], monkeypatch, capsys)[0] == 0
        assert decode(out.read_bytes()).packets > 0
    out = tmp_path / "a.json"
    assert run_main(["export", str(DEMO), "-o", str(out)], monkeypatch, capsys)[0] == 0
    assert json.loads(out.read_text(encoding="utf-8"))["traceEvents"]


def test_streams_to_a_fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def drain() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=drain)
    reader.start()
    code, _, err = run_main(["export", str(DEMO), "--to", "perfetto", "-o", str(fifo)],
                            monkeypatch, capsys)
    reader.join(timeout=60)
    assert code == 0, err
    assert decode(received[0]).packets > 0 and fifo.is_fifo()


def test_streams_to_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    dev = null_device(tmp_path)
    code, _, err = run_main(["export", str(DEMO), "--to", "perfetto", "-o", str(dev)],
                            monkeypatch, capsys)
    assert code == 0, err
    assert dev.is_char_device() and not list(dev.parent.glob("*.tmp"))


def test_overlapping_slices_go_to_overlap_tracks() -> None:
    report = report_for(DEMO)
    api = report.trace.api_calls
    row = api.iloc[[0]].copy()
    # a call that crosses the first call's end: it cannot nest on the thread's track
    row["start_ns"] = int(api["start_ns"].iloc[0]) + 1
    row["end_ns"] = int(api["end_ns"].iloc[0]) + 10_000_000
    row["name"] = "crossing"
    crossed = replace(report, trace=replace(report.trace, api_calls=pd.concat(
        [api, row], ignore_index=True)))
    chunks: list[bytes] = []
    write_perfetto(build_plan(crossed), chunks.append)
    decoded = decode(b"".join(chunks))
    lanes = [u for u, t in decoded.tracks.items() if "(overlapping 1)" in t.get("name", "")]
    assert lanes
    names = {ev.name for u in lanes for ev in decoded.events[u] if ev.kind == 1}
    assert "crossing" in names
    for events in decoded.events.values():
        slices(events)  # every track still pairs its begins and ends


def test_an_empty_trace_exports_no_events() -> None:
    empty = build_report(Trace(meta=report_for(DEMO).trace.meta))
    with pytest.raises(UsageError, match="no NVTX step ranges"):
        parse_window("step:1", empty.trace)
    plan = build_plan(empty)
    assert plan.event_count() == 0 and not plan.tracks
    chunks: list[bytes] = []
    write_perfetto(plan, chunks.append)
    assert decode(b"".join(chunks)).packets == 0


def test_pyspy_slices_get_a_track_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-spy slices (``timeline_view.pyspy_slices``, tested with the capture tests) land on
    ``py-spy <tid>`` tracks of the main process with their whole stack as an argument."""
    from infraprof.ranking import timeline_view
    from infraprof.render import timeline_export

    report = report_for(DEMO)
    fake = [timeline_view.PyspySlice(11, 1_000, 5_000, ("main (app.py:3)", "hot (app.py:7)")),
            timeline_view.PyspySlice(11, 5_000, 9_000, ("main (app.py:3)",)),
            timeline_view.PyspySlice(12, 2_000, 3_000, ("worker (app.py:20)",))]
    monkeypatch.setattr(timeline_export, "pyspy_slices", lambda _: fake)
    chunks: list[bytes] = []
    write_perfetto(build_plan(report), chunks.append)
    decoded = decode(b"".join(chunks))
    got = {_key(decoded, u): [(s, e, ev.name, ev.args["stack"]) for s, e, ev in slices(evs)]
           for u, evs in decoded.events.items() if decoded.tracks[u].get("name", "")
           .startswith("py-spy")}
    pid = timeline_view.main_pid(report)
    assert got == {
        (pid, "py-spy", 11): [(1_000, 5_000, "hot (app.py:7)", "main (app.py:3) > hot (app.py:7)"),
                              (5_000, 9_000, "main (app.py:3)", "main (app.py:3)")],
        (pid, "py-spy", 12): [(2_000, 3_000, "worker (app.py:20)", "worker (app.py:20)")]}


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The file appears only once complete: an error mid-stream leaves neither it nor a
    temporary file; an existing file is kept as it was."""
    from infraprof.render import perfetto_trace

    out = tmp_path / "t.perfetto-trace"
    out.write_bytes(b"old")

    def broken(plan: object, write: Callable[[bytes], object]) -> None:
        write(b"\x0a\x00" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(perfetto_trace, "write_perfetto", broken)
    code, _, err = run_main(["export", str(DEMO), "-o", str(out)], monkeypatch, capsys)
    assert code != 0
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [out.name]
    missing = tmp_path / "nope" / "t.perfetto-trace"
    code, _, err = run_main(["export", str(DEMO), "-o", str(missing)], monkeypatch, capsys)
    assert code == 3 and err.count("infraprof: error:") == 1 and "nope" in err


def test_streams_to_a_pipe() -> None:
    run = subprocess.run([sys.executable, "-m", "infraprof", "export", str(DEMO), "--to",
                          "perfetto"], capture_output=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert run.returncode == 0, run.stderr
    decoded = decode(run.stdout)
    assert decoded.packets > 0 and run.stderr == b""
