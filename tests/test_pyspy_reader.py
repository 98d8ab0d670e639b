"""py-spy reader, clock alignment and host-frame summaries on shared and synthetic inputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infraprof.analyses.host_frames import (
    collapsed_in_windows,
    stacks_in_window,
    summarize_stacks,
)
from infraprof.analyses.range_frames import range_breakdown
from infraprof.errors import InputError
from infraprof.model.clock import (
    Pulse,
    nsys_clock_from_anchor,
    nsys_clock_from_marks,
    pulse_runs,
    pulses_from_nvtx,
    pyspy_clock_from_pulses,
)
from infraprof.readers.pyspy import read_pyspy, strip_bootstrap

APP = "/src/app.py"
BOOT = "/x/infraprof/capture/bootstrap.py"


def _ev(ph: str, name: str, ts_us: float, file: str = APP, line: int = 1,
        tid: int = 777) -> dict[str, object]:
    return {"args": {"filename": file, "line": line}, "cat": "py-spy", "name": name, "ph": ph,
            "pid": 1, "tid": tid, "ts": ts_us}


def _chrometrace(tmp_path: Path, events: list[dict[str, object]]) -> Path:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(events))
    return path


@pytest.mark.realtraces
def test_shared_speedscope_is_aggregate_only(shared_traces: Path) -> None:
    prof = read_pyspy(shared_traces / "deepdrr-pyspy" / "profile.speedscope.json")
    assert prof.format == "speedscope" and not prof.timed
    assert prof.samples.empty
    assert int(prof.aggregate["count"].sum()) == 900  # 960 samples, 60 empty
    assert any("time correlation not possible" in n for n in prof.notes)
    assert prof.rate_hz == pytest.approx(100.0)
    assert set(prof.threads["tid"]) == {117430}
    assert prof.collapsed().startswith("thread (117430);")


@pytest.mark.realtraces
def test_shared_flamegraph_svg_is_aggregate_only(shared_traces: Path) -> None:
    prof = read_pyspy(shared_traces / "cudaq-vqe-nsys-pyspy" / "profile.svg")
    assert prof.format == "flamegraph" and not prof.timed
    assert int(prof.aggregate["count"].sum()) == 2022  # total_samples of the SVG
    assert any("time correlation not possible" in n for n in prof.notes)
    assert prof.command is not None and "--rate 30" in prof.command
    assert prof.rate_hz == 30
    roots = set(prof.frames.loc[prof.frames["depth"] == 0, "function"])
    assert "<module>" in roots and "all" not in roots


def test_chrometrace_expands_slices_into_samples(tmp_path: Path) -> None:
    ev = [
        _ev("B", "thread (4242): MainThread", 1000, file="", line=0),
        _ev("B", "<module>", 1000, BOOT, 200), _ev("B", "main", 1000, BOOT, 190),
        _ev("B", "run_path", 1000, "<frozen runpy>", 291),
        _ev("B", "<module>", 1000), _ev("B", "load", 1000, line=5),
        _ev("E", "load", 11000, line=5), _ev("B", "compute", 11000, line=9),
        _ev("E", "compute", 15000, line=9),
        _ev("E", "<module>", 15000), _ev("E", "run_path", 15000, "<frozen runpy>", 291),
        _ev("E", "main", 15000, BOOT, 190), _ev("E", "<module>", 15000, BOOT, 200),
        _ev("E", "thread (4242): MainThread", 15000, file="", line=0),
    ]
    prof = read_pyspy(_chrometrace(tmp_path, ev), rate_hz=500)
    assert prof.timed and prof.format == "chrometrace"
    s = prof.samples
    assert len(s) == 5 + 2  # 10 ms of load at 2 ms, 4 ms of compute
    assert set(s["tid"]) == {4242}
    assert s["start_ns"].iloc[0] == 1_000_000 and s["start_ns"].iloc[5] == 11_000_000
    leaf = {prof.stack(int(i))[-1][0] for i in s["stack_id"]}
    assert leaf == {"load", "compute"}
    assert prof.stack(int(s["stack_id"].iloc[0]))[0] == ("<module>", APP, 1)  # wrapper gone
    assert "thread (4242): MainThread;<module> (/src/app.py:1);load (/src/app.py:5) 5" in (
        prof.collapsed())


def test_strip_bootstrap_keeps_pulse_stacks() -> None:
    pulse = ((("<module>", BOOT, 1)), ("main", BOOT, 2), ("_infraprof_sync_pulse", BOOT, 3))
    assert strip_bootstrap(pulse) == pulse


def test_raw_and_bad_inputs(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text("thread (5): wk;run (a.py:3);busy (a.py:9) 40\nthread (5): wk 7\n")
    prof = read_pyspy(raw)
    assert prof.format == "raw" and int(prof.aggregate["count"].sum()) == 47
    assert "thread (5): wk;run (a.py:3);busy (a.py:9) 40" in prof.collapsed()
    for text in ("", "[{", "not a profile at all\n"):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(InputError):
            read_pyspy(bad)


def _pulse_samples(offset_ns: int, pulses: list[Pulse], period: int, delay: list[int],
                   skip_first: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic py-spy samples: thread in ``idle`` except inside the pulses."""
    frames = pd.DataFrame({"stack_id": [0, 1], "depth": [0, 0],
                           "function": ["idle", "_infraprof_sync_pulse"],
                           "file": [BOOT, BOOT], "line": [1, 2]})
    t0, t1 = pulses[0].start_mono_ns - 50_000_000, pulses[-1].end_mono_ns + 50_000_000
    ts = np.arange(t0, t1, period)
    sid = np.zeros(len(ts), dtype=np.int64)
    for k, p in enumerate(pulses):
        if skip_first and k == 0:
            continue
        d = delay[k % len(delay)]
        sid[(ts >= p.start_mono_ns + d) & (ts < p.end_mono_ns + d)] = 1
    samples = pd.DataFrame({"start_ns": ts - offset_ns, "tid": 9, "thread_key": 9,
                            "stack_id": sid})
    return samples, frames


