"""``kernel.tiny_kernels``: repeated sequences of short kernels, mined from stream order.

Kernels are put in stream order (device, stream, start). A *short* kernel runs at most
``max_kernel_ns`` (10 µs, the launch analysis' short-kernel bound). Every window of ``n``
consecutive kernels on one stream (``min_length`` 3 ≤ n ≤ ``max_length`` 8) made only of short
kernels that follow each other closely (each starts at most ``max_gap_ns``, 100 µs, after the
previous one ends: a longer gap is a host stall or a wait, which fusion does not remove) is an
n-gram of kernel-name ids; n-grams are hashed with numpy (a polynomial hash over
the ids, vectorised over all windows) and counted with ``np.unique``. A sequence seen at least
``min_repeats`` (20) times, in non-overlapping occurrences, is a fusion candidate.

**Recoverable time** of an occurrence: the device's idle time between its first kernel's start
and its last kernel's end (what fusing the kernels, or replaying them as a CUDA graph, removes:
the launch gaps between them). **Impact**: that idle time over the union of the occurrences of
the listed sequences (at most ``top``, 5), so overlapping sequences are not counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof import intervals
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.analyses.names import text_codes
from infraprof.analyses.sites import idle_text
from infraprof.int_widths import narrowest_int
from infraprof.tables import as_frame, column_view, fill_text

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

_HASH_BASE = np.uint64(1_000_003)
_CHUNK = 1 << 17  # kernels per busy-time search


@dataclass(frozen=True)
class TinyKernelParams:
    """See the module docstring for each default."""

    max_kernel_ns: int = 10_000
    max_gap_ns: int = 100_000
    min_length: int = 3
    max_length: int = 8
    min_repeats: int = 20
    top: int = 5


@dataclass(frozen=True)
class KernelSequence:
    """One repeated kernel sequence: ``positions`` index its first kernel in stream order."""

    names: tuple[str, ...]
    positions: npt.NDArray[np.int64]
    kernel_ns: int
    idle_ns: int


def stream_order(kernels: pd.DataFrame) -> pd.DataFrame:
    """Kernels sorted by device, stream and start (the columns the sequence mining reads:
    ``start_ns, end_ns, device_id, stream_id, name``), with ``name_id`` (non-negative codes
    in the narrowest integer type). The device and stream ids keep the kernel table's
    narrowest width; a kernel's time is ``end_ns - start_ns``. Kernels already in that order
    (one stream per device, as the reader sorts by start) are the table's own columns: no
    sort and no copy (160 MB of times at 10 M kernels)."""
    device, stream = kernels["device_id"].to_numpy(), kernels["stream_id"].to_numpy()
    start = kernels["start_ns"].to_numpy()
    if _in_stream_order(device, stream, start):
        columns: dict[str, Any] = {"start_ns": start, "end_ns": kernels["end_ns"].to_numpy(),
                                   "device_id": device, "stream_id": stream}
        names = kernels["name"].reset_index(drop=True)
    else:
        order = np.lexsort((start, stream, device))
        times = column_view(kernels, ["start_ns", "end_ns"]).iloc[order]  # one copy, not two
        columns = {column: times[column].to_numpy() for column in times.columns}
        del times
        columns.update(device_id=device[order], stream_id=stream[order])
        names = kernels["name"].iloc[order].reset_index(drop=True)
    ids, _ = text_codes(fill_text(names, ""))  # = pd.factorize, without hashing each text
    width = narrowest_int(0, int(ids.max()) if len(ids) else 0)
    k = pd.DataFrame({**columns, "name": names}, copy=False)
    return as_frame(k.assign(name_id=ids.astype(width)))


def _in_stream_order(device: np.ndarray, stream: np.ndarray, start: np.ndarray) -> bool:
    """Whether the rows are sorted by (device, stream, start) already: the order
    ``np.lexsort`` (stable) would leave as it is."""
    same_device = device[1:] == device[:-1]
    same_stream = same_device & (stream[1:] == stream[:-1])
    later = (device[1:] > device[:-1]) | (same_device & (stream[1:] > stream[:-1]))
    later |= same_stream & (start[1:] >= start[:-1])
    return bool(later.all())


def _unsigned(ids: np.ndarray) -> np.ndarray:
    """Integer codes as unsigned integers of the same value mod 2**64 (what the rolling hash
    adds): a view of non-negative codes (or int64 ones) as the unsigned type of their width,
    else a uint64 copy."""
    if ids.dtype == np.int64 or (ids.size and int(ids.min()) >= 0) or not ids.size:
        return ids.view(np.dtype(f"u{ids.dtype.itemsize}"))
    return ids.astype(np.uint64)


def ngram_hashes(ids: npt.NDArray[np.int64], valid_item: npt.NDArray[np.bool_],
                 new_stream: npt.NDArray[np.bool_], n: int
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """Start positions and hashes of every length-``n`` window of ``ids`` made only of valid
    items and lying in one segment (``new_stream[i]``: item ``i`` starts a new stream, or
    follows the previous item after too long a gap)."""
    if ids.size < n:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
    bad = np.concatenate(([0], np.cumsum(~valid_item)))
    cut = np.concatenate(([0], np.cumsum(new_stream)))
    starts = np.arange(ids.size - n + 1)
    ok = (bad[starts + n] - bad[starts] == 0) & (cut[starts + n] - cut[starts + 1] == 0)
    first = starts[ok].astype(np.int64)
    del bad, cut, starts, ok
    items = _unsigned(ids)
    # column by column (arithmetic mod 2**64, as the row-wise form): the selected windows
    # are not copied out (n × 8 bytes per window)
    hashes = np.zeros(first.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            hashes *= _HASH_BASE
            hashes += items[first + j]
            hashes += np.uint64(1)
    return first, hashes


def ngram_hashes_by_length(ids: npt.NDArray[np.int64], valid_item: npt.NDArray[np.bool_],
                           new_stream: npt.NDArray[np.bool_], lengths: range
                           ) -> Iterator[tuple[int, npt.NDArray[np.int64],
                                               npt.NDArray[np.uint64]]]:
    """``(n, *ngram_hashes(ids, valid_item, new_stream, n))`` for each ``n`` of ``lengths``
    (ascending from ≥ 1), from one rolling hash over all positions: the hash of the window of
    length ``n`` at ``i`` is the one of length ``n - 1`` times the base plus item
    ``i + n - 1`` plus 1 (the same arithmetic as :func:`ngram_hashes`), so each length costs
    one pass over the kernels instead of ``n``."""
    size = ids.size
    items = _unsigned(ids)
    bad, cut = _prefix_counts(~valid_item), _prefix_counts(new_stream)
    rolling = np.zeros(size, dtype=np.uint64)
    for n in range(1, lengths.stop):
        if size < n:
            if n in lengths:
                yield n, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
            continue
        window = rolling[:size - n + 1]  # a view: updated in place, no copy per length
        with np.errstate(over="ignore"):
            window *= _HASH_BASE
            window += items[n - 1:]
            window += np.uint64(1)
        if n not in lengths:
            continue
        count = size - n + 1  # windows; as ngram_hashes' test, on slices instead of gathers
        ok = bad[n:n + count] == bad[:count]
        ok &= cut[n:n + count] == cut[1:1 + count]
        first = np.flatnonzero(ok)
        del ok
        if size < 2**31:  # positions: 4 bytes a window
            first = first.astype(np.int32)
        yield n, first, window[first]


def _prefix_counts(flags: npt.NDArray[np.bool_]) -> np.ndarray:
    """``[0, cumsum(flags)...]``: the set flags before each position, int32 when they fit
    (10 M kernels: 40 MB instead of 80 each)."""
    out = np.zeros(flags.size + 1, dtype=np.int32 if flags.size < 2**31 else np.int64)
    np.cumsum(flags, out=out[1:])
    return out


def _non_overlapping(positions: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """Occurrences at least ``n`` apart from the previous one (keeps the first)."""
    keep = np.concatenate(([True], np.diff(positions) >= n))
    return positions[keep]


class BusyBefore:
    """Per kernel in stream order: the busy time of its device before its end (``end``), from
    prefix sums of the device's busy intervals, searched once for all kernels (ns). The busy
    time before its start is ``end - duration`` for a kernel inside the busy intervals (every
    kernel with a positive duration when they are its device's operations); the kernels for
    which it is not are kept apart (``fix_rows``, ``fix_start``), so no second array of every
    kernel is held."""

    def __init__(self, k: pd.DataFrame, busy: dict[int, intervals.Intervals]) -> None:
        self.device = k["device_id"].to_numpy()  # any integer width
        self.starts, self.ends = k["start_ns"].to_numpy(np.int64), k["end_ns"].to_numpy(np.int64)
        self.end = np.zeros(len(k), dtype=np.int64)
        fix_rows, fix_start = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
        covers = {device: intervals.Coverage(merged) for device, merged in busy.items()
                  if len(merged)}
        for lo in range(0, len(k), _CHUNK):  # bounded temporaries
            hi = min(lo + _CHUNK, len(k))
            # kernels a busy interval holds whole: busy before the start = before the end
            # minus the duration; the others (none of their device's) are searched again
            whole = np.zeros(hi - lo, dtype=bool)
            for device, cover in covers.items():
                mine = np.flatnonzero(self.device[lo:hi] == device)
                if len(mine):
                    self.end[lo + mine], whole[mine] = cover.covered_before_ends(
                        self.starts[lo + mine], self.ends[lo + mine])
            odd = lo + np.flatnonzero(~whole)
            fix_rows.append(odd)
            fix_start.append(self._busy_before(covers, odd))
        self.fix_rows, self.fix_start = np.concatenate(fix_rows), np.concatenate(fix_start)

    def _busy_before(self, covers: dict[int, intervals.Coverage], rows: np.ndarray
                     ) -> npt.NDArray[np.int64]:
        """The busy time before the start of kernels ``rows``, searched (0 on a device
        without busy intervals)."""
        out = np.zeros(len(rows), dtype=np.int64)
        for device, cover in covers.items():
            mine = np.flatnonzero(self.device[rows] == device)
            out[mine] = cover.covered_before(self.starts[rows[mine]])
        return out

    def _start_of(self, rows: npt.NDArray[np.int64],
                  starts: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
        """The busy time before the start of kernels ``rows`` (``starts``: their starts,
        when the caller gathered them already)."""
        out: npt.NDArray[np.int64] = self.end[rows] - self.ends[rows]
        out += self.starts[rows] if starts is None else starts
        if self.fix_rows.size:
            at = np.minimum(np.searchsorted(self.fix_rows, rows), self.fix_rows.size - 1)
            hit = self.fix_rows[at] == rows
            out[hit] = self.fix_start[at[hit]]
        return out

    def idle_in(self, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]) -> int:
        """Device idle time inside the union, per device, of the spans from the start of
        kernel ``first[i]`` to the end of kernel ``last[i]``: the union's length minus the
        busy time inside it. The busy time inside a merged span is the busy-before of its
        latest end minus that of its first start (busy-before only grows with time: no
        search per span)."""
        total = 0
        devices = self.device[first]
        one_device = devices.size and devices.min() == devices.max()
        for device in devices[:1] if one_device else np.unique(devices):
            first_on, last_on = first, last
            if not one_device:
                on = np.flatnonzero(devices == device)
                first_on, last_on = first[on], last[on]
            s = self.starts[first_on]
            s, e, before_s, before_e = _by_start(
                s, self.ends[last_on], self._start_of(first_on, s), self.end[last_on])
            if not s.size:
                continue
            running = np.maximum.accumulate(e)
            block = np.flatnonzero(np.r_[True, s[1:] > running[:-1]])
            block_end = running[np.r_[block[1:], s.size] - 1]
            covered = np.maximum.reduceat(before_e, block) - before_s[block]
            total += int((block_end - s[block]).sum()) - int(covered.sum())
        return total


def _by_start(starts: np.ndarray, ends: np.ndarray, *columns: np.ndarray
              ) -> list[np.ndarray]:
    """The spans ``[starts, ends)`` that are not empty (as :func:`intervals.union`), with
    ``columns`` of the same rows, in a stable order by start; the arrays as they are when
    no span is empty and the starts ascend (a stable sort of those is the identity)."""
    arrays = [starts, ends, *columns]
    keep = ends > starts
    if not keep.all():
        arrays = [array[keep] for array in arrays]
    if arrays[0].size > 1 and not bool(np.all(arrays[0][1:] >= arrays[0][:-1])):
        order = np.argsort(arrays[0], kind="stable")
        arrays = [array[order] for array in arrays]
    return arrays


def _frequent_hashes(hashes: npt.NDArray[np.uint64], min_count: int, top: int
                     ) -> list[int]:
    """The distinct hashes occurring at least ``min_count`` times, most frequent first
    (equal counts: the smaller hash first), at most ``top``: the order in which
    ``np.unique(..., return_counts=True)``'s hashes come out of a stable sort by descending
    count. One sorted copy of the hashes, no argsort (an argsort and the gathered hashes
    were 160 MB per length at 10 M kernels); the caller finds each one's positions."""
    if not hashes.size:
        return []
    ordered = np.sort(hashes)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, hashes.size))
    frequent = np.flatnonzero(counts >= min_count)
    chosen = frequent[np.argsort(-counts[frequent], kind="stable")][:top]
    return [int(h) for h in ordered[starts[chosen]].tolist()]


