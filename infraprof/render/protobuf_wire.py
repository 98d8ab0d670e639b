"""Protocol-buffer wire format, written here from the format's public description: varints,
fixed64 and length-delimited fields, for one message at a time (:func:`varint_field`, ...) and
for many messages of one shape at once (:class:`Rows`), vectorised with numpy.

Wire format: every field is a *tag* ``field_number << 3 | wire_type`` written as a varint, then
its value: wire type 0 a varint (7 bits per byte, least significant group first, high bit set
on every byte but the last; negative ``int64`` values take 10 bytes), 1 eight little-endian
bytes (``fixed64``), 2 a varint length and that many bytes (strings, bytes, nested messages).

Vectorised encoding: a column of messages is a list of *segments*, each a ``uint8`` matrix
(one row per message, as wide as the segment's longest value) and the used length per row.
A message's length is the sum of its segments' lengths, so nesting prepends one segment (tag +
length) and no bytes move until :meth:`Rows.tobytes` keeps the used bytes of every row, row
after row. Memory: rows × (sum of segment widths) bytes per call; callers encode in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

VARINT, FIXED64, LENGTH_DELIMITED = 0, 1, 2
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def varint(value: int) -> bytes:
    """One varint (negative values as their 64-bit two's complement, 10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def varint_field(field: int, value: int) -> bytes:
    return tag(field, VARINT) + varint(value)


def bytes_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: a string's UTF-8, bytes, or an encoded nested message."""
    return tag(field, LENGTH_DELIMITED) + varint(len(payload)) + payload


def text(value: object) -> bytes:
    """``value`` as valid UTF-8 (protobuf strings must be): lone surrogates become ``?``;
    quotes, ``<``, newlines and NUL are kept as they are."""
    return str(value).encode("utf-8", "replace")


def string_field(field: int, value: object) -> bytes:
    return bytes_field(field, text(value))


@dataclass
class Rows:
    """The same field layout for ``n`` messages: ``segments`` of (bytes matrix, lengths)."""

    n: int
    segments: list[tuple[U8, I64]]

    @classmethod
    def empty(cls, n: int) -> Rows:
        return cls(n, [])

    def add(self, *others: Rows) -> Rows:
        """These fields followed by ``others``' (all for the same ``n`` messages)."""
        for other in others:
            self.segments += other.segments
        return self

    def lengths(self) -> I64:
        total = np.zeros(self.n, dtype=np.int64)
        for _, used in self.segments:
            total += used
        return total

    def only(self, present: npt.NDArray[np.bool_]) -> Rows:
        """The same fields where ``present``; nothing in the other messages."""
        return Rows(self.n, [(data, np.where(present, used, 0)) for data, used in self.segments])

    def tobytes(self) -> bytes:
        """Every message's bytes, message after message: the segments side by side in one
        matrix, and the used bytes of each row kept (one boolean gather)."""
        if not self.segments or self.n == 0:
            return b""
        width = sum(data.shape[1] for data, _ in self.segments)
        matrix = np.empty((self.n, width), dtype=np.uint8)
        keep = np.empty((self.n, width), dtype=bool)
        column = 0
        for data, used in self.segments:
            span = slice(column, column + data.shape[1])
            matrix[:, span] = data
            np.less(np.arange(data.shape[1]), used[:, None], out=keep[:, span])
            column += data.shape[1]
        return bytes(matrix[keep].tobytes())


def varint_matrix(values: npt.ArrayLike) -> tuple[U8, I64]:
    """Varints of ``values`` (int64 or uint64; negatives as 10-byte two's complement)."""
    rest = np.asarray(values).astype(np.int64).view(np.uint64).copy()
    n = len(rest)
    out = np.zeros((n, 10), dtype=np.uint8)
    used = np.ones(n, dtype=np.int64)
    width = 1
    for i in range(10):
        out[:, i] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest != 0
        if not more.any():
            break
        out[more, i] |= 0x80
        used += more
        width = i + 2
    return out[:, :width], used


def _prefixed(n: int, prefix: bytes, data: U8, used: I64) -> Rows:
    """One segment: ``prefix`` then each row's first ``used`` bytes of ``data``."""
    head = np.frombuffer(prefix, dtype=np.uint8)
    matrix = np.empty((n, len(head) + data.shape[1]), dtype=np.uint8)
    matrix[:, :len(head)] = head
    matrix[:, len(head):] = data
    return Rows(n, [(matrix, used + len(head))])


def constant(n: int, payload: bytes) -> Rows:
    """The same bytes in every message."""
    row = np.frombuffer(payload, dtype=np.uint8)
    return Rows(n, [(np.tile(row, (n, 1)), np.full(n, len(payload), dtype=np.int64))])


def varints(field: int, values: npt.ArrayLike) -> Rows:
    """Field ``field`` = ``values[i]`` (wire type 0) in message ``i``."""
    data, used = varint_matrix(values)
    return _prefixed(len(used), tag(field, VARINT), data, used)


def fixed64s(field: int, values: npt.ArrayLike) -> Rows:
    """Field ``field`` = ``values[i]`` as 8 little-endian bytes (wire type 1)."""
    raw = np.ascontiguousarray(np.asarray(values).astype("<u8")).view(np.uint8)
    n = len(raw) // 8
    return _prefixed(n, tag(field, FIXED64), raw.reshape(n, 8), np.full(n, 8, dtype=np.int64))


def message(field: int, inner: Rows) -> Rows:
    """``inner`` wrapped as the length-delimited field ``field`` of every message."""
    data, used = varint_matrix(inner.lengths())
    return _prefixed(inner.n, tag(field, LENGTH_DELIMITED), data, used).add(inner)


def lookup(codes: npt.NDArray[np.int64], table: Sequence[bytes]) -> Rows:
    """``table[codes[i]]`` in message ``i`` (nothing where the code is negative): for fields
    whose few distinct encoded values are built once, e.g. with :func:`bytes_field`."""
    n = len(codes)
    width = max((len(b) for b in table), default=0)
    matrix = np.zeros((len(table) + 1, max(width, 1)), dtype=np.uint8)
    sizes = np.zeros(len(table) + 1, dtype=np.int64)
    for i, payload in enumerate(table):
        matrix[i, :len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        sizes[i] = len(payload)
    index = np.where(codes < 0, len(table), codes)
    return Rows(n, [(matrix[index], sizes[index])])
