"""The bad-input catalogue (issue 12): what a hostile or unlucky user can hand infraprof.

Every error case asserts the documented exit code, exactly one ``infraprof: error:`` line and
no traceback on stderr, the inputs' SHA-256 unchanged and no temp file left behind. The cases
build their inputs from a private copy of ``sample_traces/demo_sync_heavy.sqlite``;
``docs/reliability.md`` lists them with the crashes they found.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_cli import Result, run_main
from helpers_devices import full_device, null_device, stdout_link
from helpers_traces import TraceFiles, sha256

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "demo_sync_heavy.sqlite"
KERNEL, MEMCPY, RUNTIME = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY",
                           "CUPTI_ACTIVITY_KIND_RUNTIME")
USAGE, INPUT = 2, 3
HOSTILE_NAME = "evil\x1b]0;owned\x07\x1b[31mred\x00nul\n::error::pwned\r%0A<&>\"'"


def trace_copy(tmp: Path, name: str = "B.sqlite", table: str | None = None,
               sql: str = "", params: tuple[object, ...] = ()) -> Path:
    """A private copy of the sample trace; ``table`` is rebuilt without its NOT NULL
    constraints, then ``sql`` runs on the copy."""
    path = tmp / name
    path.write_bytes(SAMPLE.read_bytes())
    if table or sql:
        with sqlite3.connect(path) as conn:
            if table:
                conn.executescript(f"CREATE TABLE tmp_x AS SELECT * FROM {table}; "
                                   f"DROP TABLE {table}; ALTER TABLE tmp_x RENAME TO {table};")
            if sql:
                conn.execute(sql, params)
        conn.close()
    return path


def assert_clean_error(result: Result, code: int) -> str:
    """Exit ``code``, one ``infraprof: error:`` line, no traceback; returns the line."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("infraprof: error:")]
    assert len(errors) == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return errors[0]


def no_leftovers(*folders: Path) -> None:
    for folder in folders:
        left = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")
                or p.name.startswith("infraprof-export-")]
        assert not left, left


Build = Callable[[Path], tuple[list[str], list[Path]]]


def _analyze(*extra: str) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        trace = trace_copy(tmp)
        return ["analyze", str(trace), *extra], [trace]
    return build


def _gate(*extra: str) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        trace = trace_copy(tmp)
        return ["gate", "-b", str(trace), "-c", str(trace), *extra], [trace]
    return build


def _self_output(command: str, option: str) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        trace = trace_copy(tmp)
        argv = {"analyze": ["analyze", str(trace), option, str(trace)],
                "export": ["export", str(trace), "--to", "perfetto", option, str(trace)],
                "baseline": ["baseline", "save", str(trace), option, str(trace)],
                "gate": ["gate", "-b", str(trace), "-c", str(trace), option, str(trace)]}
        return argv[command], [trace]
    return build


def _symlink_to_input(tmp: Path) -> tuple[list[str], list[Path]]:
    trace = trace_copy(tmp)
    (tmp / "out.json").symlink_to(trace)
    return ["analyze", str(trace), "-o", str(tmp / "out.json")], [trace]


def _hardlink_to_input(tmp: Path) -> tuple[list[str], list[Path]]:
    trace = trace_copy(tmp)
    os.link(trace, tmp / "out.txt")
    return ["analyze", str(trace), "-o", str(tmp / "out.txt")], [trace]


def _into_capture_folder(tmp: Path) -> tuple[list[str], list[Path]]:
    folder = tmp / "cap"
    folder.mkdir()
    trace = trace_copy(folder, "report.sqlite")
    return ["analyze", str(folder), "-o", str(trace)], [trace]


