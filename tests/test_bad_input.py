"""Bad inputs through the real CLI: documented exit code, one ``infraprof: error:`` line that
names the file, no traceback, and the input left untouched.

Exit codes (``infraprof/errors.py``): 3 bad or unsupported input, 4 external tool missing.
Most cases run ``infraprof.cli.main`` in-process (fast); a few run ``python -m infraprof`` in a
subprocess, which is what users and CI see.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_cli import Result, run_main
from helpers_traces import TraceFiles, sha256

MW_SQLITE = "ncar-miniweather-nsys/miniweather_baseline.nsys2022.4-export.sqlite"
MW_QDREP = "ncar-miniweather-nsys/miniweather_baseline.qdrep"
SC23_TOO_NEW = "nersc-sc23-dl/4workers.nsys-rep"
CUDAQ_TOO_NEW = "cudaq-vqe-nsys-pyspy/report1.nsys-rep"
INPUT, TOOL = 3, 4






def run_cli(argv: list[str], env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "infraprof", *argv], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_error_line(result: Result, code: int, path: Path) -> str:
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("infraprof: error: ")
    assert str(path) in lines[0]
    assert result.stdout == ""
    return lines[0]


# --------------------------------------------------------------------------------------------
# inputs built in tmp_path (no shared traces needed)


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.sqlite"
    path.write_bytes(b"")
    return path


def _random(tmp: Path) -> Path:
    path = tmp / "random.sqlite"
    path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(20000)))
    return path


def _not_nsys(tmp: Path) -> Path:
    path = tmp / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE measurements(t INTEGER, value REAL)")
    conn.executemany("INSERT INTO measurements VALUES (?, ?)", [(i, i / 3) for i in range(100)])
    conn.commit()
    conn.close()
    return path


def _text_report(tmp: Path) -> Path:
    path = tmp / "x.nsys-rep"
    path.write_text("this is not an Nsight Systems report\n")
    return path


def _empty_dir(tmp: Path) -> Path:
    path = tmp / "capture"
    path.mkdir()
    (path / "notes.txt").write_text("no reports here\n")
    return path


LOCAL_CASES: dict[str, Callable[[Path], Path]] = {
    "zero-byte": _empty,
    "random-bytes": _random,
    "sqlite-not-nsys": _not_nsys,
    "text-named-nsys-rep": _text_report,
    "dir-without-reports": _empty_dir,
}


@pytest.mark.parametrize("case", sorted(LOCAL_CASES))
def test_bad_local_input(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    path = LOCAL_CASES[case](tmp_path)
    digest = sha256(path) if path.is_file() else None
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert_one_error_line(run_main(["analyze", str(path)], monkeypatch, capsys), INPUT, path)
    if digest is not None:
        assert sha256(path) == digest
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written beside it


def test_missing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "does-not-exist.nsys-rep"
    line = assert_one_error_line(run_main(["analyze", str(path)], monkeypatch, capsys), INPUT,
                                 path)
    assert "no such file" in line


def test_bad_input_subprocess(tmp_path: Path) -> None:
    """The same contract end to end, through ``python -m infraprof``."""
    for make in (_random, _not_nsys, _text_report):
        path = make(tmp_path)
        assert_one_error_line(run_cli(["analyze", str(path)]), INPUT, path)


# --------------------------------------------------------------------------------------------
# truncated copies of a real export


def _truncations(data: bytes) -> dict[str, bytes]:
    page = int.from_bytes(data[16:18], "big")
    return {
        "first-20KB": data[:20 * 1024],
        "mid-page-half": data[: len(data) // 2 // page * page + page // 2],
        "last-page-missing": data[: len(data) - page],
        "header-only": data[:100],
    }


@pytest.mark.realtraces
@pytest.mark.parametrize("case", ["first-20KB", "mid-page-half", "last-page-missing",
                                  "header-only"])
def test_truncated_sqlite(case: str, trace_files: TraceFiles, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    data = trace_files.path(MW_SQLITE).read_bytes()
    path = tmp_path / f"{case}.sqlite"
    path.write_bytes(_truncations(data)[case])
    digest = sha256(path)
    line = assert_one_error_line(run_main(["analyze", str(path)], monkeypatch, capsys), INPUT,
                                 path)
    assert "truncated" in line or "corrupt" in line
    assert sha256(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --------------------------------------------------------------------------------------------
# reports: too new for the installed nsys, nsys missing


def _installed_nsys_version(nsys: str) -> str:
    out = subprocess.run([nsys, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("version", 1)[1].split("-", 1)[0].strip()


@pytest.mark.realtraces
@pytest.mark.nsys
def test_report_too_new_subprocess(trace_files: TraceFiles, nsys_bin: str,
                                   tmp_path: Path) -> None:
    copy = trace_files.private_copy(SC23_TOO_NEW)
    digest = sha256(copy)
    env = {**os.environ, "INFRAPROF_CACHE_DIR": str(tmp_path / "cache"),
           "INFRAPROF_NSYS": nsys_bin}
    line = assert_one_error_line(run_cli(["analyze", str(copy)], env), INPUT, copy)
    assert "2023.2.3.1001" in line and _installed_nsys_version(nsys_bin) in line
    assert sha256(copy) == digest
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    assert not list((tmp_path / "cache").rglob("*.sqlite"))  # no stub export kept


@pytest.mark.realtraces
@pytest.mark.nsys
def test_report_too_new_header_version(trace_files: TraceFiles, nsys_bin: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """2023.4 reports fail differently ("Version number is invalid"): still exit 3."""
    copy = trace_files.private_copy(CUDAQ_TOO_NEW)
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INFRAPROF_NSYS", nsys_bin)
    line = assert_one_error_line(run_main(["analyze", str(copy)], monkeypatch, capsys), INPUT,
                                 copy)
    assert "2023.4.4.54" in line and _installed_nsys_version(nsys_bin) in line


@pytest.mark.realtraces
def test_nsys_missing(trace_files: TraceFiles, tmp_path: Path) -> None:
    copy = trace_files.private_copy(MW_QDREP)
    digest = sha256(copy)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("INFRAPROF_NSYS", "PATH")}
    env.update(PATH=str(empty_bin), INFRAPROF_NSYS="", INFRAPROF_CACHE_DIR=str(tmp_path / "c"))
    line = assert_one_error_line(run_cli(["analyze", str(copy)], env), TOOL, copy)
    assert "nsys" in line and "install" in line.lower() and "INFRAPROF_NSYS" in line
    assert sha256(copy) == digest


# --------------------------------------------------------------------------------------------
# help


def test_help_lists_exit_codes() -> None:
    for argv in (["--help"], ["analyze", "--help"]):
        result = run_cli(argv, env={**os.environ, "COLUMNS": "100"})
        assert result.code == 0
        text = " ".join(result.stdout.replace("│", " ").split())
        for item in ("Exit codes:", "0 ok", "1 gate/threshold failure", "2 usage error",
                     "3 bad or unsupported input", "4 external tool", "70 internal error"):
            assert item in text, (argv, item)
