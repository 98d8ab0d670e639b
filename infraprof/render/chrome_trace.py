"""Chrome trace-event JSON of an :class:`~infraprof.render.timeline_export.ExportPlan`, for
chrome://tracing and tools that read that format (Perfetto UI reads it too), streamed.

Tracks are the plan's ``pid``/``tid`` pairs (see :mod:`~infraprof.render.timeline_export`):

* Slices are complete ``X`` events; ``ts``/``dur`` are µs as floats (``ns / 1000``, so no
  nanosecond is lost). A host slice that does not nest within the thread's other slices
  (NVTX start/end ranges, clock jitter between API and OS-runtime records) becomes an async
  ``b``/``e`` pair instead, so every thread's ``X`` slices nest properly. NVTX marks are
  thread-scoped instants (``i``).
* Flow arrows (``s`` at the launching API call, ``f`` with ``bp: "e"`` at the GPU operation)
  join each operation to its launch by correlation id and process.
* Gaps carry their attribution (cause, finding id, per-category parts ``<category>_ns``, the
  launching call, next operation, thread, NVTX range) in ``args``.
* ``M`` events name every process and thread, first. Open NVTX ranges (no end) are left out.

The document is written a track chunk at a time (:data:`CHUNK_ROWS` events): memory does not
grow with the number of events.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from infraprof import __version__
from infraprof.ranking import Report
from infraprof.render.timeline_export import (
    GAP_TID,
    ExportPlan,
    Track,
    TrackRows,
    build_plan,
)
from infraprof.text_safety import safe_json

CHUNK_ROWS = 20000
Write = Callable[[bytes], object]
Event = dict[str, Any]


def _us(ns: int) -> float:
    return ns / 1000


def _meta(name: str, pid: int, value: str | int, tid: int | None = None) -> Event:
    key = "sort_index" if name.endswith("sort_index") else "name"
    ev: Event = {"name": name, "ph": "M", "pid": pid, "args": {key: value}}
    if tid is not None:
        ev["tid"] = tid
    return ev


def _metadata(plan: ExportPlan) -> list[Event]:
    """Process and thread names and sort order (one event per process and track)."""
    out: list[Event] = []
    for p in plan.processes:
        out.append(_meta("process_name", p.pid, p.name if p.gpu else f"{p.name} ({p.pid})"))
        out.append(_meta("process_sort_index", p.pid, p.sort_index))
    for t in plan.tracks:
        if t.kind in ("stream", "gaps"):
            out.append(_meta("thread_sort_index", t.pid, -1 if t.tid == GAP_TID else t.tid,
                             t.tid))
        out.append(_meta("thread_name", t.pid, t.label, t.tid))
    return out


def _plain(kind: str, value: Any) -> Any:
    if kind == "dim3":
        return [int(v) for v in value]
    return int(value) if kind == "int" else str(value)


def _chunk_args(plan: ExportPlan, src: np.ndarray, row: np.ndarray) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in range(len(row))]
    for s in np.unique(src).tolist():
        mine = np.nonzero(src == s)[0]
        for name, arg in plan.sources[s].args(row[mine]).items():
            for i, value, present in zip(mine.tolist(), arg.values, arg.present.tolist(),
                                         strict=True):
                if present:
                    out[i][name] = _plain(arg.kind, value)
    return out


class _Ids:
    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def _flow_events(plan: ExportPlan, s: int, r: int, start: int, track: Track, ids: _Ids
                 ) -> list[Event]:
    launch = plan.sources[s].launch
    if launch is None or int(launch[r, 0]) < 0:
        return []
    flow = ids.next()
    api_start, api_pid, api_tid = (int(v) for v in launch[r])
    return [{"name": "launch", "cat": "launch", "ph": "s", "id": flow, "ts": _us(api_start),
             "pid": api_pid, "tid": api_tid},
            {"name": "launch", "cat": "launch", "ph": "f", "bp": "e", "id": flow,
             "ts": _us(start), "pid": track.pid, "tid": track.tid}]


def _track_events(plan: ExportPlan, rows: TrackRows, ids: _Ids) -> Iterator[list[Event]]:
    """The events of one track, a chunk at a time."""
    track = rows.track
    for first in range(0, len(rows.row), CHUNK_ROWS):
        part = slice(first, first + CHUNK_ROWS)
        src, row = rows.source[part], rows.row[part]
        names = np.empty(len(row), dtype=object)
        for s in np.unique(src).tolist():
            mine = np.nonzero(src == s)[0]
            names[mine] = plan.sources[s].names(row[mine])
        args = _chunk_args(plan, src, row)
        out: list[Event] = []
        for i, (s, r, begin, end, lane) in enumerate(zip(
                src.tolist(), row.tolist(), rows.start[part].tolist(), rows.end[part].tolist(),
                rows.lane[part].tolist(), strict=True)):
            source = plan.sources[s]
            common: Event = {"name": str(names[i]), "cat": source.cat, "pid": track.pid,
                             "tid": track.tid}
            if source.instant:
                out.append({**common, "ph": "i", "s": "t", "ts": _us(begin)})
            elif lane == 0:
                out.append({**common, "ph": "X", "ts": _us(begin), "dur": _us(end - begin),
                            "args": args[i]})
            else:
                pair = ids.next()
                out.append({**common, "ph": "b", "ts": _us(begin), "id": pair,
                            "args": args[i]})
                out.append({**common, "ph": "e", "ts": _us(end), "id": pair})
            out += _flow_events(plan, s, r, begin, track, ids)
        yield out


def _encode(events: list[Event], first: bool) -> bytes:
    text = ",".join(json.dumps(e, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
                    for e in events)
    return safe_json(("" if first else ",") + text).encode("utf-8", "replace")


def write_chrome_trace(report: Report, plan: ExportPlan, write: Write,
                       extra: list[Event] | None = None) -> None:
    """The JSON object format, ``{"traceEvents": [...], "displayTimeUnit": "ns",
    "otherData": {...}}``, streamed through ``write``; ``extra`` events (a size-bounded
    export's counters and detail-window marker) come after the plan's."""
    write(b'{"traceEvents":[')
    meta = _metadata(plan)
    write(_encode(meta, True))
    empty = not meta
    ids = _Ids()
    for rows in plan.track_rows():
        for events in _track_events(plan, rows, ids):
            if events:
                write(_encode(events, empty))
                empty = False
    if extra:
        write(_encode(extra, empty))
    m = report.trace.meta
    other = {"exporter": f"infraprof {__version__}", "source": m.source,
             "nsys_version": m.nsys_version, "time_origin": "nsys session start"}
    tail = json.dumps(other, ensure_ascii=False, separators=(",", ":"))
    write(safe_json(f'],"displayTimeUnit":"ns","otherData":{tail}}}\n').encode("utf-8",
                                                                                 "replace"))


def render_chrome_trace(report: Report, window: tuple[int, int] | None = None) -> str:
    """The whole document as text (for tests and small traces; the CLI streams it)."""
    buffer = io.BytesIO()
    write_chrome_trace(report, build_plan(report, window), buffer.write)
    return buffer.getvalue().decode("utf-8")
