"""The Arrow C stream read through ctypes (``readers/arrow_stream.py``) and the reads started
ahead in another thread (``arrow_sqlite.read_ahead``): hand-built batches with offsets, NULLs
and narrow columns; a producer's error; a read ahead taken, mismatched, failing, cancelled.
"""

from __future__ import annotations

import ctypes
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import nsys_required

from infraprof.errors import InputError
from infraprof.readers import arrow_sqlite, arrow_stream, sqlite_frames
from infraprof.readers.sqlite_db import SqliteFile

NULL = np.iinfo(np.int64).min

if not arrow_sqlite._installed():
    if nsys_required():
        pytest.fail("adbc-driver-sqlite is required in CI (pip install -e .[dev])", pytrace=False)
    pytest.skip("adbc-driver-sqlite not installed (the `fast` extra)", allow_module_level=True)


class _Child:
    """One int64 child array: its data and validity buffers kept alive with it."""

    def __init__(self, values: list[int], valid: list[bool] | None, offset: int) -> None:
        self.data = (ctypes.c_int64 * len(values))(*values)
        bits = np.packbits(np.array(valid or [True] * len(values)), bitorder="little")
        self.bitmap = (ctypes.c_uint8 * len(bits))(*bits.tolist())
        self.buffers = (ctypes.c_void_p * 2)(
            ctypes.addressof(self.bitmap) if valid is not None else None,
            ctypes.addressof(self.data))
        self.array = arrow_stream.ArrowArray(
            length=len(values) - offset, null_count=0 if valid is None else valid.count(False),
            offset=offset, n_buffers=2, n_children=0,
            buffers=ctypes.cast(self.buffers, ctypes.POINTER(ctypes.c_void_p)))


def _struct(children: list[_Child], length: int, offset: int) -> tuple[Any, Any]:
    pointers = (ctypes.POINTER(arrow_stream.ArrowArray) * len(children))(
        *[ctypes.pointer(child.array) for child in children])
    batch = arrow_stream.ArrowArray(
        length=length, null_count=0, offset=offset, n_buffers=1, n_children=len(children),
        children=ctypes.cast(pointers, ctypes.POINTER(ctypes.POINTER(arrow_stream.ArrowArray))))
    return batch, pointers


def test_batch_columns_offsets_nulls_and_narrowing() -> None:
    """The struct's offset and each child's add up; a clear validity bit is ``null``; a
    narrow column without NULLs comes in its narrowest type, one with NULLs in int64."""
    wide = _Child([9, 9, 9, 2**40, -5, 7, 8], None, 2)
    small = _Child([0, 0, 1, 2, 3, -100, 100], None, 2)
    holes = _Child([1, 2, 3, 4, 5, 6, 7], [True, True, True, False, True, True, False], 2)
    batch, _keep = _struct([wide, small, holes], length=3, offset=1)
    out = arrow_stream._batch_columns(batch, 3, NULL, narrow={1, 2})
    # rows 3, 4, 5 of each child: the struct's offset (1) plus the child's (2)
    assert out[0].tolist() == [2**40, -5, 7] and out[0].dtype == np.int64
    assert out[1].tolist() == [2, 3, -100] and out[1].dtype == np.int8
    assert out[2].tolist() == [NULL, 5, 6] and out[2].dtype == np.int64
    wide.data[4] = 0  # the columns are copies, not views of the producer's buffers
    assert out[0][1] == -5
    unknown = _Child([4, 5, 6], [True, True, True], 0)
    unknown.array.null_count = -1  # "not computed", with every bit set: no NULL, narrowed
    batch, _keep = _struct([unknown], length=3, offset=0)
    assert arrow_stream._batch_columns(batch, 1, NULL, narrow={0})[0].dtype == np.int8
    with pytest.raises(arrow_stream.StreamError):
        arrow_stream._batch_columns(batch, 2, NULL, narrow=())


