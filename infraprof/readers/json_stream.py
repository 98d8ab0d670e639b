"""Streaming reader for Chrome-trace JSON documents (PyTorch Kineto ``*.pt.trace.json[.gz]``).

The document is never held whole: text is decoded in :data:`CHUNK_CHARS` pieces and each event
of the ``traceEvents`` array is decoded on its own with the standard library's C-accelerated
``json.JSONDecoder.raw_decode``, so memory is bounded by one chunk plus the largest single
event (capped at :data:`MAX_VALUE_CHARS`) plus what the caller keeps. Both Chrome-trace layouts
are accepted: an object whose ``traceEvents`` key holds the events (other top-level keys, before
or after the array, become ``header``) and a bare array of events.

Floats are handed back as their *source text* (``parse_float=str``) so that timestamps can be
converted to integer nanoseconds exactly (:func:`us_to_ns`), without binary-float rounding.

A file that ends early (the profiler killed mid-write, a partial copy, a truncated ``.gz``)
is read up to its last complete event and :attr:`JsonStream.truncated` says where it stopped;
bytes that are not JSON raise :class:`~infraprof.errors.InputError`.
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from collections.abc import Generator, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Any, Final

from infraprof.errors import InputError

CHUNK_CHARS: Final = 1 << 20
MAX_VALUE_CHARS: Final = 64 << 20
GZIP_MAGIC: Final = b"\x1f\x8b"
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECIMAL = re.compile(r"^\s*(-?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?\s*$")


class _Incomplete(Exception):
    """The buffered text ends inside a value."""


class JsonStream:
    """Iterate the events of one Chrome-trace file; ``header`` holds the other top-level keys
    once :meth:`events` is exhausted, ``truncated`` a description of where an early end
    stopped the read (``None`` for a complete file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] = {}
        self.truncated: str | None = None
        self.events_read = 0
        self._decoder = json.JSONDecoder(parse_float=str)
        self._chunks: Iterator[bytes] | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._pos = 0
        self._offset = 0
        self._eof = False

    def _binary_chunks(self) -> Generator[bytes, None, None]:
        """The file's bytes, inflated when gzipped (every member of a multi-member file), at
        most :data:`CHUNK_CHARS` bytes at a time: a small compressed input cannot expand into
        a large buffer. A gzip stream that ends early sets ``truncated`` after yielding all
        that could be inflated."""
        try:
            with self.path.open("rb") as raw:
                if raw.read(2) != GZIP_MAGIC:
                    raw.seek(0)
                    while chunk := raw.read(CHUNK_CHARS):
                        yield chunk
                    return
                raw.seek(0)
                yield from self._inflate(raw)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read ({exc.strerror}); check "
                             "permissions") from exc

    def _inflate(self, raw: IO[bytes]) -> Generator[bytes, None, None]:
        inflater, pending, fed = zlib.decompressobj(GZIP_WBITS), b"", False
        while True:
            if not pending:
                pending = raw.read(CHUNK_CHARS)
                if not pending:
                    break
            fed = True
            try:
                out = inflater.decompress(pending, CHUNK_CHARS)
            except zlib.error as exc:
                raise InputError(f"{self.path}: corrupt gzip data ({exc}); re-copy the "
                                 "trace") from exc
            pending = inflater.unconsumed_tail
            if out:
                yield out
            if inflater.eof:  # next member, unless only padding follows
                pending = inflater.unused_data + pending
                inflater, fed = zlib.decompressobj(GZIP_WBITS), False
                if not pending.strip(b"\0"):
                    pending = raw.read(CHUNK_CHARS)
                    if not pending.strip(b"\0"):
                        break
        if fed and not inflater.eof:
            self.truncated = "the gzip stream ends early"

    def _fill(self) -> bool:
        """Append the next chunk; ``False`` at end of input."""
        if self._eof or self._chunks is None:
            return False
        chunk = ""
        while not chunk:
            data = next(self._chunks, None)
            if data is None:
                chunk = self._utf8.decode(b"", final=True)
                self._eof = not chunk
                break
            chunk = self._utf8.decode(data)
        if not chunk:
            return False
        if self._pos > CHUNK_CHARS:
            self._offset += self._pos
            self._buf = self._buf[self._pos:]
            self._pos = 0
        self._buf += chunk
        return True

    def _peek(self) -> str | None:
        """The next non-blank character (not consumed), or ``None`` at end of input."""
        while True:
            match = _WHITESPACE.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return None

    def _value(self) -> Any:
        """Decode the JSON value at the cursor; ``_Incomplete`` when the input ends in it."""
        if (self._pos >= len(self._buf) or self._buf[self._pos] in " \t\r\n") and (
                self._peek() is None):
            raise _Incomplete
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except RecursionError as exc:
                raise InputError(f"{self.path}: JSON nested too deeply at character "
                                 f"{self._offset + self._pos}; not a Kineto trace") from exc
            except json.JSONDecodeError as exc:
                # an error near the buffer's end (a \uXXXX escape or number cut by the chunk
                # boundary) or an open string means "read more"
                cut = exc.pos >= len(self._buf) - 12 or exc.msg.startswith("Unterminated")
                if not cut:
                    raise InputError(
                        f"{self.path}: invalid JSON at character {self._offset + exc.pos} "
                        f"({exc.msg}); not a readable Chrome/Kineto trace") from exc
                if len(self._buf) - self._pos > MAX_VALUE_CHARS:
                    raise InputError(f"{self.path}: a single JSON value exceeds "
                                     f"{MAX_VALUE_CHARS >> 20} MiB; not a Kineto trace") from exc
                if not self._fill():
                    raise _Incomplete from exc
                continue
            if end < len(self._buf) or not self._fill():
                self._pos = end
                return value

    def _expect(self, char: str, where: str) -> None:
        found = self._peek()
        if found is None:
            raise _Incomplete
        if found != char:
            raise InputError(f"{self.path}: expected {char!r} {where} at character "
                             f"{self._offset + self._pos}, found {found!r}; not a Chrome trace")
        self._pos += 1

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event object, in file order (non-object array items are skipped)."""
        chunks = self._binary_chunks()
        self._chunks = chunks
        try:
            yield from self._document()
        except _Incomplete:
            where = self.truncated or "the file ends inside a JSON value"
            self.truncated = (f"{where} (after {self.events_read} complete events); the "
                              "profiler was probably stopped mid-write, so the rest is missing")
        finally:
            self._chunks = None
            chunks.close()

    def _document(self) -> Iterator[dict[str, Any]]:
        first = self._peek()
        if first is None:
            raise _Incomplete
        if first == "[":
            self._pos += 1
            yield from self._array()
            return
        if first != "{":
            raise InputError(f"{self.path}: not a Chrome-trace JSON document (it does not "
                             "start with '{' or '['); pass a torch.profiler trace")
        self._pos += 1
        while True:
            char = self._peek()
            if char is None:
                raise _Incomplete
            if char == "}":
                self._pos += 1
                return
            if char == ",":
                self._pos += 1
                continue
            key = self._value()
            if not isinstance(key, str):
                raise InputError(f"{self.path}: malformed JSON object key at character "
                                 f"{self._offset + self._pos}")
            self._expect(":", "after a key")
            if key == "traceEvents" and self._peek() == "[":
                self._pos += 1
                yield from self._array()
            else:
                self.header[key] = self._value()

    def _array(self) -> Iterator[dict[str, Any]]:
        while True:
            char = self._peek()
            if char is None:
                raise _Incomplete
            if char == "]":
                self._pos += 1
                return
            if char == ",":
                self._pos += 1
                continue
            item = self._value()
            if isinstance(item, dict):
                self.events_read += 1
                yield item


def us_to_ns(value: Any) -> int:
    """A microsecond value (an int, or float *text* as :class:`JsonStream` returns it) →
    integer nanoseconds, exactly: the decimal text is split at the point instead of going
    through a binary float, so ``"4458676522690.655"`` µs is ``4458676522690655`` ns. Digits
    below 1 ns are rounded half away from zero. Anything else (missing, not a number) is 0."""
    if type(value) is int:
        return value * 1000
    if type(value) is str:  # fast path: plain decimal text such as "4458676522690.655"
        whole, _, frac = value.partition(".")
        digits = whole[1:] if whole.startswith("-") else whole
        frac_ok = not frac or (frac.isdigit() and frac.isascii())
        if digits.isdigit() and digits.isascii() and frac_ok:
            padded = (frac + "0000")[:4]
            ns = int(digits) * 1000 + int(padded[:3]) + (padded[3] >= "5")
            return -ns if whole.startswith("-") else ns
    text = value if isinstance(value, str) else str(value)
    match = _DECIMAL.match(text)
    if match is None or not (match[2] or match[3]):
        return 0
    if match[4] is not None:  # exponent form (rare): exact through the decimal module
        return int((Decimal(text) * 1000).to_integral_value(ROUND_HALF_UP))
    frac = (match[3] or "").ljust(4, "0")
    ns = int(match[2] or "0") * 1000 + int(frac[:3]) + (frac[3] >= "5")
    return -ns if match[1] else ns
