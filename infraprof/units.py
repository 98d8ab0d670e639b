"""Human formatting of integer nanoseconds, bytes and rates, and parsing of durations and sizes."""

from __future__ import annotations

import re

from infraprof.errors import UsageError

_DURATION = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(ns|us|µs|ms|s)\s*$")
_NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_BYTES_PER_UNIT = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
                   "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_duration(text: str) -> float | None:
    """``"250us"`` -> ``250000.0`` (ns); ``None`` unless ``text`` is a number with a unit
    (ns, us/µs, ms, s)."""
    m = _DURATION.match(text)
    return None if m is None else float(m.group(1)) * _NS_PER_UNIT[m.group(2)]


def parse_size(text: str, option: str = "--memory-budget") -> int:
    """Bytes from ``8GiB``, ``512MB``, ``1.5G``, ``4096`` (``UsageError`` naming ``option``
    otherwise)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: give a size such as 8GiB or 512MB")
    unit = (match.group(2) or "").lower().removesuffix("b")
    value = int(float(match.group(1)) * _BYTES_PER_UNIT[unit])
    if value <= 0:
        raise UsageError(f"{option} {text!r}: must be more than 0 bytes")
    return value


def fmt_ns(ns: float | int | None) -> str:
    """``1234567`` -> ``"1.235 ms"``; picks ns/µs/ms/s so the number stays short."""
    if ns is None:
        return "-"
    v = float(ns)
    a = abs(v)
    if a < 1e3:
        return f"{v:.0f} ns"
    if a < 1e6:
        return f"{v / 1e3:.3g} µs" if a < 1e4 else f"{v / 1e3:.1f} µs"
    if a < 1e9:
        return f"{v / 1e6:.3f} ms"
    return f"{v / 1e9:.3f} s"


def fmt_bytes(n: float | int | None) -> str:
    """Decimal units, as nsys prints sizes (``1.5 MB`` = 1 500 000 bytes)."""
    if n is None:
        return "-"
    v = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(v) < 1000 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.2f} {unit}"
        v /= 1000
    return f"{v:.2f} TB"


def fmt_rate(bytes_per_s: float | None) -> str:
    if bytes_per_s is None:
        return "-"
    return f"{bytes_per_s / 1e9:.2f} GB/s"


def fmt_pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"
