"""GPU busy/idle timeline per device and per stream.

Busy time is the union of kernels, memcpys and memsets. A device's *active span* runs from its
first operation's start to its last operation's end; idle time inside it is split into gaps.
Idle before the first / after the last operation of the whole trace span is reported apart
(``leading_idle_ns`` / ``trailing_idle_ns``), never as application idle. Profiler overhead
(``PROFILER_OVERHEAD`` "CUDA profiling ..." rows of the device's processes) overlapping a gap is
counted as ``overhead_ns`` and excluded from the gap's attributable time, as nsys' ``gpu_gaps``
rule counts such rows as busy::

    span    [-----------------------------------------------]
    ops       |==k1==|   |=k2=|          |===k3===|
    gaps             ^^^^^    ^^^^^^^^^^^
    ovh                         |ov|
    busy + idle == span_end - span_start  (exactly)

Complexity O(n log n) in the number of operations (numpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof import tables as table_schema
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.findings import Finding, info_finding
from infraprof.analyses.summary import trace_span
from infraprof.model import Trace

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext


@dataclass(frozen=True)
class TimelineParams:
    """``min_gap_ns``: gaps at or below this length are idle but not listed (default 0)."""

    min_gap_ns: int = 0


@dataclass(frozen=True)
class StreamBusy:
    stream_id: int
    busy_ns: int
    ops: int
    first_start_ns: int
    last_end_ns: int


@dataclass(frozen=True)
class DeviceTimeline:
    """Busy/idle of one device.

    ``gaps`` are the idle intervals inside the active span not covered by profiler overhead
    (longer than ``min_gap_ns``); ``overhead_ns`` is span time covered by overhead but no GPU
    operation; ``short_gaps_ns`` is idle time in gaps at or below ``min_gap_ns``. Hence
    ``busy_ns + gaps.total_ns + overhead_ns + short_gaps_ns == span_ns``.
    """

    device_id: int
    span_start_ns: int
    span_end_ns: int
    busy: intervals.Intervals
    gaps: intervals.Intervals
    overhead_ns: int
    short_gaps_ns: int
    leading_idle_ns: int
    trailing_idle_ns: int
    streams: list[StreamBusy] = field(default_factory=list)

    @property
    def span_ns(self) -> int:
        return self.span_end_ns - self.span_start_ns

    @property
    def busy_ns(self) -> int:
        return self.busy.total_ns

    @property
    def idle_ns(self) -> int:
        return self.span_ns - self.busy_ns


def _overhead(trace: Trace, pids: set[int]) -> pd.DataFrame:
    """Overhead rows that stall the GPU work of ``pids``: CUDA profiling flush/stop overhead
    (nsys matches three exact names; newer captures drop the " overhead" suffix, so the prefix
    is matched). Host-only rows (CUPTI buffer flush, TLS allocation) are not GPU overhead."""
    o = trace.overhead
    if o.empty:
        return o
    gtid = o["global_tid"].to_numpy(dtype=np.int64)
    named = o["name"].fillna("").str.startswith("CUDA profiling").to_numpy(dtype=bool)
    keep = (np.isin(table_schema.decode_pid(gtid), list(pids)) | (gtid == 0)) & named
    return table_schema.as_frame(o[keep])


def device_timelines(trace: Trace, params: TimelineParams | None = None) -> list[DeviceTimeline]:
    """One :class:`DeviceTimeline` per device with GPU activity, ordered by device id. Each
    device's and stream's operations are taken by row positions (no copy of their rows);
    the profiler overhead is merged into the busy intervals, not into every operation."""
    p = params or TimelineParams()
    ops = trace.gpu_ops()
    if ops.empty:
        return []
    trace_start, trace_end = trace_span(trace)
    start = ops["start_ns"].to_numpy(dtype=np.int64)
    end = ops["end_ns"].to_numpy(dtype=np.int64)
    out = []
    for device, rows in table_schema.rows_by_value(ops["device_id"].to_numpy()):
        d_start, d_end = (start, end) if rows is None else (start[rows], end[rows])
        busy = intervals.union(d_start, d_end)
        s0, s1 = int(busy.starts[0]), int(busy.ends[-1])
        pids = ops["pid"].to_numpy() if rows is None else ops["pid"].to_numpy()[rows]
        ovh = _overhead(trace, set(int(x) for x in pd.unique(pids)))
        del pids
        # the overhead clipped to the span first (the busy intervals are inside it), then
        # merged into them: the same intervals as clipping the union of both
        covered = busy if ovh.empty else intervals.union_with(
            busy, np.clip(ovh["start_ns"].to_numpy(), s0, s1),
            np.clip(ovh["end_ns"].to_numpy(), s0, s1))
        holes = intervals.gaps(covered, 0)  # views of covered's arrays
        stream_ids = ops["stream_id"].to_numpy()
        streams = _stream_busy(d_start, d_end, stream_ids if rows is None else stream_ids[rows],
                               busy)
        gaps = holes if p.min_gap_ns < 1 else intervals.gaps(covered, p.min_gap_ns)
        out.append(DeviceTimeline(
            device_id=device,
            span_start_ns=s0,
            span_end_ns=s1,
            busy=busy,
            gaps=gaps,
            overhead_ns=covered.total_ns - busy.total_ns,
            short_gaps_ns=holes.total_ns - gaps.total_ns,
            leading_idle_ns=max(0, s0 - trace_start),
            trailing_idle_ns=max(0, trace_end - s1),
            streams=streams,
        ))
    return out


def _stream_busy(starts: np.ndarray, ends: np.ndarray, stream_ids: np.ndarray,
                 busy: intervals.Intervals) -> list[StreamBusy]:
    """Busy time, operation count and first/last instant of each stream (ascending id) of
    one device's operations (``busy``: their union, a device with one stream's)."""
    out = []
    for stream, rows in table_schema.rows_by_value(stream_ids):
        s, e = (starts, ends) if rows is None else (starts[rows], ends[rows])
        merged = busy if rows is None else intervals.union(s, e)
        out.append(StreamBusy(stream_id=stream, busy_ns=merged.total_ns,
                              ops=len(s), first_start_ns=int(s.min()),
                              last_end_ns=int(e.max())))
    return out


def no_gpu_finding(trace: Trace) -> Finding:
    """``trace.no_gpu_activity``: no kernels, copies or memsets to correlate."""
    what = ("GPUs are listed but no kernels, copies or memsets were recorded"
            if len(trace.gpus) else "no GPU activity was recorded (CPU-only capture)")
    return info_finding(
        "trace.no_gpu_activity", "unknown", f"Nothing to correlate: {what}",
        {"gpus_in_node": len(trace.gpus), "api_calls": len(trace.api_calls),
         "osrt_calls": len(trace.osrt), "nvtx_events": len(trace.nvtx)},
        "Capture with CUDA tracing on (`nsys profile -t cuda,nvtx,osrt`) while the GPU work "
        "runs, or use the NVTX/host summaries for CPU-only runs.")


def _run(ctx: AnalysisContext, params: TimelineParams) -> Output:
    findings = [] if ctx.trace.has_gpu_activity else [no_gpu_finding(ctx.trace)]
    return Output(findings=findings, tables={"devices": ctx.timelines})


TIMELINE = Analysis(
    id="timeline", summary="per-device busy union, idle gaps, profiler overhead, streams",
    finding_ids=("trace.no_gpu_activity",), params_type=TimelineParams, run=_run,
    settings=(Setting("gap-min", "min_gap_ns", "duration",
                      "gaps at or below this length are idle but not attributed (0)"),),
    optional=False)
