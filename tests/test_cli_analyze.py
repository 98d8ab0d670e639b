"""``infraprof analyze`` end to end on real exports: JSON and table output, ``-o`` files,
capture folders, and a report converted by nsys giving the same answer as its SQLite export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers_cli import run_main
from helpers_traces import TraceFiles, sha256

from infraprof.ranking.report import SCHEMA_VERSION

pytestmark = pytest.mark.realtraces

MW_SQLITE = "ncar-miniweather-nsys/miniweather_baseline.nsys2022.4-export.sqlite"
MW_QDREP = "ncar-miniweather-nsys/miniweather_baseline.qdrep"


def _strict_json(text: str) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(text, parse_constant=no_constants)
    assert isinstance(data, dict)
    return data


def _check_report(data: dict[str, Any], source: Path) -> None:
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["tool"]["name"] == "infraprof"
    assert data["inputs"][0]["path"] == str(source)
    assert data["summary"]["counts"]["kernels"] == 2596
    names = {k["name"] for k in data["kernels"]}
    assert "compute_tendencies_z_334_gpu" in names




def test_json_to_stdout_subprocess(trace_files: TraceFiles) -> None:
    path = trace_files.path(MW_SQLITE)
    digest = sha256(path)
    proc = subprocess.run([sys.executable, "-m", "infraprof", "analyze", str(path), "-f", "json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _check_report(_strict_json(proc.stdout), path)
    assert sha256(path) == digest


def test_json_output_file_from_suffix(trace_files: TraceFiles, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(MW_SQLITE)
    out = tmp_path / "out.json"
    code, stdout, _ = run_main(["analyze", str(path), "-o", str(out)], monkeypatch, capsys)
    assert code == 0 and stdout == ""
    _check_report(_strict_json(out.read_text(encoding="utf-8")), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp file left


def test_explicit_format_wins_over_suffix(trace_files: TraceFiles, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(MW_SQLITE)
    out = tmp_path / "report.txt"
    code, _, _ = run_main(["analyze", str(path), "-f", "json", "-o", str(out)], monkeypatch,
                          capsys)
    assert code == 0
    _check_report(_strict_json(out.read_text(encoding="utf-8")), path)


def test_table_output(trace_files: TraceFiles, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    path = trace_files.path(MW_SQLITE)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    code, stdout, _ = run_main(["analyze", str(path)], monkeypatch, capsys)
    assert code == 0
    assert "compute_tendencies_z_334_gpu" in stdout and "cuStreamSynchronize" in stdout
    assert "\x1b[" not in stdout  # no colour when stdout is not a terminal
    out = tmp_path / "report.txt"
    code, _, _ = run_main(["analyze", str(path), "-o", str(out)], monkeypatch, capsys)
    assert code == 0 and "cuStreamSynchronize" in out.read_text(encoding="utf-8")


def test_output_to_directory_is_a_usage_error(trace_files: TraceFiles, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_main(
        ["analyze", str(trace_files.path(MW_SQLITE)), "-o", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and stdout == ""
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("infraprof: error: ") and str(tmp_path) in stderr
    assert list(tmp_path.iterdir()) == []


def test_capture_folder(trace_files: TraceFiles, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "capture"
    folder.mkdir()
    shutil.copyfile(trace_files.path(MW_SQLITE), folder / "run.sqlite")
    code, stdout, _ = run_main(["analyze", str(folder), "-f", "json"], monkeypatch, capsys)
    assert code == 0
    data = _strict_json(stdout)
    assert data["summary"]["counts"]["kernels"] == 2596
    assert data["inputs"][0]["sqlite_path"] == str(folder / "run.sqlite")


@pytest.mark.nsys
def test_report_and_its_export_agree(trace_files: TraceFiles, nsys_bin: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A .qdrep converted by the installed nsys gives the JSON of its 2022.4 SQLite export."""
    copy = trace_files.private_copy(MW_QDREP)
    digest = sha256(copy)
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INFRAPROF_NSYS", nsys_bin)
    results = []
    for source in (copy, trace_files.path(MW_SQLITE)):
        code, stdout, stderr = run_main(["analyze", str(source), "-f", "json"], monkeypatch,
                                        capsys)
        assert code == 0, stderr
        results.append(_strict_json(stdout))
    from_report, from_export = results
    assert from_report["inputs"][0]["nsys_version"] == "2022.4.2.1"
    assert str(tmp_path / "cache") in from_report["inputs"][0]["sqlite_path"]
    for doc in (from_report, from_export):  # where the run came from differs, nothing else
        doc.pop("inputs")
        doc["gate_samples"].pop("source")
    assert from_report == from_export
    assert sha256(copy) == digest
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    # second run: served from the cache, no nsys needed
    monkeypatch.setenv("INFRAPROF_NSYS", "")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    code, stdout, stderr = run_main(["analyze", str(copy), "-f", "json"], monkeypatch, capsys)
    assert code == 0, stderr
    cached = _strict_json(stdout)
    cached.pop("inputs")
    cached["gate_samples"].pop("source")
    assert cached == from_export