def _rows_of_each(hashes: npt.NDArray[np.uint64], values: list[int]
                  ) -> list[npt.NDArray[np.intp]]:
    """For each of ``values`` (distinct), the rows of ``hashes`` holding it, ascending
    (``np.flatnonzero(hashes == value)``), from one pass: each hash's place among the
    sorted values (``searchsorted``), then the matching rows grouped by value."""
    if not values:
        return []
    wanted = np.array(values, dtype=np.uint64)
    order = np.argsort(wanted)
    ordered = wanted[order]
    rows_of, slots_of = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.int8)]
    for lo in range(0, hashes.size, _CHUNK):  # bounded temporaries (8 bytes a hash each)
        block = hashes[lo:lo + _CHUNK]
        slot = np.searchsorted(ordered, block)
        np.minimum(slot, wanted.size - 1, out=slot)
        hit = np.flatnonzero(ordered[slot] == block)
        rows_of.append(hit + lo)
        slots_of.append(slot[hit].astype(narrowest_int(0, wanted.size)))
    rows, slot = np.concatenate(rows_of), np.concatenate(slots_of)
    del rows_of, slots_of
    grouped = rows[np.argsort(slot, kind="stable")]  # a radix sort of the narrow slots: by
    # value, each value's rows ascending
    bounds = np.concatenate(([0], np.cumsum(np.bincount(slot, minlength=wanted.size))))
    place = np.empty(wanted.size, dtype=np.intp)
    place[order] = np.arange(wanted.size)  # each value's place among the sorted ones
    return [grouped[bounds[at]:bounds[at + 1]] for at in place.tolist()]


