"""The Arrow C stream interface read through :mod:`ctypes`: int64 columns of record batches
as numpy arrays, with the interpreter lock released while the producer builds each batch.

The ADBC SQLite driver returns a query's rows as an ``ArrowArrayStream`` (the Arrow C data
interface: a stable C ABI of three structs, ``ArrowSchema``, ``ArrowArray`` and
``ArrowArrayStream``, declared below field for field). Calling the stream's ``get_next``
through a ``ctypes.CFUNCTYPE`` pointer releases the GIL for the call, and that call is where
the driver steps SQLite through the next batch of rows: ~90 % of a large table's read. So
another thread can read a second table at the same time (:mod:`infraprof.readers.arrow_sqlite`
reads the API calls beside the kernels; on two cores the two reads of 1 M kernels and 1.2 M
calls take 0.42 instead of 0.76 wall seconds for the same CPU time: ``docs/performance.md``,
round 11). Reading the stream with nanoarrow's Python iterator held the lock for the whole
call (no overlap).

Only what the reader needs is here: the schema's field formats, and per batch (a struct
array) each child's data buffer copied into a numpy array, NULL (a clear validity bit) as
``null``. Every struct the producer hands out is released here, also on an error.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Collection, Iterator

import numpy as np

from infraprof.int_widths import narrowest_int

_INT64 = b"l"  # the Arrow C data interface's format string of a signed 64-bit integer


class ArrowSchema(ctypes.Structure):
    """``struct ArrowSchema`` of the Arrow C data interface."""


ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_void_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowSchema))),
    ("dictionary", ctypes.POINTER(ArrowSchema)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowSchema))),
    ("private_data", ctypes.c_void_p)]


class ArrowArray(ctypes.Structure):
    """``struct ArrowArray`` of the Arrow C data interface."""


ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))),
    ("dictionary", ctypes.POINTER(ArrowArray)),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArray))),
    ("private_data", ctypes.c_void_p)]


class ArrowArrayStream(ctypes.Structure):
    """``struct ArrowArrayStream`` of the Arrow C stream interface."""


ArrowArrayStream._fields_ = [
    ("get_schema", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ArrowArrayStream),
                                    ctypes.POINTER(ArrowSchema))),
    ("get_next", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ArrowArrayStream),
                                  ctypes.POINTER(ArrowArray))),
    ("get_last_error", ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.POINTER(ArrowArrayStream))),
    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArrayStream))),
    ("private_data", ctypes.c_void_p)]


class StreamError(RuntimeError):
    """The producer reported an error (its message, e.g. the SQLite driver's "Type mismatch"),
    or the stream is not a struct of int64 fields."""


def field_formats(address: int) -> list[bytes]:
    """The format strings of the top-level fields of the stream at ``address`` (``b"l"`` for
    int64)."""
    stream = ArrowArrayStream.from_address(address)
    schema = ArrowSchema()
    _checked(stream, stream.get_schema(ctypes.byref(stream), ctypes.byref(schema)))
    try:
        return [schema.children[i].contents.format or b"" for i in range(schema.n_children)]
    finally:
        if schema.release:
            schema.release(ctypes.byref(schema))


def int64_batches(address: int, count: int, null: int, narrow: Collection[int] = (),
                  stop: Callable[[], bool] = lambda: False) -> Iterator[list[np.ndarray]]:
    """Per record batch of the stream at ``address`` (a struct array of ``count`` int64
    fields): its columns as numpy-owned copies, int64 with a NULL as ``null``; a column
    whose index is in ``narrow`` and that has no NULL in the batch is copied in the
    narrowest signed type holding the batch's values instead (joined batches then take the
    widest of their types: the column's narrowest). The GIL is released while the producer
    makes each batch. Stops early (yielding nothing more) when ``stop()`` turns true between
    batches. Raises :class:`StreamError` on a producer error."""
    stream = ArrowArrayStream.from_address(address)
    while not stop():
        batch = ArrowArray()
        _checked(stream, stream.get_next(ctypes.byref(stream), ctypes.byref(batch)))
        if not batch.release:  # the end of the stream
            return
        try:
            columns = _batch_columns(batch, count, null, narrow)
        finally:
            batch.release(ctypes.byref(batch))
        yield columns


def _batch_columns(batch: ArrowArray, count: int, null: int, narrow: Collection[int]
                   ) -> list[np.ndarray]:
    """The ``count`` int64 children of one struct array, copied (the batch's own offset and
    each child's added, as the specification places a struct's rows in its children; the
    ``narrow`` ones without NULLs in their narrowest type)."""
    if batch.n_children != count:
        raise StreamError(f"a batch of {batch.n_children} columns, {count} expected")
    length = batch.length
    out: list[np.ndarray] = []
    for index in range(count):
        child = batch.children[index].contents
        first = batch.offset + child.offset
        if length == 0:
            out.append(np.empty(0, dtype=np.int64))
            continue
        if child.n_buffers != 2 or not child.buffers[1]:
            raise StreamError("a column that is not a fixed-width array")
        data = ctypes.cast(child.buffers[1], ctypes.POINTER(ctypes.c_int64))
        view = np.ctypeslib.as_array(data, shape=(first + length,))[first:]
        valid = _validity(child, first, length)
        if valid is None and index in narrow:
            out.append(view.astype(narrowest_int(int(view.min()), int(view.max()))))
            continue
        values = view.copy()
        if valid is not None:
            values[valid == 0] = null
        out.append(values)
    return out


def _validity(child: ArrowArray, first: int, length: int) -> np.ndarray | None:
    """The validity bits (1: a value, 0: NULL) of ``length`` rows from ``first``, or None when
    no row is NULL (no bitmap, a null count of 0, or an unknown count, -1 as the SQLite
    driver gives, with every bit set)."""
    if child.null_count == 0 or not child.buffers[0]:
        return None
    bitmap = ctypes.cast(child.buffers[0], ctypes.POINTER(ctypes.c_uint8))
    bits = np.ctypeslib.as_array(bitmap, shape=((first + length + 7) // 8,))
    # little-endian bit order; a clear bit is NULL
    valid = np.unpackbits(bits, bitorder="little")[first:first + length]
    return None if bool(valid.all()) else valid


def _checked(stream: ArrowArrayStream, code: int) -> None:
    """Raise :class:`StreamError` with the producer's message when ``code`` (an errno) is
    not 0."""
    if code:
        message = stream.get_last_error(ctypes.byref(stream)) if stream.get_last_error else None
        raise StreamError((message or b"").decode("utf-8", "replace") or f"errno {code}")


def is_int64(formats: list[bytes]) -> bool:
    """Whether every field format is int64."""
    return all(fmt == _INT64 for fmt in formats)