USAGE_CASES: dict[str, Build] = {
    "top-zero": _analyze("--top", "0"),
    "top-text": _analyze("--top", "abc"),
    "format-pdf": _analyze("-f", "pdf"),
    "unknown-option": _analyze("--bogus"),
    "missing-argument": lambda tmp: (["analyze"], []),
    "min-impact-nan": _analyze("--min-impact", "nan"),
    "min-impact-inf": _analyze("--min-impact", "inf"),
    "min-impact-overflow": _analyze("--min-impact", "1e999ms"),
    "max-regression-nan": _gate("--max-regression", "nan"),
    "max-regression-inf": _gate("--max-regression", "inf"),
    "abs-threshold-inf": _gate("--abs-threshold", "inf"),
    "step-bogus": _gate("--step", "bogus"),
    "baseline-step-bogus": lambda tmp: (["baseline", "save", str(trace_copy(tmp)), "--db",
                                         str(tmp / "db.sqlite"), "--step", "bogus"], []),
    "output-is-input": _self_output("analyze", "-o"),
    "export-output-is-input": _self_output("export", "-o"),
    "baseline-db-is-input": _self_output("baseline", "--db"),
    "gate-junit-is-input": _self_output("gate", "--junit"),
    "gate-output-is-input": _self_output("gate", "-o"),
    "output-symlink-to-input": _symlink_to_input,
    "output-hardlink-to-input": _hardlink_to_input,
    "output-into-capture-folder-report": _into_capture_folder,
    "output-is-directory": lambda tmp: (["analyze", str(trace_copy(tmp)), "-o", str(tmp)], []),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_mistakes_exit_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    argv, inputs = USAGE_CASES[case](tmp_path)
    before = {p: sha256(p) for p in inputs}
    assert_clean_error(run_main(argv, monkeypatch, capsys), USAGE)
    assert {p: sha256(p) for p in inputs} == before
    no_leftovers(tmp_path)


def test_no_arguments_prints_help_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main([], monkeypatch, capsys)
    assert code == USAGE
    assert "Usage" in out and "Traceback" not in err


def _json_file(name: str, doc: object) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        trace = trace_copy(tmp)
        path = tmp / name
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
        return ["analyze", str(trace), "--pyspy", str(path)], [trace, path]
    return build


def _metrics(values: str) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        path = tmp / "m.json"
        path.write_text('{"schema": "infraprof.gate.run/1", "source": "x", "values": '
                        + values + ', "samples": {}, "context": {}}', encoding="utf-8")
        good = tmp / "good.json"
        good.write_text(json.dumps({"schema": "infraprof.gate.run/1", "source": "y",
                                    "values": {"gpu:busy_ns": 5}, "samples": {},
                                    "context": {}}), encoding="utf-8")
        return ["gate", "-b", str(good), "-c", str(path)], [path, good]
    return build


def _manifest(manifest: dict[str, object]) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        folder = tmp / "cap"
        folder.mkdir()
        trace = trace_copy(folder, "report.sqlite")
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        chrome = {"traceEvents": [{"ph": "B", "ts": 1, "tid": 1, "name": "f"},
                                  {"ph": "E", "ts": 2000, "tid": 1, "name": "f"}]}
        (folder / "pyspy.chrometrace.json").write_text(json.dumps(chrome), encoding="utf-8")
        return ["analyze", str(folder)], [trace, folder / "manifest.json"]
    return build


def _sqlite_case(table: str | None, sql: str, params: tuple[object, ...] = ()) -> Build:
    def build(tmp: Path) -> tuple[list[str], list[Path]]:
        trace = trace_copy(tmp, table=table, sql=sql, params=params)
        return ["analyze", str(trace), "-f", "json"], [trace]
    return build


def _foreign_db(tmp: Path) -> tuple[list[str], list[Path]]:
    trace = trace_copy(tmp)
    other = tmp / "other-app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users(id INTEGER, name TEXT)")
    conn.close()
    return ["baseline", "save", str(trace), "--db", str(other)], [trace, other]


def _text_db(tmp: Path) -> tuple[list[str], list[Path]]:
    trace = trace_copy(tmp)
    notes = tmp / "notes.txt"
    notes.write_text("not a database\n" * 20, encoding="utf-8")
    return ["baseline", "save", str(trace), "--db", str(notes)], [trace, notes]


