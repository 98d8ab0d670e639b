"""Issue 15, several inputs under hostile conditions (the multi-input part of the catalogue in
``test_hostile.py``): outputs that resolve to an input, inputs given twice, names from traces
and file names holding markup and control characters, a worker process that dies, unbounded
folders and globs, options that only several inputs use; and the JSON contract plus the text
formats' per-rank figures against the JSON.

Inputs are copies of the small sample exports (a few seconds per analysis); every error is
checked to be one ``infraprof: error:`` line with its exit code, and inputs byte-identical after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, nsys_required
from helpers_cli import run_main

import infraprof.inputs.many as inputs_many
import infraprof.many
from infraprof.units import fmt_ns, fmt_pct

SAMPLE = ROOT / "sample_traces" / "demo_host_stall.sqlite"
HOSTILE = 'evil<script>alert("x")</script>&amp;\x1b[31mRED\x1b[0m\nnext|line\x07'


def _one_error(err: str, text: str) -> None:
    assert err.startswith("infraprof: error:") and err.count("\n") == 1, err
    assert text in err, err
    assert "Traceback" not in err


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.fixture()
def job(tmp_path: Path) -> Path:
    """A folder of two reports, plus a report beside its own export (``a.nsys-rep``: not read,
    the export is)."""
    folder = tmp_path / "job"
    folder.mkdir()
    for name in ("a.sqlite", "b.sqlite"):
        shutil.copyfile(SAMPLE, folder / name)
    (folder / "a.nsys-rep").write_bytes(b"a report whose export a.sqlite is read instead")
    return folder


# --- outputs that resolve to an input -------------------------------------------------------

def _link(src: Path, dst: Path) -> Path:
    dst.symlink_to(src)
    return dst


def _hard(src: Path, dst: Path) -> Path:
    os.link(src, dst)
    return dst


OUTPUT_CASES: dict[str, Callable[[Path], tuple[list[str], Path]]] = {
    "a given file": lambda j: ([str(j / "a.sqlite"), str(j / "b.sqlite")], j / "b.sqlite"),
    "a file in a folder of reports": lambda j: ([str(j)], j / "b.sqlite"),
    "a report whose export is read": lambda j: ([str(j)], j / "a.nsys-rep"),
    "a glob match": lambda j: ([str(j / "*.sqlite")], j / "a.sqlite"),
    "a symlink to an input": lambda j: ([str(j)], _link(j / "a.sqlite", j.parent / "out.md")),
    "a hard link to an input": lambda j: ([str(j)], _hard(j / "b.sqlite", j.parent / "out.md")),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_output_never_replaces_an_input(case: str, job: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv, output = OUTPUT_CASES[case](job)
    files = sorted(p for p in job.iterdir())
    before = _digest(files)
    code, out, err = run_main(["analyze", *argv, "-o", str(output), "-f", "md", "-j", "1"],
                              monkeypatch, capsys)
    assert code == 2, err
    _one_error(err, "would overwrite the input")
    assert out == "" and _digest(files) == before


# --- an input given twice -------------------------------------------------------------------

TWICE_CASES: dict[str, Callable[[Path], list[str]]] = {
    "the same path": lambda j: [str(j / "a.sqlite"), str(j / "a.sqlite")],
    "another spelling": lambda j: [str(j / "a.sqlite"), str(j / ".." / "job" / "a.sqlite")],
    "a symlink": lambda j: [str(j / "a.sqlite"), str(_link(j / "a.sqlite", j.parent / "l.sqlite"))],
    "a folder and a file in it": lambda j: [str(j), str(j / "b.sqlite")],
    "a glob and a match": lambda j: [str(j / "*.sqlite"), str(j / "a.sqlite")],
}


@pytest.mark.parametrize("case", sorted(TWICE_CASES))
def test_an_input_given_twice_is_refused(case: str, job: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["analyze", *TWICE_CASES[case](job), "-j", "1"], monkeypatch,
                              capsys)
    assert code == 3 and out == ""
    _one_error(err, "given twice")


# --- bounded expansion ----------------------------------------------------------------------

def test_expansion_is_bounded_before_any_file_is_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The entries are not reports at all: had any been opened, the error would say so; the
    cap is reported first."""
    monkeypatch.setattr(inputs_many, "MAX_INPUTS", 3)
    monkeypatch.setattr(inputs_many, "MAX_FOLDER_ENTRIES", 6)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(4):
        (many / f"r{i}.sqlite").write_bytes(b"not a report")
    for argv in ([str(many)], [str(many / "r*.sqlite")],
                 [str(many / "r0.sqlite"), str(many / "r1.sqlite"), str(many / "r2.sqlite"),
                  str(many / "r3.sqlite")]):
        code, _, err = run_main(["analyze", *argv], monkeypatch, capsys)
        assert code == 3, err
        _one_error(err, "more than 3 at once")
    for i in range(4, 7):
        (many / f"notes{i}.txt").write_text("x")
    code, _, err = run_main(["analyze", str(many)], monkeypatch, capsys)
    assert code == 3
    _one_error(err, "more than 6 entries")


