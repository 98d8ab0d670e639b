"""What the timeline exports (Perfetto protobuf, Chrome trace-event JSON) draw, as columns.

Tracks (``pid``/``tid`` are the Chrome format's keys; the Perfetto writer maps them to track
descriptors)::

    pid = host process id    tid = thread id    CUDA API + OS runtime calls + NVTX ranges/marks
                             tid = PYSPY_TID_OFFSET + thread    py-spy slices (main process)
    pid = GPU_PID_BASE + d   tid = stream id    kernels, memcpys, memsets of device d
                             tid = GAP_TID      idle gaps named by attributed cause

Every slice comes from one row of a :class:`Source` (a trace table cut to the window); a
track's rows are gathered (:meth:`ExportPlan.track_rows`), sorted by start (longer first) and
split into lanes that nest (:mod:`~infraprof.render.timeline_nesting`). Writers then encode
rows in chunks, asking each source for the names and arguments of just those rows: memory
grows with one track's row numbers, never with a list of events.

Launch flows: a GPU operation joined to its launching call (``model.correlation``) carries
``flow`` = ``pid << 40 | correlation_id`` and the call's start and thread; the call carries the
same ``flow`` (first call row per key, as the join keeps). ``flow_last`` marks the last
operation of a call (several for a CUDA graph launch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.memory import release_free_memory
from infraprof.model import Trace
from infraprof.model.correlation import JOIN_KEY, join_launch_calls
from infraprof.ranking import Report
from infraprof.ranking.timeline_view import main_pid, pyspy_slices
from infraprof.render.timeline_gaps import GapColumns
from infraprof.render.timeline_nesting import nesting_lanes
from infraprof.tables import as_frame, decode_pid, decode_tid, is_text_category, plain_text

GPU_PID_BASE = 1 << 30
GAP_TID = 1 << 30
PYSPY_TID_OFFSET = 1 << 30
I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Arg:
    """One argument of some rows: ``kind`` ``int`` (``values`` int64), ``str`` (objects) or
    ``dim3`` (``values`` n×3 int64, written ``[x, y, z]``); ``present`` where the row has it."""

    kind: str
    values: np.ndarray
    present: Mask


ArgsOf = Callable[[I64], dict[str, Arg]]


@dataclass
class Source:
    """Rows of one table drawn as slices (or instants) of category ``cat``."""

    cat: str
    frame: pd.DataFrame
    pid: I64
    tid: I64
    names: Callable[[I64], Obj]
    args: ArgsOf
    instant: bool = False
    flow: npt.NDArray[np.uint64] | None = None
    flow_last: Mask | None = None
    launch: I64 | None = None  # per row: launching call's start ns, pid, tid (-1: none)

    def __len__(self) -> int:
        return len(self.frame)

    def starts(self) -> I64:
        return self.frame["start_ns"].to_numpy(dtype=np.int64)

    def ends(self) -> I64:
        if self.instant:
            return self.starts()
        return self.frame["end_ns"].to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class Track:
    """One Chrome ``(pid, tid)`` track: ``label`` is its Chrome thread name, ``thread_name``
    the host thread's own name (host threads only), ``sort_index`` its place in its process."""

    pid: int
    tid: int
    kind: str  # thread | stream | gaps | py-spy
    label: str
    thread_name: str | None
    sort_index: int


@dataclass(frozen=True)
class Process:
    pid: int
    name: str
    sort_index: int
    gpu: bool


@dataclass
class TrackRows:
    """One track's rows, sorted by (start, longer first): source index and row per slice,
    its start and end (ns), and its nesting lane."""

    track: Track
    source: npt.NDArray[np.int8]
    row: I64
    start: I64
    end: I64
    lane: I64