@pytest.mark.filterwarnings("ignore:memory leak in callback function")
def test_a_producer_error_is_raised_with_its_message() -> None:
    """``get_next`` returning an errno: :class:`StreamError` with ``get_last_error``'s text;
    batches before it are yielded and released."""
    released: list[int] = []
    child = _Child([1, 2, 3], None, 0)
    calls = {"next": 0}

    @ctypes.CFUNCTYPE(None, ctypes.POINTER(arrow_stream.ArrowArray))
    def release(array: Any) -> None:
        released.append(1)
        array.contents.release = ctypes.cast(None, type(array.contents.release))

    holder: list[Any] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(arrow_stream.ArrowArrayStream),
                      ctypes.POINTER(arrow_stream.ArrowArray))
    def get_next(_stream: Any, out: Any) -> int:
        calls["next"] += 1
        if calls["next"] > 1:
            return 5  # EIO
        batch, pointers = _struct([child], length=3, offset=0)
        holder.append(pointers)
        batch.release = release
        ctypes.memmove(out, ctypes.byref(batch), ctypes.sizeof(batch))
        return 0

    @ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.POINTER(arrow_stream.ArrowArrayStream))
    def last_error(_stream: Any) -> bytes:
        return b"Type mismatch in column 0"

    stream = arrow_stream.ArrowArrayStream(get_next=get_next, get_last_error=last_error)
    batches = arrow_stream.int64_batches(ctypes.addressof(stream), 1, NULL)
    assert next(batches)[0].tolist() == [1, 2, 3]
    assert released == [1]
    with pytest.raises(arrow_stream.StreamError, match="Type mismatch in column 0"):
        next(batches)


def _table(path: Path, rows: int, bad_row: int | None = None) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start, \"end\", correlationId)")
    values: list[tuple[Any, ...]] = [(rows - i, rows - i + 5, i % 300) for i in range(rows)]
    if bad_row is not None:
        values[bad_row] = (1, 2, "x7")
    conn.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, ?)", values)
    conn.commit()
    conn.close()


COLUMNS = {"start_ns": "start", "end_ns": '"end"', "correlation_id": "correlationId"}
TABLE = "CUPTI_ACTIVITY_KIND_RUNTIME"


@pytest.fixture
def ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small tables go through Arrow in small batches, and a read ahead starts even where
    the test machine has one CPU."""
    monkeypatch.delenv(arrow_sqlite.NO_ARROW_ENV, raising=False)
    monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 0)
    monkeypatch.setattr(arrow_sqlite, "BATCH_ROWS", 64)
    monkeypatch.setattr(arrow_sqlite, "_usable_cpus", lambda: 2)


def _reference(db: SqliteFile, narrow: set[str]) -> pd.DataFrame | str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
        try:
            return sqlite_frames.read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns",
                                                narrow=narrow)
        except InputError as exc:
            return str(exc)


@pytest.mark.usefixtures("ahead")
@pytest.mark.parametrize(("started", "taken"), [({"correlation_id"}, {"correlation_id"}),
                                                (set(), {"correlation_id"}),
                                                ({"correlation_id"}, set())])
def test_a_read_ahead_gives_the_same_frame(tmp_path: Path, started: set[str],
                                           taken: set[str]) -> None:
    """Started ahead and taken by the same query: the sqlite3 path's frame (the narrow id
    column int16), and the read is consumed; asked with other narrow columns: read again."""
    path = tmp_path / "t.sqlite"
    _table(path, 1000)
    with SqliteFile(path) as db:
        sqlite_frames.read_ahead(db, TABLE, COLUMNS, narrow=started)
        assert len(db.pending) == 1
        frame = sqlite_frames.read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns",
                                             narrow=taken)
        assert not db.pending
        reference = _reference(db, taken)
    assert isinstance(reference, pd.DataFrame)
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    assert str(frame["correlation_id"].dtype) == ("int16" if taken else "int64")
    assert frame["start_ns"].is_monotonic_increasing


@pytest.mark.usefixtures("ahead")
def test_a_failed_read_ahead_falls_back_to_the_sqlite3_error(tmp_path: Path) -> None:
    """A text id in a later batch: the read ahead gives up and the sqlite3 path raises its
    one-line ``InputError`` naming the table and column."""
    path = tmp_path / "t.sqlite"
    _table(path, 1000, bad_row=900)
    with SqliteFile(path) as db:
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        with pytest.raises(InputError) as raised:
            sqlite_frames.read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
        reference = _reference(db, set())
    assert str(raised.value) == reference
    assert "column correlationId" in reference


def _slow_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, set[Any]]:
    """A 20 000-row table read a row per batch (a read ahead still runs when the file
    closes), and the threads running before any read starts."""
    monkeypatch.setattr(arrow_sqlite, "BATCH_ROWS", 1)
    path = tmp_path / "t.sqlite"
    _table(path, 20_000)
    return path, {thread.ident for thread in threading.enumerate()}


@pytest.mark.usefixtures("ahead")
def test_closing_the_file_cancels_a_read_ahead(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A read ahead nobody takes stops when the file closes: its thread ends, no result is
    kept."""
    path, before = _slow_table(tmp_path, monkeypatch)
    with SqliteFile(path) as db:
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        pending = db.pending[next(iter(db.pending))]
    assert not db.pending
    assert isinstance(pending, arrow_sqlite._PendingRead)
    assert pending.result() is None
    assert {thread.ident for thread in threading.enumerate()} <= before


