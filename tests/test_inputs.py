"""The input layer: detection by content for every kind, transparent (bounded) gzip, the
capture folder layout and its manifest, and one definition of the capture file names."""

from __future__ import annotations

import ast
import gzip
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLE_TRACES
from helpers_cli import run_main
from helpers_traces import TraceFiles, sha256

from infraprof.capture import layout
from infraprof.errors import InputError
from infraprof.gate.metrics import RunMetrics, load_run
from infraprof.inputs import (
    CaptureFolder,
    InputKind,
    Manifest,
    detect,
    load_trace,
    open_input,
    read_manifest,
)
from infraprof.inputs.compressed import MAX_INFLATED_ENV
from infraprof.readers.nsys_report import REPORT_MAGIC

SAMPLE = SAMPLE_TRACES / "demo_sync_heavy.sqlite"
SHARED_GZ = "nersc-sc22-dl/dali.qdrep.nsys2022.4-export.sqlite.gz"

RAW_CSV = "\n".join([
    "==PROF== Connected to process 1 (/bin/app)",
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
    '"gpu__time_duration.sum"',
    '"","","","","","","","usecond"',
    '"0","1","app","h","k(int)","1","7","1,234.50"',
    "",
])
DETAILS_CSV = "\n".join([
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Kernel Time","Context",'
    '"Stream","Section Name","Metric Name","Metric Unit","Metric Value"',
    '"0","1","app","h","k(int)","2024-Jan-01 00:00:00","1","7","GPU Speed Of Light",'
    '"Duration","usecond","1.50"',
    "",
])
SPEEDSCOPE = {"$schema": "https://www.speedscope.app/file-format-schema.json",
              "profiles": [], "shared": {"frames": []}}
CHROME_EVENTS = [{"ph": "B", "name": "f", "ts": 0, "pid": 1, "tid": 1}]
ANALYZE_DOC = {"schema_version": "1.0", "tool": {"name": "infraprof", "version": "0"},
               "summary": {"devices": []}}
SVG = '<?xml version="1.0" standalone="no"?>\n<svg version="1.1" width="10"></svg>\n'


def _sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x INTEGER)")
    conn.commit()
    conn.close()
    return path


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _gzip(src: Path, dest: Path) -> Path:
    with gzip.open(dest, "wb") as out:
        out.write(src.read_bytes())
    return dest


def _gate_doc() -> str:
    return json.dumps(RunMetrics(source="x", values={"gpu:busy_ns": 5.0}).to_dict())


# Each maker writes one input of the kind into a folder, under a name that does NOT give the
# kind away (detection is by content).
MAKERS = {
    InputKind.NSYS_SQLITE: lambda d: _sqlite(d / "a.bin"),
    InputKind.NSYS_REPORT: lambda d: _write(d / "a.bin", REPORT_MAGIC + b"\x00" * 64),
    InputKind.NCU_REPORT: lambda d: _write(d / "a.bin", b"NVR\x00" + b"\x01" * 64),
    InputKind.NCU_CSV_RAW: lambda d: _write(d / "a.txt", RAW_CSV),
    InputKind.NCU_CSV_DETAILS: lambda d: _write(d / "a.txt", DETAILS_CSV),
    InputKind.KINETO: lambda d: _write(d / "a.txt", json.dumps({
        "schemaVersion": 1, "traceEvents": [{"ph": "X", "cat": "kernel", "name": "k",
                                              "pid": 0, "tid": 7, "ts": 1.0, "dur": 2.0}]})),
    InputKind.PYSPY_CHROMETRACE: lambda d: _write(d / "a.txt", json.dumps(CHROME_EVENTS)),
    InputKind.PYSPY_SPEEDSCOPE: lambda d: _write(d / "a.txt", json.dumps(SPEEDSCOPE)),
    InputKind.PYSPY_RAW: lambda d: _write(d / "a.json",
                                          "main (app.py:3);work (app.py:9) 12\nmain 1\n"),
    InputKind.PYSPY_SVG: lambda d: _write(d / "a.txt", SVG),
    InputKind.ANALYZE_JSON: lambda d: _write(d / "a.txt", json.dumps(ANALYZE_DOC, indent=2)),
    InputKind.GATE_METRICS_JSON: lambda d: _write(d / "a.txt", _gate_doc()),
    InputKind.CAPTURE_FOLDER: lambda d: d,
}


