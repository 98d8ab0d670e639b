"""Python frames of a thread during time windows: window summaries, gap stacks.

Pure functions over the aligned py-spy tables of :class:`infraprof.model.clock.AlignedPyspy`
(``samples``: ``start_ns`` on the nsys timeline, ``tid``, ``stack_id``; ``frames``:
``stack_id, depth, function, file, line``, root first). A sample at ``start_ns`` stands for one
sampling period.

How a window is summarised: the samples' stacks form a call tree (nodes keyed by function and
file). Starting at the root, descend while one child holds at least
:data:`ENCLOSING_SHARE` of the samples: those frames are the *context* the window runs in
(``<module> > main > run``). The *frames* are the children of the last context node (inclusive
share, with the line where most of their samples were) plus the node's own lines (time spent
in the node itself, e.g. a ``time.sleep`` call, which py-spy shows as the caller's line). The
top frame is the first of them. *stacks* are the most common full stacks.

Windows shorter than the alignment error are refused: a sample's position on the nsys timeline
is uncertain by that much, so it cannot be blamed on a shorter window.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pandas as pd

from infraprof.collapsed import write_collapsed
from infraprof.readers.pyspy import format_frame
from infraprof.tables import positions_of

Frame = tuple[str, str, int]
ENCLOSING_SHARE = 0.95


@dataclass(frozen=True)
class FrameShare:
    """One frame's share of a window's samples."""

    function: str
    file: str
    line: int
    share: float
    samples: int
    self_time: bool = False

    @property
    def label(self) -> str:
        """``collate() loader.py:87``"""
        where = f" {PurePath(self.file).name}:{self.line}" if self.file else ""
        return f"{self.function}(){where}"


@dataclass(frozen=True)
class StackShare:
    frames: tuple[Frame, ...]
    share: float
    samples: int

    @property
    def label(self) -> str:
        return " > ".join(f"{f}() {PurePath(p).name}:{n}" if p else f
                          for f, p, n in self.frames)


@dataclass(frozen=True)
class WindowStacks:
    """What one thread's Python code did during ``[start_ns, end_ns)``."""

    tid: int
    start_ns: int
    end_ns: int
    samples: int
    coverage: float
    context: tuple[Frame, ...] = ()
    frames: tuple[FrameShare, ...] = ()
    stacks: tuple[StackShare, ...] = ()
    refused: str | None = None

    @property
    def top(self) -> FrameShare | None:
        return self.frames[0] if self.frames else None


def _stack_table(frames: pd.DataFrame) -> dict[int, tuple[Frame, ...]]:
    out: dict[int, list[Frame]] = defaultdict(list)
    ordered = frames.sort_values(["stack_id", "depth"], kind="stable")
    for sid, f, p, n in ordered[["stack_id", "function", "file", "line"]].itertuples(index=False):
        out[int(sid)].append((str(f), str(p), int(n)))
    return {k: tuple(v) for k, v in out.items()}


def summarize_stacks(counts: Counter[tuple[Frame, ...]], top: int = 5,
                     sample_counts: Counter[tuple[Frame, ...]] | None = None
                     ) -> tuple[tuple[Frame, ...], tuple[FrameShare, ...], tuple[StackShare, ...]]:
    """Context, frame breakdown and top stacks of weighted stacks (see module doc).

    ``counts`` may be weights (e.g. idle ns per stack) rather than sample counts; then
    ``sample_counts`` (same keys) gives the ``samples`` reported per frame and stack.
    """
    real = counts if sample_counts is None else sample_counts
    total = sum(counts.values())
    if total == 0:
        return (), (), ()
    members = list(counts.items())
    context: list[Frame] = []
    depth = 0
    while True:
        children: dict[tuple[str, str], int] = defaultdict(int)
        for stack, n in members:
            if len(stack) > depth:
                children[stack[depth][:2]] += n
        if not children:
            break
        key, n = max(children.items(), key=lambda kv: kv[1])
        if n < ENCLOSING_SHARE * total:
            break
        members = [(s, c) for s, c in members if len(s) > depth and s[depth][:2] == key]
        context.append(_common_line(members, depth))
        depth += 1
    shares: list[FrameShare] = []
    groups: dict[tuple[str, str], list[tuple[tuple[Frame, ...], int]]] = defaultdict(list)
    self_lines: Counter[Frame] = Counter()
    self_samples: Counter[Frame] = Counter()
    for stack, n in members:
        if len(stack) > depth:
            groups[stack[depth][:2]].append((stack, n))
        elif stack:
            self_lines[stack[-1]] += n
            self_samples[stack[-1]] += real[stack]
    for group in groups.values():
        n = sum(c for _, c in group)
        f, p, line = _common_line(group, depth)
        shares.append(FrameShare(f, p, line, n / total, sum(real[s] for s, _ in group)))
    for (f, p, line), n in self_lines.items():
        shares.append(FrameShare(f, p, line, n / total, self_samples[(f, p, line)],
                                 self_time=True))
    shares.sort(key=lambda s: (-s.share, -s.samples, s.function, s.line))
    stacks = tuple(StackShare(s, n / total, real[s]) for s, n in counts.most_common(top))
    return tuple(context), tuple(shares[:top]), stacks


