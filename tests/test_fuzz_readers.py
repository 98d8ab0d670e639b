"""Property-based fuzzing of every reader: hostile values either read cleanly or raise
:class:`~infraprof.errors.InputError` (exit 3); nothing else may escape (that would be exit 70).

The CI budget is small (``INFRAPROF_FUZZ_EXAMPLES``, default 15 examples per reader, no
deadline); run a long campaign by hand with e.g. ``INFRAPROF_FUZZ_EXAMPLES=2000 pytest
tests/test_fuzz_readers.py`` (see ``docs/reliability.md``).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infraprof.analyses.ncu_kernels import diagnose
from infraprof.errors import InputError
from infraprof.gate.metrics import load_run
from infraprof.inputs import load_ncu, load_trace
from infraprof.inputs.pyspy import checked_manifest
from infraprof.ranking import build_report
from infraprof.readers.pyspy import read_pyspy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "demo_sync_heavy.sqlite"
NCU_CSV = "esmm-sgemm-ncu/profile.ncu2022.3-raw.csv"
EXAMPLES = int(os.environ.get("INFRAPROF_FUZZ_EXAMPLES", "15"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get(
    "INFRAPROF_FUZZ_RANDOM"), suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])
ROWS = 12

# Whitelisted tables and the columns the fuzzer may damage (SQL identifiers never come from
# hypothesis; only values do, as parameters).
TARGETS: dict[str, tuple[str, ...]] = {
    "CUPTI_ACTIVITY_KIND_KERNEL": ("start", "end", "globalPid", "deviceId", "streamId",
                                   "correlationId", "demangledName", "shortName", "gridX"),
    "CUPTI_ACTIVITY_KIND_MEMCPY": ("start", "end", "copyKind", "bytes", "srcKind", "deviceId"),
    "CUPTI_ACTIVITY_KIND_RUNTIME": ("start", "end", "globalTid", "correlationId", "nameId"),
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": ("start", "end", "syncType", "correlationId"),
    "NVTX_EVENTS": ("start", "end", "eventType", "globalTid", "text", "textId"),
    "StringIds": ("value",),
    "ANALYSIS_DETAILS": ("startTime", "stopTime"),
    "TARGET_INFO_SESSION_START_TIME": ("utcEpochNs",),
    "TARGET_INFO_GPU": ("id", "smCount", "name"),
    "ThreadNames": ("globalTid", "nameId"),
    "PROCESSES": ("globalPid", "pid", "name"),
}
CUT = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_RUNTIME",
       "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", "NVTX_EVENTS")
SQL_VALUES = st.one_of(
    st.none(), st.sampled_from(["abc", "", "12", "\x1b[31m", "1e308"]), st.binary(max_size=4),
    st.floats(allow_nan=False), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(["REVERSE"]),
)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample trace cut to :data:`ROWS` rows per activity table; the fuzzed tables lose
    their NOT NULL constraints (nsys declares them; a damaged file need not honour them)."""
    path = tmp_path_factory.mktemp("fuzz") / "small.sqlite"
    path.write_bytes(SAMPLE.read_bytes())
    with sqlite3.connect(path) as conn:
        for table in TARGETS:
            rows = f"ORDER BY start LIMIT {ROWS}" if table in CUT else ""
            conn.executescript(
                f"CREATE TABLE tmp_x AS SELECT * FROM {table} {rows}; "
                f"DROP TABLE {table}; ALTER TABLE tmp_x RENAME TO {table};")
    conn.close()
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
    conn.close()
    return path


@pytest.fixture()
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="infraprof-fuzz-") as tmp:
        yield Path(tmp)


def _damage(path: Path, edits: list[tuple[int, int, int, Any]]) -> None:
    with sqlite3.connect(path) as conn:
        for table_index, column_index, row, value in edits:
            table = sorted(TARGETS)[table_index % len(TARGETS)]
            column = TARGETS[table][column_index % len(TARGETS[table])]
            if value == "REVERSE" and table in CUT:
                conn.execute(f'UPDATE "{table}" SET "end" = start - 1 - ? WHERE rowid = ?',
                             (abs(row) % 1000, row))
            else:
                conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                             (value, row))
    conn.close()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, ROWS),
                                SQL_VALUES), min_size=1, max_size=4))
def test_nsys_sqlite_reader(small_export: Path, scratch: Path,
                            edits: list[tuple[int, int, int, Any]]) -> None:
    path = scratch / "fuzzed.sqlite"
    path.write_bytes(small_export.read_bytes())
    _damage(path, edits)
    try:
        trace = load_trace(path)
    except InputError as exc:
        assert str(path) in exc.message
        return
    for frame in (trace.kernels, trace.memcpy, trace.api_calls, trace.syncs):
        assert (frame["end_ns"] >= frame["start_ns"]).all()
    assert trace.kernels["name"].notna().all()
    assert all(issue.rows_dropped > 0 for issue in trace.data_quality)
    report = build_report(trace)
    assert report.span_ns >= 0
    assert all(k >= 0 for k in report.kernels["total_ns"])


