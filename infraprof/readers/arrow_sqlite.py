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

The driver's Arrow stream is read with ``nanoarrow`` (a small C library: importing it and the
driver adds ~3 MB), not pyarrow: with pyarrow installed, pandas 3 imports it at start-up
(+67 MB resident, ~0.1 s) and stores text in Arrow (twice the analyses' peak memory).

Used when :func:`available` (``nanoarrow`` and ``adbc_driver_sqlite`` importable — the
``fast`` extra — and ``INFRAPROF_NO_ARROW`` unset or ``0``) and the table holds at least
:data:`MIN_ROWS` rows by ``max(rowid)``; the driver is loaded on the first such table only.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.readers import validate
from infraprof.readers.row_order import stable_order
from infraprof.readers.sqlite_db import SqliteFile, read_only_uri

# Below this many rows the sqlite3 path is about as fast. Measured (docs/performance.md,
# "Round 5"): the Arrow read costs ~2 ms per table (open, prepare) plus ~8 ms once per
# process (importing the driver bindings and nanoarrow, loading the driver) and saves ~1.6 µs
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
    both ``nanoarrow`` and ``adbc_driver_sqlite`` installed (checked without importing them)."""
    if os.environ.get(NO_ARROW_ENV, "0") not in ("", "0"):
        return False
    return _installed()


@functools.cache
def _installed() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("nanoarrow", "adbc_driver_sqlite", "adbc_driver_manager"))


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
                   sort_by: str | None = None) -> pd.DataFrame | None:
    """``SELECT`` the integer ``columns`` (``out_name -> SQL expression``) of ``table``
    (``where``: the SQL after ``FROM``, e.g. ``ORDER BY start``) as the sqlite3 path's frame,
    checked by :func:`~infraprof.readers.validate.clean_table`; ``sort_by`` (an output column)
    orders the rows by a stable sort of that column (NULLs first), the order ``ORDER BY``
    gives. ``None`` when the Arrow read cannot give the sqlite3 path's answer (see the module
    docstring): the caller then reads with sqlite3."""
    arrays = _read_columns(db, table, columns, where)
    if arrays is None:
        return None
    order = None if sort_by is None else stable_order(arrays[sort_by])
    if order is not None:
        arrays = {name: values[order] for name, values in arrays.items()}
    out: dict[str, Any] = {}
    for name, values in arrays.items():
        nulls = values == _NULL
        if nulls.any():
            column = pd.array(values, dtype="Int64")
            column[nulls] = pd.NA
            out[name] = column
        else:
            out[name] = values
    frame = table_schema.as_frame(pd.DataFrame(out, copy=False))
    return validate.clean_table(frame, db.path, table, columns, db.issues)


def _read_columns(db: SqliteFile, table: str, columns: dict[str, str], where: str
                  ) -> dict[str, np.ndarray] | None:
    """Each column as an int64 array, NULL as ``INT64_MIN``; ``None`` when a column is not
    inferred as ``int64`` or the driver fails (including nanoarrow or the driver failing to
    load)."""
    try:
        import adbc_driver_manager
        import adbc_driver_sqlite
        import nanoarrow
    except ImportError:
        return None
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    try:
        with adbc_driver_sqlite.connect(read_only_uri(db.path)) as database, \
                adbc_driver_manager.AdbcConnection(database) as connection, \
                adbc_driver_manager.AdbcStatement(connection) as statement:
            statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            statement.set_sql_query(f'SELECT {select} FROM "{table}" {where}')
            handle, _ = statement.execute_query()
            stream = nanoarrow.ArrayStream(handle)
            schema = stream.schema
            if any(schema.field(i).type != nanoarrow.Type.INT64
                   for i in range(schema.n_fields)):
                stream.close()
                return None
            with stream:
                parts = [_batch_columns(batch, len(columns)) for batch in stream]
    except (adbc_driver_manager.Error, RuntimeError, ValueError, OSError):
        return None
    return _as_int64(parts, list(columns))


def _batch_columns(batch: Any, count: int) -> list[np.ndarray]:
    """The ``count`` int64 columns of one record batch (a nanoarrow struct array) as
    numpy-owned copies, NULL as ``INT64_MIN`` (from each column's validity bitmap: Arrow's
    little-endian bit order, bit clear = NULL)."""
    import nanoarrow

    out: list[np.ndarray] = []
    for index in range(count):
        child = batch.child(index)
        layout = nanoarrow.c_array(child)
        offset, length = layout.offset, layout.length
        validity, data = child.buffers
        values = np.frombuffer(data, dtype=np.int64)[offset:offset + length].copy()
        bits = np.frombuffer(validity, dtype=np.uint8)
        if bits.size:
            valid = np.unpackbits(bits, bitorder="little")[offset:offset + length]
            values[valid == 0] = _NULL
        out.append(values)
    return out


def _as_int64(parts: list[list[np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Per column, the batches' arrays concatenated (each column's parts released as soon as
    it is joined: the peak is the batches' copies plus one column)."""
    arrays: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        pieces = [batch[index] for batch in parts]
        for batch in parts:
            batch[index] = _EMPTY
        arrays[name] = (np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64))
    return arrays


_EMPTY = np.empty(0, dtype=np.int64)