def test_pulse_alignment_recovers_offset() -> None:
    lengths = [15, 25, 35, 15, 25, 35]
    starts = [0, 25, 60, 5000, 5025, 5060]
    pulses = [Pulse(10**9 + s * 10**6, 10**9 + (s + n) * 10**6)
              for s, n in zip(starts, lengths, strict=True)]
    samples, frames = _pulse_samples(123_456_789, pulses, 2_000_000, [0, 1_000_000], True)
    runs = pulse_runs(samples, frames)
    assert len(runs) == 5
    clock = pyspy_clock_from_pulses(runs, pulses, 2_000_000)
    assert clock is not None and clock.pulses_matched == 5
    assert abs(clock.offset_ns - 123_456_789) <= 2_000_000
    assert 2_000_000 <= clock.error_ns <= 4_000_000
    assert pyspy_clock_from_pulses([], pulses, 2_000_000) is None


def test_nsys_clock_from_marks_and_anchor() -> None:
    nvtx = pd.DataFrame({"name": ["infraprof-clock mono_ns=5000", "infraprof-clock mono_ns=9000",
                                  "infraprof-pulse start_mono_ns=1 end_mono_ns=2", "step"],
                         "start_ns": [100, 4050, 10, 20], "kind": "mark"})
    clock = nsys_clock_from_marks(nvtx)
    assert clock is not None and clock.offset_ns == 4950 and clock.marks == 2
    assert pulses_from_nvtx(nvtx) == [Pulse(1, 2)]
    assert nsys_clock_from_marks(nvtx.iloc[3:]) is None
    assert nsys_clock_from_anchor(10_000, 7_000, 2_000).offset_ns == 5_000


def _stacks() -> dict[str, tuple[tuple[str, str, int], ...]]:
    base = (("<module>", APP, 1), ("main", APP, 2), ("run", APP, 3))
    return {
        "sleep": (*base, ("load_batch", APP, 52)),
        "collate": (*base, ("load_batch", APP, 53), ("collate", APP, 47), ("_spin", APP, 32)),
        "compute": (*base, ("compute_step", APP, 58), ("_spin", APP, 32)),
    }


def test_summarize_stacks_names_the_stall_function() -> None:
    st = _stacks()
    context, frames, stacks = summarize_stacks(
        Counter({st["sleep"]: 15, st["collate"]: 5, st["compute"]: 10}))
    assert [c[0] for c in context] == ["<module>", "main", "run"]
    assert frames[0].function == "load_batch" and frames[0].line == 52
    assert frames[0].samples == 20 and frames[0].share == pytest.approx(20 / 30)
    assert frames[0].label == "load_batch() app.py:52"
    assert stacks[0].frames == st["sleep"]
    _, frames, _ = summarize_stacks(Counter({st["sleep"]: 30, st["collate"]: 1}))
    assert frames[0].self_time and frames[0].function == "load_batch"