def test_every_kind_has_a_case() -> None:
    assert set(MAKERS) == set(InputKind)


@pytest.mark.parametrize("kind", list(InputKind), ids=lambda k: k.value)
def test_detect_by_content(kind: InputKind, tmp_path: Path) -> None:
    path = MAKERS[kind](tmp_path)
    assert detect(path) is kind
    if path.is_file():  # the same content gzip-compressed is the same kind
        assert detect(_gzip(path, tmp_path / "z.gz")) is kind


@pytest.mark.parametrize("name", ["demo_host_stall.sqlite", "demo_launch_bound.sqlite",
                                  "cpu_only_stall_app.sqlite"])
def test_detect_sample_traces(name: str) -> None:
    assert detect(SAMPLE_TRACES / name) is InputKind.NSYS_SQLITE


SHARED_KINDS = {
    "cudaq-vqe-nsys-pyspy/profile.svg": InputKind.PYSPY_SVG,
    "cudaq-vqe-nsys-pyspy/report1.nsys-rep": InputKind.NSYS_REPORT,
    "deepdrr-pyspy/profile.speedscope.json": InputKind.PYSPY_SPEEDSCOPE,
    "esmm-sgemm-ncu/profile.ncu-rep": InputKind.NCU_REPORT,
    "esmm-sgemm-ncu/profile.ncu2022.3-details.csv": InputKind.NCU_CSV_DETAILS,
    "esmm-sgemm-ncu/profile.ncu2022.3-raw.csv": InputKind.NCU_CSV_RAW,
    "nsightful/copy_blocked.csv": InputKind.NCU_CSV_DETAILS,
    "ncar-miniweather-nsys/miniweather_baseline.qdrep": InputKind.NSYS_REPORT,
    "ncar-miniweather-nsys/miniweather_baseline.sqlite": InputKind.NSYS_SQLITE,
    SHARED_GZ: InputKind.NSYS_SQLITE,
    "hta-kineto/critical_path__cuda_event_sync__event_sync_trace.json.gz": InputKind.KINETO,
}


@pytest.mark.realtraces
def test_detect_shared_traces(shared_traces: Path) -> None:
    for rel, kind in SHARED_KINDS.items():
        assert detect(shared_traces / rel) is kind, rel
    assert detect(shared_traces / "ncar-miniweather-nsys") is InputKind.CAPTURE_FOLDER


