"""``read_int_frame``: the numpy sort equals SQLite's ``ORDER BY`` (ties and nulls included),
values and nulls are kept exactly, and any non-integer value is refused naming its column,
in whichever chunk it lies (the chunk type proof and its SQL fallback)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infraprof.errors import InputError
from infraprof.readers import sqlite_frames
from infraprof.readers.sqlite_db import SqliteFile
from infraprof.readers.sqlite_frames import read_int_frame

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
TABLE = "T"
COLUMNS = {"start_ns": "start", "end_ns": '"end"', "a": "a", "b": "b"}
INT64 = st.integers(-(2**63) + 1, 2**63 - 1)
# Few distinct starts, so that ties are common; NULL starts and ends too.
ROW = st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.one_of(st.none(), st.integers(0, 9)),
                st.one_of(st.none(), INT64), INT64)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Three rows per chunk, so that a table spans many chunks."""
    monkeypatch.setattr(sqlite_frames, "_CHUNK_ROWS", 3)
    yield


def _table(path: Path, rows: list[tuple[object, ...]], declared: str = "INTEGER") -> Path:
    if path.exists():
        path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute(f'CREATE TABLE {TABLE} (start {declared}, "end" {declared}, a {declared}, '
                     f"b {declared})")
        conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", rows)
    conn.close()
    return path


def _expected(path: Path) -> pd.DataFrame:
    """The rows as SQLite orders them (``ORDER BY start``), NULL times and ``end < start`` rows
    left out, columns with a NULL as ``Int64``: an independent reading of the table."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f'SELECT start, "end", a, b FROM {TABLE} ORDER BY start').fetchall()
    conn.close()
    kept = [r for r in rows if r[0] is not None and r[1] is not None and r[1] >= r[0]]
    out = {}
    for i, name in enumerate(COLUMNS):
        values = [r[i] for r in rows]
        dtype = "Int64" if None in values else "int64"
        out[name] = pd.Series([r[i] for r in kept], dtype=dtype)
    return pd.DataFrame(out)


@SETTINGS
@given(rows=st.lists(ROW, max_size=25))
def test_sorted_read_equals_sqlite_order_by(rows: list[tuple[object, ...]], tmp_path: Path,
                                            small_chunks: None) -> None:
    path = _table(tmp_path / "t.sqlite", rows)
    with SqliteFile(path) as db:
        numpy_sorted = read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
        sql_sorted = read_int_frame(db, TABLE, COLUMNS, "ORDER BY start")
    expected = _expected(path)
    pd.testing.assert_frame_equal(numpy_sorted.reset_index(drop=True), expected)
    pd.testing.assert_frame_equal(sql_sorted.reset_index(drop=True), expected)


def test_many_ties_keep_sqlite_order(tmp_path: Path) -> None:
    """200 k rows with 50 distinct starts and rowid gaps: SQLite's sorter spills to temporary
    files and merges them; the stable argsort gives the same order."""
    rng = np.random.default_rng(5)
    starts = rng.integers(0, 50, 200_000)
    rows = [(int(s), int(s) + 1, i, i % 7) for i, s in enumerate(starts.tolist())]
    path = _table(tmp_path / "t.sqlite", rows)
    with sqlite3.connect(path) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE a % 11 = 0")
    conn.close()
    with SqliteFile(path) as db:
        frame = read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
    pd.testing.assert_frame_equal(frame, _expected(path))


BAD = st.sampled_from(["abc", "12", 1.5, 3.0, -0.5, b"\x00\xff", b"7", 1e300])


@SETTINGS
@given(rows=st.lists(ROW, min_size=1, max_size=12), data=st.data(), bad=BAD,
       declared=st.sampled_from(["INTEGER", ""]))
def test_non_integer_in_any_column_is_refused(rows: list[tuple[object, ...]],
                                              data: st.DataObject, bad: object, declared: str,
                                              tmp_path: Path, small_chunks: None) -> None:
    at = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from(range(4)))
    row = list(rows[at])
    row[column] = bad
    rows = [*rows[:at], tuple(row), *rows[at + 1:]]
    path = _table(tmp_path / "t.sqlite", rows, declared)
    with sqlite3.connect(path) as conn:
        stored = conn.execute(f'SELECT typeof({list(COLUMNS.values())[column]}) FROM {TABLE} '
                              f"WHERE rowid = {at + 1}").fetchone()[0]
    conn.close()
    with SqliteFile(path) as db:
        if stored == "integer":  # INTEGER affinity stored '12' and 3.0 as integers
            read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
            return
        with pytest.raises(InputError) as caught:
            read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
    name = ["start", "end", "a", "b"][column]
    assert f"table {TABLE}, column {name}:" in str(caught.value)


def test_nulls_stay_missing_and_other_columns_stay_int64(tmp_path: Path) -> None:
    rows = [(i, i + 1, None if i % 3 else i * 10, 2**62 + i) for i in range(10)]
    path = _table(tmp_path / "t.sqlite", rows)
    with SqliteFile(path) as db:
        frame = read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
    assert frame["a"].dtype == "Int64" and int(frame["a"].isna().sum()) == 6
    assert frame["a"].dropna().tolist() == [0, 30, 60, 90]
    assert [str(frame[c].dtype) for c in ("start_ns", "end_ns", "b")] == ["int64"] * 3
    assert frame["b"].tolist() == [2**62 + i for i in range(10)]


def test_empty_table_has_the_columns(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.sqlite", [])
    with SqliteFile(path) as db:
        frame = read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
    assert list(frame.columns) == list(COLUMNS) and frame.empty


@pytest.mark.parametrize("expected", [0, 4, 10, 25])
def test_block_holds_every_row_whatever_the_count_said(expected: int, tmp_path: Path,
                                                       small_chunks: None) -> None:
    """The row count is taken before the rows are read; a file that changed in between (or a
    wrong count) still gives every row read, in order, as one C-contiguous block."""
    rows = [(i, i + 1, -i, 2**40 + i) for i in range(10)]
    path = _table(tmp_path / "t.sqlite", rows)
    with SqliteFile(path) as db:
        block = sqlite_frames._read_block(db, TABLE, COLUMNS, f"SELECT * FROM {TABLE}",
                                          expected)
    assert block.flags.c_contiguous
    assert block.T.tolist() == [list(r) for r in rows]
