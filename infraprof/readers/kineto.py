"""PyTorch profiler (Kineto) Chrome-trace JSON → the normalized tables of :mod:`infraprof.tables`.

Input: ``torch.profiler`` output (``*.pt.trace.json``, optionally gzipped; detected by content:
:func:`looks_like_kineto`, used by :func:`infraprof.inputs.detect`), read as a stream
(:mod:`infraprof.readers.json_stream`). Mapping (``cat`` of complete ``"ph": "X"`` events, old
Kineto spellings in brackets):

* ``kernel`` [``Kernel``] → ``kernels``: ``args.device``/``stream``/``context``/``correlation``,
  ``grid``/``block`` (0 when absent), ``registers per thread``; Kineto's ``shared memory`` is
  static + dynamic together and lands in ``static_smem_bytes`` (``dynamic_smem_bytes`` = 0).
* ``gpu_memcpy`` [``Memcpy``] → ``memcpy``: the name ``Memcpy HtoD (Pageable -> Device)`` gives
  ``direction`` (``HtoD``), ``src_kind`` and ``dst_kind``; ``args.bytes``.
  ``gpu_memset`` [``Memset``] → ``memset`` (``Memset (Device)`` gives ``mem_kind``).
* ``cuda_runtime`` [``Runtime``], ``cuda_driver`` → ``api_calls`` with ``args.correlation``; a
  call without one takes the id of the ``ac2g`` flow event at its thread and timestamp.
* ``cuda_sync`` → ``syncs``: classified by the API call of the same correlation id (as for
  nsys), else by ``args.cuda_sync_kind``. Runtime sync calls are in ``api_calls``.
* ``user_annotation`` (``record_function``, ``ProfilerStep#N``) → ``nvtx`` ranges of the default
  domain; ``cpu_op`` [``Operator``] → ``nvtx`` ranges of domain :data:`CPU_OP_DOMAIN` (what
  ``torch.autograd.profiler.emit_nvtx`` shows under nsys). ``gpu_user_annotation`` (Kineto's
  GPU span of an annotation) is not read: infraprof projects ranges onto the GPU itself.
* ``python_function`` (``with_stack=True``) → kept in :attr:`KinetoTables.python_events` for
  :mod:`infraprof.readers.kineto_python`.
* ``process_name``/``thread_name`` metadata → ``processes``/``threads``; ``deviceProperties``
  → ``gpus``; ``distributedInfo`` → ``rank``/``world_size``/``backend``.

Every other category is ignored and counted (``ignored``: known and unused, ``unknown``).

Ids: GPU events carry the device as ``pid``; their host ``pid`` is that of the API call with the
same correlation id (else the main process). ``global_tid = pid << 24 | tid`` as nsys packs it
(both masked to 24 bits).

Time: Kineto writes microseconds, as integers (older versions, µs since the epoch: 1 µs
resolution) or with three decimals relative to ``baseTimeNanoseconds`` (1 ns resolution). The
decimal text is converted to integer nanoseconds exactly (no binary floats, so no drift over
long captures), then shifted so the earliest event (or the profiler's ``Trace`` span) is 0;
``session_start_utc_ns`` is that origin on the UTC clock when the timestamps are absolute.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.errors import InputError
from infraprof.readers.json_stream import JsonStream, us_to_ns
from infraprof.readers.ncu_metrics import short_name_of
from infraprof.readers.nsys_enums import api_family, strip_api_suffix, sync_kind

CPU_OP_DOMAIN: Final = "cpu_op"
NVTX_PUSH_POP: Final = 59
ID_MASK: Final = 0xFFFFFF
EPOCH_NS_MIN: Final = 10**18  # a timestamp beyond 2001-09-09 in ns is taken as UTC
_BUCKETS: Final[dict[str, str]] = {
    "kernel": "kernel", "Kernel": "kernel",
    "gpu_memcpy": "memcpy", "Memcpy": "memcpy",
    "gpu_memset": "memset", "Memset": "memset",
    "cuda_runtime": "api", "Runtime": "api", "cuda_driver": "api",
    "cuda_sync": "sync",
    "user_annotation": "annotation",
    "cpu_op": "cpu_op", "Operator": "cpu_op",
    "python_function": "python",
    "Trace": "window",
}
IGNORED_CATEGORIES: Final = frozenset({
    "gpu_user_annotation", "fwdbwd", "ac2g", "cuda_profiler_range", "cpu_instant_event",
    "overhead", "Overhead", "python_function_instant", "Activity", "gpu_op",
})
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "kernel": ("device", "context", "stream", "correlation", "grid", "block",
               "registers per thread", "shared memory"),
    "memcpy": ("device", "context", "stream", "correlation", "bytes"),
    "memset": ("device", "context", "stream", "correlation", "bytes"),
    "api": ("correlation",),
    "sync": ("device", "context", "stream", "correlation", "cuda_sync_kind"),
    "annotation": (), "cpu_op": (), "window": (),
    "python": ("Python id", "Python parent id"),
}
_COPY_NAME = re.compile(r"^Memcpy\s+(?P<dir>\S+)(?:\s*\((?P<src>[^)]*?)\s*->\s*(?P<dst>[^)]*)\))?")
_KINETO_CAT: Final = re.compile(
    r'"cat"\s*:\s*"(?:' + "|".join(sorted(k for k in _BUCKETS if k != "Trace")) + ')"')
_SYNC_KINDS: Final = {"Stream Sync": "stream", "Event Sync": "event", "Context Sync": "context",
                      "Stream Wait Event": "stream_wait_event"}


@dataclass
class KinetoTables:
    """Everything read from one Kineto trace: normalized ``frames`` plus metadata."""

    path: Path
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    python_events: pd.DataFrame = field(default_factory=pd.DataFrame)
    header: dict[str, Any] = field(default_factory=dict)
    session_start_utc_ns: int | None = None
    window: tuple[int, int] | None = None
    rank: int | None = None
    world_size: int | None = None
    backend: str | None = None
    events: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def looks_like_kineto(head: str) -> bool:
    """True when the start of a JSON text (its first 64 KiB, inflated) is a Kineto trace: a
    JSON object or array with Kineto's ``"schemaVersion"`` header key in its first 4 KiB or an
    event of a Kineto category. Other Chrome traces (py-spy's ``"cat": "py-spy"``) are not."""
    if not head.startswith(("{", "[")):
        return False
    return '"schemaVersion"' in head[:4096] or _KINETO_CAT.search(head) is not None


@dataclass
class _Collected:
    rows: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {bucket: [] for bucket in _FIELDS})
    flows: list[tuple[Any, ...]] = field(default_factory=list)
    process_names: dict[int, str] = field(default_factory=dict)
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)
    ignored: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)