def _common_line(members: Sequence[tuple[tuple[Frame, ...], int]], depth: int) -> Frame:
    lines: Counter[Frame] = Counter()
    for stack, n in members:
        lines[stack[depth]] += n
    return lines.most_common(1)[0][0]


class _ThreadSamples:
    """Sorted sample times and stacks of one thread, for fast window queries."""

    def __init__(self, samples: pd.DataFrame, frames: pd.DataFrame, tid: int) -> None:
        rows = samples[samples["tid"] == tid].sort_values("start_ns", kind="stable")
        self.ts = rows["start_ns"].to_numpy(np.int64)
        self.sids = rows["stack_id"].to_numpy(np.int64)
        self.stacks = _stack_table(frames)

    def counts(self, start_ns: int, end_ns: int) -> Counter[tuple[Frame, ...]]:
        lo, hi = np.searchsorted(self.ts, [start_ns, end_ns], side="left")
        ids, n = np.unique(self.sids[lo:hi], return_counts=True)
        found: Counter[tuple[Frame, ...]] = Counter()
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            found[self.stacks.get(i, ())] += c  # two ids with the same frames: one stack
        return found


def stacks_in_window(samples: pd.DataFrame, frames: pd.DataFrame, tid: int, start_ns: int,
                     end_ns: int, alignment_error_ns: int, period_ns: int, top: int = 5,
                     _cache: _ThreadSamples | None = None) -> WindowStacks:
    """Dominant Python stacks of thread ``tid`` during ``[start_ns, end_ns)`` (nsys timeline).

    Refuses (``refused`` set, no frames) windows shorter than ``alignment_error_ns``.
    """
    length = end_ns - start_ns
    if length < alignment_error_ns:
        return WindowStacks(
            tid, start_ns, end_ns, 0, 0.0,
            refused=f"window {length / 1e6:.2f} ms is shorter than the py-spy alignment error "
                    f"{alignment_error_ns / 1e6:.2f} ms; not attributed to Python frames")
    data = _cache or _ThreadSamples(samples, frames, tid)
    counts = data.counts(start_ns, end_ns)
    n = sum(counts.values())
    coverage = min(1.0, n * period_ns / length) if length > 0 else 0.0
    if n == 0:
        return WindowStacks(tid, start_ns, end_ns, 0, 0.0,
                            refused="no py-spy samples of this thread in the window")
    context, shares, stacks = summarize_stacks(counts, top)
    return WindowStacks(tid, start_ns, end_ns, n, coverage, context, shares, stacks)


