"""PyTorch profiler (Kineto) traces: the streaming JSON reader, exact µs → ns conversion, the
mapping onto the nsys table model, and ``infraprof analyze``/``compare`` on the six real
Kineto traces of ``../shared/traces/hta-kineto``.

Oracle: every figure compared here is recomputed from the raw JSON with the standard library
only (``json`` with ``Decimal`` numbers, plain dict/loop code), independently of
``infraprof.readers``.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers_cli import run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.errors import InputError
from infraprof.inputs import InputKind, detect, load_input
from infraprof.readers import json_stream
from infraprof.readers.json_stream import JsonStream, us_to_ns
from infraprof.readers.kineto import read_kineto
from infraprof.readers.kineto_python import parse_python_name, python_profile

KINETO_DIR = "hta-kineto"
KINETO_FILES = (
    "critical_path__alexnet__benchmark_result_2869224_1695835535_trace.json.gz",
    "critical_path__cuda_event_sync__event_sync_trace.json.gz",
    "cupti_profiler__benchmark_result_924719_1679055439_trace.json.gz",
    "nccl_parser_config__nccl_data.json.gz",
    "trace_filter__sampled_rank-0.json.gz",
    "trace_filter__sampled_rank-1.json.gz",
)
KERNEL_CATS = ("kernel", "Kernel")


def exact_ns(value: Any) -> int:
    """Oracle conversion: µs (int or Decimal) → ns, ties away from zero."""
    return int((Decimal(value) * 1000).to_integral_value(ROUND_HALF_UP))


def raw_doc(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        doc: dict[str, Any] = json.load(handle, parse_float=Decimal)
    return doc


# --------------------------------------------------------------------------------------------
# µs text → ns


@given(st.integers(min_value=0, max_value=10**16), st.text("0123456789", max_size=7),
       st.booleans())
def test_us_to_ns_is_exact(whole: int, frac: str, negative: bool) -> None:
    text = ("-" if negative else "") + (f"{whole}.{frac}" if frac else f"{whole}.0")
    assert us_to_ns(text) == exact_ns(Decimal(text))
    assert us_to_ns(whole) == whole * 1000


def test_us_to_ns_other_forms() -> None:
    assert us_to_ns("4458676522690.655") == 4458676522690655
    assert us_to_ns("1.5e3") == 1_500_000
    assert us_to_ns("0.0004") == 0 and us_to_ns("0.0005") == 1
    assert us_to_ns(None) == 0 and us_to_ns("abc") == 0 and us_to_ns([1]) == 0


# --------------------------------------------------------------------------------------------
# streaming parser

event_st = st.fixed_dictionaries({
    "ph": st.sampled_from(["X", "M", "i", "s"]),
    "name": st.text(max_size=8),
    "ts": st.one_of(st.integers(0, 10**15), st.floats(0, 1e12, allow_nan=False)),
    "args": st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4),
                                                           st.lists(st.integers(), max_size=3)),
                            max_size=3),
})


def _write(tmp: Path, text: str, name: str = "t.json") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


@settings(max_examples=60, deadline=None)
@given(st.lists(event_st, max_size=12), st.integers(1, 40), st.booleans())
def test_stream_equals_json_loads(tmp_path_factory: pytest.TempPathFactory,
                                  events: list[dict[str, Any]], chunk: int, bare: bool) -> None:
    doc: Any = events if bare else {"schemaVersion": 1, "traceEvents": events,
                                    "baseTimeNanoseconds": 17}
    text = json.dumps(doc, indent=1)
    path = _write(tmp_path_factory.mktemp("s"), text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(json_stream, "CHUNK_CHARS", chunk)
        stream = JsonStream(path)
        got = list(stream.events())
    expected = json.loads(text, parse_float=str)
    assert got == (expected if bare else expected["traceEvents"])
    assert stream.truncated is None
    if not bare:
        assert stream.header == {"schemaVersion": 1, "baseTimeNanoseconds": 17}


@settings(max_examples=40, deadline=None)
@given(st.lists(event_st, min_size=1, max_size=6), st.data())
def test_stream_truncated_reads_a_prefix(tmp_path_factory: pytest.TempPathFactory,
                                         events: list[dict[str, Any]], data: st.DataObject
                                         ) -> None:
    text = json.dumps({"schemaVersion": 1, "traceEvents": events, "tail": [1, 2]})
    cut = data.draw(st.integers(0, len(text) - 1))
    path = _write(tmp_path_factory.mktemp("t"), text[:cut])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(json_stream, "CHUNK_CHARS", data.draw(st.integers(1, 64)))
        stream = JsonStream(path)
        got = list(stream.events())
    full = json.loads(text, parse_float=str)["traceEvents"]
    assert got == full[:len(got)]
    assert stream.truncated is not None


def is_kineto(path: Path) -> bool:
    """Whether the input layer detects ``path`` as a Kineto trace (unrecognised: no)."""
    try:
        return detect(path) is InputKind.KINETO
    except InputError:
        return False


def test_stream_rejects_garbage(tmp_path: Path) -> None:
    bad = _write(tmp_path, '{"traceEvents": [{"ph": "X"}, {"ph": ?}]}' + " " * 100)
    with pytest.raises(InputError, match="invalid JSON"):
        list(JsonStream(bad).events())
    assert not is_kineto(_write(tmp_path, '{"foo": 1}', "other.json"))
    pyspy = [{"name": "f", "cat": "py-spy", "ph": "B", "ts": 1, "pid": 1, "tid": 1}]
    assert not is_kineto(_write(tmp_path, json.dumps(pyspy), "pyspy.json"))
    assert not is_kineto(_write(tmp_path, json.dumps({"traceEvents": pyspy}), "pyspy2.json"))
    kineto_array = [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 1, "dur": 1}]
    assert is_kineto(_write(tmp_path, json.dumps(kineto_array), "k.json"))
    assert not is_kineto(_write(tmp_path, "SQLite format 3\0", "x.sqlite"))


# --------------------------------------------------------------------------------------------
# a small trace made here: exact mapping, Python frames, truncation, gzip


def synthetic(steps: int = 12) -> dict[str, Any]:
    """One thread: per step ``train()`` > ``load_batch()`` for 298 µs, three launches of a
    50.25 µs kernel, then a 100 µs stream sync; ``ProfilerStep#N`` annotations."""
    pid, events = 100, []
    events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": pid,
                   "args": {"name": "MainThread"}})
    corr, t = 1, 1_000_000.0
    for step in range(steps):
        events += [
            {"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{step}", "pid": pid,
             "tid": pid, "ts": t, "dur": 1000.0},
            {"ph": "X", "cat": "python_function", "name": "train.py(10): train", "pid": pid,
             "tid": pid, "ts": t, "dur": 1000.0},
            {"ph": "X", "cat": "python_function", "name": "data.py(87): load_batch",
             "pid": pid, "tid": pid, "ts": t + 1, "dur": 298.0},
            {"ph": "X", "cat": "mystery", "name": "x", "pid": pid, "tid": pid, "ts": t,
             "dur": 1},
        ]
        for k in range(3):
            start = t + 310 + 30 * k
            events += [
                {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": pid,
                 "tid": pid, "ts": start, "dur": 5.5, "args": {"correlation": corr}},
                {"ph": "X", "cat": "kernel", "name": "void gemm<float>(float*)", "pid": 0,
                 "tid": 7, "ts": start + 8.125, "dur": 50.25,
                 "args": {"device": 0, "stream": 7, "correlation": corr, "grid": [4, 1, 1],
                          "block": [128, 1, 1], "registers per thread": 32}},
            ]
            corr += 1
        events += [
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "pid": pid,
             "tid": pid, "ts": t + 400, "dur": 100.0, "args": {"correlation": corr}},
            {"ph": "X", "cat": "cuda_sync", "name": "Stream Sync", "pid": 0, "tid": 7,
             "ts": t + 400, "dur": 99.0, "args": {"device": 0, "stream": 7,
                                                   "correlation": corr}},
            {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pinned)",
             "pid": 0, "tid": 7, "ts": t + 450, "dur": 2.0,
             "args": {"device": 0, "stream": 7, "correlation": corr, "bytes": 4096}},
        ]
        corr += 1
        t += 1000.0
    return {"schemaVersion": 1, "distributedInfo": {"rank": 3, "world_size": 8},
            "deviceProperties": [{"id": 0, "name": "Test GPU", "numSms": 10}],
            "traceEvents": events, "baseTimeNanoseconds": 1_700_000_000_000_000_000}


