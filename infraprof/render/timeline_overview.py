"""The overview of a size-bounded timeline export: per-device counters in fixed time bins.

When ``infraprof export --max-size`` cuts the export to one detail window
(:mod:`~infraprof.render.timeline_budget`), the whole trace is still summarised by counter
tracks under each GPU's process, sampled once per bin (bin ``i`` covers ``[edges[i],
edges[i + 1])``; each sample sits at its bin's start and holds until the next one):

* ``GPU busy %``: the share of the bin covered by the device's busy intervals (the union of
  its kernels, copies and memsets, as the timeline analysis computes it), 0-100;
* ``idle ns: <cause>`` for the device's (up to) :data:`TOP_CAUSES` causes with the most idle
  time: ns of the bin inside idle gaps attributed to that cause.

Bins are equal (integer ns edges), at most :data:`MAX_BINS` per device, fewer when the
budget is small (:func:`bin_count`). Both the Perfetto counter tracks and the Chrome ``"C"``
events are built here; both are a few hundred kB at most for a few GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from infraprof.analyses.gap_table import CATEGORIES
from infraprof.ranking import Report
from infraprof.render import protobuf_wire as wire
from infraprof.render.timeline_gaps import GapColumns

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
MAX_BINS = 1000
TOP_CAUSES = 3
COUNTER_SAMPLE_BYTES = 48  # upper bound of one encoded Perfetto counter packet (docs)


@dataclass(frozen=True)
class Counter:
    """One counter track: samples ``values`` at ``times`` (ns) under process ``pid``."""

    pid: int
    name: str
    unit: str  # "%" or "ns"
    times: I64
    values: F64


def covered_per_bin(starts: I64, ends: I64, edges: I64) -> I64:
    """ns of the disjoint, sorted intervals ``[starts, ends)`` inside each bin of ``edges``:
    the covered time before each edge, from the intervals' cumulative lengths (at most one
    interval straddles an edge), then differenced."""
    if not len(starts):
        return np.zeros(len(edges) - 1, dtype=np.int64)
    lengths = ends - starts
    before = np.concatenate([[0], np.cumsum(lengths)])
    last = np.searchsorted(starts, edges, side="left")  # intervals starting before the edge
    inside = np.clip(edges - starts[np.maximum(last - 1, 0)], 0,
                     lengths[np.maximum(last - 1, 0)])
    covered = before[np.maximum(last - 1, 0)] + np.where(last > 0, inside, 0)
    return np.diff(covered).astype(np.int64)


def bin_count(devices: int, budget: int) -> int:
    """Bins per device: :data:`MAX_BINS`, or fewer so the counters take at most a quarter
    of ``budget`` bytes (at least 1)."""
    per_bin = max(devices, 1) * (1 + TOP_CAUSES) * COUNTER_SAMPLE_BYTES
    return int(max(1, min(MAX_BINS, budget // 4 // per_bin)))


def bin_edges(lo: int, hi: int, bins: int) -> I64:
    """``bins + 1`` integer edges from ``lo`` to ``hi`` (equal widths, to the ns)."""
    width = max(hi - lo, 1)
    return (lo + (np.arange(bins + 1, dtype=np.int64) * width) // bins).astype(np.int64)


def overview_counters(report: Report, gaps: GapColumns, lo: int, hi: int, bins: int,
                      device_pid: int) -> list[Counter]:
    """The counters of the module docstring over ``[lo, hi)`` (``gaps``: the report's gap
    columns); a device's pid is ``device_pid + device``."""
    analysis = report.analysis
    if analysis is None or hi <= lo:
        return []
    edges = bin_edges(lo, hi, bins)
    width = np.diff(edges).astype(np.float64)
    frame = gaps.frame
    out: list[Counter] = []
    for tl in sorted(analysis.timelines, key=lambda t: t.device_id):
        pid = device_pid + tl.device_id
        busy = covered_per_bin(np.asarray(tl.busy.starts, np.int64),
                               np.asarray(tl.busy.ends, np.int64), edges)
        out.append(Counter(pid, "GPU busy %", "%", edges[:-1],
                           np.round(100.0 * busy / np.maximum(width, 1.0), 3)))
        if not gaps.attributed:
            continue
        mine = np.flatnonzero(frame["device_id"].to_numpy(dtype=np.int64) == tl.device_id)
        starts = frame["start_ns"].to_numpy(dtype=np.int64)[mine]
        ends = frame["end_ns"].to_numpy(dtype=np.int64)[mine]
        cause = gaps.cause[frame["gap"].to_numpy(dtype=np.int64)[mine]]
        totals = np.bincount(cause.astype(np.int64), weights=ends - starts,
                             minlength=len(CATEGORIES))
        for code in np.argsort(-totals, kind="stable")[:TOP_CAUSES].tolist():
            if totals[code] <= 0:
                break
            keep = cause == code
            order = np.argsort(starts[keep], kind="stable")
            idle = covered_per_bin(starts[keep][order], ends[keep][order], edges)
            out.append(Counter(pid, f"idle ns: {CATEGORIES[code]}", "ns", edges[:-1],
                               idle.astype(np.float64)))
    return out


# ------------------------------------------------------------------------------------------
# Perfetto: CounterDescriptor / TYPE_COUNTER fields (docs/perfetto.md lists them)