def _as_int(value: Any, default: int = 0) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return default


def _metadata(event: dict[str, Any], out: _Collected) -> None:
    args = event.get("args") or {}
    name, pid = event.get("name"), event.get("pid")
    if not isinstance(pid, int) or not isinstance(args, dict) or "name" not in args:
        return
    if name == "process_name":
        out.process_names[pid] = str(args["name"])
    elif name == "thread_name":
        out.thread_names[(pid, _as_int(event.get("tid")))] = str(args["name"])


def _collect(stream: JsonStream) -> _Collected:
    """One pass over the events: per bucket, tuples of ``(ts, dur, pid, tid, name, *fields)``
    (names interned, so repeated names are stored once)."""
    out = _Collected()
    names: dict[str, str] = {}
    for event in stream.events():
        phase, cat = event.get("ph"), event.get("cat")
        if phase == "X":
            bucket = _BUCKETS.get(cat) if isinstance(cat, str) else None
            if bucket is None:
                (out.ignored if str(cat) in IGNORED_CATEGORIES else out.unknown)[str(cat)] += 1
                continue
            args = event.get("args")
            args = args if isinstance(args, dict) else {}
            name = str(event.get("name", ""))
            name = names.setdefault(name, name)
            out.rows[bucket].append((us_to_ns(event.get("ts")), us_to_ns(event.get("dur", 0)),
                                     event.get("pid"),
                                     event.get("tid"), name,
                                     *(args.get(k) for k in _FIELDS[bucket])))
        elif phase in ("s", "f", "t") and cat == "ac2g":
            out.flows.append((event.get("id"), event.get("pid"), event.get("tid"),
                              us_to_ns(event.get("ts"))))
        elif phase == "M":
            _metadata(event, out)
        else:
            (out.ignored if cat is None or str(cat) in IGNORED_CATEGORIES else out.unknown)[
                str(cat) if cat is not None else f"ph={phase}"] += 1
    return out


