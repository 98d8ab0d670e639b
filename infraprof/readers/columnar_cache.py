"""Columnar cache of the normalized tables read from an nsys SQLite export.

Reading a large export costs seconds (SQLite decoding, StringIds lookups); re-analysing the same
file reads one ``.npy`` file per column instead. An entry lives in ``<cache dir>/tables/``
(``$INFRAPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/infraprof``, else ``~/.cache/infraprof``;
never beside the input) and holds:

* ``columns.json``: reader version, the source's key, metadata, per table its columns and
  dtypes, and per file its size and Adler-32 checksum;
* per column: integer/``bool`` values as ``.npy`` (in the column's own width); nullable
  ``Int8`` … ``Int64`` as values + mask;
  text as ``int32`` codes (-1 for null) + the distinct strings in the manifest; a
  Categorical text column (:func:`~infraprof.tables.text_category`) as its own codes + its
  categories, loaded back as the same Categorical (no factorize on store or load).

Key: the source's resolved path, size, mtime (ns), a SHA-256 of its first 64 KiB (the SQLite
header and first pages) and whether callchains were read; versioned by
:data:`READER_VERSION` (bump it whenever the reader's output changes). The manifest records
whether every column was read (``all_columns``): an entry of an analysis read (without the
:data:`~infraprof.tables.ANALYSIS_OMITS` columns) never serves a read that needs them.
Entries are written to a temporary directory and renamed into place (atomic), in a thread
of their own while the analyses run (:func:`wait_for_writes` waits for them; so does a
later read, and the interpreter at exit); an entry whose
files do not match their recorded sizes and checksums is removed and rebuilt. Any cache
failure falls back to reading the export: the cache never changes a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from infraprof.cache_paths import cache_dir
from infraprof.readers.nsys_sqlite import NsysTables, read_nsys_sqlite
from infraprof.readers.sqlite_db import export_identity
from infraprof.readers.validate import DataIssue
from infraprof.tables import ANALYSIS_OMITS

READER_VERSION = 5  # 2: data_quality, unified-memory fault tables; 3: all_columns;
# 4: name columns as Categoricals; 5: ids in their narrowest integer type
_NULLABLE_INTS = ("Int8", "Int16", "Int32", "Int64")
_META_FIELDS = ("meta", "capture", "session_start_utc_ns", "analysis_start_ns", "analysis_end_ns")


def tables_dir() -> Path:
    """Where the columnar cache entries live."""
    return cache_dir() / "tables"


def source_key(path: Path, with_callchains: bool) -> tuple[str, str]:
    """``(path digest, content digest)`` naming the cache entry of ``path``
    (:func:`~infraprof.readers.sqlite_db.export_identity`); ``OSError`` when ``path`` is not
    a regular, readable SQLite file."""
    identity = export_identity(path)
    if identity is None:
        raise OSError(f"{path}: not a regular SQLite file")
    where = hashlib.sha256(identity.resolved.encode("utf-8", "surrogateescape")).hexdigest()
    what = (f"{READER_VERSION}|{identity.size}|{identity.mtime_ns}|{identity.header_sha256}|"
            f"{int(with_callchains)}")
    return where[:12], hashlib.sha256(what.encode()).hexdigest()[:20]


def read_nsys_cached(path: Path, with_callchains: bool = True, use_cache: bool = True,
                     read: Callable[[Path, bool, bool], NsysTables] = read_nsys_sqlite,
                     all_columns: bool = True) -> NsysTables:
    """:func:`read_nsys_sqlite` through the columnar cache (``use_cache=False``: no cache).

    An entry holds what was read: one read with ``all_columns`` serves both kinds of reads
    (an analysis read loads only its columns from it); an entry of an analysis read does not
    serve an ``all_columns`` read, which reads the export again and replaces the entry."""
    if not use_cache:
        return read(path, with_callchains, all_columns)
    try:
        where, what = source_key(path, with_callchains)
    except OSError:
        return read(path, with_callchains, all_columns)
    entry = tables_dir() / f"{where}-{what}"
    cached = load_entry(entry, path, all_columns)  # after this process's writes: complete
    if cached is not None:
        return cached
    tables = read(path, with_callchains, all_columns)
    _store_in_background(tables, entry, where)
    return tables


_writes: list[threading.Thread] = []
_writes_lock = threading.Lock()


def _store_in_background(tables: NsysTables, entry: Path, where: str) -> None:
    """:func:`store_entry` in a thread of its own, while the caller goes on (the analyses of
    a cold run: the write is file output and checksums, which release the GIL; at 10 M
    kernels ~1.5 s of a cold run's wall time). It writes shallow copies of the frames
    (copy-on-write: a later change to a frame does not reach the entry). Not a daemon
    thread: the interpreter waits for it at exit, so an entry is never left half-written;
    :func:`wait_for_writes` waits for it sooner."""
    snapshot = dataclasses.replace(tables, frames={
        name: frame.copy(deep=False) for name, frame in tables.frames.items()})
    thread = threading.Thread(target=_store_quietly, args=(snapshot, entry, where),
                              name="infraprof-cache-write")
    with _writes_lock:
        _writes.append(thread)
    thread.start()


def _store_quietly(tables: NsysTables, entry: Path, where: str) -> None:
    """:func:`store_entry`; any failure leaves no entry and no message (the cache never
    changes a result)."""
    try:
        store_entry(tables, entry, where)
    except Exception:  # a cache that cannot be written is no cache
        return


def wait_for_writes() -> None:
    """Wait until every cache entry this process started writing is written (or given up)."""
    with _writes_lock:
        pending, _writes[:] = list(_writes), []
    for thread in pending:
        thread.join()


class _ChecksumWriter:
    """A file's ``write`` that also counts the bytes and their Adler-32 checksum."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.size, self.checksum = fh, 0, zlib.adler32(b"")

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.checksum = zlib.adler32(view, self.checksum)
        self.size += view.nbytes
        return self.fh.write(view)


def _save(folder: Path, name: str, array: np.ndarray, files: dict[str, list[int]]) -> None:
    """``array`` as ``.npy`` file ``name``, streamed (no in-memory copy of the file), with its
    size and checksum recorded in ``files``."""
    with (folder / name).open("xb") as fh:
        writer = _ChecksumWriter(fh)
        np.lib.format.write_array(writer, np.ascontiguousarray(array), allow_pickle=False)
    files[name] = [writer.size, writer.checksum & 0xFFFFFFFF]


def _column_spec(folder: Path, stem: str, column: pd.Series, files: dict[str, list[int]]
                 ) -> dict[str, Any]:
    dtype = str(column.dtype)
    if dtype in _NULLABLE_INTS:
        mask = column.isna().to_numpy(dtype=bool)
        width = np.dtype(dtype.lower())
        _save(folder, f"{stem}.npy", column.to_numpy(dtype=width, na_value=0), files)
        _save(folder, f"{stem}.mask.npy", mask, files)
        return {"dtype": dtype}
    if dtype == "category":
        categories = column.cat.categories
        if categories.dtype != object or any(not isinstance(c, str) for c in categories):
            raise TypeError(f"column {stem} has non-text categories")
        _save(folder, f"{stem}.npy", column.cat.codes.to_numpy(), files)
        return {"dtype": dtype, "values": list(categories)}
    if dtype == "object":
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        texts = [str(u) for u in uniques]
        if any(not isinstance(u, str) for u in uniques):
            raise TypeError(f"column {stem} holds non-text values")
        _save(folder, f"{stem}.npy", codes.astype(np.int32), files)
        return {"dtype": dtype, "values": texts}
    _save(folder, f"{stem}.npy", column.to_numpy(), files)
    return {"dtype": dtype}


def store_entry(tables: NsysTables, entry: Path, where: str) -> bool:
    """Write ``tables`` as cache entry ``entry`` (atomic rename); older entries of the same
    source path are removed. Returns False (and leaves nothing) when it cannot be written."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=entry.parent))
    except OSError:
        return False
    try:
        files: dict[str, list[int]] = {}
        layout: dict[str, Any] = {}
        for name, frame in tables.frames.items():
            layout[name] = {"rows": len(frame), "columns": {
                col: _column_spec(tmp, f"{name}.{i}", frame[col], files)
                for i, col in enumerate(frame.columns)}}
        manifest = {"reader_version": READER_VERSION, "files": files, "tables": layout,
                    "all_columns": tables.all_columns,
                    "data_quality": [issue.to_dict() for issue in tables.data_quality],
                    **{f: getattr(tables, f) for f in _META_FIELDS}}
        (tmp / "columns.json").write_text(json.dumps(manifest), encoding="utf-8")
        for old in entry.parent.glob(f"{where}-*"):
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, entry)
        return True
    except Exception:  # any failure: no entry (the export is read next time)
        shutil.rmtree(tmp, ignore_errors=True)
        return False


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _load(entry: Path, name: str, files: dict[str, list[int]]) -> np.ndarray:
    """The array of ``.npy`` file ``name``, read straight into its own memory (one copy) and
    checked against the size and checksum recorded in ``files`` (``ValueError`` if not)."""
    size, checksum = files[name]
    with (entry / name).open("rb") as fh:
        if os.fstat(fh.fileno()).st_size != size:
            raise ValueError(f"{name}: size mismatch")
        read_header = _HEADER_READERS.get(np.lib.format.read_magic(fh))
        if read_header is None:
            raise ValueError(f"{name}: unknown .npy version")
        shape, fortran_order, dtype = read_header(fh)
        if fortran_order or dtype.hasobject:
            raise ValueError(f"{name}: not a C-ordered numeric array")
        header_size = fh.tell()
        if int(np.prod(shape, dtype=object)) * dtype.itemsize != size - header_size:
            raise ValueError(f"{name}: header and file size disagree")  # before allocating
        fh.seek(0)
        running = zlib.adler32(fh.read(header_size))
        array = np.empty(shape, dtype=dtype)
        if fh.readinto(array.data.cast("B")) != array.nbytes or fh.read(1):
            raise ValueError(f"{name}: truncated or longer than its header says")
    if zlib.adler32(array.data.cast("B"), running) & 0xFFFFFFFF != checksum:
        raise ValueError(f"{name}: checksum mismatch")
    return array


def _column(entry: Path, stem: str, spec: dict[str, Any], files: dict[str, list[int]]
            ) -> Any:
    values = _load(entry, f"{stem}.npy", files)
    if spec["dtype"] in _NULLABLE_INTS:
        if values.dtype != np.dtype(spec["dtype"].lower()):
            raise ValueError(f"{stem}: values are not {spec['dtype']}")
        return pd.arrays.IntegerArray(values, _load(entry, f"{stem}.mask.npy", files))
    if spec["dtype"] == "category":
        categories = pd.Index(spec["values"], dtype=object)
        if not (categories.is_unique and categories.is_monotonic_increasing):
            raise ValueError(f"{stem}: categories not sorted and distinct")
        return pd.Categorical.from_codes(values, dtype=pd.CategoricalDtype(categories))
    if spec["dtype"] == "object":
        texts = np.array([*spec["values"], None], dtype=object)
        return pd.Series(texts[np.where(values < 0, len(texts) - 1, values)], dtype=object)
    if values.dtype != np.dtype(spec["dtype"]):
        raise ValueError(f"{stem}: values are not {spec['dtype']}")
    return values


def load_entry(entry: Path, source: Path, all_columns: bool = True) -> NsysTables | None:
    """The tables of cache entry ``entry``, or None when it is missing, damaged (a damaged
    entry is removed so that the caller rebuilds it) or lacks columns: ``all_columns`` asked
    of an entry written by an analysis read. ``all_columns=False`` loads only the analysis
    columns (:func:`~infraprof.tables.projected`). Waits for this process's writes first."""
    wait_for_writes()
    manifest_path = entry / "columns.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest["reader_version"] != READER_VERSION:
            raise ValueError("reader version")
        if all_columns and not manifest["all_columns"]:
            return None
        files = manifest["files"]
        out = NsysTables(path=source, **{f: manifest[f] for f in _META_FIELDS},
                         data_quality=[DataIssue(**d) for d in manifest["data_quality"]],
                         all_columns=all_columns)
        for name, layout in manifest["tables"].items():
            omitted = () if all_columns else ANALYSIS_OMITS.get(name, ())
            columns = {col: _column(entry, f"{name}.{i}", spec, files)
                       for i, (col, spec) in enumerate(layout["columns"].items())
                       if col not in omitted}
            frame = pd.DataFrame(columns, index=pd.RangeIndex(layout["rows"]))
            if len(frame.columns) != len(columns) or len(frame) != layout["rows"]:
                raise ValueError(f"table {name}: shape mismatch")
            out.frames[name] = frame
        return out
    except (OSError, KeyError, TypeError, ValueError):
        shutil.rmtree(entry, ignore_errors=True)
        return None


def cache_entries() -> list[tuple[Path, int]]:
    """Every columnar cache entry and its size in bytes (this process's writes waited for)."""
    wait_for_writes()
    folder = tables_dir()
    if not folder.is_dir():
        return []
    return [(p, sum(f.stat().st_size for f in p.iterdir() if f.is_file()))
            for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()]