CSV_CELLS = st.sampled_from(["", "nan", "inf", "-inf", "1e308", "-", "abc", "(1, 2", "1,2,3",
                             "\x00", "\"", "-5", "99999999999999999999999"])


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), CSV_CELLS),
                      min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_ncu_csv_reader(shared_traces: Path, scratch: Path,
                        edits: list[tuple[int, int, str]], cut: int | None) -> None:
    import csv
    import io

    rows = list(csv.reader(io.StringIO((shared_traces / NCU_CSV).read_text(encoding="utf-8"))))
    for row_index, col_index, cell in edits:
        row = rows[row_index % len(rows)]
        if row:
            row[col_index % len(row)] = cell
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerows(rows)
    text = buffer.getvalue()
    if cut is not None:
        text = text[: cut % (len(text) + 1)]
    path = scratch / "fuzzed.csv"
    path.write_text(text, encoding="utf-8")
    try:
        metrics = load_ncu(path)
    except InputError as exc:
        assert str(path) in exc.message
        return
    diagnose(metrics)


TS = st.one_of(st.floats(min_value=0, max_value=1e6), st.sampled_from(
    [1e308, math.inf, -math.inf, math.nan, "x", None, -1e300, True]))
JUNK = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=5), st.floats(),
                 st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                          st.integers(),
                                                                          max_size=2))
CHROME_EVENT = st.fixed_dictionaries(
    {"ph": st.sampled_from(["B", "E", "X", "M", 1]), "ts": TS,
     "tid": st.one_of(st.integers(0, 3), JUNK)},
    optional={"name": st.one_of(st.text(max_size=8), JUNK),
              "args": st.one_of(st.fixed_dictionaries(
                  {"filename": JUNK, "line": st.one_of(st.integers(0, 9), JUNK)}), JUNK)})
SPEEDSCOPE = st.fixed_dictionaries({
    "shared": st.one_of(st.fixed_dictionaries({"frames": st.lists(st.fixed_dictionaries(
        {"name": JUNK, "file": JUNK, "line": JUNK}), max_size=4)}), JUNK),
    "profiles": st.one_of(st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["sampled", "evented", 3]), "name": JUNK, "unit": JUNK,
         "samples": st.one_of(st.lists(st.lists(st.one_of(st.integers(-2, 5), JUNK),
                                                 max_size=4), max_size=4), JUNK),
         "weights": st.one_of(st.lists(st.one_of(st.floats(), JUNK), max_size=3), JUNK)}),
        max_size=3), JUNK)})
RAW = st.lists(st.text(alphabet="ab;: ()0123456789\x00\n", max_size=20), max_size=5).map(
    "\n".join)


@FUZZ
@given(doc=st.one_of(st.lists(CHROME_EVENT, max_size=8).map(lambda e: {"traceEvents": e}),
                     SPEEDSCOPE, RAW))
def test_pyspy_reader(scratch: Path, doc: object) -> None:
    path = scratch / "pyspy.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    try:
        profile = read_pyspy(path, rate_hz=100.0)
    except InputError as exc:
        assert str(path) in exc.message
        return
    assert len(profile.samples) < 10**6


NUMBERISH = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.text(max_size=4),
                      st.none(), st.lists(st.floats(), max_size=2))


@FUZZ
@given(values=st.dictionaries(st.text(max_size=6), NUMBERISH, max_size=4),
       samples=st.one_of(st.dictionaries(st.text(max_size=6), st.lists(NUMBERISH, max_size=4),
                                         max_size=3), JUNK),
       schema=st.sampled_from(["infraprof.gate.run/1", "other", 5]))
def test_gate_metrics_json(scratch: Path, values: dict[str, Any], samples: Any,
                           schema: Any) -> None:
    path = scratch / "metrics.json"
    path.write_text(json.dumps({"schema": schema, "source": "x", "values": values,
                                "samples": samples, "context": {}}), encoding="utf-8")
    try:
        run = load_run(path)
    except InputError as exc:
        assert str(path) in exc.message
        return
    assert all(math.isfinite(v) for v in run.values.values())
    assert all(np.isfinite(s).all() for s in run.samples.values())


@FUZZ
@given(manifest=st.one_of(st.fixed_dictionaries({}, optional={
    "clock_anchor": st.one_of(st.fixed_dictionaries({}, optional={
        "realtime_ns": NUMBERISH, "monotonic_ns": NUMBERISH}), JUNK),
    "pyspy": st.one_of(st.fixed_dictionaries({}, optional={
        "rate_hz": NUMBERISH, "start_mono_ns": NUMBERISH}), JUNK),
    "sync": st.one_of(st.fixed_dictionaries({}, optional={
        "tid": NUMBERISH, "pulses": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"start_mono_ns": NUMBERISH, "end_mono_ns": NUMBERISH}), JUNK), max_size=3),
            JUNK)}), JUNK)}), JUNK))
def test_capture_manifest(scratch: Path, manifest: Any) -> None:
    (scratch / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    try:
        manifest = checked_manifest(scratch)
    except InputError as exc:
        assert "manifest.json" in exc.message
        return
    assert manifest is not None
    assert all(isinstance(t, int) for pulse in manifest.sync_pulses for t in pulse)
    rate = manifest.pyspy_rate_hz
    assert rate is None or rate > 0
