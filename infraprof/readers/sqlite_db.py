"""Read-only access to an SQLite file with schema probing.

Inputs are opened through a ``file:...?mode=ro&immutable=1`` URI so nothing (not even a lock,
journal or ``-shm`` file) is written next to them, which also works on read-only media.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from infraprof.errors import InputError

if TYPE_CHECKING:
    from infraprof.readers.validate import DataIssue

SQLITE_MAGIC = b"SQLite format 3\x00"
_VERSIONED_RE = re.compile(r"^(?P<base>.+)_V(?P<n>\d+)$")


HEADER_BYTES = 64 << 10
"""How much of an export's start the cache keys hash (the SQLite header and first pages)."""


@dataclass(frozen=True)
class ExportIdentity:
    """What names the content of an SQLite export for infraprof's caches: its resolved path,
    size, mtime (ns), inode and the SHA-256 of its first :data:`HEADER_BYTES`."""

    resolved: str
    size: int
    mtime_ns: int
    inode: int
    header_sha256: str


def export_identity(path: Path) -> ExportIdentity | None:
    """:class:`ExportIdentity` of ``path``, or None when it is not a regular file starting with
    the SQLite magic or cannot be read. A FIFO or device is never opened (opening one may
    block); the regular-file check is repeated on the opened descriptor."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            header = os.read(fd, HEADER_BYTES)
        finally:
            os.close(fd)
        resolved = str(path.resolve())
    except (OSError, ValueError):
        return None
    if not header.startswith(SQLITE_MAGIC):
        return None
    return ExportIdentity(resolved, st.st_size, st.st_mtime_ns, st.st_ino,
                          hashlib.sha256(header).hexdigest())


def has_sqlite_header(path: Path) -> bool:
    """True when ``path`` starts with the 16-byte SQLite magic."""
    try:
        with path.open("rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def read_only_uri(path: Path) -> str:
    """The ``file:`` URI that opens ``path`` (resolved, its bytes percent-encoded, so ``?``,
    ``#``, ``%``, spaces and non-UTF-8 names work) read-only and immutable: SQLite writes
    nothing next to it and takes no lock."""
    return "file:" + urllib.parse.quote(os.fsencode(path.resolve())) + "?mode=ro&immutable=1"


def check_not_truncated(path: Path) -> None:
    """Raise :class:`InputError` when the file is shorter than its header says.

    SQLite reads a file cut after its last used page without complaint, silently losing rows;
    the header's page count (valid when bytes 92-95 equal the change counter at 24-27) catches
    that.
    """
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    if len(header) < 100:
        raise InputError(f"{path}: truncated SQLite file ({size} bytes, shorter than its header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if counter_valid and pages and size < pages * page_size:
        raise InputError(
            f"{path}: truncated SQLite file ({size} bytes, its header says {pages * page_size}); "
            "copy or re-export it with `nsys export --type sqlite`"
        )


class BackgroundRead(Protocol):
    """A read of the file running in another thread (:mod:`infraprof.readers.arrow_sqlite`)."""

    def cancel(self) -> None:
        """Stop it (between two batches of rows) and wait for its thread."""


class SqliteFile:
    """A read-only SQLite connection plus cached table/column probes, and the reads started
    ahead of their use in other threads (``pending``, by their SQL; cancelled on close)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        check_not_truncated(path)
        try:
            self.conn = sqlite3.connect(read_only_uri(path), uri=True)
            rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{path}: not a readable SQLite database ({exc}); the file may be truncated or "
                "corrupt, re-export it with `nsys export --type sqlite`"
            ) from exc
        self.tables: frozenset[str] = frozenset(str(r[0]) for r in rows)
        self._columns: dict[str, frozenset[str]] = {}
        self.issues: list[DataIssue] = []  # rows left out by readers.validate
        self.pending: dict[str, BackgroundRead] = {}

    def close(self) -> None:
        for pending in self.pending.values():
            pending.cancel()
        self.pending.clear()
        self.conn.close()

    def __enter__(self) -> SqliteFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def resolve_table(self, base: str) -> str | None:
        """The table for ``base``: the exact name if present, else its highest ``_V<n>``."""
        if base in self.tables:
            return base
        best: tuple[int, str] | None = None
        for name in self.tables:
            m = _VERSIONED_RE.match(name)
            if m and m.group("base") == base:
                n = int(m.group("n"))
                if best is None or n > best[0]:
                    best = (n, name)
        return best[1] if best else None

    def columns(self, table: str) -> frozenset[str]:
        if table not in self._columns:
            rows = self.query(f'PRAGMA table_info("{table}")')
            self._columns[table] = frozenset(str(r[1]) for r in rows)
        return self._columns[table]

    def has_column(self, table: str, column: str) -> bool:
        return column in self.columns(table)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{self.path}: SQLite read failed ({exc}); the file may be truncated or corrupt, "
                "re-export it with `nsys export --type sqlite`"
            ) from exc

    def chunks(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql``, ``size`` at a time (bounded memory for large tables)."""
        try:
            cursor = self.conn.execute(sql)
            while rows := cursor.fetchmany(size):
                yield rows
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{self.path}: SQLite read failed ({exc}); the file may be truncated or corrupt, "
                "re-export it with `nsys export --type sqlite`"
            ) from exc
