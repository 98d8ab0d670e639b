"""Arrow-native read of a table's integer columns, through ADBC's SQLite driver (issue 11).

:func:`read_int_frame` returns exactly what :func:`infraprof.readers.sqlite_frames.read_int_frame`
(the sqlite3 path) returns — same dtypes (``int64``; pandas ``Int64`` for a column with NULLs),
same values, same row order — at about a fifth of its CPU time and half its memory on a large
table (``docs/performance.md``, "Round 5"). The sqlite3 path stays the reference and the only
place that reports a bad value: this one gives up (returns ``None``) whenever it cannot give the
same answer, and the caller reads the table with sqlite3, which raises the ``InputError``
naming the table and column. The rule:

* the driver infers each column's Arrow type from the first batch of rows
  (:data:`BATCH_ROWS`): ``int64`` when the batch holds integers and NULLs only (also when it is
  all NULL), ``double`` / ``string`` / ``binary`` as soon as one value is a fraction, text or a
  blob. Any column not inferred as ``int64`` → ``None``;
* a later batch whose value does not fit the inferred type (a fraction, text or blob after
  integers, or after an all-NULL first batch) makes the driver raise ("Type mismatch") →
  ``None``; so does any other driver error (a damaged file: sqlite3 reports it);
* NULL is read as the sqlite3 path reads it (``INT64_MIN``, so a stored ``INT64_MIN`` is NULL
  there too), then the same ``validate.clean_table``.

The file is opened like :class:`~infraprof.readers.sqlite_db.SqliteFile` does, through the
same ``file:…?mode=ro&immutable=1`` URI (:func:`~infraprof.readers.sqlite_db.read_only_uri`):
nothing is written next to it and no lock is taken. The connection is in auto-commit mode (no
transaction is opened).

The driver's Arrow stream is read through the Arrow C stream interface with ``ctypes``
(:mod:`~infraprof.readers.arrow_stream`: the GIL is released while the driver steps SQLite),
not pyarrow: with pyarrow installed, pandas 3 imports it at start-up (+67 MB resident,
~0.1 s) and stores text in Arrow (twice the analyses' peak memory). :func:`read_ahead` starts
a table's read in another thread, to be taken by the :func:`read_int_frame` of the same
query: two tables are then read at once on two cores.

Used when :func:`available` (``adbc_driver_sqlite`` importable — the ``fast`` extra — and
``INFRAPROF_NO_ARROW`` unset or ``0``) and the table holds at least :data:`MIN_ROWS` rows by
``max(rowid)``; the driver is loaded on the first such table only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sqlite3
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.machine import usable_cores as _usable_cpus
from infraprof.memory import release_free_memory
from infraprof.readers import arrow_stream, validate
from infraprof.readers.row_order import stable_order
from infraprof.readers.sqlite_db import SqliteFile, read_only_uri

# Below this many rows the sqlite3 path is about as fast. Measured (docs/performance.md,
# "Round 5"): the Arrow read costs ~2 ms per table (open, prepare) plus ~8 ms once per
# process (importing the driver bindings, loading the driver) and saves ~1.6 µs
# per row of 8 columns; it pays from ~1 k rows, ~5 k for the first table. At 20 k rows it
# takes half the sqlite3 path's time.
MIN_ROWS = 20_000
# Rows per Arrow batch; also how many rows the driver's type inference sees. 64 k rows per
# batch read 1 M kernels in 0.42 CPU s against 0.58 s with the driver's default of 1024.
BATCH_ROWS = 65_536
_NULL = np.iinfo(np.int64).min
NO_ARROW_ENV = "INFRAPROF_NO_ARROW"


def available() -> bool:
    """True when the Arrow path may be used: not turned off by ``INFRAPROF_NO_ARROW=1`` and
    ``adbc_driver_sqlite`` installed (checked without importing it)."""
    if os.environ.get(NO_ARROW_ENV, "0") not in ("", "0"):
        return False
    return _installed()


@functools.cache
def _installed() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("adbc_driver_sqlite", "adbc_driver_manager"))


def worth_it(db: SqliteFile, table: str) -> bool:
    """Whether ``table`` is large enough (``max(rowid)`` ≥ :data:`MIN_ROWS`) for the Arrow
    path. ``max(rowid)`` is read from the b-tree's last page, not counted; a table without a
    rowid, or any SQLite error here, says no (the sqlite3 path then reads and reports)."""
    try:
        rows = db.conn.execute(f'SELECT max(rowid) FROM "{table}"').fetchall()
    except sqlite3.Error:
        return False
    largest = rows[0][0] if rows else None
    return isinstance(largest, int) and largest >= MIN_ROWS


def read_int_frame(db: SqliteFile, table: str, columns: dict[str, str], where: str = "",
                   sort_by: str | None = None, narrow: Collection[str] = ()
                   ) -> pd.DataFrame | None:
    """``SELECT`` the integer ``columns`` (``out_name -> SQL expression``) of ``table``
    (``where``: the SQL after ``FROM``, e.g. ``ORDER BY start``) as the sqlite3 path's frame,
    checked by :func:`~infraprof.readers.validate.clean_table`; ``sort_by`` (an output column)
    orders the rows by a stable sort of that column (NULLs first), the order ``ORDER BY``
    gives; the ``narrow`` columns without NULLs come in the narrowest signed type holding
    their values (as the sqlite3 path gives them). ``None`` when the Arrow read cannot give
    the sqlite3 path's answer (see the module docstring): the caller then reads with
    sqlite3."""
    arrays = _read_columns(db, table, columns, where, narrow)
    if arrays is None:
        return None
    order = None if sort_by is None else stable_order(arrays[sort_by])
    if order is not None:
        for name in arrays:  # one column at a time: the peak is the rows plus one column
            arrays[name] = arrays[name][order]
        del order
    out: dict[str, Any] = {}
    for name, values in arrays.items():
        nulls = values == _NULL if values.dtype == np.int64 else None
        if nulls is not None and nulls.any():
            column = pd.array(values, dtype="Int64")
            column[nulls] = pd.NA
            out[name] = column
        else:
            out[name] = values
    del arrays
    frame = table_schema.as_frame(pd.DataFrame(out, copy=False))
    return validate.clean_table(frame, db.path, table, columns, db.issues)


def _select(table: str, columns: dict[str, str], where: str) -> str:
    """The query of ``columns`` (``out_name -> SQL expression``) of ``table``."""
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    return f'SELECT {select} FROM "{table}" {where}'


def _read_columns(db: SqliteFile, table: str, columns: dict[str, str], where: str,
                  narrow: Collection[str]) -> dict[str, np.ndarray] | None:
    """Each column as an int64 array, NULL as ``INT64_MIN`` (a ``narrow`` one without NULLs
    in its narrowest type; the result of a read started ahead by :func:`read_ahead` when
    there is one); ``None`` when a column is not inferred as ``int64`` or the driver fails
    (including the driver failing to load)."""
    sql = _select(table, columns, where)
    pending = db.pending.pop(sql, None)
    if isinstance(pending, _PendingRead) and pending.narrow == frozenset(narrow):
        return pending.result()
    if pending is not None:
        pending.cancel()
    return _streamed_columns(db.path, sql, list(columns), frozenset(narrow), lambda: False)


def _streamed_columns(path: Path, sql: str, names: list[str], narrow: frozenset[str],
                      stop: Callable[[], bool]) -> dict[str, np.ndarray] | None:
    """:func:`_read_columns` of one query: the driver's Arrow stream read batch by batch
    (:mod:`~infraprof.readers.arrow_stream`, the GIL released while SQLite steps); ``None``
    too when ``stop()`` turned true before the end."""
    try:
        import adbc_driver_manager
        import adbc_driver_sqlite
    except ImportError:
        return None
    try:
        with adbc_driver_sqlite.connect(read_only_uri(path)) as database, \
                adbc_driver_manager.AdbcConnection(database) as connection, \
                adbc_driver_manager.AdbcStatement(connection) as statement:
            statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            statement.set_sql_query(sql)
            handle, _ = statement.execute_query()
            try:
                if not arrow_stream.is_int64(arrow_stream.field_formats(handle.address)):
                    return None
                narrow_at = {i for i, name in enumerate(names) if name in narrow}
                parts = list(arrow_stream.int64_batches(handle.address, len(names), _NULL,
                                                        narrow_at, stop))
            finally:
                handle.release()
    except (adbc_driver_manager.Error, arrow_stream.StreamError, RuntimeError, ValueError,
            OSError):
        return None
    if stop():
        return None
    return _joined(parts, names)


class _PendingRead:
    """:func:`_streamed_columns` running in a thread of its own (daemon: a cancelled read
    stops after its current batch; :meth:`cancel` waits for that), after the read ``after``
    has finished when one is given (one read ahead steps SQLite at a time)."""

    def __init__(self, path: Path, sql: str, names: list[str], narrow: frozenset[str],
                 after: _PendingRead | None = None) -> None:
        self.narrow = narrow
        self._stop = threading.Event()
        self._result: dict[str, np.ndarray] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path, sql, names, narrow, after),
                                        name="infraprof-read-ahead", daemon=True)
        self._thread.start()

    def _run(self, path: Path, sql: str, names: list[str], narrow: frozenset[str],
             after: _PendingRead | None) -> None:
        try:
            while after is not None and after.running() and not self._stop.is_set():
                after.wait(_POLL_S)
            if not self._stop.is_set():
                self._result = _streamed_columns(path, sql, names, narrow, self._stop.is_set)
        except BaseException as exc:  # re-raised in the thread that takes the result
            self._error = exc

    def running(self) -> bool:
        """Whether the read has not finished yet."""
        return self._thread.is_alive()

    def wait(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for the read to finish."""
        self._thread.join(timeout_s)

    def result(self) -> dict[str, np.ndarray] | None:
        """The columns (waiting for them), or what the read raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Stop the read after its current batch, wait for its thread, keep no result."""
        self._stop.set()
        self._thread.join()
        self._result = None


