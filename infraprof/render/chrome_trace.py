"""Chrome trace-event JSON of a report's trace, for Perfetto UI (ui.perfetto.dev) and
chrome://tracing.

Layout (``pid``/``tid`` are the trace-event format's track keys)::

    pid = host process id    tid = thread id    CUDA API + OS runtime calls + NVTX ranges
    pid = GPU_PID_BASE + d   tid = stream id    kernels, memcpys, memsets of device d
                             tid = GAP_TID      idle gaps named by attributed cause

* Slices are complete ``X`` events; ``ts``/``dur`` are µs as floats (``ns / 1000``, so no
  nanosecond is lost). A host slice that does not nest within the thread's other slices
  (NVTX start/end ranges, clock jitter between API and OS-runtime records) becomes an async
  ``b``/``e`` pair instead, so every thread's ``X`` slices nest properly.
* Flow arrows (``s`` at the launching API call, ``f`` with ``bp: "e"`` at the GPU operation)
  join each operation to its launch by correlation id and process.
* Gaps carry their attribution (cause, per-category split, next operation, launching call,
  thread, NVTX range, overlapping calls, drain) in ``args``.
* ``M`` events name every process and thread. Open NVTX ranges (no end) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypedDict

import pandas as pd

from infraprof import __version__
from infraprof.analyses.gap_table import GapAttribution
from infraprof.ranking import Report
from infraprof.ranking.timeline_view import launch_flows, main_pid, pyspy_slices
from infraprof.tables import decode_pid, decode_tid

GPU_PID_BASE = 1 << 30
GAP_TID = 1 << 30


class TraceEvent(TypedDict, total=False):
    name: str
    cat: str
    ph: str
    ts: float
    dur: float
    pid: int
    tid: int
    id: int
    bp: str
    s: str
    args: dict[str, Any]


def _us(ns: int) -> float:
    return ns / 1000


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy -> Python, NA -> None."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def _meta(name: str, pid: int, value: str | int, tid: int | None = None) -> TraceEvent:
    key = "sort_index" if name.endswith("sort_index") else "name"
    ev: TraceEvent = {"name": name, "ph": "M", "pid": pid, "args": {key: value}}
    if tid is not None:
        ev["tid"] = tid
    return ev


_EPS_US = 5e-4  # times are whole ns; float µs sums may be off by far less than half a ns


def _nested(events: list[TraceEvent]) -> tuple[list[TraceEvent], list[TraceEvent]]:
    """Split one track's slices into those that nest (kept as ``X``) and the rest."""
    order = sorted(events, key=lambda e: (e["ts"], -e["dur"]))
    stack: list[float] = []
    keep, rest = [], []
    for ev in order:
        start, end = ev["ts"], ev["ts"] + ev["dur"]
        while stack and stack[-1] <= start + _EPS_US:
            stack.pop()
        if stack and end > stack[-1] + _EPS_US:
            rest.append(ev)
            continue
        stack.append(end)
        keep.append(ev)
    return keep, rest


def _async(events: Iterable[TraceEvent], first_id: int) -> list[TraceEvent]:
    out: list[TraceEvent] = []
    for i, ev in enumerate(events, first_id):
        common: TraceEvent = {"name": ev["name"], "cat": ev.get("cat", "slice"),
                              "pid": ev["pid"], "tid": ev["tid"], "id": i}
        out.append({**common, "ph": "b", "ts": ev["ts"], "args": ev.get("args", {})})
        out.append({**common, "ph": "e", "ts": ev["ts"] + ev["dur"]})
    return out


def _slices(frame: pd.DataFrame, cat: str, name: Iterable[str], pid: Iterable[int],
            tid: Iterable[int], args: list[dict[str, Any]] | None = None) -> list[TraceEvent]:
    s = [int(v) for v in frame["start_ns"]]
    e = [int(v) for v in frame["end_ns"]]
    out: list[TraceEvent] = []
    for i, (n, p, t) in enumerate(zip(name, pid, tid, strict=True)):
        ev: TraceEvent = {"name": str(n), "cat": cat, "ph": "X", "ts": _us(int(s[i])),
                          "dur": _us(max(0, int(e[i] - s[i]))), "pid": int(p), "tid": int(t)}
        if args is not None:
            ev["args"] = args[i]
        out.append(ev)
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def _device_pids(frame: pd.DataFrame) -> list[int]:
    return [GPU_PID_BASE + int(d) for d in frame["device_id"]]