def _candidates(k: pd.DataFrame, p: TinyKernelParams) -> list[KernelSequence]:
    """The frequent sequences of every length (top 20 per length), their idle time not yet
    measured (0)."""
    ids = k["name_id"].to_numpy()  # any integer width
    dev, stream = k["device_id"].to_numpy(), k["stream_id"].to_numpy()
    starts, ends = k["start_ns"].to_numpy(np.int64), k["end_ns"].to_numpy(np.int64)
    duration = ends - starts
    short = duration <= p.max_kernel_ns
    new_stream = np.concatenate(([True], (dev[1:] != dev[:-1]) | (stream[1:] != stream[:-1])
                                 | (starts[1:] - ends[:-1] > p.max_gap_ns)))
    names = k["name"]  # texts of the chosen windows only
    # kernel time before each position: a window's kernel time is a difference of two
    dur_before = np.concatenate(([0], np.cumsum(duration)))
    del duration
    out = []
    lengths = range(p.min_length, p.max_length + 1)
    for n, pos, hashes in ngram_hashes_by_length(ids, short, new_stream, lengths):
        for rows in _rows_of_each(hashes, _frequent_hashes(hashes, p.min_repeats, 20)):
            occ = _non_overlapping(pos[rows].astype(np.int64), n)
            if occ.size < p.min_repeats:
                continue
            kernel_ns = int((dur_before[occ + n] - dur_before[occ]).sum())
            window = fill_text(names.iloc[occ[0]:occ[0] + n], "").astype(str)
            out.append(KernelSequence(tuple(str(x) for x in window), occ, kernel_ns, 0))
    return out


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return any(longer[i:i + n] == shorter for i in range(len(longer) - n + 1))


