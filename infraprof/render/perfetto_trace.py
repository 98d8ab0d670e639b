"""Perfetto's native trace format (a protobuf ``Trace``) of an :class:`ExportPlan`, streamed.

Written from the documented message and field numbers (``docs/perfetto.md`` lists every one
used); no Perfetto code or ``.proto`` file is involved. Layout:

* first, one ``TrackDescriptor`` packet per process (``ProcessDescriptor``; a GPU is a process
  ``GPU_PID_BASE + device`` named ``GPU d: name``), per host thread (``ThreadDescriptor``),
  and per GPU stream, idle-gap track and py-spy thread (a named child of its process);
* then every track's events on a packet sequence of its own (``trusted_packet_sequence_id``),
  in time order: the sequence opens with one packet of interned data
  (``SEQ_INCREMENTAL_STATE_CLEARED``: the track's event names, the categories and the
  argument names, each with an id), then ``TrackEvent`` packets (``SEQ_NEEDS_INCREMENTAL_STATE``)
  that name them by id: ``TYPE_SLICE_BEGIN``/``TYPE_SLICE_END`` pairs, ``TYPE_INSTANT`` for
  NVTX marks. Slices that do not nest on their track go to ``<track> (overlapping k)`` child
  tracks (:mod:`~infraprof.render.timeline_nesting`), each its own sequence.
* arguments are ``debug_annotations`` (interned name; ``int_value`` or ``string_value``);
  a GPU operation and its launching call share a flow id (``flow_ids``; the last operation
  of a call ends it with ``terminating_flow_ids``), drawn as an arrow.

Packets are encoded :data:`CHUNK_ROWS` at a time with :mod:`~infraprof.render.protobuf_wire`;
a slice costs about 40-90 bytes (its begin and end packets), more with string arguments.
Strings are UTF-8 (invalid code points replaced); timestamps are ns on the trace's timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infraprof.memory import release_free_memory
from infraprof.render import protobuf_wire as wire
from infraprof.render.timeline_export import Arg, ExportPlan, Process, Track, TrackRows
from infraprof.render.timeline_nesting import endpoint_order

CHUNK_ROWS = 65536
CATEGORIES = ("kernel", "memcpy", "memset", "cuda_api", "osrt", "nvtx", "gpu_idle", "py-spy")
SLICE_BEGIN, SLICE_END, INSTANT = 1, 2, 3
STATE_CLEARED, NEEDS_STATE = 1, 2
DESCRIPTOR_SEQUENCE = 1
INT32_MAX = (1 << 31) - 1

# Trace / TracePacket / TrackDescriptor / TrackEvent / DebugAnnotation / InternedData fields
TRACE_PACKET = 1
PACKET_TIMESTAMP, PACKET_SEQUENCE_ID, PACKET_TRACK_EVENT = 8, 10, 11
PACKET_INTERNED_DATA, PACKET_SEQUENCE_FLAGS, PACKET_TRACK_DESCRIPTOR = 12, 13, 60
TRACK_UUID, TRACK_NAME, TRACK_PROCESS, TRACK_THREAD, TRACK_PARENT = 1, 2, 3, 4, 5
TRACK_CHILD_ORDERING, TRACK_SIBLING_RANK, CHILD_ORDER_EXPLICIT = 11, 12, 3
PROCESS_PID, PROCESS_NAME = 1, 6
THREAD_PID, THREAD_TID, THREAD_NAME = 1, 2, 5
EVENT_CATEGORY_IIDS, EVENT_DEBUG_ANNOTATIONS, EVENT_TYPE = 3, 4, 9
EVENT_NAME_IID, EVENT_TRACK_UUID, EVENT_FLOW_IDS, EVENT_TERMINATING_FLOWS = 10, 11, 47, 48
ANNOTATION_NAME_IID, ANNOTATION_INT, ANNOTATION_STRING_IID = 1, 4, 17
INTERNED_CATEGORIES, INTERNED_NAMES, INTERNED_ANNOTATION_NAMES = 1, 2, 3
INTERNED_STRING_VALUES, INTERNED_IID, INTERNED_NAME, INTERNED_STRING = 29, 1, 2, 2
INTERNED_PER_PACKET = 4096

Write = Callable[[bytes], object]


def _packet(*fields: bytes) -> bytes:
    return wire.bytes_field(TRACE_PACKET, b"".join(fields))


def _descriptor(*fields: bytes) -> bytes:
    return _packet(wire.varint_field(PACKET_SEQUENCE_ID, DESCRIPTOR_SEQUENCE),
                   wire.bytes_field(PACKET_TRACK_DESCRIPTOR, b"".join(fields)))


class _Uuids:
    """Track uuids: processes, tracks and overlap lanes, numbered as first asked for."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, int, int], int] = {}

    def of(self, pid: int, tid: int = -1, lane: int = 0) -> int:
        return self.ids.setdefault((pid, tid, lane), len(self.ids) + 1)


