"""What the timeline views draw, computed once so the renderers only lay it out: the GPU
timeline of the HTML report (operations per stream, downsampled; idle gaps) and the derived
tracks of the Chrome-trace export (launch flows, py-spy slices).

Downsampling (HTML): a stream with more than ``max_ops`` operations keeps only its
``max_ops - 1`` widest idle gaps between operations; each run of operations between them
becomes one bar (``count`` operations, the first one's kind and name). At most ``max_gaps``
idle gaps are drawn: the longest, in time order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.analyses.gap_table import GapAttribution
from infraprof.model.correlation import join_launch_calls
from infraprof.ranking.report import Report
from infraprof.tables import as_frame, decode_tid, largest_positions, plain_text


@dataclass(frozen=True)
class StreamBars:
    """The bars of one stream: one per operation, or per run of operations when the stream
    was downsampled (``downsampled``; ``widest_merged_ns`` is the widest idle gap merged
    away). ``kinds``/``names`` are those of each bar's first operation."""

    device_id: int
    stream_id: int
    ops: int
    starts: list[int]
    ends: list[int]
    counts: list[int]
    kinds: list[str]
    names: list[str]
    downsampled: bool = False
    widest_merged_ns: int = 0


@dataclass(frozen=True)
class DrawnGaps:
    """The idle gaps to draw: ``attributed`` (at most ``max_gaps``, the longest, in time
    order; ``total`` of them existed and the drawn ones hold ``drawn_share`` of their idle
    time), or, without attribution, ``unattributed`` (device, start, end) gaps."""

    attributed: list[GapAttribution]
    total: int
    drawn_share: float
    unattributed: list[tuple[int, int, int]] = field(default_factory=list)


def merge_runs(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], max_bars: int
               ) -> tuple[list[tuple[int, int, int, int]], int]:
    """At most ``max_bars`` runs of operations (sorted by start): the ``max_bars - 1`` widest
    idle gaps between operations separate runs, smaller gaps are merged away. Returns
    (start, end, first index, count) per run and the widest gap merged away (ns)."""
    reach = np.maximum.accumulate(ends)
    idle = starts[1:] - reach[:-1]  # a new array: negated and overwritten in place below
    if len(idle) < max_bars:
        cuts = np.arange(len(idle))
    else:
        np.negative(idle, out=idle)
        cuts = np.sort(np.argpartition(idle, max_bars - 2)[: max_bars - 1])
        np.negative(idle, out=idle)
    widest = 0
    if len(cuts) < len(idle):  # the widest gap that is not a cut
        idle[cuts] = np.iinfo(np.int64).min
        widest = int(idle.max())
    bounds = [0, *(int(c) + 1 for c in cuts), len(starts)]
    runs = [(int(starts[a]), int(reach[b - 1]), a, b - a) for a, b in itertools.pairwise(bounds)]
    return runs, max(0, widest)


def stream_bars(report: Report, max_ops: int) -> list[StreamBars]:
    """Bars per (device, stream), in that order (see the module docstring). Each stream's
    rows are positions into the operations (no copy of its rows); kinds and names are
    turned into text for the drawn bars only."""
    ops = report.trace.gpu_ops()
    start = ops["start_ns"].to_numpy(dtype=np.int64)
    end = ops["end_ns"].to_numpy(dtype=np.int64)
    streams = _stream_rows(ops)
    out = []
    for device, stream in sorted(streams):
        rows = streams[(device, stream)]  # None: every operation
        count = len(ops) if rows is None else len(rows)
        s, e = (start, end) if rows is None else (start[rows], end[rows])
        if count <= max_ops:
            every = np.arange(count) if rows is None else rows
            out.append(StreamBars(int(device), int(stream), count, s.tolist(), e.tolist(),
                                  [1] * count, *_bar_texts(ops, every)))
            continue
        runs, widest = merge_runs(s, e, max_ops)
        firsts = np.array([r[2] for r in runs], dtype=np.int64)
        kinds, names = _bar_texts(ops, firsts if rows is None else rows[firsts])
        out.append(StreamBars(
            int(device), int(stream), count, [r[0] for r in runs], [r[1] for r in runs],
            [r[3] for r in runs], kinds, names, downsampled=True, widest_merged_ns=widest))
    return out


def _stream_rows(ops: pd.DataFrame) -> dict[tuple[int, int], np.ndarray | None]:
    """Each (device, stream) and its rows of ``ops``; None when it has every row (one
    stream: no row numbers and no gathered copies of 10 M starts and ends)."""
    device, stream = ops["device_id"].to_numpy(), ops["stream_id"].to_numpy()
    if len(ops) and device.min() == device.max() and stream.min() == stream.max():
        return {(int(device[0]), int(stream[0])): None}
    grouped = ops.groupby(["device_id", "stream_id"], sort=True).indices
    return {(int(str(key[0])), int(str(key[1]))): np.asarray(rows, dtype=np.int64)
            for key, rows in grouped.items() if isinstance(key, tuple)}