@pytest.fixture
def synthetic_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.pt.trace.json"
    path.write_text(json.dumps(synthetic()), encoding="utf-8")
    return path


def test_synthetic_mapping(synthetic_file: Path) -> None:
    tables = read_kineto(synthetic_file)
    k = tables.frames["kernels"]
    assert len(k) == 36 and set(k["name"]) == {"void gemm<float>(float*)"}
    assert set(k["short_name"]) == {"gemm"}
    assert (k["end_ns"] - k["start_ns"]).eq(50_250).all()
    # origin = first event (1 s on Kineto's clock); first kernel at +318.125 µs exactly
    assert int(k["start_ns"].iloc[0]) == 318_125
    assert tables.session_start_utc_ns == 1_700_000_000_000_000_000 + 1_000_000_000
    assert k[["grid_x", "block_x", "registers_per_thread"]].iloc[0].tolist() == [4, 128, 32]
    assert set(k["pid"]) == {100} and set(k["device_id"]) == {0} and set(k["stream_id"]) == {7}
    api = tables.frames["api_calls"]
    joined = k.merge(api, on=["pid", "correlation_id"], suffixes=("", "_api"))
    assert len(joined) == 36 and set(joined["name_api"]) == {"cudaLaunchKernel"}
    assert tables.frames["syncs"]["kind"].eq("stream").all()
    copies = tables.frames["memcpy"]
    assert copies[["direction", "src_kind", "dst_kind"]].drop_duplicates().values.tolist() == [
        ["DtoH", "Device", "Pinned"]]
    assert int(copies["bytes"].sum()) == 12 * 4096
    assert (tables.rank, tables.world_size) == (3, 8)
    assert tables.unknown == {"mystery": 12}
    assert any("mystery (12)" in w for w in tables.warnings)