def _process_packet(process: Process, uuids: _Uuids) -> bytes:
    fields = [wire.varint_field(TRACK_UUID, uuids.of(process.pid)),
              wire.bytes_field(TRACK_PROCESS, wire.varint_field(PROCESS_PID, process.pid)
                               + wire.string_field(PROCESS_NAME, process.name))]
    if process.gpu:
        fields.append(wire.varint_field(TRACK_CHILD_ORDERING, CHILD_ORDER_EXPLICIT))
    return _descriptor(*fields)


def _track_packet(track: Track, uuids: _Uuids, lane: int = 0) -> bytes:
    uuid = wire.varint_field(TRACK_UUID, uuids.of(track.pid, track.tid, lane))
    fits = 0 <= track.pid <= INT32_MAX and 0 <= track.tid <= INT32_MAX
    if track.kind == "thread" and lane == 0 and fits:
        thread = (wire.varint_field(THREAD_PID, track.pid)
                  + wire.varint_field(THREAD_TID, track.tid)
                  + wire.string_field(THREAD_NAME, track.thread_name or "thread"))
        return _descriptor(uuid, wire.bytes_field(TRACK_THREAD, thread))
    name = track.label if lane == 0 else f"{track.label} (overlapping {lane})"
    fields = [uuid, wire.string_field(TRACK_NAME, name),
              wire.varint_field(TRACK_PARENT, uuids.of(track.pid))]
    if track.kind in ("stream", "gaps") and abs(track.sort_index) < 1 << 24:
        fields.append(wire.varint_field(TRACK_SIBLING_RANK, track.sort_index * 64 + lane))
    return _descriptor(*fields)


def _interned(entries: list[str], field: int, first_iid: int = 1) -> bytes:
    return b"".join(wire.bytes_field(field, wire.varint_field(INTERNED_IID, i)
                                     + wire.string_field(INTERNED_NAME, name))
                    for i, name in enumerate(entries, first_iid))


def _state_packets(sequence: int, names: list[str], arg_names: list[str]) -> bytes:
    """The interned data opening a sequence: categories, argument names and the event names
    (:data:`INTERNED_PER_PACKET` names a packet)."""
    out = []
    for first in range(0, max(len(names), 1), INTERNED_PER_PACKET):
        data = _interned(names[first:first + INTERNED_PER_PACKET], INTERNED_NAMES, first + 1)
        if not first:
            data = (_interned(list(CATEGORIES), INTERNED_CATEGORIES)
                    + _interned(arg_names, INTERNED_ANNOTATION_NAMES) + data)
        out.append(_packet(wire.varint_field(PACKET_SEQUENCE_ID, sequence),
                           wire.varint_field(PACKET_SEQUENCE_FLAGS,
                                             NEEDS_STATE if first else STATE_CLEARED),
                           wire.bytes_field(PACKET_INTERNED_DATA, data)))
    return b"".join(out)