def _frame(rows: Sequence[tuple[Any, ...]], bucket: str) -> pd.DataFrame:
    """Rows of one bucket as a frame with ``start_ns``/``end_ns`` in ns on Kineto's clock
    (shifted to the trace origin later) and integer ``pid``/``tid`` (non-numeric ids: -1)."""
    columns = ["ts_ns", "dur_ns", "raw_pid", "raw_tid", "name", *_FIELDS[bucket]]
    frame = pd.DataFrame.from_records(list(rows), columns=columns) if rows else pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in columns})
    start = frame["ts_ns"].to_numpy(dtype=np.int64)
    frame["start_ns"] = start
    frame["end_ns"] = start + np.maximum(frame["dur_ns"].to_numpy(dtype=np.int64), 0)
    for col, raw in (("pid", "raw_pid"), ("tid", "raw_tid")):
        frame[col] = pd.to_numeric(frame[raw], errors="coerce").fillna(-1).astype("int64")
    return table_schema.as_frame(frame)


def _int_column(frame: pd.DataFrame, col: str, default: int = 0) -> pd.Series:
    return pd.to_numeric(frame[col], errors="coerce").fillna(default).astype("int64")


def _global_tid(pid: pd.Series, tid: pd.Series) -> np.ndarray[Any, Any]:
    return ((pid.to_numpy(np.int64) & ID_MASK) << 24) | (tid.to_numpy(np.int64) & ID_MASK)


