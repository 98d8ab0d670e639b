"""``infraprof export --window``: the time window to export, in ns on the trace's timeline.

* ``START:END`` — durations with a unit (``ns``, ``us``, ``ms``, ``s``; ``0`` alone is
  allowed) counted from the trace's first event (:func:`trace_start_ns`, the zero of the
  Perfetto UI's time axis for a whole-trace export); either side may be empty (``200ms:``
  runs to the end, ``:1s`` from the start).
* ``step:N`` or ``step:N-M`` — NVTX steps ``N`` to ``M`` (1 = the first, inclusive), the
  iteration ranges of :func:`~infraprof.analyses.phases.nvtx_steps` (repeated ranges named
  like step/iter/batch/epoch, else the most repeated top-level range) in start order; the
  window runs from step ``N``'s start to step ``M``'s end.

A slice is exported when it overlaps the window (it is kept whole, not clipped).
"""

from __future__ import annotations

import re

import numpy as np

from infraprof.analyses.phases import nvtx_steps
from infraprof.errors import UsageError
from infraprof.model import Trace
from infraprof.render.timeline_export import trace_start_ns
from infraprof.units import parse_duration

_STEPS = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_FORMS = "use START:END (durations such as 1.5s:2s, 200ms:) or step:N or step:N-M"


def _offset(text: str, window: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    ns = 0.0 if text == "0" else parse_duration(text)
    if ns is None or not np.isfinite(ns) or ns < 0 or ns > 1e18:
        raise UsageError(f"--window {window!r}: {text!r} is not a duration; {_FORMS}")
    return round(ns)


def _step_window(spec: str, window: str, trace: Trace) -> tuple[int, int]:
    match = _STEPS.match(spec)
    if match is None:
        raise UsageError(f"--window {window!r}: not understood; {_FORMS}")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    found = nvtx_steps(trace.nvtx)
    if found is None:
        raise UsageError(f"--window {window!r}: the trace has no NVTX step ranges (repeated "
                         "ranges named like step, iter, batch or epoch); give START:END")
    name, steps = found
    steps = steps.sort_values("start_ns", kind="stable")
    count = len(steps)
    if not 1 <= first <= last <= count:
        raise UsageError(f"--window {window!r}: the trace has steps 1 to {count} (NVTX range "
                         f"{name!r}); give step:N or step:N-M with N <= M in that range")
    lo = int(steps["start_ns"].iloc[first - 1])
    hi = int(steps["end_ns"].iloc[first - 1:last].max())
    return lo, max(hi, lo + 1)


def parse_window(window: str, trace: Trace) -> tuple[int, int]:
    """``[lo, hi)`` ns of ``window`` (module docstring); ``UsageError`` when it is malformed,
    empty or names steps the trace does not have."""
    if window.strip().startswith("step:"):
        return _step_window(window.strip()[5:], window, trace)
    if window.count(":") != 1:
        raise UsageError(f"--window {window!r}: not understood; {_FORMS}")
    left, right = window.split(":")
    origin = trace_start_ns(trace)
    start, end = _offset(left, window), _offset(right, window)
    lo = origin + (start or 0)
    hi = origin + end if end is not None else np.iinfo(np.int64).max
    if hi <= lo:
        raise UsageError(f"--window {window!r}: the end must come after the start")
    return lo, int(hi)