def test_synthetic_python_frames(synthetic_file: Path) -> None:
    loaded = load_input(synthetic_file)
    python = loaded.python
    assert python is not None and python.alignment is not None
    assert python.alignment.error_ns == 100_000
    frames = python.frames
    assert {"train", "load_batch"} <= set(frames["function"])
    assert parse_python_name("a/b.py(12): f") == ("f", "a/b.py", 12)
    assert parse_python_name("<built-in method x>") == ("<built-in method x>", "", 0)


def test_synthetic_export_collapsed(synthetic_file: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """100 µs grid: per step 10 samples in train(), 2 of them in load_batch() (t+1..t+299)."""
    result = run_main(["export", str(synthetic_file), "--to", "collapsed"], monkeypatch, capsys)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "thread (100): MainThread;train (train.py:10) 96",
        "thread (100): MainThread;train (train.py:10);load_batch (data.py:87) 24"]


def test_python_profile_samples_exactly() -> None:
    import pandas as pd

    events = pd.DataFrame({"start_ns": [0, 100_000], "end_ns": [1_000_000, 400_000],
                           "tid": [5, 5], "name": ["m.py(1): outer", "m.py(2): inner"]})
    profile = python_profile(events, {5: "main"}, "x")
    assert profile is not None
    samples = profile.samples
    assert samples["start_ns"].tolist() == list(range(0, 1_000_000, 100_000))
    depth = samples["stack_id"].map(profile.frames.groupby("stack_id").size())
    assert depth.tolist() == [1, 2, 2, 2, 1, 1, 1, 1, 1, 1]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30), st.integers(0, 2)),
                min_size=1, max_size=12))
