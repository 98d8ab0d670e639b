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
    return quantiles_and_max_by_code(codes, values, count, quantiles)[0]


def quantiles_and_max_by_code(codes: np.ndarray, values: np.ndarray, count: int,
                              quantiles: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantiles_by_code` and, per code, the largest value (int64; the smallest
    int64 for a code without values), the last of its sorted slice (no ``maximum.at``)."""
    ordered, bounds = sorted_by_code(codes, values, count)
    sizes = np.diff(bounds)
    out = np.full((count, len(quantiles)), np.nan)
    has = np.flatnonzero(sizes > 0)
    for column, q in enumerate(quantiles):
        out[has, column] = _interpolated(ordered, bounds[has], sizes[has], q)
    largest = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
    largest[has] = ordered[bounds[has + 1] - 1]
    return out, largest


def stats_by_code(codes: np.ndarray, values: np.ndarray, count: int
                  ) -> dict[str, np.ndarray] | None:
    """Per code ``0 .. count - 1``, every code holding a row: ``count``, ``sum`` (int64),
    ``mean``, ``median``, ``min``, ``max`` and ``std`` (sample, NaN for one row) of the
    non-negative integers ``values``, from one sort by (code, value)
    (:func:`sorted_by_code`) instead of a pandas group-by per statistic. The sum, mean,
    median, min and max are pandas' bit for bit (the mean: the exact integer sum over the
    count, what pandas' compensated float sum gives while every group's sum is below
    2**53); the standard deviation is the two-pass one (the sum of squared deviations from
    the mean), within ~1e-12 of pandas' running (Welford) one. None when a value is
    negative, a sum reaches 2**53 or a code holds no row (the caller's group-by then)."""
    if not len(values) or int(values.min()) < 0:
        return None
    ordered, bounds = sorted_by_code(codes, values, count)
    sizes = np.diff(bounds)
    if not sizes.all():
        return None
    firsts = bounds[:-1]
    sums = np.add.reduceat(ordered, firsts)
    if int(sums.max()) >= 2**53:
        return None
    mean = sums / sizes
    squares = np.zeros(count)  # squared deviations from the mean, a block of rows at a time
    for rows in blocks(len(ordered)):
        positions = np.arange(rows.start, min(rows.stop, len(ordered)))
        group = np.searchsorted(bounds, positions, side="right") - 1
        deviation = ordered[positions] - mean[group]
        squares += np.bincount(group, weights=deviation * deviation, minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(squares / (sizes - 1))
    std[sizes == 1] = np.nan
    return {"count": sizes, "sum": sums, "mean": mean,
            "median": _interpolated(ordered, firsts, sizes, 0.5), "min": ordered[firsts],
            "max": ordered[bounds[1:] - 1], "std": std}


def _interpolated(ordered: np.ndarray, firsts: np.ndarray, sizes: np.ndarray, q: float
                  ) -> np.ndarray:
    """Per slice of ``ordered`` from ``firsts[i]``, ``sizes[i]`` (≥ 1) long: its linearly
    interpolated quantile ``q`` as pandas' group-by ``quantile`` (``v[i] + (v[i + 1] -
    v[i]) * frac`` at ``q * (n - 1)``)."""
    at = q * (sizes - 1).astype(np.float64)
    whole = at.astype(np.int64)  # truncated, as pandas' cast
    frac = np.fmod(at, 1.0)
    low = ordered[firsts + whole]
    high = ordered[firsts + np.minimum(whole + 1, sizes - 1)]
    out: np.ndarray = np.where(frac == 0.0, low.astype(np.float64), low + (high - low) * frac)
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