def _bar_texts(ops: pd.DataFrame, rows: np.ndarray) -> tuple[list[str], list[str]]:
    """The kind and name of the operations at ``rows`` as text (a null name: ``"None"``)."""
    kinds = [str(kind) for kind in ops["kind"].iloc[rows]]
    return kinds, [str(name) for name in plain_text(ops["name"].iloc[rows])]


def drawn_gaps(report: Report, max_gaps: int) -> DrawnGaps:
    """The idle gaps the timeline draws (see :class:`DrawnGaps`)."""
    a = report.analysis
    if a is None:
        return DrawnGaps([], 0, 1.0)
    table = a.attributions
    share = 1.0
    rows = np.arange(len(table))
    if len(table) > max_gaps:
        dur = table.dur
        kept = largest_positions(dur, max_gaps)
        total = int(dur.sum())
        share = int(dur[kept].sum()) / total if total else 1.0
        rows = kept[np.argsort(table.g0[kept], kind="stable")]
    plain = [] if len(table) else [
        (tl.device_id, s, e) for tl in a.timelines
        for s, e in zip(tl.gaps.starts.tolist()[:max_gaps], tl.gaps.ends.tolist()[:max_gaps],
                        strict=True)]
    return DrawnGaps(table.records(rows), len(table), share, plain)


def launch_flows(report: Report) -> pd.DataFrame:
    """GPU operations joined to their launching call (matched ones only), by operation start:
    ``api_start_ns, pid, api_tid, start_ns, device_id, stream_id``."""
    t = report.trace
    ops = t.gpu_ops()
    columns = ["api_start_ns", "pid", "api_tid", "start_ns", "device_id", "stream_id"]
    if ops.empty or t.api_calls.empty:
        return as_frame(pd.DataFrame(columns=columns))
    joined = join_launch_calls(ops, t.api_calls, ("global_tid", "start_ns"), how="inner")
    joined["api_tid"] = decode_tid(joined.pop("global_tid").to_numpy(dtype=np.int64))
    return as_frame(joined.sort_values(["start_ns", "device_id", "stream_id"],
                                       kind="stable")[columns])


def main_pid(report: Report) -> int:
    """The process py-spy sampled: the one with the most NVTX events, else the first process
    (0 without processes)."""
    t = report.trace
    if len(t.nvtx):
        return int(t.nvtx["pid"].mode().iloc[0])
    return int(t.processes["pid"].iloc[0]) if len(t.processes) else 0


@dataclass(frozen=True)
class PyspySlice:
    """Consecutive py-spy samples of one thread with the same leaf frame: ``[start_ns,
    end_ns)`` on the nsys timeline, ``stack`` root first (``func (file.py:line)``)."""

    tid: int
    start_ns: int
    end_ns: int
    stack: tuple[str, ...]


def _stack_labels(frames: pd.DataFrame) -> dict[int, tuple[str, ...]]:
    ordered = frames.sort_values(["stack_id", "depth"])
    stacks: dict[int, list[str]] = {}
    for sid, fn, path, line in zip(ordered["stack_id"], ordered["function"], ordered["file"],
                                   ordered["line"], strict=True):
        where = f" ({PurePath(str(path)).name}:{int(line)})" if path else ""
        stacks.setdefault(int(sid), []).append(f"{fn}{where}")
    return {sid: tuple(labels) for sid, labels in stacks.items()}


def pyspy_slices(report: Report) -> list[PyspySlice]:
    """py-spy samples merged into slices per thread (ordered by tid, then time): a sample
    stands for one sampling period; samples with the timestamp of the open slice (py-spy's
    µs resolution) are skipped; a slice ends at the next different sample."""
    py = report.analysis.pyspy if report.analysis else None
    if py is None or py.samples is None or py.samples.empty:
        return []
    stacks = _stack_labels(py.frames)
    period = py.period_ns
    out: list[PyspySlice] = []
    ordered = py.samples.sort_values(["tid", "start_ns"])
    for tid, g in ordered.groupby("tid", sort=True):
        run: tuple[int, int, int] | None = None  # (start, end, stack)
        for start, sid in zip(g["start_ns"].tolist(), g["stack_id"].tolist(), strict=True):
            leaf = stacks.get(int(sid), ("?",))[-1]
            if run is not None and int(start) <= run[0]:
                continue
            if run is not None and stacks.get(run[2], ("?",))[-1] == leaf and start <= run[1]:
                run = (run[0], int(start) + period, run[2])
                continue
            if run is not None:
                out.append(PyspySlice(int(str(tid)), run[0], min(run[1], int(start)),
                                      stacks.get(run[2], ("?",))))
            run = (int(start), int(start) + period, int(sid))
        if run is not None:
            out.append(PyspySlice(int(str(tid)), run[0], run[1], stacks.get(run[2], ("?",))))
    return out