def _gpu_slices(report: Report) -> list[TraceEvent]:
    t = report.trace
    k, m, z = t.kernels, t.memcpy, t.memset
    kargs = [{"correlation_id": int(r["correlation_id"]), "stream": int(r["stream_id"]),
              "grid": [int(r["grid_x"]), int(r["grid_y"]), int(r["grid_z"])],
              "block": [int(r["block_x"]), int(r["block_y"]), int(r["block_z"])],
              "registers_per_thread": int(r["registers_per_thread"])} for r in _records(k)]
    margs = [{"correlation_id": int(r["correlation_id"]), "bytes": int(r["bytes"]),
              "src": _plain(r["src_kind"]), "dst": _plain(r["dst_kind"])} for r in _records(m)]
    zargs = [{"correlation_id": int(r["correlation_id"]), "bytes": int(r["bytes"])}
             for r in _records(z)]
    return [
        *_slices(k, "kernel", k["name"], _device_pids(k), k["stream_id"], kargs),
        *_slices(m, "memcpy", (f"memcpy {d}" for d in m["direction"]), _device_pids(m),
                 m["stream_id"], margs),
        *_slices(z, "memset", ["memset"] * len(z), _device_pids(z), z["stream_id"], zargs),
    ]


def _host_slices(report: Report) -> list[TraceEvent]:
    t = report.trace
    a, o = t.api_calls, t.osrt
    n = t.nvtx[(t.nvtx["kind"] == "range") & t.nvtx["end_ns"].notna()]
    aargs = [{"correlation_id": int(r["correlation_id"]), "return_value": _plain(r["return_value"])}
             for r in _records(a)]
    nargs = [{"domain": _plain(d)} for d in n["domain"]]
    return [
        *_slices(a, "cuda_api", a["name"], a["pid"], a["tid"], aargs),
        *_slices(o, "osrt", o["name"], o["pid"], o["tid"]),
        *_slices(n.astype({"end_ns": "int64"}), "nvtx", n["name"], n["pid"], n["tid"], nargs),
    ]


def _nvtx_marks(report: Report) -> list[TraceEvent]:
    n = report.trace.nvtx
    n = n[n["kind"] == "mark"]
    return [{"name": str(r["name"]), "cat": "nvtx", "ph": "i", "s": "t",
             "ts": _us(int(r["start_ns"])), "pid": int(r["pid"]), "tid": int(r["tid"])}
            for r in _records(n)]


def _gap_records(report: Report) -> list[GapAttribution]:
    """Every attributed gap of the report, as records (the export's one access to the gap
    table)."""
    return report.analysis.attributions.records() if report.analysis else []


def _gaps(report: Report, names: dict[int, str]) -> list[TraceEvent]:
    a = report.analysis
    if a is None:
        return []
    out: list[TraceEvent] = []
    for g in _gap_records(report):
        cause = g.category
        args: dict[str, Any] = {
            "cause": cause, "parts_ns": dict(g.parts), "next_op": g.next_op,
            "launch": g.launch, "thread": names.get(g.global_tid) if g.global_tid else None,
            "nvtx": g.nvtx, "calls": g.calls, "drain": g.drain, "where": g.where,
            "exposed_by": g.exposed_by,
        }
        out.append({"name": f"idle: {cause}", "cat": "gpu_idle", "ph": "X",
                    "ts": _us(g.start_ns), "dur": _us(g.dur_ns), "pid": GPU_PID_BASE + g.device_id,
                    "tid": GAP_TID, "args": json.loads(json.dumps(args, default=_plain))})
    if not len(a.attributions):
        for tl in a.timelines:
            for s, e in zip(tl.gaps.starts.tolist(), tl.gaps.ends.tolist(), strict=True):
                out.append({"name": "idle: unattributed", "cat": "gpu_idle", "ph": "X",
                            "ts": _us(s), "dur": _us(e - s), "pid": GPU_PID_BASE + tl.device_id,
                            "tid": GAP_TID, "args": {"cause": "unattributed"}})
    return out


def _flows(report: Report) -> list[TraceEvent]:
    out: list[TraceEvent] = []
    for i, r in enumerate(_records(launch_flows(report)), 1):
        out.append({"name": "launch", "cat": "launch", "ph": "s", "id": i,
                    "ts": _us(int(r["api_start_ns"])), "pid": int(r["pid"]),
                    "tid": int(r["api_tid"])})
        out.append({"name": "launch", "cat": "launch", "ph": "f", "bp": "e", "id": i,
                    "ts": _us(int(r["start_ns"])), "pid": GPU_PID_BASE + int(r["device_id"]),
                    "tid": int(r["stream_id"])})
    return out