@dataclass
class ExportPlan:
    processes: list[Process]
    tracks: list[Track]
    sources: list[Source]
    groups: list[dict[tuple[int, int], npt.NDArray[np.signedinteger]]] = field(
        default_factory=list)

    def event_count(self) -> int:
        """Slices and instants (flows not counted)."""
        return sum(len(s) for s in self.sources)

    def track_rows(self) -> Iterator[TrackRows]:
        """Every track's rows in :attr:`tracks` order, one track at a time (the generator
        holds none of them while the caller writes one)."""
        for track in self.tracks:
            yield self._rows_of(track)

    def _rows_of(self, track: Track) -> TrackRows:
        key = (track.pid, track.tid)
        parts = [(i, g[key]) for i, g in enumerate(self.groups) if key in g]
        src = np.concatenate([np.full(len(r), i, dtype=np.int8) for i, r in parts])
        row = np.concatenate([r for _, r in parts]).astype(np.int64)
        start = np.concatenate([self.sources[i].starts()[r] for i, r in parts])
        end = np.concatenate([self.sources[i].ends()[r] for i, r in parts])
        end = np.maximum(end, start)
        order = np.lexsort((row, src, -end, start))
        src, row, start, end = src[order], row[order], start[order], end[order]
        del order
        return TrackRows(track, src, row, start, end, nesting_lanes(start, end))


# ------------------------------------------------------------------------------------------
# sources


def _ints(frame: pd.DataFrame, column: str) -> Callable[[I64], Arg]:
    """An integer argument, read for the rows asked for (absent where null; written 0)."""
    values = frame[column]

    def make(rows: I64) -> Arg:
        part = values.iloc[rows]
        return Arg("int", part.fillna(0).to_numpy(dtype=np.int64),
                   part.notna().to_numpy(dtype=bool))
    return make


def _strs(frame: pd.DataFrame, column: str) -> Callable[[I64], Arg]:
    """A text argument, read for the rows asked for (absent where null)."""
    values = frame[column]

    def make(rows: I64) -> Arg:
        part = values.iloc[rows]
        return Arg("str", part.to_numpy(dtype=object), part.notna().to_numpy(dtype=bool))
    return make


def _dim3(frame: pd.DataFrame, prefix: str) -> Callable[[I64], Arg]:
    """``<prefix>_x, _y, _z`` as one ``[x, y, z]`` argument, read for the rows asked for."""
    columns = [frame[f"{prefix}_{axis}"] for axis in "xyz"]
    return lambda rows: Arg("dim3", np.column_stack(
        [c.iloc[rows].to_numpy(dtype=np.int64) for c in columns]).reshape(-1, 3),
        np.ones(len(rows), dtype=bool))


def _args(**columns: Callable[[I64], Arg]) -> ArgsOf:
    return lambda rows: {name: make(rows) for name, make in columns.items()}


def _column_names(frame: pd.DataFrame, column: str, prefix: str = "") -> Callable[[I64], Obj]:
    values = frame[column]
    if prefix:
        return lambda rows: np.array([f"{prefix}{v}" for v in values.iloc[rows].tolist()],
                                     dtype=object)
    if is_text_category(values):  # None for a null, as in an object column
        return lambda rows: plain_text(values.iloc[rows]).to_numpy(dtype=object)
    return lambda rows: values.iloc[rows].to_numpy(dtype=object)


def _fixed_name(name: str) -> Callable[[I64], Obj]:
    return lambda rows: np.full(len(rows), name, dtype=object)


def _in_window(frame: pd.DataFrame, window: tuple[int, int] | None, instant: bool = False
               ) -> pd.DataFrame:
    """Rows overlapping ``[lo, hi)`` (an instant or zero-length slice: inside it)."""
    if window is None or frame.empty:
        return as_frame(frame.reset_index(drop=True))
    lo, hi = window
    start = frame["start_ns"].to_numpy(dtype=np.int64)
    end = start if instant else frame["end_ns"].to_numpy(dtype=np.int64)
    keep = (start < hi) & ((end > lo) | (start >= lo))
    return as_frame(frame[keep].reset_index(drop=True))


def _device_pid(frame: pd.DataFrame) -> I64:
    return GPU_PID_BASE + frame["device_id"].to_numpy(dtype=np.int64)