def _step_summary_dir(tmp: Path) -> tuple[list[str], list[Path]]:
    trace = trace_copy(tmp)  # the test points GITHUB_STEP_SUMMARY at tmp, a directory
    return ["gate", "-b", str(trace), "-c", str(trace), "-f", "github"], [trace]


INPUT_CASES: dict[str, Build] = {
    "null-globalpid": _sqlite_case(KERNEL, f"UPDATE {KERNEL} SET globalPid=NULL WHERE rowid=7"),
    "null-copykind": _sqlite_case(MEMCPY, f"UPDATE {MEMCPY} SET copyKind=NULL WHERE rowid=3"),
    "null-correlation": _sqlite_case(RUNTIME,
                                     f"UPDATE {RUNTIME} SET correlationId=NULL WHERE rowid=2"),
    "text-in-stream-id": _sqlite_case(None, f"UPDATE {KERNEL} SET streamId='abc' WHERE rowid=7"),
    "text-in-start": _sqlite_case(None, f"UPDATE {RUNTIME} SET start='soon' WHERE rowid=4"),
    "fraction-in-start": _sqlite_case(None, f"UPDATE {RUNTIME} SET start=1.5 WHERE rowid=3"),
    "infinite-end": _sqlite_case(None, f'UPDATE {KERNEL} SET "end"=9e999 WHERE rowid=3'),
    "int64-overflow-in-end": _sqlite_case(None, f'UPDATE {KERNEL} SET "end"=1.77e20 WHERE '
                                          "rowid=5"),
    "blob-in-start": _sqlite_case(None, "UPDATE NVTX_EVENTS SET start=x'00ff' WHERE rowid=3"),
    "text-in-name-id": _sqlite_case(None, f"UPDATE {KERNEL} SET demangledName='x' WHERE rowid=1"),
    "missing-stringids": _sqlite_case(None, "DROP TABLE StringIds"),
    "text-in-analysis-window": _sqlite_case(
        "ANALYSIS_DETAILS", "UPDATE ANALYSIS_DETAILS SET stopTime='abc'"),
    "text-in-session-start": _sqlite_case(
        "TARGET_INFO_SESSION_START_TIME",
        "UPDATE TARGET_INFO_SESSION_START_TIME SET utcEpochNs='x'"),
    "text-in-gpu-sm-count": _sqlite_case(
        "TARGET_INFO_GPU", "UPDATE TARGET_INFO_GPU SET smCount='many'"),
    "null-process-id": _sqlite_case("PROCESSES", "UPDATE PROCESSES SET globalPid=NULL"),
    "pyspy-ts-1e308": _json_file("p.json", '{"traceEvents": [{"ph": "B", "ts": 1e308, "tid": '
                                 '1, "name": "f"}, {"ph": "E", "ts": 2, "tid": 1}]}'),
    "pyspy-ts-nan": _json_file("p.json", '[{"ph": "B", "ts": NaN, "tid": 1, "name": "f"}]'),
    "speedscope-index-past-end": _json_file("s.json", {
        "shared": {"frames": [{"name": "a"}]},
        "profiles": [{"type": "sampled", "name": "t", "samples": [[0, 5]], "weights": [1]}]}),
    "speedscope-negative-index": _json_file("s.json", {
        "shared": {"frames": [{"name": "a"}]},
        "profiles": [{"type": "sampled", "name": "t", "samples": [[-1]], "weights": [1]}]}),
    "speedscope-shared-is-list": _json_file("s.json", {"shared": [], "profiles": []}),
    "speedscope-line-is-text": _json_file("s.json", {
        "shared": {"frames": [{"name": "a", "line": "x"}]}, "profiles": []}),
    "metrics-infinity": _metrics('{"gpu:busy_ns": Infinity}'),
    "metrics-nan": _metrics('{"gpu:busy_ns": NaN}'),
    "metrics-text": _metrics('{"gpu:busy_ns": "fast"}'),
    "manifest-anchor-text": _manifest({"clock_anchor": {"realtime_ns": "x",
                                                        "monotonic_ns": 1}}),
    "manifest-rate-negative": _manifest({"pyspy": {"rate_hz": -5}}),
    "manifest-pulses-not-list": _manifest({"sync": {"pulses": 7}}),
    "manifest-not-object": _manifest(["a"]),  # type: ignore[arg-type]
    "baseline-db-foreign-sqlite": _foreign_db,
    "baseline-db-text-file": _text_db,
    "output-disk-full": lambda tmp: (["analyze", str(trace_copy(tmp)), "-o",
                                      str(full_device(tmp))],
                                     []),
    "output-unwritable-dir": lambda tmp: (["analyze", str(trace_copy(tmp)), "-o",
                                           "/proc/infraprof-out.txt"], []),
    "output-missing-dir": lambda tmp: (["analyze", str(trace_copy(tmp)), "-o",
                                        str(tmp / "no" / "such" / "out.txt")], []),
    "step-summary-is-directory": _step_summary_dir,
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_bad_input_exits_3(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    if case == "step-summary-is-directory":
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))
    argv, inputs = INPUT_CASES[case](tmp_path)
    before = {p: sha256(p) for p in inputs}
    line = assert_clean_error(run_main(argv, monkeypatch, capsys), INPUT)
    assert {p: sha256(p) for p in inputs} == before
    no_leftovers(tmp_path)
    if case.startswith(("null-", "text-in", "fraction", "infinite", "blob", "int64")):
        assert "table " in line and "column " in line, line


