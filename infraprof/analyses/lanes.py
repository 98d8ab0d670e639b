"""Two analysis threads ("lanes") when the trace leaves the memory for them.

numpy releases the GIL in its sorts, searches, gathers and arithmetic on large arrays, so
two analyses on two threads use two cores. The **side lane** (:data:`SIDE_LANE`: the launch
join, the NVTX projection, the gate's run metrics, the kernel classes, the communication and
the tiny-kernel mining, in registry order: ~40 % of the analyses' CPU time on the
real-derived bench files) runs on a second thread once :data:`SIDE_STARTS_AFTER` (the
device timelines, which the side lane reads) ran on the main thread; the main thread runs
every other analysis in registry order. Every analysis computes what it computed on one
thread (the context's shared values are computed once,
:class:`~infraprof.shared_value.shared_value`), and the registry puts the outputs back in
its own order, so the findings and reports are the same.

Measured on 2 cores (``docs/performance.md``, "after round 13"), ``analyze -f json``: 1 M
kernels 3.09–3.21 → 2.55–2.64 s wall, peak 366 → 403–407 MB; 5 M kernels 10.8–10.9 → 8.4–8.5 s,
peak 1.01–1.03 → 1.19–1.20 GB (CPU time the same). At 10 M kernels two lanes took the
analyses from 14–16 to 9.4 s wall, but the peak rose from ~1.9 to 2.26 GB (two steps'
temporaries held at once), above the 2 GB a serial run needs.

**When** (:func:`side_lane_fits`): at least two usable cores, and the estimated peak with
two lanes, :data:`BASE_BYTES` + :data:`BYTES_PER_TABLE_BYTE` × the trace's tables in memory
(:func:`table_bytes`), within the memory budget: ``INFRAPROF_MEMORY_BUDGET`` (bytes, or a
size such as ``4GiB``; ``0``: one lane always), else :data:`DEFAULT_BUDGET` (2 × 10⁹ B, what
a serial 10 M-kernel analysis needs), and within half the memory available now. The factor
bounds the measured ones from above ((peak − 100 MB) / tables: 3.1 at 1 M kernels, 2.8 at
5 M and at 10 M): at 10 M kernels (786 MB of tables) the estimate is 2.85 GB and the
analyses run on one thread; up to ~540 MB of tables (~7 M kernels of the bench's real-derived
trace) they run on two.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import pandas as pd

from infraprof.analyses.base import Analysis
from infraprof.machine import available_bytes, usable_cores
from infraprof.model import Trace
from infraprof.units import parse_size

SIDE_LANE: Final = ("launch", "nvtx", "run_metrics", "kernel_classes", "communication",
                    "tiny_kernels")
SIDE_STARTS_AFTER: Final = "timeline"
BASE_BYTES: Final = 100 * 10**6
"""The interpreter, numpy, pandas and infraprof's modules (resident before any table)."""
BYTES_PER_TABLE_BYTE: Final = 3.5
DEFAULT_BUDGET: Final = 2 * 10**9
BUDGET_ENV: Final = "INFRAPROF_MEMORY_BUDGET"


def table_bytes(trace: Trace) -> int:
    """Bytes of the trace's tables in memory (their columns' arrays; texts as their codes)."""
    return sum(int(value.memory_usage(index=True, deep=False).sum())
               for value in (getattr(trace, f.name) for f in dataclasses.fields(trace))
               if isinstance(value, pd.DataFrame))


def memory_budget() -> int:
    """``INFRAPROF_MEMORY_BUDGET`` in bytes (``UsageError`` when it is not a size), else
    :data:`DEFAULT_BUDGET`."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET
    if text == "0":
        return 0
    return parse_size(text, BUDGET_ENV)


def side_lane_fits(trace: Trace, budget: int | None = None, cores: int | None = None,
                   available: int | None = None) -> bool:
    """Whether the side lane runs (module docstring). ``budget``, ``cores`` and ``available``
    (bytes) default to the environment's."""
    if (cores if cores is not None else usable_cores()) < 2:
        return False
    need = BASE_BYTES + BYTES_PER_TABLE_BYTE * table_bytes(trace)
    limit = memory_budget() if budget is None else budget
    free = available_bytes() if available is None else available
    return need <= limit and (free is None or need <= free // 2)


def run_two_lanes(main: Sequence[Analysis], side: Sequence[Analysis],
                  step: Callable[[Analysis], None], position: dict[str, int]) -> None:
    """``step`` every analysis of ``main`` on this thread and of ``side`` on another, which
    starts once :data:`SIDE_STARTS_AFTER` was stepped (or when ``main`` ends). A lane stops
    at its first error and the other one at its next analysis; the error of the analysis
    first in registry order (``position``) is raised once both lanes stopped."""
    go, stop = threading.Event(), threading.Event()
    failures: list[tuple[int, BaseException]] = []

    def run_lane(lane: Sequence[Analysis]) -> None:
        for analysis in lane:
            if stop.is_set():
                return
            try:
                step(analysis)
            except BaseException as error:  # re-raised on the main thread
                failures.append((position[analysis.id], error))
                stop.set()
                return
            if analysis.id == SIDE_STARTS_AFTER:
                go.set()

    def run_side() -> None:
        go.wait()
        run_lane(side)

    thread = threading.Thread(target=run_side, name="infraprof-side-lane", daemon=True)
    thread.start()
    try:
        run_lane(main)
    finally:
        go.set()
        thread.join()
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


class RunningSteps:
    """The analyses running now, for the progress line: ``progress("Analysing: gaps")``
    when a step starts on one lane, ``"Analysing: gaps, tiny_kernels"`` while both lanes run
    one, and the remaining one again when a lane's step ends while the other's runs."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self._progress = progress
        self._running: list[str] = []
        self._lock = threading.Lock()

    @contextmanager
    def step(self, analysis_id: str) -> Iterator[None]:
        self._update(lambda running: running.append(analysis_id))
        try:
            yield
        finally:
            self._update(lambda running: running.remove(analysis_id))

    def _update(self, change: Callable[[list[str]], None]) -> None:
        if self._progress is None:
            return
        with self._lock:
            change(self._running)
            if self._running:  # nothing left: the next step's start says what runs
                self._progress("Analysing: " + ", ".join(self._running))
