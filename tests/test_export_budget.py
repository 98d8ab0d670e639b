"""``infraprof export --max-size``: the file never exceeds the budget; a complete export that
fits is written byte for byte as without one; otherwise the detail window holds exactly the
complete export's events there, the per-GPU counters decode and add up to the busy and idle
time computed independently from the trace tables, and one stderr note says what happened."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_cli import run_main
from helpers_protobuf import Decoded, decode, one, walk
from helpers_reports import DEMO, MINIWEATHER, ROOT, report_for
from helpers_traces import TraceFiles
from test_perfetto_export import _per_track

from infraprof.ranking import Report
from infraprof.render.perfetto_trace import CATEGORIES as EVENT_CATEGORIES
from infraprof.render.timeline_budget import END_MAX, slice_bound
from infraprof.render.timeline_export import GPU_PID_BASE
from infraprof.render.timeline_overview import MAX_BINS

POWER = "nsightful/power_iteration__baseline.sqlite"
FOUR_GPUS = "nersc-sc22-dl/4gpu_baseline.nsys-rep.nsys2022.4-export.sqlite.gz"
SAMPLES = sorted((ROOT / "sample_traces").glob("demo_*.sqlite"))
MARKER = "infraprof: detail window"


def _export(path: Path, out: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code, _, err = run_main(["export", str(path), "-o", str(out), *extra], monkeypatch, capsys)
    assert code == 0, err
    return err


def _overview_uuids(decoded: Decoded) -> set[int]:
    return {u for u, t in decoded.tracks.items() if "counter" in t or t.get("name") == MARKER}


def _detail(decoded: Decoded) -> Decoded:
    """The decoded file without the overview (counter tracks and the marker)."""
    skip = _overview_uuids(decoded)
    return Decoded({u: t for u, t in decoded.tracks.items() if u not in skip},
                   {u: e for u, e in decoded.events.items() if u not in skip})


def _window(decoded: Decoded) -> tuple[int, int, str]:
    (uuid,) = [u for u, t in decoded.tracks.items() if t.get("name") == MARKER]
    begin, end = decoded.events[uuid]
    assert (begin.kind, end.kind) == (1, 2) and begin.name
    return begin.ts, end.ts, begin.name


def _union_ns(starts: np.ndarray, ends: np.ndarray) -> int:
    """Length of the union of ``[starts, ends)`` (an oracle independent of the analyses)."""
    if not len(starts):
        return 0
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    first = np.flatnonzero(np.concatenate([[True], starts[1:] > reach[:-1]]))
    return int((np.maximum.reduceat(ends, first) - starts[first]).sum())


def _check_counters(decoded: Decoded, report: Report) -> None:
    """Busy % per bin adds up to each device's busy time (union of its operations); idle ns
    per cause to the attributed gaps of that cause."""
    t = report.trace
    ops = pd.concat([f[["device_id", "start_ns", "end_ns"]] for f in
                     (t.kernels, t.memcpy, t.memset)], ignore_index=True)
    assert report.analysis is not None
    idle: Counter[tuple[int, str]] = Counter()
    for g in report.analysis.attributions.records():
        idle[(g.device_id, g.category)] += g.end_ns - g.start_ns
    counters = {u: tr for u, tr in decoded.tracks.items() if "counter" in tr}
    busy_devices = set()
    for uuid, track in counters.items():
        device = decoded.tracks[track["parent"]]["pid"] - GPU_PID_BASE
        samples = decoded.events[uuid]
        assert 0 < len(samples) <= MAX_BINS and all(s.kind == 4 for s in samples)
        times = np.array([s.ts for s in samples], dtype=np.int64)
        assert len(times) > 1 and (np.diff(times) > 0).all()
        values = np.array([s.value for s in samples], dtype=float)
        if track["name"] == "GPU busy %":
            busy_devices.add(device)
            assert track["counter"]["unit_name"] == "%"
            assert ((values >= 0) & (values <= 100)).all()
            mine = ops[ops["device_id"] == device]
            want = _union_ns(mine["start_ns"].to_numpy(np.int64),
                             mine["end_ns"].to_numpy(np.int64))
            edges = _edges(times)
            got = float((values / 100 * np.diff(edges)).sum())
            assert got == pytest.approx(want, rel=1e-4, abs=len(values))
        else:
            cause = track["name"].removeprefix("idle ns: ")
            assert track["counter"]["unit"] == 1  # UNIT_TIME_NS
            assert int(values.sum()) == idle[(device, cause)] > 0
    assert busy_devices == set(ops["device_id"].unique().tolist())


def _edges(times: np.ndarray) -> np.ndarray:
    """Bin edges of a counter: its sample times (bin starts), then the last bin's end (the
    bins are equal to within a ns)."""
    width = int(np.diff(times).max())
    return np.concatenate([times, [times[-1] + width]])


@pytest.mark.parametrize("rel", [MINIWEATHER, POWER, FOUR_GPUS])
def test_budget_bounds_the_file_and_keeps_the_window_whole(
        rel: str, trace_files: TraceFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(rel)
    complete = tmp_path / "all.perfetto-trace"
    _export(path, complete, monkeypatch, capsys, "--max-size", "0")
    everything = _per_track(decode(complete.read_bytes()))
    report = report_for(path)
    for budget in (100_000, 300_000):
        out = tmp_path / f"{budget}.perfetto-trace"
        err = _export(path, out, monkeypatch, capsys, "--max-size", str(budget))
        assert out.stat().st_size <= budget < complete.stat().st_size
        notes = [line for line in err.splitlines() if line.startswith("infraprof: note:")]
        assert len(notes) == 1 and "--max-size 0 writes everything" in notes[0]
        decoded = decode(out.read_bytes())
        lo, hi, label = _window(decoded)
        assert "the largest gap of the top finding gap." in label
        got = _per_track(_detail(decoded))
        want = {key: [s for s in spans if s[0] < hi and (s[1] > lo or s[0] >= lo)]
                for key, spans in everything.items()}
        want = {key: spans for key, spans in want.items() if spans}
        assert got.keys() == want.keys()
        for key, spans in want.items():
            assert Counter(got[key]) == Counter(spans), key
        assert sum(len(v) for v in got.values()) > 100
        _check_counters(decoded, report)


def test_chrome_budget(trace_files: TraceFiles, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(MINIWEATHER)
    complete, out = tmp_path / "all.json", tmp_path / "cut.json"
    _export(path, complete, monkeypatch, capsys, "--max-size", "none")
    err = _export(path, out, monkeypatch, capsys, "--max-size", "200kB")
    assert out.stat().st_size <= 200_000 and err.count("infraprof: note:") == 1
    cut = json.loads(out.read_text(encoding="utf-8"))["traceEvents"]
    (marker,) = [e for e in cut if e.get("cat") == "infraprof"]
    lo, hi = marker["ts"], marker["ts"] + marker["dur"]

    def drawn(events: list[dict[str, object]]) -> Counter[tuple[object, ...]]:
        return Counter((e["pid"], e["tid"], e["name"], e["ts"]) for e in events
                       if e["ph"] in ("X", "b", "i") and e.get("cat") != "infraprof"
                       and float(e["ts"]) < hi  # type: ignore[arg-type]
                       and (float(e["ts"]) + float(e.get("dur", 0)) > lo  # type: ignore[arg-type]
                            or float(e["ts"]) >= lo))  # type: ignore[arg-type]

    everything = json.loads(complete.read_text(encoding="utf-8"))["traceEvents"]
    assert drawn(cut) == drawn(everything) and len(drawn(cut)) > 100
    busy = [e for e in cut if e["ph"] == "C" and e["name"] == "GPU busy %"]
    assert 0 < len(busy) <= MAX_BINS and all(0 <= e["args"]["busy %"] <= 100 for e in busy)


@pytest.mark.parametrize("path", [*SAMPLES, "miniweather"], ids=str)
def test_default_is_the_complete_export_when_it_fits(
        path: Path | str, trace_files: TraceFiles, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = trace_files.path(MINIWEATHER) if path == "miniweather" else Path(path)
    for suffix in (".perfetto-trace", ".json"):
        default, unbounded = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        assert "note" not in _export(source, default, monkeypatch, capsys)
        _export(source, unbounded, monkeypatch, capsys, "--max-size", "0")
        assert default.read_bytes() == unbounded.read_bytes()


def test_window_and_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """With --window the budget applies inside it: the detail lies in the window."""
    from infraprof.render.export_window import parse_window

    out = tmp_path / "w.perfetto-trace"
    full = tmp_path / "full.perfetto-trace"
    _export(DEMO, full, monkeypatch, capsys, "--window", "step:2-4", "--max-size", "0")
    size = full.stat().st_size
    err = _export(DEMO, out, monkeypatch, capsys, "--window", "step:2-4", "--max-size",
                  str(size // 2))
    assert "export of --window step:2-4 would be" in err
    assert out.stat().st_size <= size // 2
    lo, hi = parse_window("step:2-4", report_for(DEMO).trace)
    w_lo, w_hi, _ = _window(decode(out.read_bytes()))
    assert lo <= w_lo < w_hi <= hi


@pytest.mark.parametrize("value", ["abc", "-1", "10XB", "0.1", "5 parsecs"])
def test_bad_max_size(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.perfetto-trace"
    code, _, err = run_main(["export", str(DEMO), "-o", str(out), "--max-size", value],
                            monkeypatch, capsys)
    assert code == 2 and err.count("infraprof: error:") == 1 and "--max-size" in err
    assert not out.exists()


def test_max_size_only_for_timelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", str(DEMO), "--to", "collapsed", "--max-size", "1MB"],
                            monkeypatch, capsys)
    assert code == 2 and err.count("infraprof: error:") == 1 and "--max-size" in err


def test_a_budget_too_small_for_the_overview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.perfetto-trace"
    code, _, err = run_main(["export", str(DEMO), "-o", str(out), "--max-size", "300"],
                            monkeypatch, capsys)
    assert code == 2 and err.count("infraprof: error:") == 1 and "too small" in err
    assert not out.exists()


def test_hostile_names_in_a_budgeted_export(tmp_path: Path) -> None:
    """Names stay sanitised: the detail is written by the same writers."""
    from infraprof.render.timeline_budget import write_within

    report = report_for(DEMO)
    kernels = report.trace.kernels.copy()
    kernels["name"] = ['q"uote <b>&amp;\n\x00 \udc80'] * len(kernels)
    hostile = replace(report, trace=replace(report.trace, kernels=kernels))
    for fmt in ("perfetto", "chrome"):
        chunks: list[bytes] = []
        assert write_within(hostile, fmt, None, 40_000, chunks.append, lambda _: None)
        data = b"".join(chunks)
        assert len(data) <= 40_000
        if fmt == "chrome":
            events = json.loads(data.decode("utf-8"))["traceEvents"]
            names = {e["name"] for e in events if e.get("cat") == "kernel"}
        else:
            names = {ev.name for evs in decode(data).events.values() for ev in evs
                     if ev.category == "kernel"}
        assert names == {'q"uote <b>&amp;\n\x00 ?'}


@pytest.mark.parametrize("rel", [MINIWEATHER, FOUR_GPUS])
def test_event_bound_holds_on_real_traces(rel: str, trace_files: TraceFiles, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Every begin (or instant) packet is within :func:`slice_bound` less an end packet's
    bound, and every end packet within ``END_MAX``: measured on the encoder's output."""
    out = tmp_path / "all.perfetto-trace"
    _export(trace_files.path(rel), out, monkeypatch, capsys, "--max-size", "0")
    largest: Counter[str] = Counter()
    ends = 0
    for _, _, packet in walk(out.read_bytes()):
        fields = walk(packet)
        if (raw := one(fields, 11, 2)) is None:
            continue
        size = len(packet) + 3  # tag and (at most 2-byte) length
        event = walk(raw)
        if one(event, 9, 0) == 2:
            ends = max(ends, size)
            continue
        cat = EVENT_CATEGORIES[one(event, 3, 0) - 1]
        kind = "mark" if one(event, 9, 0) == 3 else cat
        largest[kind] = max(largest[kind], size)
    assert 0 < ends <= END_MAX
    assert {"kernel", "cuda_api", "gpu_idle"} <= set(largest)
    for kind, size in largest.items():
        assert size <= slice_bound(kind) - (0 if kind == "mark" else END_MAX), kind