def _gpu_sources(report: Report, window: tuple[int, int] | None) -> list[Source]:
    t = report.trace
    k = _in_window(t.kernels, window)
    m = _in_window(t.memcpy, window)
    z = _in_window(t.memset, window)
    api = _in_window(t.api_calls, window)
    out = [
        Source("kernel", k, _device_pid(k), k["stream_id"].to_numpy(dtype=np.int64),
               _column_names(k, "name"),
               _args(correlation_id=_ints(k, "correlation_id"), grid=_dim3(k, "grid"),
                     block=_dim3(k, "block"),
                     registers_per_thread=_ints(k, "registers_per_thread"))),
        Source("memcpy", m, _device_pid(m), m["stream_id"].to_numpy(dtype=np.int64),
               _column_names(m, "direction", "memcpy "),
               _args(correlation_id=_ints(m, "correlation_id"), bytes=_ints(m, "bytes"),
                     src=_strs(m, "src_kind"), dst=_strs(m, "dst_kind"))),
        Source("memset", z, _device_pid(z), z["stream_id"].to_numpy(dtype=np.int64),
               _fixed_name("memset"),
               _args(correlation_id=_ints(z, "correlation_id"), bytes=_ints(z, "bytes"))),
    ]
    _add_flows(out, api)
    return out


def flow_keys(frame: pd.DataFrame) -> npt.NDArray[np.uint64]:
    """``pid << 40 | correlation_id`` (+1, so 0 means none) per row."""
    pid = frame["pid"].to_numpy(dtype=np.int64).astype(np.uint64)
    corr = frame["correlation_id"].to_numpy(dtype=np.int64).astype(np.uint64)
    keys: npt.NDArray[np.uint64] = ((pid << np.uint64(40))
                                    | (corr & np.uint64((1 << 40) - 1))) + np.uint64(1)
    return keys


def _add_flows(ops: list[Source], api: pd.DataFrame) -> None:
    """Launch flows on the GPU operation sources (module docstring)."""
    last_key: list[npt.NDArray[np.uint64]] = []
    last_start: list[I64] = []
    for src in ops:
        if src.frame.empty or api.empty:
            src.flow = np.zeros(len(src), dtype=np.uint64)
            src.launch = np.full((len(src), 3), -1, dtype=np.int64)
            continue
        joined = join_launch_calls(src.frame[[*JOIN_KEY]], api, ("start_ns", "tid"))
        matched = joined["api_start_ns"].notna().to_numpy(dtype=bool)
        src.flow = np.where(matched, flow_keys(src.frame), np.uint64(0)).astype(np.uint64)
        src.launch = np.column_stack([
            joined["api_start_ns"].fillna(-1).to_numpy(dtype=np.int64),
            src.frame["pid"].to_numpy(dtype=np.int64),
            joined["api_tid"].fillna(-1).to_numpy(dtype=np.int64)])
        last_key.append(src.flow)
        last_start.append(src.starts())
    if not last_key:
        return
    keys, starts = np.concatenate(last_key), np.concatenate(last_start)
    order = np.lexsort((np.arange(len(keys)), starts, keys))
    is_last = np.ones(len(keys), dtype=bool)
    is_last[order[:-1]] = keys[order[:-1]] != keys[order[1:]]
    offset = 0
    for src in ops:
        if src.launch is not None and len(src) and not api.empty:
            src.flow_last = is_last[offset:offset + len(src)]
            offset += len(src)