@pytest.mark.usefixtures("ahead")
def test_reads_ahead_run_one_after_the_other(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two reads ahead: the second steps SQLite only once the first has finished (one
    thread beside the caller's at a time), and each gives the sqlite3 path's frame, taken in
    either order."""
    path = tmp_path / "t.sqlite"
    _table(path, 3000)
    spans: dict[str, tuple[float, float]] = {}
    streamed = arrow_sqlite._streamed_columns

    def timed(path: Path, sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        out = streamed(path, sql, *args)
        spans[sql] = (began, time.perf_counter())
        return out

    monkeypatch.setattr(arrow_sqlite, "_streamed_columns", timed)
    other = {"start_ns": "start", "correlation_id": "correlationId"}
    with SqliteFile(path) as db:
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        sqlite_frames.read_ahead(db, TABLE, other)
        assert len(db.pending) == 2
        second = sqlite_frames.read_int_frame(db, TABLE, other, sort_by="start_ns")
        first = sqlite_frames.read_int_frame(db, TABLE, COLUMNS, sort_by="start_ns")
        assert not db.pending
        reference = _reference(db, set())
    assert isinstance(reference, pd.DataFrame)
    pd.testing.assert_frame_equal(first, reference, check_exact=True)
    pd.testing.assert_frame_equal(second, reference[["start_ns", "correlation_id"]],
                                  check_exact=True)
    (_, first_end), (second_start, _) = spans.values()
    assert first_end <= second_start


@pytest.mark.usefixtures("ahead")
def test_closing_the_file_cancels_chained_reads_ahead(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A read ahead waiting for the one before it is cancelled too when the file closes,
    in whichever order the two are cancelled: both threads end, no result is kept."""
    path, before = _slow_table(tmp_path, monkeypatch)
    with SqliteFile(path) as db:
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        sqlite_frames.read_ahead(db, TABLE, {"start_ns": "start"})
        reads = list(db.pending.values())
        db.pending = dict(reversed(list(db.pending.items())))  # the waiting one first
    assert not db.pending
    for read in reads:
        assert isinstance(read, arrow_sqlite._PendingRead)
        assert read.result() is None
    assert {thread.ident for thread in threading.enumerate()} <= before


def test_no_read_ahead_on_one_cpu_or_without_arrow(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One usable CPU, ``INFRAPROF_NO_ARROW=1`` or a table under ``MIN_ROWS``: nothing is
    started, and the read is the usual one."""
    path = tmp_path / "t.sqlite"
    _table(path, 300)
    monkeypatch.delenv(arrow_sqlite.NO_ARROW_ENV, raising=False)
    monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 0)
    with SqliteFile(path) as db:
        monkeypatch.setattr(arrow_sqlite, "_usable_cpus", lambda: 1)
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        assert not db.pending
        monkeypatch.setattr(arrow_sqlite, "_usable_cpus", lambda: 4)
        monkeypatch.setenv(arrow_sqlite.NO_ARROW_ENV, "1")
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        assert not db.pending
        monkeypatch.delenv(arrow_sqlite.NO_ARROW_ENV)
        monkeypatch.setattr(arrow_sqlite, "MIN_ROWS", 301)
        sqlite_frames.read_ahead(db, TABLE, COLUMNS)
        assert not db.pending