def test_windows_and_ranges() -> None:
    st = _stacks()
    ids = {k: i for i, k in enumerate(st)}
    frames = pd.DataFrame([(ids[k], d, f, p, n) for k, s in st.items()
                           for d, (f, p, n) in enumerate(s)],
                          columns=["stack_id", "depth", "function", "file", "line"])
    period = 2_000_000
    rows = []
    for step in range(3):
        base = step * 60_000_000
        for k in range(30):
            kind = "sleep" if k < 15 else "collate" if k < 20 else "compute"
            rows.append((base + k * period, 7, 7, ids[kind]))
    samples = pd.DataFrame(rows, columns=["start_ns", "tid", "thread_key", "stack_id"])
    nvtx = pd.DataFrame({"name": ["step"] * 3, "kind": "range", "tid": 7,
                         "start_ns": [i * 60_000_000 for i in range(3)],
                         "end_ns": pd.array([i * 60_000_000 + 60_000_000 for i in range(3)],
                                            dtype="Int64")})
    out = range_breakdown(nvtx, samples, frames, 5_000_000, period, names=["step"])
    assert len(out) == 3
    assert all(r.window.top is not None and r.window.top.function == "load_batch" for r in out)
    short = stacks_in_window(samples, frames, 7, 0, 4_000_000, 5_000_000, period)
    assert short.refused and "shorter than the py-spy alignment error" in short.refused
    gap = stacks_in_window(samples, frames, 7, 0, 30_000_000, 5_000_000, period)
    assert gap.top is not None and gap.top.label == "load_batch() app.py:52"
    assert gap.top.self_time and gap.samples == 15 and gap.coverage == pytest.approx(1.0)
    text = collapsed_in_windows(samples, frames, 7, [(0, 30_000_000)])
    assert text.splitlines()[0].endswith("load_batch (/src/app.py:52) 15")


def test_chrometrace_expansion_is_bounded(tmp_path: Path) -> None:
    """One slice spanning 1e13 µs (a 500-byte file) would expand into 5e9 samples at 500 Hz."""
    events = [_ev("B", "main", 0.0), _ev("B", "work", 1.0), _ev("E", "work", 1e13),
              _ev("E", "main", 1e13)]
    path = _chrometrace(tmp_path, events)
    assert path.stat().st_size < 600
    with pytest.raises(InputError, match=r"trace\.json: the chrometrace slices expand to "
                                         r"5,000,000,00\d samples"):
        read_pyspy(path, 500)


def test_chrometrace_expansion_matches_the_period(tmp_path: Path) -> None:
    """Vectorised expansion: slice length / period samples per slice, evenly spaced."""
    events = [_ev("B", "a", 1000.0), _ev("E", "a", 1100.0), _ev("B", "b", 1100.0),
              _ev("E", "b", 1130.0, tid=777), _ev("B", "c", 1000.0, tid=5),
              _ev("E", "c", 1040.0, tid=5)]
    prof = read_pyspy(_chrometrace(tmp_path, events), 100_000)  # 10 µs period
    by_thread = prof.samples.groupby("thread_key")["start_ns"].apply(list).to_dict()
    assert by_thread[777] == [1_000_000 + 10_000 * k for k in range(13)]
    assert by_thread[5] == [1_000_000 + 10_000 * k for k in range(4)]
    funcs = Counter(prof.stack(int(s))[-1][0] for s in prof.samples["stack_id"])
    assert funcs == {"a": 10, "b": 3, "c": 4}


@pytest.mark.parametrize("ts", [1e308, float("nan"), float("inf"), "soon"])
def test_chrometrace_impossible_timestamps_are_bad_input(tmp_path: Path, ts: object) -> None:
    path = tmp_path / "trace.json"
    events = [_ev("B", "main", 0.0), {**_ev("E", "main", 0.0), "ts": ts}]
    path.write_text(json.dumps(events))  # NaN/Infinity as Python's json writes them
    with pytest.raises(InputError, match=r"trace\.json: chrometrace event 1 "):
        read_pyspy(path, 100)


@pytest.mark.parametrize("sample", [[0, 5], [-1], ["x"], [0.5], 3])
def test_speedscope_bad_frame_index_is_bad_input(tmp_path: Path, sample: object) -> None:
    doc = {"$schema": "https://www.speedscope.app/file-format-schema.json",
           "shared": {"frames": [{"name": "main", "file": APP, "line": 1}]},
           "profiles": [{"type": "sampled", "name": "Thread 1", "unit": "seconds",
                         "startValue": 0, "endValue": 1, "samples": [[0], sample],
                         "weights": [0.01, 0.01]}]}
    path = tmp_path / "p.speedscope.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"p\.speedscope\.json: speedscope profile 0 has a "
                                         r"sample with a frame index outside"):
        read_pyspy(path)