def read_ahead(db: SqliteFile, table: str, columns: dict[str, str], where: str = "",
               narrow: Collection[str] = ()) -> None:
    """Start the Arrow read of ``columns`` of ``table`` in another thread, for a later
    :func:`read_int_frame` of the same query to take (while this thread reads other tables:
    the SQLite stepping of both runs at once); a second read ahead starts when the one
    before it has finished (one thread beside the caller's steps SQLite at a time). Nothing
    when the Arrow path would not read the table (:func:`available`, :func:`worth_it`) or
    the process may use one CPU only. Cancelled when ``db`` closes."""
    if _usable_cpus() < 2 or not (available() and worth_it(db, table)):
        return
    sql = _select(table, columns, where)
    if sql not in db.pending:
        earlier = [read for read in db.pending.values() if isinstance(read, _PendingRead)]
        db.pending[sql] = _PendingRead(db.path, sql, list(columns), frozenset(narrow),
                                       earlier[-1] if earlier else None)


_POLL_S = 0.05
"""How often a chained read ahead looks for its cancellation while the one before runs."""


def _joined(parts: list[list[np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Per column, the batches' arrays concatenated, in the widest of their types (each
    column's parts released, and their pages returned, as soon as it is joined: the peak is
    the batches' copies plus one column)."""
    arrays: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        pieces = [batch[index] for batch in parts]
        for batch in parts:
            batch[index] = _EMPTY
        arrays[name] = (np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64))
        del pieces
        # The freed copies lie between other columns' copies: with large blocks served by
        # the heap (memory.heap_allocations) no joined column fits in them, and while two
        # tables are read at once their pages stayed resident beside the joined columns
        # (at 10 M kernels the read's peak: 2.4 instead of 1.5 GiB). They go back here.
        release_free_memory()
    return arrays


_EMPTY = np.empty(0, dtype=np.int64)