def test_python_profile_matches_brute_force(spans: list[tuple[int, int, int]]) -> None:
    """Each sample's stack = the calls open at the sample time (start <= t < end), outermost
    first, for any (not necessarily nested) intervals on a 10 ns grid."""
    import pandas as pd

    events = pd.DataFrame({"start_ns": [10 * a for a, _, _ in spans],
                           "end_ns": [10 * (a + d) for a, d, _ in spans],
                           "tid": [t for _, _, t in spans],
                           "name": [f"f.py({i}): f{i}" for i in range(len(spans))]})
    profile = python_profile(events, {}, "x", period_ns=10)
    assert profile is not None
    frames = profile.frames.sort_values(["stack_id", "depth"])
    stacks = {int(k): list(g["function"]) for k, g in frames.groupby("stack_id")}
    got = sorted((int(t), int(tid), tuple(stacks[int(sid)])) for t, tid, sid in
                 profile.samples[["start_ns", "tid", "stack_id"]].itertuples(index=False))
    expected = []
    for tid in sorted(set(events["tid"])):
        mine = events[events["tid"] == tid].sort_values(["start_ns", "end_ns"],
                                                        ascending=[True, False], kind="stable")
        for t in range(0, 1000, 10):
            inside = mine[(mine["start_ns"] <= t) & (t < mine["end_ns"])]
            if len(inside):
                expected.append((t, tid, tuple(n.split(": ")[1] for n in inside["name"])))
    assert got == sorted(expected)