def _api_calls(frame: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    frame["correlation_id"] = pd.to_numeric(frame["correlation"], errors="coerce")
    missing = frame["correlation_id"].isna()
    if missing.any() and len(flows):
        key = ["pid", "tid", "start_ns"]
        linked = frame.loc[missing, key].merge(flows.drop_duplicates(key), on=key, how="left")
        frame.loc[missing, "correlation_id"] = linked["flow_id"].to_numpy()
    frame["correlation_id"] = frame["correlation_id"].fillna(-1).astype("int64")
    frame["pid"] = frame["pid"] & ID_MASK
    frame["tid"] = frame["tid"] & ID_MASK
    frame["global_tid"] = _global_tid(frame["pid"], frame["tid"])
    frame["name"] = table_schema.map_distinct(frame["name"], strip_api_suffix)
    frame["api"] = table_schema.map_distinct(frame["name"], api_family)
    frame = frame.sort_values(["start_ns", "end_ns"], kind="stable").reset_index(drop=True)
    return table_schema.conform(frame, table_schema.API_CALLS)


def _gpu_common(frame: pd.DataFrame, host_pid: pd.Series, main_pid: int) -> pd.DataFrame:
    """Device, stream, context and correlation ids of GPU events; ``pid`` is the launching
    process (by correlation id), else ``main_pid``."""
    frame["device_id"] = pd.to_numeric(frame["device"], errors="coerce").fillna(
        frame["pid"]).astype("int64")
    frame["stream_id"] = pd.to_numeric(frame["stream"], errors="coerce").fillna(
        frame["tid"]).astype("int64")
    frame["context_id"] = _int_column(frame, "context")
    frame["correlation_id"] = _int_column(frame, "correlation", -1)
    frame["pid"] = frame["correlation_id"].map(host_pid).fillna(main_pid).astype("int64")
    frame["global_pid"] = frame["pid"].to_numpy(np.int64) << 24
    return table_schema.as_frame(frame.sort_values(["start_ns", "end_ns"], kind="stable")
                      .reset_index(drop=True))


def _dims(values: pd.Series) -> pd.DataFrame:
    """``[x, y, z]`` lists → three int columns (0 when absent or malformed)."""
    def triple(value: Any) -> tuple[int, int, int]:
        if isinstance(value, list) and len(value) == 3:
            return (_as_int(value[0]), _as_int(value[1]), _as_int(value[2]))
        return (0, 0, 0)
    return table_schema.as_frame(pd.DataFrame(
        values.map(triple).tolist() or np.empty((0, 3), dtype=np.int64),
        index=values.index, columns=["x", "y", "z"]))


def _kernels(frame: pd.DataFrame) -> pd.DataFrame:
    for prefix, col in (("grid", "grid"), ("block", "block")):
        dims = _dims(frame[col])
        for axis in ("x", "y", "z"):
            frame[f"{prefix}_{axis}"] = dims[axis].astype("int64")
    short = {name: short_name_of(str(name)) for name in pd.unique(frame["name"])}
    frame["short_name"] = frame["name"].map(short)
    frame["mangled_name"] = None
    frame["registers_per_thread"] = _int_column(frame, "registers per thread")
    frame["static_smem_bytes"] = _int_column(frame, "shared memory")
    frame["dynamic_smem_bytes"] = 0
    return table_schema.conform(frame, table_schema.KERNELS)


def _memcpy(frame: pd.DataFrame) -> pd.DataFrame:
    parts = frame["name"].astype(str).str.extract(_COPY_NAME)
    frame["direction"] = parts["dir"].fillna("Unknown")
    frame["src_kind"] = parts["src"]
    frame["dst_kind"] = parts["dst"]
    frame["copy_kind"] = -1
    frame["bytes"] = _int_column(frame, "bytes")
    return table_schema.conform(frame, table_schema.MEMCPY)


def _memset(frame: pd.DataFrame) -> pd.DataFrame:
    frame["mem_kind"] = frame["name"].astype(str).str.extract(r"\(([^)]*)\)")[0]
    frame["bytes"] = _int_column(frame, "bytes")
    return table_schema.conform(frame, table_schema.MEMSET)


def _syncs(frame: pd.DataFrame, api: pd.DataFrame) -> pd.DataFrame:
    names = api.drop_duplicates(["pid", "correlation_id"]).rename(columns={"name": "api_name"})
    frame = frame.merge(names[["pid", "correlation_id", "api_name"]],
                        on=["pid", "correlation_id"], how="left")
    by_api = table_schema.map_distinct(
        frame["api_name"], lambda n: None if pd.isna(n) else sync_kind(str(n)))
    by_kind = table_schema.map_distinct(frame["cuda_sync_kind"].fillna(frame["name"]),
                                        lambda k: _SYNC_KINDS.get(str(k), "unknown"))
    frame["kind"] = by_api.where(by_api.notna(), by_kind)
    frame["device_id"] = pd.to_numeric(frame["device"], errors="coerce").astype("Int64")
    stream = pd.to_numeric(frame["stream"], errors="coerce")
    frame["stream_id"] = stream.where(stream >= 0).astype("Int64")
    frame["context_id"] = pd.to_numeric(frame["context"], errors="coerce").astype("Int64")
    return table_schema.conform(frame, table_schema.SYNCS)


def _ranges(annotations: pd.DataFrame, cpu_ops: pd.DataFrame) -> pd.DataFrame:
    parts = [annotations.assign(domain=None), cpu_ops.assign(domain=CPU_OP_DOMAIN)]
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else parts[0]
    frame["pid"] = frame["pid"] & ID_MASK
    frame["tid"] = frame["tid"] & ID_MASK
    frame["global_tid"] = _global_tid(frame["pid"], frame["tid"])
    frame["event_type"] = NVTX_PUSH_POP
    frame["kind"] = "range"
    frame = frame.sort_values(["start_ns", "end_ns"], ascending=[True, False], kind="stable")
    return table_schema.conform(frame.reset_index(drop=True), table_schema.NVTX)


def _flows(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    columns = ["flow_id", "pid", "tid", "start_ns"]
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in columns})
    frame["start_ns"] = frame["start_ns"].astype("int64")
    for col in ("flow_id", "pid", "tid"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.dropna(subset=["flow_id", "pid", "tid"])
    return table_schema.as_frame(frame.astype({"flow_id": "int64", "pid": "int64", "tid": "int64"})[
        ["flow_id", "pid", "tid", "start_ns"]])


def _gpus(header: dict[str, Any], used: set[int]) -> pd.DataFrame:
    props = header.get("deviceProperties")
    rows = [p for p in props if isinstance(p, dict) and "id" in p] if isinstance(
        props, list) else []
    frame = pd.DataFrame({
        "device_id": [_as_int(p["id"]) for p in rows],
        "name": [str(p.get("name") or f"GPU {p['id']}") for p in rows],
        "sm_count": [p.get("numSms", p.get("multiProcessorCount")) for p in rows],
        "total_memory_bytes": [p.get("totalGlobalMem") for p in rows],
        "compute_major": [p.get("computeMajor") for p in rows],
        "compute_minor": [p.get("computeMinor") for p in rows],
    }).drop_duplicates("device_id")
    known = set(frame["device_id"].tolist())
    extra = pd.DataFrame({"device_id": sorted(used - known)})
    extra["name"] = [f"GPU {d}" for d in extra["device_id"]]
    frame = pd.concat([frame, extra], ignore_index=True) if len(extra) else frame
    for col in ("sm_count", "total_memory_bytes", "compute_major", "compute_minor"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["used"] = frame["device_id"].isin(used)
    return table_schema.conform(frame.sort_values("device_id").reset_index(drop=True),
                                table_schema.GPUS)


def _names(collected: _Collected, host_pids: set[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``threads`` and ``processes`` of the host processes from the metadata events."""
    threads = [(pid, tid, name) for (pid, tid), name in collected.thread_names.items()
               if pid in host_pids]
    t = pd.DataFrame.from_records(threads, columns=["pid", "tid", "name"]) if threads else (
        pd.DataFrame({"pid": pd.Series([], dtype="int64"), "tid": pd.Series([], dtype="int64"),
                      "name": pd.Series([], dtype=object)}))
    t["pid"], t["tid"] = t["pid"] & ID_MASK, t["tid"] & ID_MASK
    t["global_tid"] = _global_tid(t["pid"], t["tid"])
    procs = [(pid & ID_MASK, name) for pid, name in collected.process_names.items()
             if pid in host_pids]
    p = pd.DataFrame.from_records(procs, columns=["pid", "name"]) if procs else pd.DataFrame(
        {"pid": pd.Series([], dtype="int64"), "name": pd.Series([], dtype=object)})
    p["global_pid"] = p["pid"].to_numpy(np.int64) << 24
    return (table_schema.conform(t.drop_duplicates("global_tid", keep="last"),
                                 table_schema.THREADS),
            table_schema.conform(p.drop_duplicates("global_pid"), table_schema.PROCESSES))


def _origin(frames: dict[str, pd.DataFrame]) -> int:
    starts = [int(f["start_ns"].min()) for f in frames.values() if len(f)]
    if not starts:
        raise InputError("no timed events")
    return min(starts)


def _utc_origin(header: dict[str, Any], origin_ns: int) -> int | None:
    base = header.get("baseTimeNanoseconds")
    if base is not None:
        return _as_int(base) + origin_ns
    return origin_ns if origin_ns >= EPOCH_NS_MIN else None


def _distributed(out: KinetoTables) -> None:
    info = out.header.get("distributedInfo")
    if isinstance(info, dict):
        rank, size = info.get("rank"), info.get("world_size")
        out.rank = _as_int(rank) if rank is not None else None
        out.world_size = _as_int(size) if size is not None else None
        out.backend = str(info["backend"]) if info.get("backend") is not None else None


def _build(out: KinetoTables, collected: _Collected) -> None:
    raw = {bucket: _frame(rows, bucket) for bucket, rows in collected.rows.items()}
    origin = _origin(raw)
    for frame in raw.values():
        frame["start_ns"] -= origin
        frame["end_ns"] -= origin
    out.session_start_utc_ns = _utc_origin(out.header, origin)
    window = raw.pop("window")
    if len(window):
        out.window = (int(window["start_ns"].min()), int(window["end_ns"].max()))
    flows = _flows(collected.flows)
    flows["start_ns"] -= origin
    api = _api_calls(raw["api"], flows)
    host = [api["pid"], raw["annotation"]["pid"], raw["cpu_op"]["pid"]]
    counts = pd.concat(host, ignore_index=True).value_counts()
    main_pid = int(counts.index[0]) & ID_MASK if len(counts) else 0
    host_pid = api.drop_duplicates("correlation_id").set_index("correlation_id")["pid"]
    fr: dict[str, pd.DataFrame] = out.frames
    fr["api_calls"] = api
    fr["kernels"] = _kernels(_gpu_common(raw["kernel"], host_pid, main_pid))
    fr["memcpy"] = _memcpy(_gpu_common(raw["memcpy"], host_pid, main_pid))
    fr["memset"] = _memset(_gpu_common(raw["memset"], host_pid, main_pid))
    fr["syncs"] = _syncs(_gpu_common(raw["sync"], host_pid, main_pid), api)
    fr["nvtx"] = _ranges(raw["annotation"], raw["cpu_op"])
    python = raw["python"]
    python["pid"], python["tid"] = python["pid"] & ID_MASK, python["tid"] & ID_MASK
    out.python_events = python
    used: set[int] = set()
    for name in ("kernels", "memcpy", "memset"):
        used.update(int(d) for d in pd.unique(fr[name]["device_id"]))
    fr["gpus"] = _gpus(out.header, used)
    host_pids = {int(p) for p in counts.index} | {main_pid}
    fr["threads"], fr["processes"] = _names(collected, host_pids)


def read_kineto(path: Path, progress: Callable[[str], None] | None = None) -> KinetoTables:
    """Read a Kineto trace (see the module docstring). Raises :class:`InputError` for a file
    that is not one or that ends before its first event; a file cut off later is read up to
    its last complete event and says so in ``warnings``."""
    if progress:
        progress(f"Reading {path.name}")
    stream = JsonStream(path)
    collected = _collect(stream)
    out = KinetoTables(path=path, header=stream.header, events=stream.events_read,
                       ignored=dict(collected.ignored), unknown=dict(collected.unknown))
    if stream.truncated:
        if not any(collected.rows.values()):
            raise InputError(f"{path}: truncated before any profiler event ({stream.truncated})"
                             "; re-run torch.profiler and let it finish writing")
        out.warnings.append(f"{path}: truncated: {stream.truncated}")
    mapped = ("kernel", "memcpy", "memset", "api", "sync", "annotation", "cpu_op", "python")
    if not any(collected.rows[b] for b in mapped):
        raise InputError(f"{path}: no PyTorch profiler events (kernel, cuda_runtime, cpu_op, "
                         "user_annotation) in this Chrome trace; pass a torch.profiler trace")
    _distributed(out)
    try:
        _build(out, collected)
    except (OverflowError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: an event field holds a value out of range or of the wrong "
                         f"type ({exc}); not a readable torch.profiler trace") from exc
    if out.unknown:
        listed = ", ".join(f"{k} ({n})" for k, n in sorted(out.unknown.items()))
        out.warnings.append(f"{path}: ignored events of unknown categories: {listed}")
    return out