@pytest.mark.parametrize(("name", "content", "words"), [
    ("random.sqlite", bytes((i * 7919 + 13) % 256 for i in range(5000)), "SQLite export"),
    ("text.nsys-rep", "this is not an Nsight Systems report\n", "nsys report"),
    ("cut.ncu-rep", b"NVX" + bytes(100), "NVR magic"),
    ("other.csv", "a,b,c\n1,2,3\n", "ncu CSV"),
    ("other.json", '{"hello": 1}', "neither"),
    ("notes.txt", "just some notes\n", "unrecognised"),
    ("empty.sqlite", b"", "empty"),
    ("bad.sqlite.gz", b"\x1f\x8b\x08\x00" + bytes(30), "gzip"),
])
def test_unrecognised_is_one_input_error(tmp_path: Path, name: str, content: str | bytes,
                                         words: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(InputError) as exc:
        detect(path)
    assert str(path) in exc.value.message and words in exc.value.message
    assert "\n" not in exc.value.message


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        detect(tmp_path / "nope.sqlite")


def test_wrong_kind_says_where_it_belongs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = MAKERS[InputKind.GATE_METRICS_JSON](tmp_path)
    result = run_main(["analyze", str(path)], monkeypatch, capsys)
    assert result.code == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr
    assert "infraprof gate" in result.stderr
    # a py-spy profile is not a trace either, but `export` says where it belongs
    path = MAKERS[InputKind.PYSPY_SPEEDSCOPE](tmp_path)
    result = run_main(["export", str(path), "--to", "perfetto"], monkeypatch, capsys)
    assert result.code == 3 and "--pyspy" in result.stderr


# --------------------------------------------------------------------------------------------
# gzip


def _without_paths(doc: dict[str, object]) -> dict[str, object]:
    inputs = doc.pop("inputs")
    samples = doc.pop("gate_samples")
    assert isinstance(inputs, list) and isinstance(samples, dict)
    return {**doc, "inputs": [{k: v for k, v in i.items() if k not in ("path", "sqlite_path")}
                              for i in inputs],
            "gate_samples": {k: v for k, v in samples.items() if k != "source"}}


def test_gzip_sample_analyses_like_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(cache))
    (tmp_path / "in").mkdir()
    packed = _gzip(SAMPLE, tmp_path / "in" / "run.sqlite.gz")
    digest = sha256(packed)
    plain = run_main(["analyze", str(SAMPLE), "-f", "json"], monkeypatch, capsys)
    first = run_main(["analyze", str(packed), "-f", "json"], monkeypatch, capsys)
    again = run_main(["analyze", str(packed), "-f", "json"], monkeypatch, capsys)
    assert plain.code == first.code == again.code == 0, first.stderr
    doc = json.loads(first.stdout)
    inflated = Path(doc["inputs"][0]["sqlite_path"])
    assert doc["inputs"][0]["path"] == str(packed)
    assert inflated.parent == cache / "inflated" and inflated.suffix == ".sqlite"
    assert inflated.read_bytes() == SAMPLE.read_bytes()
    assert _without_paths(doc) == _without_paths(json.loads(plain.stdout))
    assert first.stdout == again.stdout  # the cached copy is reused
    assert sorted(p.name for p in packed.parent.iterdir()) == ["run.sqlite.gz"]
    assert sha256(packed) == digest
    assert [p.name for p in inflated.parent.iterdir()] == [inflated.name]  # no temp left


@pytest.mark.realtraces
def test_gzip_shared_trace_analyses_like_inflated(trace_files: TraceFiles, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(tmp_path / "cache"))
    packed = trace_files.shared / SHARED_GZ
    plain = run_main(["analyze", str(trace_files.path(SHARED_GZ)), "-f", "json"], monkeypatch,
                     capsys)
    direct = run_main(["analyze", str(packed), "-f", "json"], monkeypatch, capsys)
    assert plain.code == direct.code == 0, direct.stderr
    assert _without_paths(json.loads(direct.stdout)) == _without_paths(json.loads(plain.stdout))


def test_inflation_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(cache))
    monkeypatch.setenv(MAX_INFLATED_ENV, "4096")
    packed = _gzip(SAMPLE, tmp_path / "run.sqlite.gz")
    result = run_main(["analyze", str(packed)], monkeypatch, capsys)
    assert result.code == 3 and result.stdout == ""
    line, = result.stderr.splitlines()
    assert line.startswith("infraprof: error: ") and str(packed) in line
    assert "4096 bytes" in line and MAX_INFLATED_ENV in line
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing partial kept


def test_gzip_json_documents_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(tmp_path / "cache"))
    packed = _gzip(_write(tmp_path / "m.json", _gate_doc()), tmp_path / "m.json.gz")
    assert load_run(packed).values == {"gpu:busy_ns": 5.0}


def test_open_input_reads_the_plain_file_in_place(tmp_path: Path) -> None:
    opened = open_input(SAMPLE)
    assert opened.path == SAMPLE and not opened.compressed
    assert opened.kind is InputKind.NSYS_SQLITE


# --------------------------------------------------------------------------------------------
# capture folder and manifest


MANIFEST = {
    "schema": 1, "command": ["python", "app.py"],
    "clock_anchor": {"realtime_ns": 1_700_000_000_000_000_000, "monotonic_ns": 5_000,
                     "read_window_ns": 40},
    "pyspy": {"rate_hz": 500, "start_mono_ns": 7_000, "file": layout.PYSPY_TIMED},
    "sync": {"tid": 42, "pulses": [{"start_mono_ns": 10, "end_mono_ns": 20},
                                   {"start_mono_ns": 30, "end_mono_ns": 45}, {"other": 1}]},
    "report": layout.NSYS_REPORT, "sqlite": layout.NSYS_SQLITE,
}


