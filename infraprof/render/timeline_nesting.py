"""Slices on one track must nest (a slice ends before the one it starts inside): which do.

Slices are ``[start, end)`` in ns, sorted by start, longer first at equal starts. A track's
slices nest when, walking the start and end points in time order (at one instant: ends of
longer slices first, last-opened first, then starts; a zero-length slice ends right after it
starts), every slice ends at the depth it started at. :func:`nests` checks that with one sort
(numpy); only a track that fails pays :func:`first_nesting`'s walk with a stack.
:func:`nesting_lanes` peels a track into lanes that each nest (lane 0 keeps what nests among
the earliest slices, as the Chrome export always did; the rest try lane 1, and so on).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def endpoint_order(start: I64, end: I64) -> tuple[I64, Mask]:
    """The order of the ``2n`` points (``k`` < n: start of slice ``k``; ``n + k``: its end)
    described in the module docstring, and whether each ordered point is an end. The sort
    keys are as narrow as their values allow (a track of 1.2 M slices: ~60 MB of keys)."""
    n = len(start)
    index_type = _index_type(n)
    k = np.arange(n, dtype=index_type)
    zero = end <= start
    times = np.concatenate([start, np.maximum(end, start)])
    group = np.concatenate([np.ones(n, dtype=np.int8), zero.astype(np.int8)])
    within = np.concatenate([k, np.where(zero, k, -k)])
    del k
    after_start = np.concatenate([np.zeros(n, dtype=np.int8), zero.astype(np.int8)])
    order = np.lexsort((after_start, within, group, times))
    return order.astype(np.int64, copy=False), order >= n


def _index_type(n: int) -> type[np.signedinteger]:
    """int32 where ``2n`` slice points fit it, else int64."""
    return np.int32 if 2 * n < np.iinfo(np.int32).max else np.int64


def nests(start: I64, end: I64) -> bool:
    """Whether the slices (sorted as the module docstring says) all nest."""
    n = len(start)
    if n < 2:
        return True
    order, is_end = endpoint_order(start, end)
    index_type = _index_type(n)
    depth = np.cumsum(np.where(is_end, np.int8(-1), np.int8(1)), dtype=index_type)
    position = np.empty(2 * n, dtype=index_type)
    position[order] = np.arange(2 * n, dtype=index_type)
    return bool(np.all(depth[position[:n]] == depth[position[n:]] + 1))


def first_nesting(start: I64, end: I64) -> Mask:
    """Which slices nest among the earlier kept ones (a stack of open ends); the rest
    don't. Runs once per slice in Python: only for tracks where :func:`nests` is false."""
    keep = np.zeros(len(start), dtype=bool)
    stack: list[int] = []
    for i, (begin, finish) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        while stack and stack[-1] <= begin:
            stack.pop()
        if stack and finish > stack[-1]:
            continue
        stack.append(max(begin, finish))
        keep[i] = True
    return keep


def nesting_lanes(start: I64, end: I64) -> I64:
    """Lane per slice (0, 1, ...): every lane's slices nest."""
    lane = np.zeros(len(start), dtype=np.int64)
    rest = np.arange(len(start), dtype=np.int64)
    current = 0
    while len(rest):
        if nests(start[rest], end[rest]):
            lane[rest] = current
            break
        keep = first_nesting(start[rest], end[rest])
        lane[rest[keep]] = current
        rest = rest[~keep]
        current += 1
    return lane