def test_foreign_db_gains_no_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv, (_, other) = _foreign_db(tmp_path)
    run_main(argv, monkeypatch, capsys)
    with sqlite3.connect(other) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"users"}


# --------------------------------------------------------------------------------------------
# rows that cannot be trusted are dropped, counted and reported


@pytest.mark.parametrize(("table", "sql", "column", "issue", "dropped"), [
    (KERNEL, f"UPDATE {KERNEL} SET start=NULL WHERE rowid IN (1, 2, 3)", "start", "NULL time",
     3),
    (MEMCPY, f'UPDATE {MEMCPY} SET "end"=NULL WHERE rowid=5', "end", "NULL time", 1),
    (KERNEL, f'UPDATE {KERNEL} SET "end"=start-1000 WHERE rowid <= 4', "end",
     "end before start", 4),
])
def test_untrusted_rows_are_dropped_and_reported(
        table: str, sql: str, column: str, issue: str, dropped: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    trace = trace_copy(tmp_path, table=table, sql=sql)
    clean = run_main(["analyze", str(trace_copy(tmp_path, "clean.sqlite")), "-f", "json"],
                     monkeypatch, capsys)
    code, out, err = run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys)
    assert code == 0 and "Traceback" not in err
    doc = json.loads(out)
    assert doc["data_quality"] == [{"table": table, "column": column, "issue": issue,
                                    "rows_dropped": dropped}]
    assert err.splitlines() == [f"infraprof: warning: {trace}: {table}.{column}: {issue}; "
                                f"{dropped} row(s) left out"]
    assert json.loads(clean.stdout)["data_quality"] == []
    counts = doc["summary"]["counts"]
    key = "kernels" if table == KERNEL else "memcpy"
    assert counts[key] == json.loads(clean.stdout)["summary"]["counts"][key] - dropped
    assert all(k["min_ns"] >= 0 for k in doc["kernels"])


# --------------------------------------------------------------------------------------------
# names holding escapes, NUL, newlines: every output format stays inert


@pytest.fixture()
def hostile_trace(tmp_path: Path) -> Path:
    """The sample trace with its busiest kernel renamed to :data:`HOSTILE_NAME`."""
    return trace_copy(tmp_path, "hostile.sqlite", sql=(
        "UPDATE StringIds SET value=? WHERE id IN (SELECT demangledName FROM "
        f"{KERNEL} GROUP BY demangledName ORDER BY SUM(\"end\"-start) DESC LIMIT 1)"),
        params=(HOSTILE_NAME,))


