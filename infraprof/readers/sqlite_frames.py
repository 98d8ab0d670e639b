"""Typed reads of SQLite tables into DataFrames, checked at the reader boundary.

:func:`read_frame` selects columns as Python values; :func:`read_int_frame` reads integer-only
columns in chunks straight into int64 arrays (bounded memory). Both hand the rows to
:func:`~infraprof.readers.validate.clean_table`: wrong types and NULL identities are refused
(``InputError``, exit 3, naming table and column), NULL times and ``end < start`` rows are
dropped and counted into ``db.issues``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.int_widths import narrowest_array
from infraprof.readers import arrow_sqlite, validate
from infraprof.readers.row_order import stable_order
from infraprof.readers.sqlite_db import SqliteFile


def read_frame(db: SqliteFile, table: str, columns: dict[str, str], where: str = ""
               ) -> pd.DataFrame:
    """SELECT the wanted columns (``out_name -> SQL expression``) of ``table``, checked by
    :func:`~infraprof.readers.validate.clean_table` (bad rows dropped into ``db.issues``)."""
    select = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    rows = db.query(f'SELECT {select} FROM "{table}" {where}')
    if not rows:
        return table_schema.as_frame(pd.DataFrame(
            {name: pd.Series([], dtype=object) for name in columns}))
    data = list(zip(*rows, strict=True))
    frame = table_schema.as_frame(pd.DataFrame(
        {name: pd.Series(col) for name, col in zip(columns, data, strict=True)}))
    return validate.clean_table(frame, db.path, table, columns, db.issues)


_NULL = np.iinfo(np.int64).min
_CHUNK_ROWS = 16_384  # rows per fetchmany: measured ~5 % less CPU than 64 k (docs/performance.md)


def read_int_frame(db: SqliteFile, table: str, columns: dict[str, str], where: str = "",
                   sort_by: str | None = None, narrow: Collection[str] = ()) -> pd.DataFrame:
    """:func:`read_frame` for integer-only columns, read in chunks straight into int64 arrays,
    then checked by :func:`~infraprof.readers.validate.clean_table`.

    A column without nulls is ``int64``; one with nulls is pandas ``Int64`` (what the table
    specs and :func:`infraprof.tables.conform` expect). ``sort_by`` (an output column, e.g.
    ``"start_ns"``) orders the rows by it as ``ORDER BY`` would, without SQLite's sort: the
    rows come in table (rowid) order and are sorted by a stable argsort, which is the order
    SQLite's sorter gives (it keeps equal keys in scan order; nulls, read as ``INT64_MIN``,
    first). A value that is not an integer (text, a fraction, a blob) raises ``InputError``
    naming the table and the column: numpy builds each chunk from the Python values and infers
    ``int64`` only when every value is an ``int``; any other chunk is checked in SQL
    (:func:`_checked_chunk`). Peak memory is the arrays plus one chunk. The ``narrow``
    columns (ids, whose width the table specs narrow anyway) come without nulls in the
    narrowest signed type holding their values (:func:`~infraprof.int_widths.narrowest_array`).

    A large table is read through Arrow when it can be (:mod:`~infraprof.readers.arrow_sqlite`:
    the same frame, or ``None`` and this path, which reports bad values).
    """
    if arrow_sqlite.available() and arrow_sqlite.worth_it(db, table):
        arrow_frame = arrow_sqlite.read_int_frame(db, table, columns, where, sort_by, narrow)
        if arrow_frame is not None:
            return arrow_frame
    select = ", ".join(f"coalesce({expr}, {_NULL})" for expr in columns.values())
    block = _read_block(db, table, columns, f'SELECT {select} FROM "{table}" {where}',
                        db.query(f'SELECT count(*) FROM "{table}" {where}')[0][0])
    if sort_by is not None:
        _sort_in_place(block, list(columns).index(sort_by))
    frame = pd.DataFrame(block.T, columns=list(columns), copy=False)
    for i, name in enumerate(columns):
        nulls = block[i] == _NULL
        if nulls.any():
            column = pd.array(block[i], dtype="Int64")
            column[nulls] = pd.NA
            frame[name] = column
        elif name in narrow:
            frame[name] = narrowest_array(block[i])
    return validate.clean_table(frame, db.path, table, columns, db.issues)


def read_ahead(db: SqliteFile, table: str, columns: dict[str, str], where: str = "",
               narrow: Collection[str] = ()) -> None:
    """Start reading what :func:`read_int_frame` of the same arguments will return, in another
    thread when the Arrow path can (:func:`infraprof.readers.arrow_sqlite.read_ahead`;
    nothing otherwise: :func:`read_int_frame` then reads as usual)."""
    if arrow_sqlite.available():
        arrow_sqlite.read_ahead(db, table, columns, where, narrow)


def _inferred_int64(rows: list[tuple[Any, ...]]) -> np.ndarray | None:
    """``rows`` as an int64 array when numpy infers ``int64`` from them, which it does only
    when every value is a Python ``int`` (a ``float`` gives float64, a ``str`` or ``bytes`` a
    text dtype); else None."""
    try:
        chunk = np.array(rows)
    except (TypeError, ValueError):  # values numpy cannot hold in one array: never all ints
        return None
    return chunk if chunk.dtype == np.int64 else None


def _read_block(db: SqliteFile, table: str, columns: dict[str, str], sql: str, rows: int
                ) -> np.ndarray:
    """The int64 rows of ``sql`` (``rows`` expected) as one C-contiguous ``(columns, rows)``
    block, the layout of a pandas block, so the frame is built from it without another copy.
    Each chunk is copied into place as it comes: peak memory is the block plus one chunk."""
    block = np.empty((len(columns), rows), dtype=np.int64)
    extra: list[np.ndarray] = []  # rows beyond the count (a file changed while read)
    at = 0
    for part in db.chunks(sql, _CHUNK_ROWS):
        chunk = _inferred_int64(part)
        if chunk is None:
            chunk = _checked_chunk(db, table, columns, part)
        fits = min(len(chunk), rows - at)
        block[:, at : at + fits] = chunk[:fits].T
        if fits < len(chunk):
            extra.append(chunk[fits:].T)
        at += fits
    if at < rows:
        block = np.ascontiguousarray(block[:, :at])
    return np.concatenate([block, *extra], axis=1) if extra else block


def _sort_in_place(block: np.ndarray, row: int) -> None:
    """Reorder ``block``'s columns (the table rows) by a stable argsort of its ``row``, one
    row at a time (peak: one row more), unless they are in that order already."""
    order = stable_order(block[row])
    if order is None:
        return
    for i in range(len(block)):
        block[i] = block[i][order]


def _checked_chunk(db: SqliteFile, table: str, columns: dict[str, str],
                   rows: list[tuple[Any, ...]]) -> np.ndarray:
    """``rows`` as int64 after proving in SQL that the table holds integers (and nulls) only
    in ``columns``; ``InputError`` naming the first column that holds something else."""
    _raise_not_integer(db, table, columns)
    try:
        return np.array(rows, dtype=np.int64).reshape(len(rows), len(columns))
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{db.path}: table {table} holds a value that is not a 64-bit "
                         "integer; re-export it with `nsys export --type sqlite`") from None


def _raise_not_integer(db: SqliteFile, table: str, columns: dict[str, str]) -> None:
    """The ``InputError`` for a non-integer value, naming the first column that holds one
    (returns when every value of ``columns`` is an integer or null)."""
    for expr in columns.values():
        rows = db.query(f"SELECT count(*), min(quote({expr})) FROM \"{table}\" "
                        f"WHERE typeof({expr}) NOT IN ('integer', 'null')")
        if rows and rows[0][0]:
            raise InputError(
                f"{db.path}: table {table}, column {expr.strip().strip(chr(34))}: {rows[0][0]} "
                f"value(s) are not 64-bit integers (e.g. {str(rows[0][1])[:40]}); the export is "
                "corrupt or was modified, re-export it with `nsys export --type sqlite`")
