"""Phases: each device's active span split into start-up, steady state and teardown.

The steady state is found, in order of preference:

1. ``nvtx``: NVTX ranges that look like iterations — names (digits normalised, ``step 12`` →
   ``step <n>``) containing ``step``, ``iter``, ``batch`` or ``epoch``; else the most repeated
   top-level range name (a range not nested in another one of its thread). At least
   :data:`MIN_ITERATIONS` instances. Steady state runs from the first instance's start to the
   last one's end (clipped to the device's span); iterations = the number of instances.
2. ``kernel-period``: the device's kernel-name sequence repeats with a period of ``p`` kernels
   (the smallest ``p`` ≤ :data:`MAX_PERIOD` whose match rate ``mean(name[i] == name[i+p])`` is
   at least 90 % of the best rate, the best being ≥ 50 %). Steady state runs from the first
   kernel of the first fully repeated period to the last kernel of the last one; iterations =
   kernels in it / ``p``.
3. ``none``: the whole active span is steady state.

A gap belongs to the phase holding its midpoint; a finding to the phase holding most of its
idle time (``None`` for findings that are not built from gaps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model import Trace

PHASES = ("startup", "steady", "teardown")
MIN_ITERATIONS = 3
MAX_PERIOD = 256
_STEP_LIKE = re.compile(r"step|iter|batch|epoch", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class DevicePhases:
    """One device's phases (all ns on the trace's timeline)."""

    device_id: int
    method: str
    detail: str
    span_start_ns: int
    steady_start_ns: int
    steady_end_ns: int
    span_end_ns: int
    iterations: int | None

    def phase_at(self, t_ns: int) -> str:
        if t_ns < self.steady_start_ns:
            return "startup"
        return "teardown" if t_ns > self.steady_end_ns else "steady"

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "method": self.method, "detail": self.detail,
                "startup": [self.span_start_ns, self.steady_start_ns],
                "steady": [self.steady_start_ns, self.steady_end_ns],
                "teardown": [self.steady_end_ns, self.span_end_ns],
                "iterations": self.iterations}


def _top_level(ranges: pd.DataFrame) -> pd.Series:
    """Whether each range is not nested in an earlier range of its thread."""
    r = pd.DataFrame({"tid": ranges["global_tid"].to_numpy(np.int64),
                      "start": ranges["start_ns"].to_numpy(np.float64),
                      "end": ranges["end_ns"].to_numpy(np.float64)}, index=ranges.index)
    r = r.sort_values(["tid", "start"], kind="stable")
    prev_end = r.groupby("tid")["end"].cummax().groupby(r["tid"]).shift(1).fillna(-np.inf)
    top: pd.Series = (r["start"] >= prev_end).reindex(ranges.index)
    return top


def nvtx_steps(nvtx: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The iteration-like range name and its instances (see the module docstring)."""
    ranges = nvtx[(nvtx["kind"] == "range") & nvtx["end_ns"].notna()]
    if ranges.empty:
        return None
    names = ranges["name"].astype(str).str.replace(_DIGITS, "<n>", regex=True)
    counts = names.value_counts()
    step_like = counts[[bool(_STEP_LIKE.search(n)) for n in counts.index]]
    if len(step_like) and step_like.iloc[0] >= MIN_ITERATIONS:
        name = str(step_like.index[0])
    else:
        top = names[_top_level(ranges).to_numpy(bool)].value_counts()
        if top.empty or top.iloc[0] < MIN_ITERATIONS:
            return None
        name = str(top.index[0])
    return name, ranges[(names == name).to_numpy(bool)]


def kernel_period(codes: np.ndarray) -> tuple[int, int, int] | None:
    """``(period, first_index, last_index)`` of the repeated part of a code sequence."""
    n = len(codes)
    periods = range(1, min(MAX_PERIOD, n // MIN_ITERATIONS) + 1)
    if not periods:
        return None
    rates = np.array([np.mean(codes[p:] == codes[:-p]) for p in periods])
    best = float(rates.max())
    if best < 0.5:
        return None
    p = int(np.nonzero(rates >= 0.9 * best)[0][0]) + 1
    match = np.concatenate(([0], np.cumsum(codes[p:] == codes[:-p])))
    full = np.nonzero(match[p:] - match[:-p] == p)[0]  # i: names i..i+2p-1 repeat
    if not len(full):
        return None
    return p, int(full[0]), int(full[-1]) + 2 * p - 1


def device_phases(trace: Trace, timelines: list[DeviceTimeline]) -> list[DevicePhases]:
    """Phases of every device with GPU activity (module docstring)."""
    steps = nvtx_steps(trace.nvtx)
    out = []
    for tl in timelines:
        lo, hi = tl.span_start_ns, tl.span_end_ns
        if steps is not None:
            name, inst = steps
            s0 = max(lo, int(inst["start_ns"].min()))
            s1 = min(hi, int(inst["end_ns"].max()))
            if s0 < s1:
                out.append(DevicePhases(tl.device_id, "nvtx",
                                        f"NVTX range {name!r} ({len(inst)} instances)",
                                        lo, s0, s1, hi, len(inst)))
                continue
        out.append(_from_kernels(trace, tl.device_id, lo, hi))
    return out


def _from_kernels(trace: Trace, device: int, lo: int, hi: int) -> DevicePhases:
    k = trace.kernels[trace.kernels["device_id"] == device].sort_values("start_ns",
                                                                        kind="stable")
    codes = pd.factorize(k["name"])[0] if len(k) else np.zeros(0, dtype=np.int64)
    found = kernel_period(np.asarray(codes))
    if found is None:
        return DevicePhases(device, "none", "no repeated NVTX range or kernel sequence; the "
                            "whole active span counts as steady state", lo, lo, hi, hi, None)
    p, first, last = found
    starts, ends = k["start_ns"].to_numpy(np.int64), k["end_ns"].to_numpy(np.int64)
    return DevicePhases(device, "kernel-period",
                        f"kernel sequence repeats every {p} kernels",
                        lo, int(starts[first]), int(ends[first:last + 1].max()), hi,
                        max(1, (last - first + 1) // p))


def phase_of_gap(phases: dict[int, DevicePhases], device_id: int, start_ns: int,
                 end_ns: int) -> str:
    """The phase holding the gap's midpoint (``steady`` for devices without phases)."""
    ph = phases.get(device_id)
    return "steady" if ph is None else ph.phase_at((start_ns + end_ns) // 2)


def phase_codes(phases: dict[int, DevicePhases], device: np.ndarray, start_ns: np.ndarray,
                end_ns: np.ndarray) -> np.ndarray:
    """:func:`phase_of_gap` of many gaps at once, as indexes into :data:`PHASES` (int8)."""
    mid = start_ns + (end_ns - start_ns) // 2
    out = np.full(len(mid), PHASES.index("steady"), dtype=np.int8)
    for device_id, ph in phases.items():
        mine = device == device_id
        out[mine & (mid > ph.steady_end_ns)] = PHASES.index("teardown")
        out[mine & (mid < ph.steady_start_ns)] = PHASES.index("startup")
    return out


def phases_dict(phases: list[DevicePhases]) -> dict[str, Any]:
    """The JSON ``phases`` section: how the phases were found, per device."""
    methods = sorted({p.method for p in phases})
    return {"method": methods[0] if len(methods) == 1 else ("mixed" if methods else "none"),
            "devices": [p.to_dict() for p in phases]}