def sequences_in(k: pd.DataFrame, busy: dict[int, intervals.Intervals],
                 params: TinyKernelParams | None = None
                 ) -> tuple[list[KernelSequence], BusyBefore]:
    """The top repeated short-kernel sequences of kernels in stream order (:func:`stream_order`;
    ``busy``: each device's busy intervals), most idle first; a sequence inside, or
    containing, one already listed is skipped. Also the kernels' :class:`BusyBefore` (built
    once the mining's temporaries are freed)."""
    p = params or TinyKernelParams()
    chosen: list[KernelSequence] = []
    mined = _candidates(k, p)  # its temporaries are freed before the busy-time arrays exist
    before = BusyBefore(k, busy)
    candidates = [replace(c, idle_ns=before.idle_in(c.positions, c.positions + len(c.names) - 1))
                  for c in mined]
    del mined
    for seq in sorted(candidates, key=lambda s: (-s.idle_ns, -len(s.names))):
        if len(chosen) >= p.top:
            break
        if any(_contains(c.names, seq.names) or _contains(seq.names, c.names) for c in chosen):
            continue
        chosen.append(seq)
    return chosen, before


def tiny_kernel_finding(k: pd.DataFrame, sequences: list[KernelSequence], before: BusyBefore,
                        active_span_ns: int, params: TinyKernelParams) -> Finding | None:
    """``kernel.tiny_kernels`` (module docstring), or None without a recoverable sequence."""
    if not sequences:
        return None
    impact = before.idle_in(
        np.concatenate([s.positions for s in sequences]),
        np.concatenate([s.positions + len(s.names) - 1 for s in sequences]))
    if impact <= 0:
        return None
    top = sequences[0]
    rows: list[dict[str, Any]] = [{
        "kernels": list(s.names), "length": len(s.names), "occurrences": int(s.positions.size),
        "launches": int(s.positions.size * len(s.names)), "kernel_ns": s.kernel_ns,
        "recoverable_ns": s.idle_ns} for s in sequences]
    return impact_finding(
        "kernel.tiny_kernels", "launch-overhead",
        f"{len(sequences)} repeated sequence(s) of short kernels; the most costly runs "
        f"{top.positions.size}× ({len(top.names)} kernels of ≤ {params.max_kernel_ns / 1e3:g} µs "
        f"each) with {idle_text(top.idle_ns)} of GPU idle between them",
        impact, active_span_ns,
        {"recoverable_ns": impact, "max_kernel_ns": params.max_kernel_ns,
         "min_repeats": params.min_repeats, "sequences": rows},
        "Fuse the sequence into one kernel (torch.compile, a fused/foreach op, a custom kernel) "
        "or capture the repeated launches in a CUDA graph so they run back to back.")


def _run(ctx: AnalysisContext, params: TinyKernelParams) -> Output:
    k = stream_order(ctx.trace.kernels)
    sequences, before = sequences_in(k, {t.device_id: t.busy for t in ctx.timelines}, params)
    found = tiny_kernel_finding(k, sequences, before, ctx.active_span_ns, params)
    return Output(findings=[found] if found else [])


TINY_KERNELS = Analysis(
    id="tiny_kernels",
    summary="repeated sequences of short kernels (fusion / CUDA graph candidates)",
    finding_ids=("kernel.tiny_kernels",), params_type=TinyKernelParams, run=_run,
    settings=(
        Setting("tiny-kernel-max", "max_kernel_ns", "duration",
                "kernels at or below this GPU time count as tiny (10us)"),
        Setting("tiny-kernel-gap", "max_gap_ns", "duration",
                "longest gap between kernels of one tiny-kernel sequence (100us)"),
        Setting("tiny-kernel-repeats", "min_repeats", "int",
                "occurrences a sequence needs to be reported (20)"),
    ))