TRACK_COUNTER, COUNTER_UNIT, COUNTER_UNIT_NAME, UNIT_TIME_NS = 8, 3, 6, 1
EVENT_TYPE_COUNTER, EVENT_COUNTER_VALUE, EVENT_DOUBLE_COUNTER_VALUE, EVENT_NAME = 4, 30, 44, 23
TRACK_UUID, TRACK_NAME, TRACK_PARENT = 1, 2, 5
EVENT_TYPE, EVENT_TRACK_UUID = 9, 11
SLICE_BEGIN, SLICE_END = 1, 2
PACKET_TIMESTAMP, PACKET_SEQUENCE_ID, PACKET_TRACK_EVENT, PACKET_TRACK_DESCRIPTOR = 8, 10, 11, 60
TRACE_PACKET = 1
PACKET_SEQUENCE_FLAGS, STATE_CLEARED = 13, 1
OVERVIEW_UUID_BASE = 1 << 48  # above any uuid the detail writer hands out
OVERVIEW_SEQUENCE = (1 << 31) + 1


def _packet(*fields: bytes) -> bytes:
    return wire.bytes_field(TRACE_PACKET, b"".join(fields))


def _sequence_start() -> bytes:
    """The overview sequence's first packet: clears its (empty) incremental state."""
    return _packet(wire.varint_field(PACKET_SEQUENCE_ID, OVERVIEW_SEQUENCE),
                   wire.varint_field(PACKET_SEQUENCE_FLAGS, STATE_CLEARED))


def _counter_track(uuid: int, counter: Counter, parent: int) -> bytes:
    unit = (wire.varint_field(COUNTER_UNIT, UNIT_TIME_NS) if counter.unit == "ns"
            else wire.string_field(COUNTER_UNIT_NAME, counter.unit))
    desc = (wire.varint_field(TRACK_UUID, uuid) + wire.string_field(TRACK_NAME, counter.name)
            + wire.varint_field(TRACK_PARENT, parent) + wire.bytes_field(TRACK_COUNTER, unit))
    return _packet(wire.varint_field(PACKET_SEQUENCE_ID, OVERVIEW_SEQUENCE),
                   wire.bytes_field(PACKET_TRACK_DESCRIPTOR, desc))


def _counter_samples(uuid: int, counter: Counter) -> bytes:
    """One ``TYPE_COUNTER`` packet per sample: ``double_counter_value`` for a percentage,
    ``counter_value`` (int64) for ns."""
    n = len(counter.times)
    head = wire.constant(n, wire.varint_field(EVENT_TYPE, EVENT_TYPE_COUNTER)
                         + wire.varint_field(EVENT_TRACK_UUID, uuid))
    if counter.unit == "ns":
        value = wire.varints(EVENT_COUNTER_VALUE, counter.values.astype(np.int64))
    else:
        bits = counter.values.astype("<f8").view(np.uint64)
        value = wire.fixed64s(EVENT_DOUBLE_COUNTER_VALUE, bits)
    packet = wire.varints(PACKET_TIMESTAMP, counter.times).add(
        wire.constant(n, wire.varint_field(PACKET_SEQUENCE_ID, OVERVIEW_SEQUENCE)),
        wire.message(PACKET_TRACK_EVENT, head.add(value)))
    return wire.message(TRACE_PACKET, packet).tobytes()


def _marker_slice(uuid: int, lo: int, hi: int, name: str) -> bytes:
    """The ``infraprof: detail window`` track and its one slice."""
    desc = wire.varint_field(TRACK_UUID, uuid) + wire.string_field(
        TRACK_NAME, "infraprof: detail window")
    out = [_packet(wire.varint_field(PACKET_SEQUENCE_ID, OVERVIEW_SEQUENCE),
                   wire.bytes_field(PACKET_TRACK_DESCRIPTOR, desc))]
    for ts, kind, label in ((lo, SLICE_BEGIN, name), (hi, SLICE_END, None)):
        event = wire.varint_field(EVENT_TYPE, kind) + wire.varint_field(EVENT_TRACK_UUID, uuid)
        if label is not None:
            event += wire.string_field(EVENT_NAME, label)
        out.append(_packet(wire.varint_field(PACKET_TIMESTAMP, ts),
                           wire.varint_field(PACKET_SEQUENCE_ID, OVERVIEW_SEQUENCE),
                           wire.bytes_field(PACKET_TRACK_EVENT, event)))
    return b"".join(out)


def perfetto_overview(counters: list[Counter], process_uuids: dict[int, int],
                      window: tuple[int, int], label: str) -> bytes:
    """Counter tracks (children of their GPU's process track, ``process_uuids[pid]``), their
    samples, and the detail-window marker, on a sequence of their own (no interned data)."""
    out = [_sequence_start()]
    for index, counter in enumerate(counters):
        uuid = OVERVIEW_UUID_BASE + 1 + index
        out.append(_counter_track(uuid, counter, process_uuids[counter.pid]))
        out.append(_counter_samples(uuid, counter))
    out.append(_marker_slice(OVERVIEW_UUID_BASE, *window, label))
    return b"".join(out)


# ------------------------------------------------------------------------------------------
# Chrome JSON: "C" events per sample, the marker as an "X" slice of an "infraprof" process

MARKER_PID = (1 << 30) - 1


def chrome_overview(counters: list[Counter], window: tuple[int, int], label: str
                    ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": MARKER_PID, "args": {"name": "infraprof"}},
        {"name": "thread_name", "ph": "M", "pid": MARKER_PID, "tid": 0,
         "args": {"name": "detail window"}},
        {"name": label, "cat": "infraprof", "ph": "X", "pid": MARKER_PID, "tid": 0,
         "ts": window[0] / 1000, "dur": (window[1] - window[0]) / 1000, "args": {}}]
    for counter in counters:
        key = "busy %" if counter.unit == "%" else "ns"
        as_int = counter.unit == "ns"
        for ts, value in zip(counter.times.tolist(), counter.values.tolist(), strict=True):
            out.append({"name": counter.name, "ph": "C", "pid": counter.pid, "ts": ts / 1000,
                        "args": {key: int(value) if as_int else value}})
    return out

