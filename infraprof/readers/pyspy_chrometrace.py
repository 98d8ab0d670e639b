"""py-spy ``chrometrace`` output: begin/end slices per thread, expanded into samples at the
sampling period (bounded by :data:`~infraprof.readers.pyspy.MAX_EXPANDED_SAMPLES`; beyond it,
or with impossible timestamps, thread ids or lines, the file is bad input: exit 3).
Used by :func:`infraprof.readers.pyspy.read_pyspy`."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.readers.pyspy import (
    _INT64_MAX,
    _INT64_MIN,
    _THREAD_RE,
    DEFAULT_RATE_HZ,
    MAX_EXPANDED_SAMPLES,
    MAX_RATE_HZ,
    MAX_TS_US,
    PYSPY_SAMPLES,
    UNKNOWN_TID,
    Frame,
    PyspyProfile,
    _aggregate_frame,
    _Interner,
    _threads_frame,
)


def _int_field(path: Path, value: Any, what: str, index: int) -> int:
    """An integer field (``tid``, ``line``) of event ``index``, within int64."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{path}: chrometrace event {index} has a non-integer {what} "
                         f"({str(value)[:40]!r}); re-record the py-spy profile") from exc
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InputError(f"{path}: chrometrace event {index} has an out-of-range {what}")
    return number


def _timestamp_ns(path: Path, ev: dict[str, Any], index: int) -> int:
    """``ts`` (µs) of event ``index`` in ns; finite and within :data:`MAX_TS_US`."""
    try:
        ts_us = float(ev["ts"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{path}: chrometrace event {index} lacks a numeric ts") from exc
    if not math.isfinite(ts_us) or abs(ts_us) > MAX_TS_US:
        raise InputError(f"{path}: chrometrace event {index} has an impossible timestamp "
                         f"(ts {ts_us:g} µs); not a py-spy recording, re-record it")
    return round(ts_us * 1000)


def _chrome_events(path: Path, events: list[Any]) -> dict[int, list[tuple[int, int, str, Frame]]]:
    """``B``/``E`` events per chrometrace ``tid``: ``(ts_ns, index, ph, frame)``."""
    per_thread: dict[int, list[tuple[int, int, str, Frame]]] = defaultdict(list)
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or ev.get("ph") not in ("B", "E"):
            continue
        ts_ns = _timestamp_ns(path, ev, i)
        key = _int_field(path, ev.get("tid", 0), "tid", i)
        args = ev.get("args")
        args = args if isinstance(args, dict) else {}
        frame = (str(ev.get("name", "?")), str(args.get("filename") or ""),
                 _int_field(path, args.get("line") or 0, "line", i))
        per_thread[key].append((ts_ns, i, str(ev["ph"]), frame))
    return per_thread


def _thread_segments(evs: list[tuple[int, int, str, Frame]]
                     ) -> tuple[int, str | None, list[tuple[int, tuple[Frame, ...]]]]:
    """Replay one thread's B/E events: ``(tid, name, [(start_ns, stack)])``, one segment per
    distinct event time (empty stacks where nothing was on the stack)."""
    evs.sort(key=lambda e: (e[0], e[1]))
    tid, name = UNKNOWN_TID, None
    stack: list[Frame] = []
    segments: list[tuple[int, tuple[Frame, ...]]] = []
    j = 0
    while j < len(evs):
        ts = evs[j][0]
        while j < len(evs) and evs[j][0] == ts:
            _, _, ph, frame = evs[j]
            if ph == "B":
                stack.append(frame)
            elif stack:
                stack.pop()
            j += 1
        frames: tuple[Frame, ...] = ()
        if stack:
            m = _THREAD_RE.match(stack[0][0]) if not stack[0][1] else None
            if m:
                tid, name = int(m[1]), m[2] or None
                frames = tuple(stack[1:])
            else:
                frames = tuple(stack)
        segments.append((ts, frames))
    return tid, name, segments


def _expand(path: Path, seg_start: list[int], seg_count: list[int], period_ns: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Sample times of segments expanded at ``period_ns`` (vectorised) and each sample's
    segment index. Refuses more than :data:`MAX_EXPANDED_SAMPLES` samples in all."""
    total = sum(seg_count)
    if total > MAX_EXPANDED_SAMPLES:
        raise InputError(f"{path}: the chrometrace slices expand to {total:,} samples, more "
                         f"than the {MAX_EXPANDED_SAMPLES:,} infraprof reads (a slice spans "
                         f"{max(seg_count) * period_ns / 1e9:,.0f} s); the file is damaged")
    counts = np.asarray(seg_count, dtype=np.int64)
    segment = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    starts = (np.asarray(seg_start, dtype=np.int64)[segment]
              + (np.arange(total, dtype=np.int64) - first) * period_ns)
    return starts, segment


def read_chrometrace(path: Path, events: list[Any], rate_hz: float | None) -> PyspyProfile:
    notes: list[str] = []
    if rate_hz is None:
        rate_hz = DEFAULT_RATE_HZ
        notes.append(f"sampling rate unknown; assumed py-spy's default {DEFAULT_RATE_HZ:g} Hz")
    if not (math.isfinite(rate_hz) and 0 < rate_hz <= MAX_RATE_HZ):
        raise InputError(f"{path}: sampling rate {rate_hz:g} Hz is not a py-spy rate "
                         f"(0 < rate <= {MAX_RATE_HZ:g}); check the capture manifest")
    period_ns = max(1, round(1e9 / rate_hz))
    stacks = _Interner()
    threads: dict[tuple[int, int], str | None] = {}
    seg_start: list[int] = []
    seg_count: list[int] = []
    seg_meta: list[tuple[int, int, int]] = []  # tid, thread_key, stack_id
    for key, evs in _chrome_events(path, events).items():
        tid, name, segments = _thread_segments(evs)
        threads[(tid, key)] = name
        for (t0, frames), nxt in zip(segments, [*segments[1:], None], strict=True):
            if frames:
                seg_start.append(t0)
                seg_count.append(1 if nxt is None else max(1, round((nxt[0] - t0) / period_ns)))
                seg_meta.append((tid, key, stacks.get(frames)))
    starts, segment = _expand(path, seg_start, seg_count, period_ns)
    meta = np.asarray(seg_meta, dtype=np.int64).reshape(-1, 3)
    samples = table_schema.conform(pd.DataFrame({
        "start_ns": starts, "tid": meta[segment, 0], "thread_key": meta[segment, 1],
        "stack_id": meta[segment, 2],
    }), PYSPY_SAMPLES)
    samples = table_schema.as_frame(samples.sort_values(["start_ns", "tid"], kind="stable")
                         .reset_index(drop=True))
    if samples.empty:
        notes.append("no samples in the chrometrace (py-spy attached too late?)")
    agg = samples.groupby(["tid", "stack_id"]).size().reset_index(name="n")
    counts = {(int(t), int(s)): int(n) for t, s, n in agg.itertuples(index=False)}
    return PyspyProfile(
        path=str(path), format="chrometrace", timed=True, samples=samples,
        aggregate=_aggregate_frame(counts), frames=stacks.frames(),
        threads=_threads_frame(threads), rate_hz=rate_hz, notes=tuple(notes),
    )