def _host_sources(report: Report, window: tuple[int, int] | None,
                  launched: npt.NDArray[np.uint64]) -> list[Source]:
    t = report.trace
    api = _in_window(t.api_calls, window)
    osrt = _in_window(t.osrt, window)
    ranges = t.nvtx[(t.nvtx["kind"] == "range") & t.nvtx["end_ns"].notna()]
    ranges = _in_window(ranges.astype({"end_ns": "int64"}), window)
    marks = _in_window(t.nvtx[t.nvtx["kind"] == "mark"], window, instant=True)
    keys = flow_keys(api) if len(api) else np.zeros(0, dtype=np.uint64)
    first = ~api.duplicated(JOIN_KEY).to_numpy(dtype=bool) if len(api) else np.zeros(0, bool)
    api_flow = np.where(first & np.isin(keys, launched), keys, np.uint64(0)).astype(np.uint64)

    def ids(frame: pd.DataFrame) -> tuple[I64, I64]:
        return (frame["pid"].to_numpy(dtype=np.int64), frame["tid"].to_numpy(dtype=np.int64))

    return [
        Source("cuda_api", api, *ids(api), _column_names(api, "name"),
               _args(correlation_id=_ints(api, "correlation_id"),
                     return_value=_ints(api, "return_value")), flow=api_flow),
        Source("osrt", osrt, *ids(osrt), _column_names(osrt, "name"), _args()),
        Source("nvtx", ranges, *ids(ranges), _column_names(ranges, "name"),
               _args(domain=_strs(ranges, "domain"))),
        Source("nvtx", marks, *ids(marks), _column_names(marks, "name"), _args(),
               instant=True),
    ]


def _gap_source(report: Report, window: tuple[int, int] | None,
                columns: GapColumns | None = None) -> Source:
    """Idle gaps (:mod:`~infraprof.render.timeline_gaps`): names and arguments are decoded
    from the gap table's codes for the rows asked for (``columns``: the report's, when
    already built)."""
    columns = columns if columns is not None else GapColumns(report)
    gaps = _in_window(columns.frame, window)
    table_rows = gaps["gap"].to_numpy(dtype=np.int64)

    def args(rows: I64) -> dict[str, Arg]:
        return {name: Arg(kind, values, present)
                for name, (kind, values, present) in columns.columns(table_rows[rows]).items()}

    return Source("gpu_idle", gaps, _device_pid(gaps), np.full(len(gaps), GAP_TID),
                  lambda rows: columns.names(table_rows[rows]), args)


def _pyspy_source(report: Report, window: tuple[int, int] | None) -> Source:
    slices = pyspy_slices(report)
    frame = _in_window(pd.DataFrame({
        "start_ns": np.array([s.start_ns for s in slices], dtype=np.int64),
        "end_ns": np.array([s.end_ns for s in slices], dtype=np.int64),
        "thread": np.array([s.tid for s in slices], dtype=np.int64),
        "name": np.array([s.stack[-1] for s in slices], dtype=object),
        "stack": np.array([" > ".join(s.stack) for s in slices], dtype=object)}), window)
    pid = np.full(len(frame), main_pid(report), dtype=np.int64)
    return Source("py-spy", frame, pid, PYSPY_TID_OFFSET + frame["thread"].to_numpy(np.int64),
                  _column_names(frame, "name"), _args(stack=_strs(frame, "stack")))


# ------------------------------------------------------------------------------------------
# the plan


def _groups(source: Source) -> dict[tuple[int, int], npt.NDArray[np.signedinteger]]:
    """Row numbers (ascending) of each ``(pid, tid)`` track of ``source``: views into one
    stable sort by track, int32 where the rows fit it (4 bytes a row)."""
    if not len(source):
        return {}
    order = np.lexsort((source.tid, source.pid))
    if len(order) < np.iinfo(np.int32).max:
        order = order.astype(np.int32)
    pid, tid = source.pid[order], source.tid[order]
    cuts = np.flatnonzero((pid[1:] != pid[:-1]) | (tid[1:] != tid[:-1])) + 1
    firsts = np.concatenate([[0], cuts]).tolist()
    lasts = [*cuts.tolist(), len(order)]
    return {(int(pid[a]), int(tid[a])): order[a:b] for a, b in zip(firsts, lasts, strict=True)}