def _metadata(report: Report, events: list[TraceEvent], names: dict[int, str],
              track_names: dict[tuple[int, int], str] | None = None) -> list[TraceEvent]:
    t = report.trace
    procs = {int(p): str(n) for p, n in zip(t.processes["pid"], t.processes["name"],
                                            strict=True)}
    gpus = {int(d): str(n) for d, n in zip(t.gpus["device_id"], t.gpus["name"], strict=True)}
    tnames = {(int(decode_pid(g)), int(decode_tid(g))): n for g, n in names.items()}
    tracks = sorted({(e["pid"], e["tid"]) for e in events if "tid" in e})
    out: list[TraceEvent] = []
    for pid in sorted({p for p, _ in tracks}):
        if pid >= GPU_PID_BASE:
            d = pid - GPU_PID_BASE
            out.append(_meta("process_name", pid, f"GPU {d}: {gpus.get(d, 'device')}"))
            out.append(_meta("process_sort_index", pid, d))
        else:
            out.append(_meta("process_name", pid, f"{procs.get(pid, 'process')} ({pid})"))
            out.append(_meta("process_sort_index", pid, 1000 + pid))
    for pid, tid in tracks:
        if pid >= GPU_PID_BASE:
            label = "GPU idle (attributed cause)" if tid == GAP_TID else f"stream {tid}"
            out.append(_meta("thread_sort_index", pid, -1 if tid == GAP_TID else tid, tid))
        else:
            label = (track_names or {}).get((pid, tid)) or (
                f"{tnames.get((pid, tid)) or 'thread'} ({tid})")
        out.append(_meta("thread_name", pid, label, tid))
    return out


PYSPY_TID_OFFSET = 1 << 30


def _pyspy_slices(report: Report) -> tuple[list[TraceEvent], dict[tuple[int, int], str]]:
    """py-spy slices (:func:`timeline_view.pyspy_slices`) on a ``py-spy <tid>`` track per
    thread of the main process; ``args.stack`` holds the whole stack (root first)."""
    slices = pyspy_slices(report)
    if not slices:
        return [], {}
    pid = main_pid(report)
    out: list[TraceEvent] = []
    names: dict[tuple[int, int], str] = {}
    for sl in slices:
        track = PYSPY_TID_OFFSET + sl.tid
        names[(pid, track)] = f"py-spy {sl.tid}"
        out.append({"name": sl.stack[-1], "cat": "py-spy", "ph": "X", "ts": _us(sl.start_ns),
                    "dur": _us(sl.end_ns - sl.start_ns), "pid": pid, "tid": track,
                    "args": {"stack": " > ".join(sl.stack)}})
    return out, names


def trace_events(report: Report) -> list[TraceEvent]:
    """Every event of the export: metadata first, then slices, async pairs, marks, flows."""
    t = report.trace
    names = {int(g): str(n) for g, n in zip(t.threads["global_tid"], t.threads["name"],
                                            strict=True) if n is not None}
    py_slices, py_names = _pyspy_slices(report)
    slices = [*_gpu_slices(report), *_host_slices(report), *_gaps(report, names), *py_slices]
    by_track: dict[tuple[int, int], list[TraceEvent]] = {}
    for ev in slices:
        by_track.setdefault((ev["pid"], ev["tid"]), []).append(ev)
    kept: list[TraceEvent] = []
    rest: list[TraceEvent] = []
    for key in sorted(by_track):
        k, r = _nested(by_track[key])
        kept += k
        rest += r
    flows = _flows(report)
    body = [*kept, *_async(rest, len(flows) + 1), *_nvtx_marks(report), *flows]
    return [*_metadata(report, body, names, py_names), *body]


def render_chrome_trace(report: Report) -> str:
    """The JSON object format: ``{"traceEvents": [...], "displayTimeUnit": "ns", ...}``."""
    m = report.trace.meta
    doc = {
        "traceEvents": trace_events(report),
        "displayTimeUnit": "ns",
        "otherData": {"exporter": f"infraprof {__version__}", "source": m.source,
                      "nsys_version": m.nsys_version, "time_origin": "nsys session start"},
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