def _capture_folder(root: Path) -> Path:
    folder = root / "cap"
    folder.mkdir()
    (folder / layout.NSYS_SQLITE).write_bytes(SAMPLE.read_bytes())
    _write(folder / layout.NCU_REPORT, b"NVR\x00")
    _write(folder / layout.PYSPY_RAW, "main 3\n")
    _write(folder / layout.PYSPY_TIMED, "")  # empty: skipped
    _write(folder / layout.MANIFEST_NAME, json.dumps(MANIFEST))
    return folder


def test_capture_folder_layout(tmp_path: Path) -> None:
    folder = CaptureFolder(_capture_folder(tmp_path))
    assert folder.nsys_file() == folder.path / layout.NSYS_SQLITE
    assert folder.ncu_reports() == [folder.path / layout.NCU_REPORT]
    assert folder.pyspy_file() == folder.path / layout.PYSPY_RAW
    _write(folder.path / layout.PYSPY_TIMED, json.dumps(CHROME_EVENTS))
    assert folder.pyspy_file() == folder.path / layout.PYSPY_TIMED
    manifest = folder.manifest()
    assert manifest is not None and manifest.command == ("python", "app.py")
    assert manifest.clock_anchor == layout.ClockAnchor(1_700_000_000_000_000_000, 5_000, 40)
    assert (manifest.pyspy_rate_hz, manifest.pyspy_start_mono_ns) == (500.0, 7_000)
    assert manifest.sync_tid == 42 and manifest.sync_pulses == ((10, 20), (30, 45))
    assert load_trace(folder.path).meta.sqlite_path == str(folder.path / layout.NSYS_SQLITE)


def test_capture_folder_runs_and_fallbacks(tmp_path: Path) -> None:
    for k in (1, 2, 10):
        (tmp_path / layout.run_folder_name(k)).mkdir()
    (tmp_path / "run-x").mkdir()
    assert [p.name for p in CaptureFolder(tmp_path).runs()] == ["run-1", "run-2", "run-10"]
    assert CaptureFolder(tmp_path).manifest() is None
    assert CaptureFolder(tmp_path).pyspy_file() is None
    _sqlite(tmp_path / "mine.sqlite")
    assert CaptureFolder(tmp_path).nsys_file() == tmp_path / "mine.sqlite"
    _sqlite(tmp_path / "other.sqlite")
    with pytest.raises(InputError, match="without a single nsys report"):
        CaptureFolder(tmp_path).nsys_file()


@pytest.mark.parametrize("text", ["{not json", '{"clock_anchor": {"realtime_ns": "x", '
                                  '"monotonic_ns": 1}}'])
def test_bad_manifest_is_input_error(tmp_path: Path, text: str) -> None:
    _write(tmp_path / layout.MANIFEST_NAME, text)
    with pytest.raises(InputError, match="capture manifest"):
        read_manifest(tmp_path)


def test_empty_manifest_fields() -> None:
    manifest = Manifest.from_dict({})
    assert manifest.clock_anchor is None and manifest.sync_pulses == ()
    assert manifest.pyspy_rate_hz is None and manifest.sync_tid is None


CAPTURE_NAMES = {layout.NSYS_REPORT, layout.LEGACY_REPORT, layout.NSYS_SQLITE,
                 layout.NCU_REPORT, layout.NCU_LOG, layout.PYSPY_TIMED, layout.PYSPY_SPEEDSCOPE,
                 layout.PYSPY_RAW, layout.PYSPY_SVG, layout.MANIFEST_NAME, layout.SYNC_NAME}


def test_capture_file_names_are_defined_once() -> None:
    """No module but capture/layout.py spells a capture file name as a string literal."""
    owner = ROOT / "infraprof" / "capture" / "layout.py"
    offenders = []
    for path in sorted((ROOT / "infraprof").rglob("*.py")):
        if path == owner:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in CAPTURE_NAMES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not offenders


def test_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "run.sqlite"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        detect(fifo)
