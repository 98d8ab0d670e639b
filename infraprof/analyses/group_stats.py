"""Per-group statistics of integer values over group codes, without pandas' group-by.

A group-by sorts or hashes every row and holds several per-row arrays (group numbers, a
float copy, a sort order). Here the values are sorted by (code, value) once, in one packed
array where the codes and the values' range allow, and each group's quantiles are read off
its slice: bit for bit pandas' linear-interpolation ``quantile`` and ``median`` (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from infraprof.int_widths import narrowest_int

SUM_BLOCK = 1 << 20  # rows per bincount of sums_by_code (bounded temporaries)


def blocks(size: int) -> list[slice]:
    """``SUM_BLOCK`` rows at a time."""
    return [slice(lo, lo + SUM_BLOCK) for lo in range(0, size, SUM_BLOCK)]


def counts_by_code(codes: np.ndarray, count: int) -> np.ndarray:
    """Per code ``0 .. count - 1``: how many rows hold it (``np.bincount(codes, minlength=
    count)``), a block of rows at a time: bincount makes an intp copy of narrower codes
    (80 MB at 10 M one-byte codes), here one block's."""
    counts = np.zeros(count, dtype=np.intp)
    for rows in blocks(len(codes)):
        counts += np.bincount(codes[rows], minlength=count)
    return counts


def sums_by_code(codes: np.ndarray, count: int, values_of: Callable[[slice], np.ndarray]
                 ) -> np.ndarray | None:
    """Per code ``0 .. count - 1``: the sum of the integers ``values_of(rows)`` gives for
    its rows, as float64 from ``bincount``, a block of rows at a time (no array of every
    value); None when a sum might not be exact: while every partial sum is an integer below
    2**53 in magnitude (bounded by each block's largest magnitude times its rows), float64
    sums are exact in any order."""
    sums, bound = np.zeros(count), 0
    for rows in blocks(len(codes)):
        values = values_of(rows)
        if len(values):
            bound += max(abs(int(values.max())), abs(int(values.min()))) * len(values)
        if bound >= 2**53:
            return None
        sums += np.bincount(codes[rows], weights=values, minlength=count)
    return sums


def quantiles_by_code(codes: np.ndarray, values: np.ndarray, count: int,
                       quantiles: tuple[float, ...]) -> np.ndarray:
    """Per code ``0 .. count - 1`` (rows) and quantile (columns): the linearly interpolated
    quantile of that code's ``values`` (int64), as pandas' group-by ``quantile`` computes it
    (``v[i] + (v[i + 1] - v[i]) * frac`` at ``q * (n - 1)``); NaN for a code without values.
    The values are sorted by code, then value, once (:func:`sorted_by_code`)."""
    ordered, bounds = sorted_by_code(codes, values, count)
    sizes = np.diff(bounds)
    out = np.full((count, len(quantiles)), np.nan)
    has = np.flatnonzero(sizes > 0)
    for column, q in enumerate(quantiles):
        at = q * (sizes[has] - 1).astype(np.float64)
        whole = at.astype(np.int64)  # truncated, as pandas' cast
        frac = np.fmod(at, 1.0)
        low = ordered[bounds[has] + whole]
        high = ordered[bounds[has] + np.minimum(whole + 1, sizes[has] - 1)]
        out[has, column] = np.where(frac == 0.0, low.astype(np.float64),
                                    low + (high - low) * frac)
    return out


def sorted_by_code(codes: np.ndarray, values: np.ndarray, count: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (int64) ordered by code (``0 .. count - 1``), each code's ascending, and
    the bounds of each code's slice (``count + 1``). When a code and the value's offset
    from the smallest value fit one 63-bit key (code high, offset low), one sort of those
    keys: one array of the values' size (10 M launches: 80 MB, where an argsort and the
    gathered values were 160 MB); int64 arithmetic wraps, so the key is built and taken
    apart in place. Otherwise a stable sort by code (numpy's radix sort of narrow codes),
    then each code's slice in place."""
    bounds = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(counts_by_code(codes, count), out=bounds[1:])
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    shift = (high - low).bit_length()
    if shift + max(count - 1, 0).bit_length() <= 63:
        key = codes.astype(np.int64)
        key <<= shift
        key += values
        key -= low
        key.sort()
        key &= (1 << shift) - 1
        key += low
        return key, bounds
    narrow = codes.astype(narrowest_int(0, max(count - 1, 0)), copy=False)
    ordered = values[np.argsort(narrow, kind="stable")]
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        ordered[lo:hi].sort()
    return ordered, bounds
