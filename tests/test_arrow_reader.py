"""The Arrow-native read (``readers/arrow_sqlite.py``) gives exactly the sqlite3 path's frames,
or falls back to it: on every shared real trace, on random columns with a stray fraction, text
or blob at a random row, and on awkward paths; the input is never modified or locked.

Needs the ``fast`` extra (adbc-driver-sqlite; part of ``dev``): skipped without it,
a failure in CI (``CI=true``).
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import nsys_required
from helpers_traces import TraceFiles, nsys_sqlite_files, sha256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infraprof.errors import InputError
from infraprof.readers import arrow_sqlite, sqlite_frames
from infraprof.readers.nsys_sqlite import read_nsys_sqlite
from infraprof.readers.sqlite_db import SqliteFile

if not arrow_sqlite._installed():
    if nsys_required():
        pytest.fail("adbc-driver-sqlite is required in CI (pip install -e .[dev])",
                    pytrace=False)
    pytest.skip("adbc-driver-sqlite not installed (the `fast` extra)",
                allow_module_level=True)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXAMPLES = int(os.environ.get("INFRAPROF_FUZZ_EXAMPLES", "15"))


@pytest.fixture
def arrow_everywhere(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every table goes through the Arrow path (no size threshold); returns the tables the
    Arrow path actually read (those it did not give back to sqlite3)."""
    monkeypatch.delenv(arrow_sqlite.NO_ARROW_ENV, raising=False)
    monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 0)
    read: list[str] = []
    original = arrow_sqlite.read_int_frame

    def counted(db: SqliteFile, table: str, *args: Any, **kwargs: Any) -> pd.DataFrame | None:
        frame = original(db, table, *args, **kwargs)
        if frame is not None:
            read.append(table)
        return frame

    monkeypatch.setattr(arrow_sqlite, "read_int_frame", counted)
    return read


def _make_table(path: Path, columns: dict[str, list[Any]], table: str = "T") -> None:
    """``table`` with untyped columns (no affinity: every value keeps its SQLite type)."""
    conn = sqlite3.connect(path)
    names = list(columns)
    conn.execute(f'CREATE TABLE "{table}" ({", ".join(names)})')
    conn.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(names))})',
                     list(zip(*columns.values(), strict=True)))
    conn.commit()
    conn.close()


def _sqlite3_result(db: SqliteFile, table: str, columns: dict[str, str], where: str,
                    narrow: frozenset[str] = frozenset()) -> pd.DataFrame | InputError:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
        try:
            return sqlite_frames.read_int_frame(db, table, columns, where, narrow=narrow)
        except InputError as exc:
            return exc


# --- real traces ------------------------------------------------------------------------------

@pytest.mark.realtraces
@pytest.mark.parametrize("rel", nsys_sqlite_files())
def test_real_traces_identical_frames(rel: str, trace_files: TraceFiles,
                                      arrow_everywhere: list[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table of every shared export: the Arrow path's frames (dtypes, values, row
    order) and dropped-row counts equal the sqlite3 path's."""
    path = trace_files.path(rel)
    before = sha256(path)
    fast = read_nsys_sqlite(path)
    assert arrow_everywhere, "the Arrow path read no table"
    monkeypatch.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
    arrow_everywhere.clear()
    reference = read_nsys_sqlite(path)
    assert not arrow_everywhere, "INFRAPROF_NO_ARROW=1 still read through Arrow"
    assert fast.frames.keys() == reference.frames.keys()
    for name, frame in reference.frames.items():
        pd.testing.assert_frame_equal(fast.frames[name], frame, check_exact=True, obj=name)
    assert fast.data_quality == reference.data_quality
    assert sha256(path) == before


@pytest.mark.realtraces
def test_real_ties_keep_the_sqlite_order(trace_files: TraceFiles) -> None:
    """``sort_by`` (table order, then a stable sort) gives ``ORDER BY start``'s order where
    starts tie: two CPU samples of the 4-GPU nersc export share a start (different ids)."""
    path = trace_files.path("nersc-sc22-dl/4gpu_baseline.nsys-rep.nsys2022.4-export.sqlite.gz")
    columns = {"start_ns": "start", "global_tid": "globalTid", "callchain_id": "id"}
    with SqliteFile(path) as db:
        reference = _sqlite3_result(db, "COMPOSITE_EVENTS", columns, "ORDER BY start")
        sorted_here = arrow_sqlite.read_int_frame(db, "COMPOSITE_EVENTS", columns,
                                                  sort_by="start_ns")
    assert isinstance(reference, pd.DataFrame) and sorted_here is not None
    assert (reference["start_ns"].diff() == 0).sum() == 2
    pd.testing.assert_frame_equal(sorted_here, reference, check_exact=True)


# --- random columns ---------------------------------------------------------------------------

INTS = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-3, 3))
STRAYS = st.one_of(st.floats(allow_nan=False), st.sampled_from([2.0, -0.5, 1e300]),
                   st.text(max_size=3), st.sampled_from(["7", "", "1.5"]),
                   st.binary(max_size=3))