def test_synthetic_analyze_cli(synthetic_file: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    result = run_main(["analyze", str(synthetic_file), "-f", "json", "-o", str(out)],
                      monkeypatch, capsys)
    assert result.code == 0, result.stderr
    assert "warning: " in result.stderr and "mystery" in result.stderr
    report = json.loads(out.read_text())
    ids = {f["id"] for f in report["findings"]}
    assert {"gap.host-cpu", "gap.sync"} <= ids
    host = next(f for f in report["findings"] if f["id"] == "gap.host-cpu")
    assert "train()" in host["title"]
    assert report["kernels"][0]["count"] == 36
    text = run_main(["analyze", str(synthetic_file)], monkeypatch, capsys)
    assert text.code == 0 and "PyTorch profiler (Kineto) · schema 1 · rank 3 of 8" in text.stdout


def test_truncated_and_gzip(synthetic_file: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic_file.read_bytes()
    gz = tmp_path / "run.pt.trace.json.gz"
    gz.write_bytes(gzip.compress(data))
    plain, packed = read_kineto(synthetic_file), read_kineto(gz)
    for name, frame in plain.frames.items():
        assert frame.equals(packed.frames[name]), name
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = run_main(["analyze", str(cut), "-f", "json", "-o", str(tmp_path / "c.json")],
                      monkeypatch, capsys)
    assert result.code == 0 and "truncated" in result.stderr and str(cut) in result.stderr
    cut_gz = tmp_path / "cut.json.gz"
    cut_gz.write_bytes(gzip.compress(data)[:-40])
    assert any("gzip stream ends early" in w for w in read_kineto(cut_gz).warnings)
    head = tmp_path / "head.json"
    head.write_bytes(data[:60])
    result = run_main(["analyze", str(head)], monkeypatch, capsys)
    lines = result.stderr.splitlines()
    assert result.code == 3 and len(lines) == 1 and lines[0].startswith("infraprof: error: ")
    assert str(head) in lines[0] and "Traceback" not in result.stderr


def test_compare_and_baseline_plain_json(synthetic_file: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A plain (not gzipped) Kineto JSON is a trace for compare/gate, not an analyze JSON."""
    result = run_main(["compare", "-b", str(synthetic_file), "-c", str(synthetic_file),
                       "-f", "json", "--step", "nvtx:ProfilerStep#1"], monkeypatch, capsys)
    assert result.code == 0, result.stderr
    metrics = {m["metric"]: m for m in json.loads(result.stdout)["metrics"]}
    assert metrics["launch:calls"]["base"] == 36
    steps = metrics["step:duration:p50_ns"]
    assert steps["base"] == 1_000_000 and steps["n_base"] == 12
    auto = run_main(["compare", "-b", str(synthetic_file), "-c", str(synthetic_file), "-f",
                     "json"], monkeypatch, capsys)  # ProfilerStep <n> found as the step range
    assert any(m["metric"] == "step:duration:p50_ns" and m["n_base"] == 12
               for m in json.loads(auto.stdout)["metrics"])


@pytest.mark.parametrize("body", [
    '{"schemaVersion": 1, "traceEvents": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    '{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", '
    '"ts": 1e300, "dur": 1, "args": {"device": 0}}]}',
    '{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", '
    '"ts": 1, "dur": 1, "pid": 99999999999999999999999, "args": {"device": 0}}]}',
    '{"schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": ["kernel"], "ts": {}}, '
    '{"ph": "i", "cat": {"a": 1}}, {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1e400, '
    '"args": {"name": "t"}}, {"ph": "X", "cat": "cpu_op", "name": "op", "ts": 1, "dur": 1, '
    '"pid": 1, "tid": 1}]}',
])
def test_hostile_values_are_bad_input(body: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(body)
    result = run_main(["analyze", str(path), "-f", "json"], monkeypatch, capsys)
    assert result.code in (0, 3), result.stderr
    assert "Traceback" not in result.stderr
    if result.code == 3:
        assert len(result.stderr.splitlines()) == 1 and str(path) in result.stderr


any_value = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=5),
                      st.floats(allow_nan=False, allow_infinity=False),
                      st.lists(st.integers(-5, 5), max_size=4))
fuzz_event = st.fixed_dictionaries({
    "ph": st.sampled_from(["X", "M", "s", "f", "i", "B"]),
    "cat": st.one_of(st.sampled_from(["kernel", "cuda_runtime", "gpu_memcpy", "gpu_memset",
                                      "cuda_sync", "cpu_op", "user_annotation",
                                      "python_function", "ac2g", "Trace"]), any_value),
}, optional={"name": any_value, "ts": any_value, "dur": any_value, "pid": any_value,
             "tid": any_value, "id": any_value,
             "args": st.dictionaries(st.sampled_from(
                 ["device", "stream", "correlation", "bytes", "grid", "block", "name",
                  "shared memory", "cuda_sync_kind", "context"]), any_value, max_size=5)})


@settings(max_examples=60, deadline=None)
@given(st.lists(fuzz_event, max_size=10))
def test_fuzzed_events_read_or_input_error(tmp_path_factory: pytest.TempPathFactory,
                                          events: list[dict[str, Any]]) -> None:
    path = tmp_path_factory.mktemp("f") / "fuzz.json"
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events}))
    try:
        loaded = load_input(path)
    except InputError as exc:
        assert str(path) in exc.message
        return
    assert loaded.trace.meta.input_format == "kineto"


def test_chrome_trace_without_profiler_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pyspy.json"
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": [
        {"ph": "B", "name": "f", "ts": 1, "pid": 1, "tid": 1},
        {"ph": "E", "name": "f", "ts": 2, "pid": 1, "tid": 1}]}))
    result = run_main(["analyze", str(path)], monkeypatch, capsys)
    assert result.code == 3 and len(result.stderr.splitlines()) == 1
    assert str(path) in result.stderr


# --------------------------------------------------------------------------------------------
# the six real Kineto traces


@pytest.fixture(scope="module")
def kineto_reports(shared_traces: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, tuple[Path, int, dict[str, Any]]]:
    """``infraprof analyze X -f json`` of every shared Kineto trace: (path, exit, report)."""
    from infraprof.cli import main

    out_dir = tmp_path_factory.mktemp("kineto-reports")
    reports = {}
    for name in KINETO_FILES:
        path = shared_traces / KINETO_DIR / name
        out = out_dir / f"{name}.report.json"
        code = 0
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", ["infraprof", "analyze", str(path), "-f", "json", "-o",
                                     str(out)])
            try:
                main()
            except SystemExit as exc:
                code = int(exc.code or 0)
        reports[name] = (path, code, json.loads(out.read_text()) if out.exists() else {})
    return reports


def kernel_oracle(doc: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per kernel name: (count, total ns) straight from the JSON events."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for event in doc["traceEvents"]:
        if event.get("ph") == "X" and event.get("cat") in KERNEL_CATS:
            entry = totals[event["name"]]
            entry[0] += 1
            entry[1] += exact_ns(event.get("dur", 0))
    return {name: (c, t) for name, (c, t) in totals.items()}


@pytest.mark.realtraces
@pytest.mark.parametrize("name", KINETO_FILES)
def test_real_trace_kernels_match_oracle(kineto_reports: dict[str, tuple[Path, int, Any]],
                                         name: str) -> None:
    path, code, report = kineto_reports[name]
    assert code == 0
    doc = raw_doc(path)
    expected = kernel_oracle(doc)
    got = {k["name"]: (k["count"], k["total_ns"]) for k in report["kernels"]}
    assert got == expected
    assert report["summary"]["counts"]["kernels"] == sum(c for c, _ in expected.values())
    api = Counter(e["name"] for e in doc["traceEvents"]
                  if e.get("ph") == "X" and e.get("cat") in ("cuda_runtime", "cuda_driver"))
    assert {a["name"]: a["count"] for a in report["api_calls"]} == dict(api)
    copies: dict[str, int] = defaultdict(int)
    for e in doc["traceEvents"]:
        if e.get("ph") == "X" and e.get("cat") == "gpu_memcpy":
            copies[e["name"].split()[1]] += int(e["args"]["bytes"])
        elif e.get("ph") == "X" and e.get("cat") == "gpu_memset":
            copies["memset"] += int(e["args"]["bytes"])
    assert {m["operation"]: m["bytes"] for m in report["memcpy"]} == dict(copies)


@pytest.mark.realtraces
def test_real_trace_timestamps_exact(shared_traces: Path) -> None:
    """Every kernel start on the UTC clock equals ``baseTimeNanoseconds + ts`` exactly."""
    path = shared_traces / KINETO_DIR / "nccl_parser_config__nccl_data.json.gz"
    doc = raw_doc(path)
    base = int(doc["baseTimeNanoseconds"])
    expected = sorted(base + exact_ns(e["ts"]) for e in doc["traceEvents"]
                      if e.get("ph") == "X" and e.get("cat") == "kernel")
    loaded = load_input(path).trace
    origin = loaded.meta.session_start_utc_ns
    assert origin is not None
    assert sorted(int(s) + origin for s in loaded.kernels["start_ns"]) == expected
    assert (loaded.meta.rank, loaded.meta.world_size) == (0, 2)
    # every kernel and copy joins its launching runtime call (ac2g/correlation)
    from infraprof.model.correlation import join_launch_calls

    joined = join_launch_calls(loaded.gpu_ops(), loaded.api_calls)
    assert joined["api_name"].notna().all()


@pytest.mark.realtraces
def test_real_trace_gpu_annotations_match_projection(shared_traces: Path) -> None:
    """Kineto's own ``gpu_user_annotation`` spans (30 on the NCCL trace) equal infraprof's GPU
    projection of the same ``user_annotation`` ranges, up to Kineto's fixed padding of the
    span (1 µs before the first op, 0.5 µs after the last: the same on all 30 spans)."""
    from infraprof.analyses.nvtx_proj import nvtx_projection

    path = shared_traces / KINETO_DIR / "nccl_parser_config__nccl_data.json.gz"
    doc = raw_doc(path)
    base = int(doc["baseTimeNanoseconds"])
    trace = load_input(path).trace
    origin = trace.meta.session_start_utc_ns
    assert origin is not None
    kineto = sorted((e["name"], base + exact_ns(e["ts"]) - origin + 1000,
                     base + exact_ns(e["ts"]) + exact_ns(e["dur"]) - origin - 500)
                    for e in doc["traceEvents"] if e.get("cat") == "gpu_user_annotation")
    proj = nvtx_projection(trace)
    proj = proj[(proj["domain"] == "") & proj["gpu_start_ns"].notna()]
    ours = sorted((str(n), int(s), int(e)) for n, s, e in
                  proj[["name", "gpu_start_ns", "gpu_end_ns"]].itertuples(index=False))
    assert len(kineto) == 30
    assert kineto == [row for row in ours if row[0] in {k[0] for k in kineto}]


@pytest.mark.realtraces
def test_real_trace_syncs_and_ranks(kineto_reports: dict[str, tuple[Path, int, Any]]) -> None:
    path = kineto_reports[KINETO_FILES[0]][0]
    doc = raw_doc(path)
    kinds = Counter(e["args"]["cuda_sync_kind"] for e in doc["traceEvents"]
                    if e.get("cat") == "cuda_sync")
    trace = load_input(path).trace
    names = {"stream": "Stream Sync", "event": "Event Sync", "context": "Context Sync",
             "stream_wait_event": "Stream Wait Event"}
    by_kind = trace.syncs["kind"].map(names).value_counts().to_dict()
    assert by_kind == dict(kinds)
    for name, rank in ((KINETO_FILES[4], 0), (KINETO_FILES[5], 1)):
        meta = load_input(kineto_reports[name][0]).trace.meta
        assert (meta.rank, meta.world_size, meta.input_format) == (rank, 128, "kineto")


@pytest.mark.realtraces
def test_compare_rank_pair(shared_traces: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    rank0 = shared_traces / KINETO_DIR / KINETO_FILES[4]
    rank1 = shared_traces / KINETO_DIR / KINETO_FILES[5]
    result = run_main(["compare", "-b", str(rank0), "-c", str(rank1), "--format", "json"],
                      monkeypatch, capsys)
    assert result.code in (0, 1), result.stderr
    assert "error" not in result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["exit_code"] in (0, 1)
    calls = next(m for m in verdict["metrics"] if m["metric"] == "launch:calls")
    assert (calls["base"], calls["cand"]) == (1154, 1104)  # cudaLaunchKernel rows per rank


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    return sum(max(0, min(hi, bhi) - max(lo, blo)) for lo, hi in a for blo, bhi in b)


@pytest.mark.realtraces
def test_nccl_trace_exposed_communication_matches_oracle(
        kineto_reports: dict[str, tuple[Path, int, Any]]) -> None:
    """The NCCL-heavy trace gets the communication analysis; comm, overlap and exposed time
    equal plain interval unions of the JSON's kernel events (NCCL kernels vs the others)."""
    path, code, report = kineto_reports[KINETO_FILES[3]]
    assert code == 0 and "comm.exposed" in {f["id"] for f in report["findings"]}
    comm: dict[int, list[tuple[int, int]]] = defaultdict(list)
    other: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for event in raw_doc(path)["traceEvents"]:
        if event.get("ph") == "X" and event.get("cat") in KERNEL_CATS:
            start = exact_ns(event["ts"])
            span = (start, start + exact_ns(event.get("dur", 0)))
            device = int(event.get("args", {}).get("device", 0))
            (comm if event["name"].lower().startswith("nccl") else other)[device].append(span)
    for entry in report["kernel_classes"]["devices"]:
        got = entry["communication"]
        device = entry["device_id"]
        comm_union, other_union = _union(comm[device]), _union(other[device])
        comm_ns = sum(hi - lo for lo, hi in comm_union)
        overlap = _overlap(comm_union, other_union)
        tolerance = len(comm[device]) + len(other[device])  # µs→ns rounding, 1 ns per end
        assert abs(got["comm_ns"] - comm_ns) <= tolerance
        assert abs(got["overlap_ns"] - overlap) <= tolerance
        assert abs(got["exposed_ns"] - (comm_ns - overlap)) <= tolerance
        assert got["exposed_ns"] > 0