class _ArgNames:
    """Argument names → interned ids (the same table opens every sequence)."""

    def __init__(self, plan: ExportPlan) -> None:
        seen: dict[str, int] = {}
        for source in plan.sources:
            for name in source.args(np.zeros(0, dtype=np.int64)):
                seen.setdefault(name, len(seen) + 1)
        self.iids = seen

    @property
    def names(self) -> list[str]:
        return list(self.iids)


def _gather_args(plan: ExportPlan, src: np.ndarray, row: np.ndarray, at: np.ndarray, n: int
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (values, present)`` for an ``n``-row chunk whose rows ``at`` are
    ``(src, row)``; each source gives the arguments of its own rows."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in np.unique(src).tolist():
        mine = np.nonzero(src == s)[0]
        for name, arg in plan.sources[s].args(row[mine]).items():
            values, present = _as_column(arg)
            if name not in out:
                blank = (np.zeros(n, dtype=np.int64) if values.dtype.kind == "i"
                         else np.full(n, None, dtype=object))
                out[name] = (blank, np.zeros(n, dtype=bool))
            all_values, all_present = out[name]
            if all_values.dtype.kind != values.dtype.kind:
                all_values = all_values.astype(object)
                out[name] = (all_values, all_present)
            all_values[at[mine]] = values
            all_present[at[mine]] = present
    return out


def _as_column(arg: Arg) -> tuple[np.ndarray, np.ndarray]:
    if arg.kind != "dim3":
        return arg.values, arg.present
    dims = arg.values.reshape(-1, 3).astype(np.int64)
    key = (dims[:, 0] << 32) | ((dims[:, 1] & 0xFFFF) << 16) | (dims[:, 2] & 0xFFFF)
    codes, _ = pd.factorize(key)
    triples = dims[np.unique(codes, return_index=True)[1]] if len(dims) else dims
    labels = np.array([f"[{x}, {y}, {z}]" for x, y, z in triples.tolist()], dtype=object)
    return labels[codes], arg.present


class _Strings:
    """String argument values of one sequence → interned ids; each chunk announces the
    values it is the first to use."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.new: list[tuple[int, str]] = []

    def iids(self, values: list[str]) -> np.ndarray:
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            iid = self.ids.get(value)
            if iid is None:
                iid = self.ids[value] = len(self.ids) + 1
                self.new.append((iid, value))
            out[i] = iid
        return out

    def announce(self, sequence: int) -> bytes:
        """The interned-data packet of the values first used since the last call."""
        if not self.new:
            return b""
        data = b"".join(wire.bytes_field(INTERNED_STRING_VALUES,
                                         wire.varint_field(INTERNED_IID, iid)
                                         + wire.bytes_field(INTERNED_STRING, wire.text(value)))
                        for iid, value in self.new)
        self.new = []
        return _packet(wire.varint_field(PACKET_SEQUENCE_ID, sequence),
                       wire.varint_field(PACKET_SEQUENCE_FLAGS, NEEDS_STATE),
                       wire.bytes_field(PACKET_INTERNED_DATA, data))


def _annotations(args: dict[str, tuple[np.ndarray, np.ndarray]], arg_iids: dict[str, int],
                 strings: _Strings, n: int) -> wire.Rows:
    """``debug_annotations`` of an ``n``-row chunk: integers as ``int_value``, text as an
    interned ``string_value_iid``."""
    out = wire.Rows.empty(n)
    for name, (values, keep) in args.items():
        head = wire.constant(n, wire.varint_field(ANNOTATION_NAME_IID, arg_iids[name]))
        if values.dtype.kind == "i":
            inner = head.add(wire.varints(ANNOTATION_INT, values))
        else:
            codes, uniques = pd.factorize(pd.Series(values[keep], dtype=object))
            iids = np.zeros(n, dtype=np.int64)
            iids[keep] = strings.iids([str(u) for u in uniques.tolist()])[codes]
            inner = head.add(wire.varints(ANNOTATION_STRING_IID, iids))
        out.add(wire.message(EVENT_DEBUG_ANNOTATIONS, inner).only(keep))
    return out


def _names(plan: ExportPlan, src: np.ndarray, row: np.ndarray) -> np.ndarray:
    out = np.empty(len(row), dtype=object)
    for s in np.unique(src).tolist():
        mine = np.nonzero(src == s)[0]
        out[mine] = plan.sources[s].names(row[mine])
    return out


def _flows(plan: ExportPlan, src: np.ndarray, row: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Flow id per row (0: none) and whether the row ends its flow."""
    flow = np.zeros(len(row), dtype=np.uint64)
    ends = np.zeros(len(row), dtype=bool)
    for s in np.unique(src).tolist():
        source = plan.sources[s]
        if source.flow is None:
            continue
        mine = np.nonzero(src == s)[0]
        flow[mine] = source.flow[row[mine]]
        if source.flow_last is not None:
            ends[mine] = source.flow_last[row[mine]]
    return flow, ends


@dataclass
class _Lane:
    """One lane of a track as a sequence: its slices (sorted), name ids and ids."""

    src: np.ndarray
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    name_iid: np.ndarray
    instant: np.ndarray
    uuid: int
    sequence: int
    strings: _Strings


def _begin_packets(plan: ExportPlan, lane: _Lane, index: np.ndarray,
                   arg_iids: dict[str, int]) -> wire.Rows:
    """Slice-begin and instant packets of slices ``index``: name, category, arguments,
    flows."""
    n = len(index)
    src, row = lane.src[index], lane.row[index]
    kind = np.where(lane.instant[index], INSTANT, SLICE_BEGIN)
    category = np.array([CATEGORIES.index(s.cat) + 1 for s in plan.sources])[src]
    flow, terminates = _flows(plan, src, row)
    every = np.arange(n)
    event = wire.Rows.empty(n).add(
        wire.varints(EVENT_TYPE, kind),
        wire.constant(n, wire.varint_field(EVENT_TRACK_UUID, lane.uuid)),
        wire.varints(EVENT_CATEGORY_IIDS, category),
        wire.varints(EVENT_NAME_IID, lane.name_iid[index]),
        _annotations(_gather_args(plan, src, row, every, n), arg_iids, lane.strings, n),
        wire.fixed64s(EVENT_FLOW_IDS, flow).only((flow > 0) & ~terminates),
        wire.fixed64s(EVENT_TERMINATING_FLOWS, flow).only((flow > 0) & terminates))
    state = (wire.varint_field(PACKET_SEQUENCE_ID, lane.sequence)
             + wire.varint_field(PACKET_SEQUENCE_FLAGS, NEEDS_STATE))
    packet = wire.Rows.empty(n).add(wire.varints(PACKET_TIMESTAMP, lane.start[index]),
                                    wire.constant(n, state),
                                    wire.message(PACKET_TRACK_EVENT, event))
    return wire.message(TRACE_PACKET, packet)


def _end_packets(lane: _Lane, index: np.ndarray) -> wire.Rows:
    """Slice-end packets: the time, then the same bytes for the whole lane."""
    n = len(index)
    event = (wire.varint_field(EVENT_TYPE, SLICE_END)
             + wire.varint_field(EVENT_TRACK_UUID, lane.uuid))
    tail = (wire.varint_field(PACKET_SEQUENCE_ID, lane.sequence)
            + wire.bytes_field(PACKET_TRACK_EVENT, event))
    packet = wire.varints(PACKET_TIMESTAMP, lane.end[index]).add(wire.constant(n, tail))
    return wire.message(TRACE_PACKET, packet)


def _interleave(is_end: np.ndarray, begins: wire.Rows, ends: wire.Rows) -> bytes:
    """Begin and end packets merged back into time order (``is_end`` per packet)."""
    sizes = np.empty(len(is_end), dtype=np.int64)
    sizes[~is_end], sizes[is_end] = begins.lengths(), ends.lengths()
    head = begins.tobytes()
    data = np.frombuffer(head + ends.tobytes(), dtype=np.uint8)
    source = np.empty(len(is_end), dtype=np.int64)
    for rows, where, base in ((begins, ~is_end, 0), (ends, is_end, len(head))):
        lengths = rows.lengths()
        source[where] = base + np.cumsum(lengths) - lengths
    target = np.cumsum(sizes) - sizes
    shift = (source - target).astype(np.int32)  # a chunk is far below 2 GiB
    index = np.repeat(shift, sizes) + np.arange(int(sizes.sum()), dtype=np.int32)
    return bytes(data[index].tobytes())


def _encode_chunk(plan: ExportPlan, lane: _Lane, index: np.ndarray, is_end: np.ndarray,
                  arg_iids: dict[str, int]) -> bytes:
    """The packets of ``index`` (slice numbers in time order; ``is_end``: its end)."""
    begins = _begin_packets(plan, lane, index[~is_end], arg_iids)
    merged = _interleave(is_end, begins, _end_packets(lane, index[is_end]))
    return lane.strings.announce(lane.sequence) + merged


def _write_lane(plan: ExportPlan, lane: _Lane, names: list[str], arg_names: _ArgNames,
                write: Write) -> None:
    write(_state_packets(lane.sequence, names, arg_names.names))
    n = len(lane.row)
    order, is_end = endpoint_order(lane.start, lane.end)
    keep = ~(is_end & lane.instant[order % n])
    order, is_end = order[keep] % n, is_end[keep]
    for first in range(0, len(order), CHUNK_ROWS):
        part = slice(first, first + CHUNK_ROWS)
        write(_encode_chunk(plan, lane, order[part], is_end[part], arg_names.iids))


def process_uuids(plan: ExportPlan) -> dict[int, int]:
    """The track uuid :func:`write_perfetto` gives each process of ``plan`` (processes are
    described first, in order, so process ``i`` is uuid ``i + 1``)."""
    return {process.pid: index + 1 for index, process in enumerate(plan.processes)}


def write_perfetto(plan: ExportPlan, write: Write) -> None:
    """The whole trace, packet after packet, through ``write`` (module docstring)."""
    uuids = _Uuids()
    write(b"".join(_process_packet(p, uuids) for p in plan.processes))
    write(b"".join(_track_packet(t, uuids) for t in plan.tracks))
    arg_names = _ArgNames(plan)
    sequence = DESCRIPTOR_SEQUENCE
    for rows in plan.track_rows():
        sequence = _write_track(plan, rows, uuids, arg_names, sequence, write)
        large = len(rows.row) >= CHUNK_ROWS
        del rows  # before the next track is gathered
        if large:
            release_free_memory()  # a large track's temporaries, before the next track's


def _write_track(plan: ExportPlan, rows: TrackRows, uuids: _Uuids, arg_names: _ArgNames,
                 sequence: int, write: Write) -> int:
    """One track's lanes, each as its own sequence (numbered from ``sequence + 1``); returns
    the last sequence number used."""
    instant_of = np.array([s.instant for s in plan.sources], dtype=bool)
    for lane_no in np.unique(rows.lane).tolist():
        sel = np.nonzero(rows.lane == lane_no)[0]
        if lane_no:
            write(_track_packet(rows.track, uuids, lane_no))
        src, row = rows.source[sel], rows.row[sel]
        codes, uniques = pd.factorize(pd.Series(_names(plan, src, row), dtype=object),
                                      use_na_sentinel=False)
        sequence += 1
        lane = _Lane(src, row, rows.start[sel], rows.end[sel],
                     np.asarray(codes, dtype=np.int64) + 1, instant_of[src],
                     uuids.of(rows.track.pid, rows.track.tid, lane_no), sequence, _Strings())
        del sel, src, row, codes
        _write_lane(plan, lane, [str(u) for u in uniques.tolist()], arg_names, write)
        del lane
    return sequence