def _track(key: tuple[int, int], thread_names: dict[tuple[int, int], str]) -> Track:
    pid, tid = key
    if pid >= GPU_PID_BASE:
        if tid == GAP_TID:
            return Track(pid, tid, "gaps", "GPU idle (attributed cause)", None, -1)
        return Track(pid, tid, "stream", f"stream {tid}", None, tid)
    if tid >= PYSPY_TID_OFFSET:
        return Track(pid, tid, "py-spy", f"py-spy {tid - PYSPY_TID_OFFSET}", None, tid)
    name = thread_names.get(key)
    return Track(pid, tid, "thread", f"{name or 'thread'} ({tid})", name, tid)


def _processes(report: Report, pids: list[int]) -> list[Process]:
    t = report.trace
    procs = {int(p): str(n) for p, n in zip(t.processes["pid"], t.processes["name"],
                                            strict=True)}
    gpus = {int(d): str(n) for d, n in zip(t.gpus["device_id"], t.gpus["name"], strict=True)}
    out = []
    for pid in pids:
        if pid >= GPU_PID_BASE:
            device = pid - GPU_PID_BASE
            out.append(Process(pid, f"GPU {device}: {gpus.get(device, 'device')}", device, True))
        else:
            out.append(Process(pid, procs.get(pid, "process"), 1000 + pid, False))
    return out


def build_plan(report: Report, window: tuple[int, int] | None = None,
               extra_pids: Iterable[int] = (), gaps: GapColumns | None = None) -> ExportPlan:
    """Sources, tracks and processes of the export of ``report`` (rows overlapping
    ``window``, ns on the trace's timeline, when given); ``extra_pids`` are described as
    processes even without a track (the GPUs of a size-bounded export's counters);
    ``gaps``: the report's gap columns when the caller has them already."""
    gpu = _gpu_sources(report, window)
    launched = np.concatenate([s.flow for s in gpu if s.flow is not None])
    sources = [*gpu, *_host_sources(report, window, launched[launched > 0]),
               _gap_source(report, window, gaps), _pyspy_source(report, window)]
    groups = [_groups(s) for s in sources]
    t = report.trace
    thread_names = {(int(decode_pid(g)), int(decode_tid(g))): str(n)
                    for g, n in zip(t.threads["global_tid"], t.threads["name"], strict=True)
                    if n is not None}
    keys = sorted({k for g in groups for k in g})
    tracks = [_track(k, thread_names) for k in keys]
    release_free_memory()  # the flow join's and grouping's temporaries
    pids = sorted({p for p, _ in keys} | set(extra_pids))
    return ExportPlan(_processes(report, pids), tracks, sources, groups)


def trace_start_ns(t: Trace) -> int:
    """The earliest start of any exported table (0 for an empty trace): ``--window`` times
    count from here, as the Perfetto UI's time axis does."""
    firsts = [int(f["start_ns"].min()) for f in (t.kernels, t.memcpy, t.memset, t.api_calls,
                                                  t.osrt, t.nvtx) if len(f)]
    return min(firsts, default=0)


def rows_in_window(t: Trace, window: tuple[int, int] | None) -> int:
    """Rows of the trace tables the export draws (before gaps and py-spy slices are known):
    a cheap lower bound of :meth:`ExportPlan.event_count`."""
    ranges = t.nvtx[(t.nvtx["kind"] == "range") & t.nvtx["end_ns"].notna()]
    marks = t.nvtx[t.nvtx["kind"] == "mark"]
    if window is None:
        return sum(len(f) for f in (t.kernels, t.memcpy, t.memset, t.api_calls, t.osrt,
                                    ranges, marks))
    lo, hi = window
    total = 0
    for frame in (t.kernels, t.memcpy, t.memset, t.api_calls, t.osrt, ranges):
        start = frame["start_ns"].to_numpy(dtype=np.int64)
        end = frame["end_ns"].to_numpy(dtype=np.int64)
        total += int(np.count_nonzero((start < hi) & ((end > lo) | (start >= lo))))
    start = marks["start_ns"].to_numpy(dtype=np.int64)
    return total + int(np.count_nonzero((start >= lo) & (start < hi)))