def window_stack_counts(samples: pd.DataFrame, frames: pd.DataFrame, windows: pd.DataFrame
                        ) -> tuple[pd.DataFrame, list[tuple[Frame, ...]]]:
    """The samples of each window (``windows``: ``job, tid, start_ns, end_ns``; a window
    holds its thread's samples in ``[start_ns, end_ns)``), counted per (job, stack): a
    frame with ``job``, ``stack`` (an index into the returned stacks; equal frame tuples are
    one stack, a stack id without frames is ``()``), ``count`` and ``first`` (the order in
    which :func:`windows_counts` meets the stack within the job: window, then stack id).
    Searches and counts on arrays, one pass per thread."""
    table = _stack_table(frames)
    ids = np.array(sorted(table), dtype=np.int64)
    stacks, canon = _canonical_stacks([table[i] for i in ids.tolist()])
    empty = stacks.index(()) if () in stacks else len(stacks)
    if empty == len(stacks):
        stacks.append(())
    parts = []
    tids = windows["tid"].to_numpy(np.int64)
    for tid in pd.unique(tids).tolist():
        mine = np.flatnonzero(tids == tid)
        rows = samples[samples["tid"] == tid].sort_values("start_ns", kind="stable")
        ts, sids = rows["start_ns"].to_numpy(np.int64), rows["stack_id"].to_numpy(np.int64)
        lo = np.searchsorted(ts, windows["start_ns"].to_numpy(np.int64)[mine], side="left")
        hi = np.searchsorted(ts, windows["end_ns"].to_numpy(np.int64)[mine], side="left")
        n = np.maximum(hi - lo, 0)
        at = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        raw = sids[at]
        known, found = positions_of(ids, raw)
        parts.append(pd.DataFrame({
            "job": np.repeat(windows["job"].to_numpy(np.int64)[mine], n),
            "window": np.repeat(mine, n), "raw": raw,
            "stack": np.where(found, canon[known] if len(ids) else 0, empty)}))
    pairs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {c: np.empty(0, dtype=np.int64) for c in ("job", "window", "raw", "stack")})
    pairs = pairs.sort_values(["job", "window", "raw"], kind="stable")
    counted = pairs.groupby(["job", "stack"], sort=False).agg(
        count=("raw", "size")).reset_index()
    counted["first"] = np.arange(len(counted))
    return counted, stacks


def _canonical_stacks(tuples: list[tuple[Frame, ...]]) -> tuple[list[tuple[Frame, ...]],
                                                                np.ndarray]:
    """The distinct frame tuples (first appearance) and each input's index among them."""
    index: dict[tuple[Frame, ...], int] = {}
    canon = np.array([index.setdefault(t, len(index)) for t in tuples], dtype=np.int64)
    return list(index), canon


def windows_counts(samples: pd.DataFrame, frames: pd.DataFrame, tid: int,
                   windows: Iterable[tuple[int, int]], alignment_error_ns: int
                   ) -> list[Counter[tuple[Frame, ...]] | None]:
    """Stack counts of thread ``tid``'s samples per window (``None``: the window is shorter
    than the alignment error and is refused, as in :func:`stacks_in_window`)."""
    cache = _ThreadSamples(samples, frames, tid)
    return [None if b - a < alignment_error_ns else cache.counts(a, b) for a, b in windows]


def pick_thread(samples: pd.DataFrame, nvtx: pd.DataFrame, names: Sequence[str] | None = None
                ) -> int | None:
    """The thread with the most NVTX ranges (of ``names``) that also has py-spy samples."""
    ranges = nvtx[(nvtx["kind"] == "range") & nvtx["end_ns"].notna()]
    if names:
        ranges = ranges[ranges["name"].isin(list(names))]
    sampled = set(samples["tid"].astype(int))
    for tid, _ in ranges["tid"].value_counts().items():
        if int(tid) in sampled:
            return int(tid)
    return None


def collapsed_in_windows(samples: pd.DataFrame, frames: pd.DataFrame, tid: int,
                         windows: Iterable[tuple[int, int]]) -> str:
    """py-spy ``raw`` (collapsed) text of thread ``tid``'s samples inside ``windows`` — e.g.
    "CPU while the GPU was idle"; root frame ``thread (tid)``, written by
    :func:`infraprof.collapsed.write_collapsed`. Stacks in the order the windows first hold
    them (window, then stack id); all windows counted at once (:func:`window_stack_counts`)."""
    bounds = np.array(list(windows), dtype=np.int64).reshape(-1, 2)
    counted, stacks = window_stack_counts(samples, frames, pd.DataFrame({
        "job": np.zeros(len(bounds), dtype=np.int64),
        "tid": np.full(len(bounds), tid, dtype=np.int64),
        "start_ns": bounds[:, 0], "end_ns": bounds[:, 1]}))
    total: Counter[tuple[Frame, ...]] = Counter()
    for stack, n in zip(counted["stack"].tolist(), counted["count"].tolist(), strict=True):
        total[stacks[stack]] += n
    return write_collapsed(([f"thread ({tid})", *(format_frame(frame) for frame in stack)], n)
                           for stack, n in total.items())
