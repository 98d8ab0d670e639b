"""Typed reads of SQLite tables into DataFrames, checked at the reader boundary.

:func:`read_frame` selects columns as Python values; :func:`read_int_frame` reads integer-only
columns in chunks straight into int64 arrays (bounded memory). Both hand the rows to
:func:`~infraprof.readers.validate.clean_table`: wrong types and NULL identities are refused
(``InputError``, exit 3, naming table and column), NULL times and ``end < start`` rows are
dropped and counted into ``db.issues``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.readers import arrow_sqlite, validate
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
_CHUNK_ROWS = 65_536


def read_int_frame(db: SqliteFile, table: str, columns: dict[str, str], where: str = ""
               ) -> pd.DataFrame:
    """:func:`read_frame` for integer-only columns, read in chunks straight into int64 arrays,
    then checked by :func:`~infraprof.readers.validate.clean_table`.

    A column without nulls is ``int64``; one with nulls is pandas ``Int64`` (what the table
    specs and :func:`infraprof.tables.conform` expect). Peak memory is the arrays plus one chunk
    of Python rows (:data:`_CHUNK_ROWS`). A value that is not an integer (text, a fraction, a
    blob) raises ``InputError`` naming the table and the column: a last column flags such rows
    in the same scan, since numpy would truncate a fraction silently.

    A large table is read through Arrow when it can be (:mod:`~infraprof.readers.arrow_sqlite`:
    the same frame, or ``None`` and this path, which reports bad values).
    """
    if arrow_sqlite.available() and arrow_sqlite.worth_it(db, table):
        frame = arrow_sqlite.read_int_frame(db, table, columns, where)
        if frame is not None:
            return frame
    select = ", ".join(f"coalesce({expr}, {_NULL}) AS {name}" for name, expr in columns.items())
    wrong = " OR ".join(f"typeof({expr}) NOT IN ('integer', 'null')" for expr in columns.values())
    chunks: list[np.ndarray] = []
    try:
        for rows in db.chunks(f'SELECT {select}, ({wrong}) FROM "{table}" {where}',
                              _CHUNK_ROWS):
            chunks.append(np.array(rows, dtype=np.int64))
    except (TypeError, ValueError, OverflowError):
        _raise_not_integer(db, table, columns)
    data = (np.concatenate(chunks) if chunks
            else np.empty((0, len(columns) + 1), dtype=np.int64))
    if data[:, -1].any():
        _raise_not_integer(db, table, columns)
    out: dict[str, Any] = {}
    for i, name in enumerate(columns):
        values = np.ascontiguousarray(data[:, i])
        nulls = values == _NULL
        if nulls.any():
            column = pd.array(values, dtype="Int64")
            column[nulls] = pd.NA
            out[name] = column
        else:
            out[name] = values
    frame = table_schema.as_frame(pd.DataFrame(out))
    return validate.clean_table(frame, db.path, table, columns, db.issues)


def _raise_not_integer(db: SqliteFile, table: str, columns: dict[str, str]) -> None:
    """The ``InputError`` for a non-integer value, naming the first column that holds one."""
    for expr in columns.values():
        rows = db.query(f"SELECT count(*), min(quote({expr})) FROM \"{table}\" "
                        f"WHERE typeof({expr}) NOT IN ('integer', 'null')")
        if rows and rows[0][0]:
            raise InputError(
                f"{db.path}: table {table}, column {expr.strip().strip(chr(34))}: {rows[0][0]} "
                f"value(s) are not 64-bit integers (e.g. {str(rows[0][1])[:40]}); the export is "
                "corrupt or was modified, re-export it with `nsys export --type sqlite`")
    raise InputError(f"{db.path}: table {table} holds a value that is not a 64-bit integer; "
                     "re-export it with `nsys export --type sqlite`")