def assert_inert(text: str) -> None:
    for char in ("\x1b", "\x07", "\x00", "\r"):
        assert char not in text, repr(char)
    assert not any(ln.lstrip().startswith(("::", "##[")) for ln in text.splitlines())


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_report_formats_escape_control_characters(
        fmt: str, hostile_trace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["analyze", str(hostile_trace), "-f", fmt, "--no-color"],
                            monkeypatch, capsys)
    assert code == 0
    assert_inert(out)
    assert "\\x1b" in out or "\\x1b" in out.replace("\\\\", "\\")


def test_color_terminal_escapes_names_but_keeps_its_own_colours(
        hostile_trace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, out, _ = run_main(["analyze", str(hostile_trace)], monkeypatch, capsys)
    assert code == 0
    assert "\x1b[" in out  # rich's own styling
    assert "\x1b]0;owned" not in out and "\x1b[31mred" not in out and "\x00" not in out
    assert not any(ln.lstrip().startswith("::") for ln in out.splitlines())


def test_json_keeps_the_exact_name(hostile_trace: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["analyze", str(hostile_trace), "-f", "json"], monkeypatch, capsys)
    assert code == 0
    assert "\x1b" not in out and "\x00" not in out
    assert HOSTILE_NAME in {k["name"] for k in json.loads(out)["kernels"]}


def _hostile_gate_inputs(tmp: Path) -> tuple[Path, Path]:
    paths = []
    for side, value in (("base", 1000), ("cand", 5000)):
        path = tmp / f"{side}.json"
        samples = [value + i for i in range(40)]
        path.write_text(json.dumps({
            "schema": "infraprof.gate.run/1", "source": side, "context": {},
            "values": {f"kernel:{HOSTILE_NAME}:total_ns": value},
            "samples": {f"kernel:{HOSTILE_NAME}:duration_ns": samples}}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("fmt", ["table", "markdown", "github", "openmetrics", "json",
                                 "gitlab"])
def test_gate_formats_escape_control_characters(
        fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _hostile_gate_inputs(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "junit.xml"
    code, out, err = run_main(["gate", "-b", str(base), "-c", str(cand), "-f", fmt,
                               "--junit", str(junit), "--no-color", "--min-runs", "1"],
                              monkeypatch, capsys)
    assert code == 1, err
    assert "\x1b" not in err and "\x00" not in err and len(err.splitlines()) == 1
    lines = out.splitlines()
    if fmt == "github":
        assert all(ln.startswith(("::error ", "::warning ", "infraprof gate")) for ln in lines)
        assert_inert(summary.read_text(encoding="utf-8"))
        out = "\n".join(ln.split("::", 2)[-1] for ln in lines)
    assert_inert(out)
    if fmt in ("json", "gitlab"):
        json.loads(out)
    root = ET.fromstring(junit.read_bytes())  # well-formed despite ESC, BEL, NUL
    assert root.tag == "testsuite"
    assert "\\x1b" in junit.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# where outputs go: devices, pipes, symlinks, permissions


def test_output_to_dev_null_keeps_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    devnull = null_device(tmp_path)
    code, _, err = run_main(["analyze", str(trace_copy(tmp_path)), "-o", str(devnull)],
                            monkeypatch, capsys)
    assert code == 0, err
    assert stat.S_ISCHR(os.lstat(devnull).st_mode)


def test_output_symlink_writes_its_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "real.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run_main(["analyze", str(trace_copy(tmp_path)), "-o", str(link)],
                            monkeypatch, capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text(encoding="utf-8"))["schema_version"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    no_leftovers(tmp_path)


def test_output_to_a_fifo_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, err = run_main(["analyze", str(trace_copy(tmp_path)), "-o", str(fifo), "-f",
                             "json"], monkeypatch, capsys)
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(received[0])["summary"]["counts"]["kernels"] > 0


def _cli(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "infraprof", *argv], env=env, timeout=300,
                          check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def test_dev_stdout_is_streamed_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    with out.open("wb") as fh:
        link = stdout_link(tmp_path)
        proc = _cli(["analyze", str(trace_copy(tmp_path)), "-o", str(link), "-f", "json"],
                    stdout=fh, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    assert os.path.islink(link)
    assert json.loads(out.read_bytes())["summary"]["counts"]["kernels"] > 0


def test_closed_stdout_pipe_exits_141_quietly(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _cli(["analyze", str(trace_copy(tmp_path)), "-f", "json"], stdout=write_end,
                    stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr == b""


def test_library_warnings_do_not_reach_stderr(tmp_path: Path) -> None:
    """A RuntimeWarning/FutureWarning raised inside the analysis (as pandas and numpy do)
    stays off stderr; run in a child process, since pytest records warnings itself."""
    script = (
        "import importlib, sys, warnings\n"
        "ranking = importlib.import_module('infraprof.ranking')\n"
        "real = ranking.build_report\n"
        "def noisy(*a, **k):\n"
        "    warnings.warn('Mean of empty slice', RuntimeWarning)\n"
        "    warnings.warn('downcasting is deprecated', FutureWarning)\n"
        "    return real(*a, **k)\n"
        "ranking.build_report = noisy\n"
        "from infraprof.cli import main\n"
        f"sys.argv = ['infraprof', 'analyze', {str(trace_copy(tmp_path))!r}, '-f', 'json']\n"
        "main()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                          env={**env, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert json.loads(proc.stdout)["schema_version"]


# --------------------------------------------------------------------------------------------
# damaged nsys reports: the tool worked, the file is bad (exit 3, not 4)


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    damaged = bytearray(data)
    for offset in range(4096, len(damaged), max(1, len(damaged) // 2000)):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


@pytest.mark.realtraces
@pytest.mark.nsys
@pytest.mark.parametrize("damage", [_cut, _flipped], ids=["truncated", "bytes-flipped"])
def test_damaged_report_exits_3(damage: Callable[[bytes], bytes], trace_files: TraceFiles,
                                nsys_bin: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    copy = trace_files.private_copy("ncar-miniweather-nsys/miniweather_async.qdrep")
    copy.write_bytes(damage(copy.read_bytes()))
    digest = sha256(copy)
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INFRAPROF_NSYS", nsys_bin)
    line = assert_clean_error(run_main(["analyze", str(copy)], monkeypatch, capsys), INPUT)
    assert str(copy) in line and "truncated or corrupt" in line
    assert sha256(copy) == digest
    assert not list((tmp_path / "cache").rglob("infraprof-export-*"))


def test_previous_analysis_in_a_capture_folder_may_be_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cap"
    folder.mkdir()
    trace = trace_copy(folder, "report.sqlite")
    previous = folder / "analysis.json"
    previous.write_text("{}", encoding="utf-8")
    digest = sha256(trace)
    code, _, err = run_main(["analyze", str(folder), "-o", str(previous)], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(previous.read_text(encoding="utf-8"))["schema_version"]
    assert sha256(trace) == digest


@pytest.mark.realtraces
def test_ncu_csv_with_infinite_cells_reads(shared_traces: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``inf``/``nan`` cells are missing values, not an overflow (found by the fuzzer)."""
    text = (shared_traces / "esmm-sgemm-ncu/profile.ncu2022.3-raw.csv").read_text(
        encoding="utf-8")
    lines = text.splitlines(keepends=True)
    lines[2] = lines[2].replace('"32"', '"inf"', 1).replace('"1"', '"nan"', 1)
    path = tmp_path / "inf.csv"
    path.write_text("".join(lines), encoding="utf-8")
    code, out, err = run_main(["analyze", str(path), "-f", "json"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out)
