"""Clock alignment: nsys timeline ↔ CLOCK_MONOTONIC ↔ py-spy's clock.

* nsys: every table is in ns since capture start; ``mono = ts + K``. ``K`` comes from NVTX marks
  ``infraprof-clock mono_ns=<ns>`` (``K = max(mono − ts)``: the API latency only delays ``ts``),
  else from the REALTIME/MONOTONIC pair the capture read at launch
  (``K = utcEpochNs − (REALTIME − MONOTONIC)``; agrees with the marks within ~0.1 ms).
* py-spy chrometrace: µs since py-spy created its writer; ``mono = ts + O``. ``O`` comes from the
  bootstrap's sync pulses (busy periods in ``_infraprof_sync_pulse`` at known monotonic times):
  each pulse edge seen by py-spy is late by ``d = edge_ts − edge_mono − (−O) ≥ 0`` (sampling
  period plus processing), so ``O = −min(edge_ts − edge_mono)``, the lower envelope. The spread
  of the other edges above that envelope is the error of any sample placed on the timeline and
  is recorded as the alignment error. Without pulses the py-spy start time read by the capture
  is a coarse fallback (error 20 ms).

See ``../shared/reference/pyspy-and-clocks.md`` for the measurements behind these numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.capture.layout import Manifest
from infraprof.readers.pyspy import PyspyProfile

CLOCK_MARK_PREFIX: Final = "infraprof-clock mono_ns="
PULSE_MARK_RE: Final = re.compile(r"^infraprof-pulse start_mono_ns=(\d+) end_mono_ns=(\d+)")
PULSE_FUNCTION: Final = "_infraprof_sync_pulse"
MARK_ERROR_NS: Final = 100_000
ANCHOR_ERROR_NS: Final = 100_000
LAUNCH_TIME_ERROR_NS: Final = 20_000_000
MIN_DURATION_TOLERANCE_NS: Final = 6_000_000


@dataclass(frozen=True)
class NsysClock:
    """``mono = nsys_ts + offset_ns``."""

    offset_ns: int
    method: str
    error_ns: int
    marks: int = 0


@dataclass(frozen=True)
class Pulse:
    start_mono_ns: int
    end_mono_ns: int


@dataclass(frozen=True)
class PyspyClock:
    """``mono = pyspy_ts + offset_ns``; ``error_ns`` bounds a sample's placement error."""

    offset_ns: int
    method: str
    error_ns: int
    residual_median_ns: int | None = None
    residual_max_ns: int | None = None
    edges: int = 0
    pulses_matched: int = 0