@st.composite
def _columns(draw: st.DrawFn) -> tuple[dict[str, list[Any]], int]:
    """Two or three columns of ``rows`` values: integers and NULLs (runs of NULLs first in
    some), and sometimes one stray non-integer at a random row; plus a batch size so that the
    driver's first batch (what it infers types from) may or may not reach the stray."""
    rows = draw(st.integers(1, 40))
    columns: dict[str, list[Any]] = {}
    for name in ("a", "b", "c")[: draw(st.integers(2, 3))]:
        null_share = draw(st.sampled_from([0.0, 0.3, 1.0]))
        leading_nulls = draw(st.integers(0, rows))
        values = [None if i < leading_nulls or draw(st.floats(0, 1)) < null_share
                  else draw(INTS) for i in range(rows)]
        columns[name] = values
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(columns)))
        columns[name][draw(st.integers(0, rows - 1))] = draw(STRAYS)
    columns["start"] = [draw(st.one_of(st.none(), st.integers(0, 4))) for _ in range(rows)]
    return columns, draw(st.sampled_from([1, 2, 3, 7, 1024]))


def _all_int(columns: dict[str, list[Any]]) -> bool:
    return all(v is None or type(v) is int for values in columns.values() for v in values)


@settings(max_examples=max(EXAMPLES * 4, 60), deadline=None,
          derandomize=not os.environ.get("INFRAPROF_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_columns(), order=st.sampled_from(["", "ORDER BY start", "sort_by"]),
       narrow=st.frozensets(st.sampled_from(["a_out", "b_out", "c_out", "start_out"])))
def test_random_columns_equal_or_fall_back(case: tuple[dict[str, list[Any]], int], order: str,
                                           narrow: frozenset[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Integers and NULLs anywhere: the Arrow frame equals the sqlite3 frame, also with
    ``narrow`` columns (narrowed per batch there, as a whole here). A stray fraction, text or
    blob anywhere (first batch, later batch, after an all-NULL first batch): the Arrow path
    returns None and the sqlite3 path raises its ``InputError``."""
    data, batch_rows = case
    monkeypatch.setattr(arrow_sqlite, "BATCH_ROWS", batch_rows)
    columns = {f"{name}_out": name for name in data}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.sqlite"
        _make_table(path, data)
        with SqliteFile(path) as db:
            reference = _sqlite3_result(db, "T", columns, "" if order == "" else
                                        "ORDER BY start", narrow)
            if order == "sort_by":
                fast = arrow_sqlite.read_int_frame(db, "T", columns, sort_by="start_out",
                                                   narrow=narrow)
            else:
                fast = arrow_sqlite.read_int_frame(db, "T", columns, order, narrow=narrow)
    if _all_int(data):
        assert isinstance(reference, pd.DataFrame) and fast is not None
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    else:
        assert fast is None
        assert isinstance(reference, InputError)
        assert "table T, column " in str(reference)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.sets(st.integers(1, 60), max_size=30), st.integers(-5, 5),
       st.sampled_from([1, 4, 1024]))
def test_rowid_gaps_read_every_row_once(rows: int, deleted: set[int], shift: int,
                                        batch_rows: int) -> None:
    """Rows deleted anywhere (the rowids no longer consecutive) and rowids starting below 1:
    the Arrow read holds exactly the rows the sqlite3 path reads, in its order."""
    data = {"a": list(range(rows)), "start": [(i * 7) % 5 for i in range(rows)]}
    columns = {f"{name}_out": name for name in data}
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.setattr(arrow_sqlite, "BATCH_ROWS", batch_rows)
        path = Path(folder) / "t.sqlite"
        _make_table(path, data)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE T SET rowid = rowid + ?", (shift * 1000,))
            conn.executemany("DELETE FROM T WHERE a = ?", [(d - 1,) for d in deleted])
        with SqliteFile(path) as db:
            fast = arrow_sqlite.read_int_frame(db, "T", columns, sort_by="start_out")
            slow = _sqlite3_result(db, "T", columns, "")
    assert isinstance(slow, pd.DataFrame) and fast is not None
    want = slow.sort_values("start_out", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(fast, want, check_exact=True)
    assert len(fast) == rows - len({d for d in deleted if d <= rows})


SAMPLE = Path(__file__).resolve().parents[1] / "sample_traces" / "demo_sync_heavy.sqlite"
DAMAGEABLE = {
    "CUPTI_ACTIVITY_KIND_KERNEL": ("start", "end", "globalPid", "deviceId", "streamId",
                                   "correlationId", "demangledName", "shortName"),
    "CUPTI_ACTIVITY_KIND_RUNTIME": ("start", "end", "globalTid", "correlationId", "nameId"),
    "OSRT_API": ("start", "end", "globalTid", "nameId"),
}
HOSTILE = st.one_of(st.none(), STRAYS, INTS)


@pytest.fixture(scope="module")
def loose_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample trace with the damageable tables rebuilt without their NOT NULL
    constraints (a damaged file need not honour them)."""
    path = tmp_path_factory.mktemp("arrow-fuzz") / "loose.sqlite"
    path.write_bytes(SAMPLE.read_bytes())
    with sqlite3.connect(path) as conn:
        for table in DAMAGEABLE:
            conn.executescript(f"CREATE TABLE tmp_x AS SELECT * FROM {table}; DROP TABLE {table}; "
                               f"ALTER TABLE tmp_x RENAME TO {table};")
    conn.close()
    return path


def _read_outcome(path: Path) -> dict[str, pd.DataFrame] | str:
    try:
        return dict(read_nsys_sqlite(path).frames)
    except InputError as exc:
        return str(exc)


@settings(max_examples=EXAMPLES, deadline=None,
          derandomize=not os.environ.get("INFRAPROF_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(DAMAGEABLE)), st.integers(0, 7),
                                st.integers(1, 400), HOSTILE), min_size=1, max_size=3))
def test_damaged_export_same_outcome(edits: list[tuple[str, int, int, Any]], loose_sample: Path,
                                     arrow_everywhere: list[str]) -> None:
    """A real export with hostile values written into its kernel, API and OS-runtime tables:
    the Arrow read (every table) ends as the sqlite3 read does, with the same frames or the
    same ``InputError``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.sqlite"
        path.write_bytes(loose_sample.read_bytes())
        with sqlite3.connect(path) as conn:
            for table, column_index, row, value in edits:
                column = DAMAGEABLE[table][column_index % len(DAMAGEABLE[table])]
                conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?',
                             (value, row))
        conn.close()
        fast = _read_outcome(path)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
            reference = _read_outcome(path)
    assert arrow_everywhere, "the Arrow path read no table"
    if isinstance(reference, str):
        assert fast == reference
        return
    assert isinstance(fast, dict) and fast.keys() == reference.keys()
    for name, frame in reference.items():
        pd.testing.assert_frame_equal(fast[name], frame, check_exact=True, obj=name)


@pytest.mark.parametrize(("values", "inferred"), [
    ([None] * 5 + [1, 2], "int64 after an all-NULL first batch"),
    ([None] * 7, "all NULL: int64"),
    ([1, 2, 3, 4, 1.5, 6, 7], "a fraction in a later batch"),
    ([1.0, 2, 3, 4, 5, 6, 7], "an integral REAL in the first batch"),
    ([None] * 4 + ["5", 6, 7], "text after an all-NULL first batch"),
    ([1, 2, 3, 4, 5, 6, b"\x07"], "a blob in the last batch"),
])
def test_driver_inference_cases(values: list[Any], inferred: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases the module docstring lists, with 4-row batches."""
    monkeypatch.setattr(arrow_sqlite, "BATCH_ROWS", 4)
    path = tmp_path / "t.sqlite"
    _make_table(path, {"x": values})
    with SqliteFile(path) as db:
        fast = arrow_sqlite.read_int_frame(db, "T", {"x_out": "x"})
        reference = _sqlite3_result(db, "T", {"x_out": "x"}, "")
    if _all_int({"x": values}):
        assert fast is not None and isinstance(reference, pd.DataFrame), inferred
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    else:
        assert fast is None, inferred
        assert isinstance(reference, InputError) and "column x:" in str(reference)


def test_bad_value_in_a_large_table_is_the_sqlite3_error(
        tmp_path: Path, arrow_everywhere: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``read_int_frame``: a text in the last of ten batches gives the same one-line
    ``InputError`` (table and column named) as the sqlite3 path."""
    monkeypatch.setattr(arrow_sqlite, "BATCH_ROWS", 100)
    rows = 1000
    column: list[Any] = list(range(rows))
    column[-3] = "12x"
    path = tmp_path / "t.sqlite"
    _make_table(path, {"start": list(range(rows)), "globalPid": column},
                table="CUPTI_ACTIVITY_KIND_KERNEL")
    columns = {"start_ns": "start", "global_pid": "globalPid"}
    with SqliteFile(path) as db, pytest.raises(InputError) as fast:
        sqlite_frames.read_int_frame(db, "CUPTI_ACTIVITY_KIND_KERNEL", columns, "ORDER BY start")
    with SqliteFile(path) as db:
        reference = _sqlite3_result(db, "CUPTI_ACTIVITY_KIND_KERNEL", columns, "ORDER BY start")
    assert not arrow_everywhere
    assert str(fast.value) == str(reference)
    assert "table CUPTI_ACTIVITY_KIND_KERNEL, column globalPid: 1 value(s)" in str(fast.value)


def test_int64_extremes_and_null_sentinel(tmp_path: Path) -> None:
    """INT64_MAX survives; a stored INT64_MIN reads as NULL on both paths (the sqlite3 path's
    NULL sentinel), so the frames stay equal."""
    path = tmp_path / "t.sqlite"
    _make_table(path, {"x": [INT64_MAX, INT64_MIN, 5, None]})
    with SqliteFile(path) as db:
        fast = arrow_sqlite.read_int_frame(db, "T", {"x_out": "x"})
        reference = _sqlite3_result(db, "T", {"x_out": "x"}, "")
    assert fast is not None and isinstance(reference, pd.DataFrame)
    pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    assert fast["x_out"].iloc[0] == INT64_MAX and str(fast["x_out"].dtype) == "Int64"


# --- dispatch ---------------------------------------------------------------------------------

def test_dispatch_threshold_and_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_int_frame`` takes the Arrow path for a table of ≥ MIN_ROWS rows (by max(rowid)),
    the sqlite3 path below it, with ``INFRAPROF_NO_ARROW=1`` or without the packages."""
    path = tmp_path / "t.sqlite"
    _make_table(path, {"x": list(range(50))}, table="Small")
    _make_table(path, {"x": list(range(200))}, table="Large")
    monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 100)
    monkeypatch.delenv(arrow_sqlite.NO_ARROW_ENV, raising=False)
    calls: list[str] = []
    original = arrow_sqlite.read_int_frame

    def spy(db: SqliteFile, table: str, *args: Any, **kwargs: Any) -> pd.DataFrame | None:
        calls.append(table)
        return original(db, table, *args, **kwargs)

    monkeypatch.setattr(arrow_sqlite, "read_int_frame", spy)
    with SqliteFile(path) as db:
        for table in ("Small", "Large"):
            sqlite_frames.read_int_frame(db, table, {"x_out": "x"})
        assert calls == ["Large"]
        monkeypatch.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
        sqlite_frames.read_int_frame(db, "Large", {"x_out": "x"})
        monkeypatch.setenv(arrow_sqlite.NO_ARROW_ENV, "0")
        monkeypatch.setattr(arrow_sqlite, "_installed", lambda: False)
        sqlite_frames.read_int_frame(db, "Large", {"x_out": "x"})
    assert calls == ["Large"]


def test_dispatch_keeps_the_requested_order(tmp_path: Path, arrow_everywhere: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows stored out of start order, with ties and NULL starts, come back in the sqlite3
    path's order through ``read_int_frame``, however it is asked for the order (``where``, or a
    ``sort_by`` parameter should the signature grow one: the dispatch must pass it on)."""
    starts: list[Any] = [5, 3, None, 3, 9, 1, 5, None, 0, 3] * 30
    path = tmp_path / "t.sqlite"
    _make_table(path, {"start": starts, "id": list(range(len(starts)))},
                table="COMPOSITE_EVENTS")
    columns = {"start_ns": "start", "callchain_id": "id"}
    if "sort_by" in inspect.signature(sqlite_frames.read_int_frame).parameters:
        order: dict[str, str] = {"sort_by": "start_ns"}
    else:
        order = {"where": "ORDER BY start"}
    with SqliteFile(path) as db:
        fast = sqlite_frames.read_int_frame(db, "COMPOSITE_EVENTS", columns, **order)
        assert arrow_everywhere == ["COMPOSITE_EVENTS"]
        monkeypatch.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
        reference = sqlite_frames.read_int_frame(db, "COMPOSITE_EVENTS", columns, **order)
    pd.testing.assert_frame_equal(fast, reference, check_exact=True)
    assert fast["start_ns"].is_monotonic_increasing and len(fast) == 240


def test_worth_it_says_no_without_a_rowid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 1)
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE W (x INTEGER PRIMARY KEY, y) WITHOUT ROWID")
    conn.execute("INSERT INTO W VALUES (1, 2)")
    conn.execute("CREATE TABLE E (x)")
    conn.commit()
    conn.close()
    with SqliteFile(path) as db:
        assert not arrow_sqlite.worth_it(db, "W")
        assert not arrow_sqlite.worth_it(db, "E")
        assert sqlite_frames.read_int_frame(db, "W", {"x_out": "x", "y_out": "y"}).shape == (1, 2)


# --- the input is opened read-only, by its real name ------------------------------------------

AWKWARD_NAMES = [b"a?b#c%20d e.sqlite", b"caf\xe9\xff.sqlite", "ünï ço%de.sqlite".encode()]


@pytest.fixture
def awkward_files(tmp_path: Path) -> Iterator[list[Path]]:
    folder = os.fsencode(tmp_path / "in put?#%")
    os.mkdir(folder)
    paths: list[Path] = []
    for index, name in enumerate(AWKWARD_NAMES):
        path = Path(os.fsdecode(os.path.join(folder, name)))
        _make_table(path, {"x": [index, None, 10 + index]})
        paths.append(path)
    link = Path(os.fsdecode(os.path.join(folder, b"link#?.sqlite")))
    link.symlink_to(paths[0])
    paths.append(link)
    yield paths


def test_awkward_paths_read_the_right_file_and_write_nothing(
        awkward_files: list[Path]) -> None:
    """``?``, ``#``, ``%``, spaces, non-UTF-8 bytes and a symlink: each path reads its own
    file, nothing is written beside it, its bytes and mtime stay."""
    folder = awkward_files[0].parent
    before = {path: (sha256(path), path.stat().st_mtime_ns) for path in awkward_files}
    listing = sorted(os.listdir(folder))
    for index, path in enumerate(awkward_files):
        with SqliteFile(path) as db:
            fast = arrow_sqlite.read_int_frame(db, "T", {"x_out": "x"})
            reference = _sqlite3_result(db, "T", {"x_out": "x"}, "")
        assert fast is not None and isinstance(reference, pd.DataFrame)
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
        assert fast["x_out"].iloc[0] == index % len(AWKWARD_NAMES)
    assert sorted(os.listdir(folder)) == listing
    assert before == {path: (sha256(path), path.stat().st_mtime_ns) for path in awkward_files}


def test_no_lock_taken(tmp_path: Path) -> None:
    """A writer holding an exclusive lock does not block the read (no shared lock is taken),
    and the read leaves no lock that blocks a writer."""
    path = tmp_path / "t.sqlite"
    _make_table(path, {"x": [1, 2, 3]})
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with SqliteFile(path) as db:
            fast = arrow_sqlite.read_int_frame(db, "T", {"x_out": "x"})
        assert fast is not None and fast["x_out"].tolist() == [1, 2, 3]
        writer.execute("COMMIT")
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("COMMIT")
    finally:
        writer.close()


def test_driver_failure_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any driver error (here: the driver cannot be loaded) means None, never an exception."""
    import adbc_driver_sqlite

    def broken(uri: str) -> Any:
        raise OSError("driver missing")

    monkeypatch.setattr(adbc_driver_sqlite, "connect", broken)
    path = tmp_path / "t.sqlite"
    _make_table(path, {"x": [1]})
    with SqliteFile(path) as db:
        assert arrow_sqlite.read_int_frame(db, "T", {"x_out": "x"}) is None