# --- a worker that dies ---------------------------------------------------------------------

@pytest.mark.parametrize(("task", "said"), [
    ("killed_on_second", "was killed by SIGKILL (the out-of-memory killer does this)"),
    ("exits_on_second", "exited with status 3 without a result"),
])
def test_a_worker_that_dies_is_one_error_naming_its_input(
        task: str, said: str, job: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import helpers_workers

    monkeypatch.setattr(infraprof.many, "run_job", getattr(helpers_workers, task))
    code, out, err = run_main(["analyze", str(job), "-j", "2", "-f", "json"], monkeypatch,
                              capsys)
    assert code == 4 and out == ""
    _one_error(err, f"{job / 'b.sqlite'}: the worker process analysing it {said}")


# --- options for several inputs with one input ----------------------------------------------

def test_several_input_options_with_one_input_warn_once(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, plain, _ = run_main(["analyze", str(SAMPLE), "-f", "json"], monkeypatch, capsys)
    assert code == 0
    code, out, err = run_main(["analyze", str(SAMPLE), "-f", "json", "-j", "4", "--dask",
                               "local", "--memory-budget", "1GiB"], monkeypatch, capsys)
    assert code == 0 and out == plain
    assert err == ("infraprof: warning: --jobs, --dask, --memory-budget apply to several "
                   "inputs only; one input is analysed in this process\n")
    code, _, err = run_main(["analyze", str(SAMPLE), "--memory-budget", "lots"], monkeypatch,
                            capsys)
    assert code == 2
    _one_error(err, "--memory-budget 'lots'")


# --- hostile names in the per-rank sections -------------------------------------------------

@pytest.fixture()
def hostile_job(tmp_path: Path) -> list[Path]:
    """Two reports whose file names and NVTX range name (``load_batch``, made the top finding
    of each input by renaming ``clock_nanosleep`` to an unknown call) hold markup, quotes,
    ``&``, ANSI escapes, a newline and a bell (the range name also a NUL)."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    paths = []
    for i in range(2):
        target = folder / f"r{i}{HOSTILE}.sqlite".replace("/", "_")
        shutil.copyfile(SAMPLE, target)
        with sqlite3.connect(target) as db:
            db.execute("UPDATE StringIds SET value = ? WHERE value = 'load_batch'",
                       (HOSTILE + "\x00after-NUL",))
            db.execute("UPDATE StringIds SET value = ? WHERE value = 'clock_nanosleep'",
                       ("x" + HOSTILE,))
        paths.append(target)
    return paths


@pytest.mark.parametrize("fmt", ["table", "md", "html", "json"])
def test_hostile_names_are_escaped_in_every_format(
        fmt: str, hostile_job: list[Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["analyze", *map(str, hostile_job), "-f", fmt, "-j", "1"],
                              monkeypatch, capsys)
    assert code == 0, err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out), "a raw control character"
    if fmt == "json":
        data = json.loads(out)
        assert data["ranks"][0]["input"] == str(hostile_job[0])  # the name itself, escaped
        assert data["reports"][0]["findings"][0]["title"].startswith('evil<script>alert("x")')
        return
    assert "RED" in out and "evil" in out and "after-NUL" in out  # a NUL cuts nothing off
    for line in out.splitlines():  # the newline inside the names never breaks a line
        assert not line.startswith("next|line")
    if fmt == "html":
        assert "<script>" not in out and "&lt;script&gt;" in out
        assert "&amp;amp;" in out  # a literal `&amp;` from the trace stays text
    if fmt == "md":
        assert "<script>" not in out and "next\\|line" in out


# --- the JSON contract and the text formats against it --------------------------------------

def test_cli_json_validates_and_text_rows_match_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    files = []
    for name in ("demo_host_stall", "demo_sync_heavy", "demo_launch_bound"):
        files.append(str(ROOT / "sample_traces" / f"{name}.sqlite"))
    code, out, err = run_main(["analyze", *files, "-f", "json", "-j", "1"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)
    schema = json.loads((ROOT / "docs" / "json-schema-many.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    assert [r["input"] for r in data["ranks"]] == files
    expected = [_cells(row) for row in data["ranks"]]
    assert any(cells[2] != "0 ns" for cells in expected)  # figures that can differ
    code, md, _ = run_main(["analyze", *files, "-f", "md", "-j", "1"], monkeypatch, capsys)
    assert code == 0
    rows = [ln for ln in md.splitlines() if re.match(r"^\| \d+ \|", ln)]
    assert [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows] == [
        [c.replace("_", "\\_") for c in cells] for cells in expected]
    code, table, _ = run_main(["analyze", *files, "-f", "table", "-j", "1", "--no-color"],
                              monkeypatch, capsys)
    assert code == 0
    lines = table.splitlines()
    body = lines[lines.index("Per rank") + 2: lines.index("Per rank") + 2 + len(expected)]
    assert [re.split(r"\s{2,}", ln.strip()) for ln in body] == expected


def _cells(row: dict[str, Any]) -> list[str]:
    """Oracle: the per-rank columns as the text formats must print them, from the JSON row."""
    causes = {k: v for k, v in row["idle_by_cause_ns"].items() if v}
    top_idle = "-"
    if causes:
        cause = sorted(causes, key=lambda c: (-causes[c], c))[0]
        top_idle = f"{cause} {fmt_ns(causes[cause])}"
    top = row["top_finding"]
    return [str(row["rank"]), row["rank_source"], fmt_ns(row["gpu_busy_ns"]),
            fmt_pct(row["busy_share"]), top_idle, str(row["steps"]), fmt_ns(row["step_p50_ns"]),
            fmt_ns(row["step_p99_ns"]), fmt_ns(row["compute_ns"]),
            fmt_ns(row["exposed_comm_ns"]), f"{row['last_arrivals']}/{row['collectives']}",
            top["id"] if top else "-"]


def test_a_dask_worker_that_dies_is_one_error_naming_its_input(
        job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``LocalCluster`` on 127.0.0.1 whose worker analysing the second input is SIGKILLed:
    the scheduler gives up at once (``allowed-failures`` 0) and says ``KilledWorker``."""
    try:
        import dask
        import distributed  # noqa: F401
    except ImportError:
        if nsys_required():  # CI installs the dev extra: a failure there, not a skip
            pytest.fail("dask.distributed is required in CI: pip install -e '.[dev]'")
        pytest.skip("dask.distributed not installed (pip install 'infraprof[dask]')")
    import helpers_workers

    monkeypatch.setattr(infraprof.many, "run_job", helpers_workers.killed_on_second)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        code, out, err = run_main(["analyze", str(job), "--dask", "local", "-j", "2"],
                                  monkeypatch, capsys)
    assert code == 4 and out == ""
    _one_error(err, f"{job / 'b.sqlite'}: every Dask worker that analysed it died (KilledWorker)")