@dataclass(frozen=True)
class Alignment:
    """How py-spy samples map onto the nsys timeline, and how well."""

    nsys: NsysClock
    pyspy: PyspyClock

    @property
    def error_ns(self) -> int:
        return self.nsys.error_ns + self.pyspy.error_ns

    def pyspy_to_nsys(self, ts_ns: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(ts_ns, dtype=np.int64) + (self.pyspy.offset_ns - self.nsys.offset_ns)

    def to_dict(self) -> dict[str, Any]:
        return {"error_ns": self.error_ns, "nsys": asdict(self.nsys), "pyspy": asdict(self.pyspy)}


def nsys_clock_from_marks(nvtx: pd.DataFrame, prefix: str = CLOCK_MARK_PREFIX
                          ) -> NsysClock | None:
    """``K`` from NVTX marks whose text carries CLOCK_MONOTONIC; ``None`` without marks."""
    if nvtx.empty:
        return None
    names = nvtx["name"].astype(str)
    rows = nvtx[names.str.startswith(prefix)]
    if rows.empty:
        return None
    mono = rows["name"].astype(str).str.slice(len(prefix)).str.extract(r"^(\d+)")[0]
    ok = mono.notna()
    if not ok.any():
        return None
    diffs = mono[ok].astype("int64").to_numpy() - rows.loc[ok, "start_ns"].to_numpy(np.int64)
    return NsysClock(offset_ns=int(diffs.max()), method="nvtx-marks", error_ns=MARK_ERROR_NS,
                     marks=int(ok.sum()))


def nsys_clock_from_anchor(session_start_utc_ns: int, realtime_ns: int, monotonic_ns: int
                           ) -> NsysClock:
    """``K = utcEpochNs − (REALTIME − MONOTONIC)`` from a pair read back to back at launch."""
    return NsysClock(offset_ns=session_start_utc_ns - (realtime_ns - monotonic_ns),
                     method="manifest-anchor", error_ns=ANCHOR_ERROR_NS)


def pulses_from_nvtx(nvtx: pd.DataFrame) -> list[Pulse]:
    """Pulse times from ``infraprof-pulse`` marks (the bootstrap emits one after each pulse)."""
    if nvtx.empty:
        return []
    out = []
    for name in nvtx["name"].astype(str):
        m = PULSE_MARK_RE.match(name)
        if m:
            out.append(Pulse(int(m[1]), int(m[2])))
    return sorted(set(out), key=lambda p: p.start_mono_ns)


def pulse_runs(samples: pd.DataFrame, frames: pd.DataFrame, tid: int | None = None,
               function: str = PULSE_FUNCTION) -> list[tuple[int, int | None]]:
    """Runs of consecutive samples inside ``function`` on one thread: ``(first sample ts, ts
    of the first sample after the run or None)`` on the py-spy clock."""
    ids = set(frames.loc[frames["function"] == function, "stack_id"].astype(int))
    if not ids or samples.empty:
        return []
    s = samples if tid is None else samples[samples["tid"] == tid]
    if tid is None and not s.empty:  # the thread that ran the pulses
        hits = s[s["stack_id"].isin(ids)]
        if hits.empty:
            return []
        s = s[s["thread_key"] == hits["thread_key"].iloc[0]]
    s = s.sort_values("start_ns", kind="stable")
    inside = s["stack_id"].isin(ids).to_numpy()
    ts = s["start_ns"].to_numpy(np.int64)
    runs: list[tuple[int, int | None]] = []
    i = 0
    while i < len(inside):
        if not inside[i]:
            i += 1
            continue
        j = i
        while j < len(inside) and inside[j]:
            j += 1
        runs.append((int(ts[i]), int(ts[j]) if j < len(inside) else None))
        i = j
    return runs


def pyspy_clock_from_pulses(runs: Sequence[tuple[int, int | None]], pulses: Sequence[Pulse],
                            period_ns: int) -> PyspyClock | None:
    """Match py-spy pulse runs to known pulses (by order and duration) and take the lower
    envelope of edge delays. ``None`` when nothing matches."""
    if not runs or not pulses:
        return None
    tol = max(MIN_DURATION_TOLERANCE_NS, 3 * period_ns)
    best: tuple[int, float, list[tuple[int, int]]] | None = None
    for shift in range(-(len(runs) - 1), len(pulses)):
        pairs = [(r, r + shift) for r in range(len(runs)) if 0 <= r + shift < len(pulses)]
        good = []
        for r, p in pairs:
            start, end = runs[r]
            pulse = pulses[p]
            if end is None or abs((end - start) - (pulse.end_mono_ns - pulse.start_mono_ns)) <= tol:
                good.append((r, p))
        if not good:
            continue
        d = [runs[r][0] - pulses[p].start_mono_ns for r, p in good]
        spread = float(max(d) - min(d))
        if spread > 10 * tol:
            continue
        if best is None or (len(good), -spread) > (best[0], -best[1]):
            best = (len(good), spread, good)
    if best is None:
        return None
    edges: list[int] = []
    for r, p in best[2]:
        start, end = runs[r]
        edges.append(start - pulses[p].start_mono_ns)
        if end is not None:
            edges.append(end - pulses[p].end_mono_ns)
    delays = np.asarray(edges, dtype=np.int64)
    low = int(delays.min())
    resid = delays - low
    return PyspyClock(
        offset_ns=-low, method="sync-pulses",
        error_ns=int(max(int(resid.max()), period_ns)),
        residual_median_ns=int(np.median(resid)), residual_max_ns=int(resid.max()),
        edges=len(edges), pulses_matched=len(best[2]),
    )


def pyspy_clock_from_launch(pyspy_start_mono_ns: int) -> PyspyClock:
    """Coarse fallback: py-spy's origin ≈ when the capture started it (8–11 ms later)."""
    return PyspyClock(offset_ns=pyspy_start_mono_ns, method="launch-time",
                      error_ns=LAUNCH_TIME_ERROR_NS)


@dataclass(frozen=True)
class AlignedPyspy:
    """A py-spy profile and, when timed and alignable, its samples on the nsys timeline.

    ``samples`` has the columns of :data:`infraprof.readers.pyspy.PYSPY_SAMPLES` with
    ``start_ns`` on the nsys timeline (``None`` when time correlation is not possible; the
    reason is in ``notes``). ``frames`` maps ``stack_id`` to frames, root first.
    """

    profile: PyspyProfile
    alignment: Alignment | None
    samples: pd.DataFrame | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def frames(self) -> pd.DataFrame:
        return self.profile.frames

    @property
    def period_ns(self) -> int:
        return round(1e9 / (self.profile.rate_hz or 100.0))


def estimate_alignment(nvtx: pd.DataFrame, profile: PyspyProfile, manifest: Manifest | None,
                       session_start_utc_ns: int | None) -> tuple[Alignment | None, list[str]]:
    """Best available :class:`Alignment` for a timed profile, with notes on what was used."""
    notes: list[str] = []
    manifest = manifest or Manifest()
    nsys = nsys_clock_from_marks(nvtx)
    anchor = manifest.clock_anchor
    if nsys is None and session_start_utc_ns is not None and anchor is not None:
        nsys = nsys_clock_from_anchor(session_start_utc_ns, anchor.realtime_ns,
                                      anchor.monotonic_ns)
    if nsys is None:
        notes.append("time correlation not possible: no NVTX clock marks and no launch clock "
                     "anchor for the nsys timeline")
        return None, notes
    pulses = ([Pulse(start, end) for start, end in manifest.sync_pulses]
              or pulses_from_nvtx(nvtx))
    period = round(1e9 / (profile.rate_hz or 100.0))
    runs = pulse_runs(profile.samples, profile.frames, manifest.sync_tid)
    pyspy = pyspy_clock_from_pulses(runs, pulses, period)
    if pyspy is None:
        start = manifest.pyspy_start_mono_ns
        if start is None:
            notes.append("time correlation not possible: no sync pulses found in the py-spy "
                         "samples (run the app through `infraprof capture`)")
            return None, notes
        pyspy = pyspy_clock_from_launch(start)
        notes.append("py-spy clock estimated from its launch time (no sync pulses seen); "
                     f"alignment error ~{LAUNCH_TIME_ERROR_NS / 1e6:.0f} ms")
    return Alignment(nsys, pyspy), notes


def align_profile(nvtx: pd.DataFrame, profile: PyspyProfile, manifest: Manifest | None = None,
                  session_start_utc_ns: int | None = None) -> AlignedPyspy:
    """Put the samples of ``profile`` on the nsys timeline when possible.

    ``nvtx`` is ``Trace.nvtx``; ``manifest`` the capture's manifest (clock anchor, sync
    pulses, py-spy start time); ``session_start_utc_ns`` is
    ``Trace.meta.session_start_utc_ns``.
    """
    notes = list(profile.notes)
    if not profile.timed or profile.samples.empty:
        return AlignedPyspy(profile, None, None, tuple(notes))
    alignment, more = estimate_alignment(nvtx, profile, manifest, session_start_utc_ns)
    notes.extend(more)
    if alignment is None:
        return AlignedPyspy(profile, None, None, tuple(notes))
    samples = profile.samples.copy()
    samples["start_ns"] = alignment.pyspy_to_nsys(samples["start_ns"].to_numpy())
    return AlignedPyspy(profile, alignment, table_schema.as_frame(samples), tuple(notes))
