"""Build infraprof's sample traces in ``sample_traces/``.

Three stages:

1. ``--recapture`` only: profile ``sample_apps/stall_app.py`` with the real ``nsys`` (NVTX + OS
   runtime, no sampling, under a watchdog) and export it with ``--lazy=false`` so that every
   table exists.
2. ``--recapture`` only: scrub the export (environment, host name, user paths, unrelated processes)
   and store it as ``sample_traces/cpu_only_stall_app.sqlite``.
3. Always: derive the SYNTHETIC GPU scenarios from that committed capture by inserting CUDA rows
   aligned to the real NVTX ``compute`` ranges, and write ``<scenario>.truth.json`` with the numbers
   that were planted. This stage needs no ``nsys`` and is deterministic (fixed seeds).

``--verify`` runs ``nsys stats`` / ``nsys analyze`` on temporary copies of every output.

Usage::

    python scripts/make_sample_traces.py                 # scenarios from the committed capture
    python scripts/make_sample_traces.py --recapture     # new capture + scrub + scenarios
    python scripts/make_sample_traces.py --verify        # also check the outputs with nsys
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
APP = Path("sample_apps") / "stall_app.py"
OUT_DIR = REPO / "sample_traces"
CAPTURE_NAME = "cpu_only_stall_app.sqlite"

STEPS = 12
CLOCK_MARKS = 3
NSYS_TIMEOUT_S = 120.0
NSYS_KILL_GRACE_S = 10.0
MAX_FILE_BYTES = 3 * 1024 * 1024
MAX_REPORT_BYTES = 2 * 1024 * 1024
SQLITE_MAGIC = b"SQLite format 3\x00"

SCRUBBED_HOST = "sample-host"
SCRUBBED_ENV = "[environment scrubbed]"
PATH_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    (str(REPO), "/app"),
    ("/work/main", "/app"),
    (str(Path.home()), "/home/user"),
    ("/root", "/home/user"),
)
SYSTEM_ENV_KEEP = frozenset(
    {
        "CpuCores",
        "CpuArchitecture",
        "SupportedABIs",
        "Supported64BitABIs",
        "HardwarePlatform",
        "SoftwarePlatform",
        "OsDescription",
        "Hostname",
        "CudaDriverVersion",
        "NvDriverVersion",
    }
)
SYSTEM_ENV_KEEP_PREFIXES = ("Has", "Supports", "Is")
ENV_BLOCK_RE = re.compile(r"[A-Z_][A-Z0-9_]*=[^\x00]*(\x00[A-Za-z_][A-Za-z0-9_]*=[^\x00]*)*")
ENV_ENTRY_RE = re.compile(r"(?:^|\x00)([A-Za-z_][A-Za-z0-9_]*)=([^\x00]*)")
STRING_REF_RE = re.compile(r"^\s*(\w+)\s+INTEGER\b.*REFERENCES StringIds\(id\)", re.MULTILINE)

TID_MASK = 0xFFFFFF
PID_SHIFT = 24
VM_ID = 1 << 48
INVALID_ID = 0xFFFFFFFF

DEVICE_ID = 0
CONTEXT_ID = 1
STREAM_ID = 7
EVENT_CLASS_CUDA_RUNTIME = 0
COPY_HTOD, COPY_DTOH = 1, 2
MEM_PAGEABLE, MEM_PINNED, MEM_DEVICE = 0, 1, 2
SYNC_STREAM = 3  # nsys 2022.4 / schema 3.0.0: cu/cudaStreamSynchronize
SYNC_CONTEXT = 1  # nsys 2022.4 / schema 3.0.0: cuCtxSynchronize (what cudaDeviceSynchronize does)
GAP_THRESHOLD_NS = 10_000_000
MIB = 1024 * 1024

API_LAUNCH = "cudaLaunchKernel_v7000"
API_MEMCPY_ASYNC = "cudaMemcpyAsync_v3020"
API_MEMCPY = "cudaMemcpy_v3020"
API_STREAM_SYNC = "cudaStreamSynchronize_v3020"
API_DEVICE_SYNC = "cudaDeviceSynchronize_v3020"
API_MALLOC = "cudaMalloc_v3020"

GPU_INFO: dict[str, Any] = {
    "vmId": VM_ID,
    "id": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "busLocation": "0000:18:00.0",
    "isDiscrete": 1,
    "l2CacheSize": 52_428_800,
    "totalMemory": 85_899_345_920,
    "memoryBandwidth": 3_352_000_000_000,
    "clockRate": 1_980_000_000,
    "smCount": 132,
    "pwGpuId": 0,
    "uuid": "00000000-0000-0000-0000-000000000000",
    "luid": -1,
    "chipName": "GH100",
    "cuDevice": 0,
    "ctxswDevPath": "",
    "ctrlDevPath": "",
    "revision": 0,
    "nodeMask": 0,
    "constantMemory": 65_536,
    "maxIPC": 4,
    "maxRegistersPerBlock": 65_536,
    "maxShmemPerBlock": 49_152,
    "maxShmemPerBlockOptin": 232_448,
    "maxShmemPerSm": 233_472,
    "maxRegistersPerSm": 65_536,
    "threadsPerWarp": 32,
    "asyncEngines": 2,
    "maxWarpsPerSm": 64,
    "maxBlocksPerSm": 32,
    "maxThreadsPerBlock": 1024,
    "maxBlockDimX": 1024,
    "maxBlockDimY": 1024,
    "maxBlockDimZ": 64,
    "maxGridDimX": 2_147_483_647,
    "maxGridDimY": 65_535,
    "maxGridDimZ": 65_535,
    "computeMajor": 9,
    "computeMinor": 0,
    "smMajor": 9,
    "smMinor": 0,
}

# The CUDA enum tables a real CUDA capture exported by nsys 2022.4 carries (id, name, label).
CUDA_ENUMS: dict[str, list[tuple[int, str, str]]] = {
    "ENUM_CUDA_MEMCPY_OPER": [
        (0, "CUDA_MEMCPY_KIND_UNKNOWN", "Unknown"),
        (1, "CUDA_MEMCPY_KIND_HTOD", "Host-to-Device"),
        (2, "CUDA_MEMCPY_KIND_DTOH", "Device-to-Host"),
        (3, "CUDA_MEMCPY_KIND_HTOA", "Host-to-Array"),
        (4, "CUDA_MEMCPY_KIND_ATOH", "Array-to-Host"),
        (5, "CUDA_MEMCPY_KIND_ATOA", "Array-to-Array"),
        (6, "CUDA_MEMCPY_KIND_ATOD", "Array-to-Device"),
        (7, "CUDA_MEMCPY_KIND_DTOA", "Device-to-Array"),
        (8, "CUDA_MEMCPY_KIND_DTOD", "Device-to-Device"),
        (9, "CUDA_MEMCPY_KIND_HTOH", "Host-to-Host"),
        (10, "CUDA_MEMCPY_KIND_PTOP", "Peer-to-Peer"),
        (11, "CUDA_MEMCPY_KIND_UVM_HTOD", "Unified Host-to-Device"),
        (12, "CUDA_MEMCPY_KIND_UVM_DTOH", "Unified Device-to-Host"),
        (13, "CUDA_MEMCPY_KIND_UVM_DTOD", "Unified Device-to-Device"),
    ],
    "ENUM_CUDA_MEM_KIND": [
        (0, "CUDA_MEMOPR_MEMORY_KIND_PAGEABLE", "Pageable"),
        (1, "CUDA_MEMOPR_MEMORY_KIND_PINNED", "Pinned"),
        (2, "CUDA_MEMOPR_MEMORY_KIND_DEVICE", "Device"),
        (3, "CUDA_MEMOPR_MEMORY_KIND_ARRAY", "Array"),
        (4, "CUDA_MEMOPR_MEMORY_KIND_MANAGED", "Managed"),
        (5, "CUDA_MEMOPR_MEMORY_KIND_DEVICE_STATIC", "Device Static"),
        (6, "CUDA_MEMOPR_MEMORY_KIND_MANAGED_STATIC", "Managed Static"),
        (7, "CUDA_MEMOPR_MEMORY_KIND_UNKNOWN", "Unknown"),
    ],
    "ENUM_CUDA_KRENEL_LAUNCH_TYPE": [
        (0, "CUDA_KERNEL_LAUNCH_TYPE_UNKNOWN", "Unknown"),
        (1, "CUDA_KERNEL_LAUNCH_TYPE_REGULAR", "Regular"),
        (2, "CUDA_KERNEL_LAUNCH_TYPE_COOPERATIVE_SINGLE_DEVICE", "Coop Single Device"),
        (3, "CUDA_KERNEL_LAUNCH_TYPE_COOPERATIVE_MULTI_DEVICE", "Coop Multi Device"),
    ],
    "ENUM_CUDA_FUNC_CACHE_CONFIG": [
        (0, "CU_FUNC_CACHE_PREFER_NONE", "None"),
        (1, "CU_FUNC_CACHE_PREFER_SHARED", "Shared"),
        (2, "CU_FUNC_CACHE_PREFER_L1", "L1"),
        (3, "CU_FUNC_CACHE_PREFER_EQUAL", "Equal"),
    ],
    "ENUM_CUDA_SHARED_MEM_LIMIT_CONFIG": [
        (0, "CUDA_SHARED_MEM_LIMIT_DEFAULT", "Default"),
        (1, "CUDA_SHARED_MEM_LIMIT_OPTIN", "Opt in"),
    ],
    "ENUM_CUPTI_SYNC_TYPE": [
        (0, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_UNKNOWN", "Unknown"),
        (1, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE", "Event sync"),
        (2, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT", "Stream wait sync"),
        (3, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE", "Stream sync"),
        (4, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE", "Context sync"),
    ],
}


class BuildError(RuntimeError):
    """A stage failed; the message says which and why."""


# --------------------------------------------------------------------------- capture


def _run_logged(cmd: Sequence[str], log: Path, timeout_s: float, env: dict[str, str]) -> int:
    """Run ``cmd`` in its own process group; on timeout kill the nsys collector and the group."""
    started = time.time()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_collector(proc.pid)
            _terminate_group(proc)
            _remove_stale_streams(started)
            raise


def _kill_collector(nsys_pid: int) -> None:
    """Kill only the collector whose command line names this nsys session (install-nsight.md §4)."""
    suffix = f"-{nsys_pid}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\x00")
        except OSError:
            continue
        for arg in args:
            text = arg.decode(errors="replace")
            if text.startswith("--session-name=profile-") and text.endswith(suffix):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
                break


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, NSYS_KILL_GRACE_S), (signal.SIGKILL, NSYS_KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _remove_stale_streams(since: float) -> None:
    for stream in Path(tempfile.gettempdir()).glob("nsys-report-*.qdstrm"):
        with contextlib.suppress(OSError):
            if stream.stat().st_mtime >= since:
                stream.unlink()


def _capture_env() -> dict[str, str]:
    """A minimal environment for the profiled app: nsys records whatever it is given."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
    }


def capture(work: Path, steps: int) -> tuple[Path, Path]:
    """Profile the stall app and export a ``--lazy=false`` SQLite; return (report, sqlite)."""
    if shutil.which("nsys") is None:
        raise BuildError("--recapture needs nsys on PATH (see scripts/install-nsight.sh)")
    base = work / "stall_app"
    rep, db, log = base.with_suffix(".nsys-rep"), base.with_suffix(".sqlite"), work / "nsys.log"
    profile = [
        "nsys",
        "profile",
        "-t",
        "nvtx,osrt",
        "--sample=none",
        "--cpuctxsw=none",
        "-o",
        str(base),
        "-f",
        "true",
        sys.executable,
        str(APP),
        "--steps",
        str(steps),
    ]
    env = _capture_env()
    for attempt in (1, 2):
        try:
            rc = _run_logged(profile, log, NSYS_TIMEOUT_S, env)
        except subprocess.TimeoutExpired:
            print(f"nsys profile hung (attempt {attempt}); collector killed", file=sys.stderr)
            continue
        if rc != 0 or not rep.exists():
            raise BuildError(f"nsys profile failed (rc {rc}); see {log}")
        break
    else:
        raise BuildError("nsys profile hung twice (the known collector hang); giving up")
    export = [
        "nsys",
        "export",
        "--type",
        "sqlite",
        "--lazy=false",
        "-f",
        "true",
        "-o",
        str(db),
        str(rep),
    ]
    rc = _run_logged(export, log, NSYS_TIMEOUT_S, dict(os.environ))
    if rc != 0 or not db.exists() or db.read_bytes()[:16] != SQLITE_MAGIC:
        raise BuildError(f"nsys export failed (rc {rc}); see {log}")
    return rep, db


def check_capture(db: Path, steps: int) -> None:
    """The capture must hold every NVTX range and clock mark (nvtx 0.2.12+ silently loses them)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT eventType, count(*) FROM NVTX_EVENTS GROUP BY eventType")
        counts = dict(rows.fetchall())
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    want_ranges = 3 * steps
    if counts.get(59, 0) != want_ranges or counts.get(34, 0) != CLOCK_MARKS:
        raise BuildError(
            f"NVTX_EVENTS has {counts.get(59, 0)} push/pop ranges and {counts.get(34, 0)} marks; "
            f"expected {want_ranges} and {CLOCK_MARKS} (is nvtx pinned to 0.2.11?)"
        )
    missing = {
        "CUPTI_ACTIVITY_KIND_KERNEL",
        "CUPTI_ACTIVITY_KIND_RUNTIME",
        "CUPTI_ACTIVITY_KIND_MEMCPY",
        "CUPTI_ACTIVITY_KIND_MEMSET",
        "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION",
        "TARGET_INFO_GPU",
    } - tables
    if missing:
        raise BuildError(f"export lacks {sorted(missing)}; was it made with --lazy=false?")


def report_has_environment(rep: Path) -> bool:
    """Whether the binary report carries environment strings (it cannot be scrubbed)."""
    data = rep.read_bytes()
    return any(token in data for token in (b"HOME=", b"PATH=", b"PWD=", b"LANG="))


# --------------------------------------------------------------------------- scrub


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
    return [r[0] for r in rows]


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, bool]]:
    """(name, declared type, NOT NULL) for each column of ``table``."""
    return [(r[1], r[2].upper(), bool(r[3])) for r in conn.execute(f'PRAGMA table_info("{table}")')]


def _string_ref_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(table, column) pairs whose schema comment says ``REFERENCES StringIds(id)``."""
    refs: list[tuple[str, str]] = []
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"):
        refs.extend((name, col) for col in STRING_REF_RE.findall(sql or ""))
    return refs


def _referenced_string_ids(conn: sqlite3.Connection) -> set[int]:
    ids: set[int] = set()
    for table, col in _string_ref_columns(conn):
        rows = conn.execute(f'SELECT DISTINCT "{col}" FROM "{table}" WHERE "{col}" IS NOT NULL')
        ids.update(r[0] for r in rows)
    return ids


def _active_pids(conn: sqlite3.Connection) -> set[int]:
    """PIDs that own at least one event (not just a PROCESSES/ThreadNames entry)."""
    pids: set[int] = set()
    for table in _tables(conn):
        if table in ("PROCESSES", "ThreadNames") or table.startswith(("TARGET_INFO", "ENUM_")):
            continue
        for col, _, _ in _columns(conn, table):
            if col in ("globalTid", "globalPid", "endGlobalTid"):
                rows = conn.execute(f'SELECT DISTINCT "{col}" FROM "{table}" WHERE "{col}" > 0')
                pids.update((r[0] >> PID_SHIFT) & TID_MASK for r in rows)
    return pids


def _env_values(conn: sqlite3.Connection) -> set[str]:
    """Distinctive values from the recorded environments, used to prove they are gone."""
    texts = [r[0] for r in conn.execute("SELECT value FROM StringIds")]
    texts += [r[0] for r in conn.execute("SELECT value FROM TARGET_INFO_SYSTEM_ENV")]
    values: set[str] = set()
    for text in texts:
        if isinstance(text, str) and ENV_BLOCK_RE.fullmatch(text):
            values.update(
                v
                for k, v in ENV_ENTRY_RE.findall(text)
                if k != "_" and len(v) >= 8 and not v.startswith(("/etc/", "/usr/", "/bin", "/tmp"))
            )
    return values


def _replace_paths(text: str) -> str:
    for old, new in PATH_REPLACEMENTS:
        text = re.sub(re.escape(old) + r"(?=/|\b|$)", new, text)
    return text


def scrub(db: Path, output_name: str) -> dict[str, int]:
    """Remove environment, host and user details from an nsys export in place; VACUUM it."""
    stats: dict[str, int] = {}
    conn = sqlite3.connect(db)
    try:
        leaked_values = _env_values(conn)
        referenced_before = _referenced_string_ids(conn)

        active = _active_pids(conn)
        cur = conn.execute(
            f"DELETE FROM PROCESSES WHERE ((globalPid >> {PID_SHIFT}) & {TID_MASK}) "
            f"NOT IN ({','.join(map(str, active))})"
        )
        stats["processes_removed"] = cur.rowcount
        cur = conn.execute(
            f"DELETE FROM ThreadNames WHERE ((globalTid >> {PID_SHIFT}) & {TID_MASK}) "
            f"NOT IN ({','.join(map(str, active))})"
        )
        stats["thread_names_removed"] = cur.rowcount

        referenced = _referenced_string_ids(conn)
        orphaned = referenced_before - referenced
        env_ids = [
            sid
            for sid, value in conn.execute("SELECT id, value FROM StringIds")
            if isinstance(value, str) and ENV_BLOCK_RE.fullmatch(value)
        ]
        drop = orphaned | {sid for sid in env_ids if sid not in referenced}
        conn.executemany("DELETE FROM StringIds WHERE id = ?", [(sid,) for sid in sorted(drop)])
        conn.executemany(
            "UPDATE StringIds SET value = ? WHERE id = ?",
            [(SCRUBBED_ENV, sid) for sid in env_ids if sid in referenced],
        )
        stats["strings_removed"] = len(drop)
        stats["env_strings_neutralised"] = sum(1 for sid in env_ids if sid in referenced)

        names = [r[0] for r in conn.execute("SELECT name FROM TARGET_INFO_SYSTEM_ENV")]
        gone = [
            n
            for n in names
            if n not in SYSTEM_ENV_KEEP and not n.startswith(SYSTEM_ENV_KEEP_PREFIXES)
        ]
        conn.executemany("DELETE FROM TARGET_INFO_SYSTEM_ENV WHERE name = ?", [(n,) for n in gone])
        conn.execute(
            "UPDATE TARGET_INFO_SYSTEM_ENV SET value = ? WHERE name = 'Hostname'", (SCRUBBED_HOST,)
        )
        stats["system_env_rows_removed"] = len(gone)

        if "META_DATA_CAPTURE" in _tables(conn):
            conn.execute(
                "DELETE FROM META_DATA_CAPTURE WHERE name LIKE '%env%' OR name LIKE '%ENV%'"
            )
        meta = {
            "EXPORT_HOST": SCRUBBED_HOST,
            "EXPORT_USER": "",
            "EXPORT_INPUT_FILE": Path(output_name).with_suffix(".nsys-rep").name,
            "EXPORT_INPUT_PATH": Path(output_name).with_suffix(".nsys-rep").name,
            "EXPORT_INPUT_PATH_ABS": Path(output_name).with_suffix(".nsys-rep").name,
            "EXPORT_OUTUPT_FILE": output_name,
            "EXPORT_OUTUPT_PATH": output_name,
            "EXPORT_OUTUPT_PATH_ABS": output_name,
        }
        conn.executemany(
            "UPDATE EXPORT_META_DATA SET value = ? WHERE name = ?",
            [(v, k) for k, v in meta.items()],
        )

        stats["text_cells_rewritten"] = _rewrite_text(conn, _replace_paths)
        conn.commit()
        leaks = find_leaks(conn, leaked_values)
        if leaks:
            raise BuildError(f"scrub left sensitive text behind: {leaks[:5]}")
    finally:
        conn.close()
    _vacuum(db)
    return stats


def _rewrite_text(conn: sqlite3.Connection, fn: Callable[[str], str]) -> int:
    changed = 0
    for table in _tables(conn):
        for col, ctype, _ in _columns(conn, table):
            if ctype != "TEXT":
                continue
            rows = conn.execute(f'SELECT rowid, "{col}" FROM "{table}" WHERE "{col}" IS NOT NULL')
            updates = [(fn(v), rid) for rid, v in rows if isinstance(v, str) and fn(v) != v]
            conn.executemany(f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?', updates)
            changed += len(updates)
    return changed


def _iter_text(conn: sqlite3.Connection) -> Iterable[tuple[str, str, str]]:
    for table in _tables(conn):
        for col, ctype, _ in _columns(conn, table):
            if ctype == "TEXT":
                for (value,) in conn.execute(f'SELECT "{col}" FROM "{table}"'):
                    if isinstance(value, str):
                        yield table, col, value


def find_leaks(conn: sqlite3.Connection, env_values: Iterable[str] = ()) -> list[str]:
    """Text cells that still look like environment, user paths or recorded env values."""
    needles = [v for v in env_values if v]
    leaks: list[str] = []
    for table, col, value in _iter_text(conn):
        if ENV_ENTRY_RE.search(value) and re.search(r"(^|\x00)(HOME|PATH|PWD|USER)=", value):
            leaks.append(f"{table}.{col}: environment block")
        elif re.search(r"(^|[^\w])(/root|/work/main)(/|$)", value):
            leaks.append(f"{table}.{col}: {value[:60]!r}")
        elif any(n in value for n in needles):
            leaks.append(f"{table}.{col}: recorded env value in {value[:60]!r}")
    return leaks


def _vacuum(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("VACUUM")
    finally:
        conn.close()


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Kernel:
    demangled: str
    short: str
    mangled: str | None
    registers: int
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    static_smem: int = 0
    dynamic_smem: int = 0
    smem_executed: int = 0


GEMM = Kernel(
    "void gemm<float, 128>(float const*, float*)",
    "gemm",
    "_Z4gemmIfLi128EEvPKT_PS0_",
    registers=128,
    grid=(132, 8, 1),
    block=(128, 1, 1),
    static_smem=32_768,
    dynamic_smem=16_384,
    smem_executed=65_536,
)
ADD = Kernel(
    "void elementwise_add_kernel<float>(float*, float const*, float const*, int)",
    "elementwise_add_kernel",
    "_Z22elementwise_add_kernelIfEvPT_PKS0_S3_i",
    registers=16,
    grid=(4096, 1, 1),
    block=(256, 1, 1),
)
LAYER_NORM = Kernel(
    "layer_norm_fwd_kernel",
    "layer_norm_fwd_kernel",
    None,
    registers=40,
    grid=(1024, 1, 1),
    block=(512, 1, 1),
    static_smem=4_096,
    smem_executed=8_192,
)
FILL = Kernel(
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, "
    "at::detail::Array<char*, 1> >(int, at::native::FillFunctor<float>, "
    "at::detail::Array<char*, 1>)",
    "vectorized_elementwise_kernel",
    None,
    registers=18,
    grid=(1, 1, 1),
    block=(128, 1, 1),
)
SCALE_ADD = Kernel(
    "void scale_add<float>(float*, float const*, float, int)",
    "scale_add",
    "_Z9scale_addIfEvPT_PKS0_S0_i",
    registers=12,
    grid=(1, 1, 1),
    block=(256, 1, 1),
)
REDUCE = Kernel(
    "void reduce_sum_kernel<float, 256>(float const*, float*, int)",
    "reduce_sum_kernel",
    "_Z17reduce_sum_kernelIfLi256EEvPKT_PS0_i",
    registers=32,
    grid=(528, 1, 1),
    block=(256, 1, 1),
    static_smem=1_024,
    smem_executed=8_192,
)


@dataclass(frozen=True)
class Step:
    index: int
    step: tuple[int, int]
    load_batch: tuple[int, int]
    compute: tuple[int, int]


@dataclass
class TraceWriter:
    """Accumulates CUDA rows for one process/thread and inserts them respecting NOT NULL."""

    conn: sqlite3.Connection
    global_tid: int
    rng: random.Random
    correlation: int = 100
    grid_id: int = 0
    gpu_free: int = 0
    runtime: list[dict[str, Any]] = field(default_factory=list)
    kernels: list[dict[str, Any]] = field(default_factory=list)
    memcpys: list[dict[str, Any]] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)
    launch_of: dict[int, tuple[int, int]] = field(default_factory=dict)
    _strings: dict[str, int] = field(default_factory=dict)

    @property
    def global_pid(self) -> int:
        return self.global_tid & ~TID_MASK

    @property
    def pid(self) -> int:
        return (self.global_tid >> PID_SHIFT) & TID_MASK

    def string_id(self, value: str) -> int:
        if value not in self._strings:
            row = self.conn.execute("SELECT id FROM StringIds WHERE value = ?", (value,)).fetchone()
            if row is None:
                (top,) = self.conn.execute("SELECT coalesce(max(id), -1) FROM StringIds").fetchone()
                row = (top + 1,)
                self.conn.execute(
                    "INSERT INTO StringIds (id, value) VALUES (?, ?)", (row[0], value)
                )
            self._strings[value] = row[0]
        return self._strings[value]

    def api(self, name: str, start: int, end: int) -> int:
        self.correlation += 1
        self.runtime.append(
            {
                "start": start,
                "end": end,
                "eventClass": EVENT_CLASS_CUDA_RUNTIME,
                "globalTid": self.global_tid,
                "correlationId": self.correlation,
                "nameId": self.string_id(name),
                "returnValue": 0,
                "callchainId": None,
            }
        )
        self.launch_of[self.correlation] = (start, end)
        return self.correlation

    def _device_row(self, corr: int, start: int, end: int) -> dict[str, Any]:
        if end <= start:
            raise BuildError(f"empty GPU interval [{start}, {end}]")
        return {
            "start": start,
            "end": end,
            "deviceId": DEVICE_ID,
            "contextId": CONTEXT_ID,
            "streamId": STREAM_ID,
            "correlationId": corr,
            "globalPid": self.global_pid,
        }

    def malloc(self, host: int) -> int:
        end = host + self.rng.randint(150_000, 260_000)
        self.api(API_MALLOC, host, end)
        return end + self.rng.randint(2_000, 6_000)

    def launch(self, kernel: Kernel, host: int, api_ns: int, kernel_ns: int, latency: int) -> int:
        """Launch ``kernel`` at ``host``; it runs once the stream is free. Returns the host time."""
        api_end = host + api_ns
        corr = self.api(API_LAUNCH, host, api_end)
        start = max(api_end + latency, self.gpu_free + self.rng.randint(800, 1_600))
        self.grid_id += 1
        row = self._device_row(corr, start, start + kernel_ns)
        row.update(
            {
                "demangledName": self.string_id(kernel.demangled),
                "shortName": self.string_id(kernel.short),
                "mangledName": None if kernel.mangled is None else self.string_id(kernel.mangled),
                "launchType": 1,
                "cacheConfig": 0,
                "registersPerThread": kernel.registers,
                "gridX": kernel.grid[0],
                "gridY": kernel.grid[1],
                "gridZ": kernel.grid[2],
                "blockX": kernel.block[0],
                "blockY": kernel.block[1],
                "blockZ": kernel.block[2],
                "staticSharedMemory": kernel.static_smem,
                "dynamicSharedMemory": kernel.dynamic_smem,
                "localMemoryPerThread": 0,
                "localMemoryTotal": 0,
                "gridId": self.grid_id,
                "sharedMemoryExecuted": kernel.smem_executed,
                "graphNodeId": None,
                "sharedMemoryLimitConfig": 0,
            }
        )
        self.kernels.append(row)
        self.gpu_free = start + kernel_ns
        return api_end

    def memcpy(
        self,
        api_name: str,
        host: int,
        nbytes: int,
        copy_kind: int,
        src: int,
        dst: int,
        copy_ns: int,
        blocking: bool,
    ) -> int:
        """A copy on the stream; ``blocking`` calls return only after the copy finished."""
        setup = self.rng.randint(3_000, 6_000)
        start = max(host + setup, self.gpu_free + self.rng.randint(800, 1_600))
        end = start + copy_ns
        api_end = end + self.rng.randint(3_000, 6_000) if blocking else host + setup + 2_000
        corr = self.api(api_name, host, api_end)
        row = self._device_row(corr, start, end)
        row.update(
            {
                "bytes": nbytes,
                "copyKind": copy_kind,
                "deprecatedSrcId": None,
                "srcKind": src,
                "dstKind": dst,
                "srcDeviceId": None,
                "srcContextId": None,
                "dstDeviceId": None,
                "dstContextId": None,
                "migrationCause": None,
                "graphNodeId": None,
                "virtualAddress": None,
            }
        )
        self.memcpys.append(row)
        self.gpu_free = end
        return api_end

    def synchronize(self, api_name: str, host: int, sync_type: int) -> int:
        """A blocking sync call that returns a few µs after the stream drained."""
        end = max(
            host + self.rng.randint(3_000, 5_000), self.gpu_free + self.rng.randint(3_000, 6_000)
        )
        corr = self.api(api_name, host, end)
        row = self._device_row(corr, host + (end - host) // 8, end - (end - host) // 8)
        row.update(
            {
                "streamId": STREAM_ID if sync_type == SYNC_STREAM else INVALID_ID,
                "syncType": sync_type,
                "eventId": INVALID_ID,
            }
        )
        self.syncs.append(row)
        return end

    def flush(self) -> None:
        insert_rows(self.conn, "CUPTI_ACTIVITY_KIND_RUNTIME", self.runtime)
        insert_rows(self.conn, "CUPTI_ACTIVITY_KIND_KERNEL", self.kernels)
        insert_rows(self.conn, "CUPTI_ACTIVITY_KIND_MEMCPY", self.memcpys)
        insert_rows(self.conn, "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", self.syncs)


def insert_rows(conn: sqlite3.Connection, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``; every NOT NULL column must be given and non-NULL, no unknown keys."""
    if not rows:
        return
    columns = _columns(conn, table)
    names = [c[0] for c in columns]
    required = [c[0] for c in columns if c[2]]
    for row in rows:
        unknown = set(row) - set(names)
        missing = [c for c in required if row.get(c) is None]
        if unknown or missing:
            raise BuildError(f"{table}: unknown {sorted(unknown)}, NULL NOT NULL {missing}")
    used = [n for n in names if n in rows[0]]
    sql = f'INSERT INTO "{table}" ({", ".join(used)}) VALUES ({", ".join("?" * len(used))})'
    conn.executemany(sql, [tuple(row.get(n) for n in used) for row in rows])


def read_steps(conn: sqlite3.Connection) -> tuple[int, list[Step]]:
    """The app thread's globalTid and its NVTX step/load_batch/compute ranges, in order."""
    rows = conn.execute(
        """
        SELECT e.start, e.end, coalesce(e.text, s.value), e.globalTid
        FROM NVTX_EVENTS AS e LEFT JOIN StringIds AS s ON s.id = e.textId
        WHERE e.eventType = 59 ORDER BY e.start
        """
    ).fetchall()
    by_name: dict[str, list[tuple[int, int]]] = {"step": [], "load_batch": [], "compute": []}
    tids = {r[3] for r in rows}
    if len(tids) != 1:
        raise BuildError(f"expected NVTX ranges on one thread, found {len(tids)}")
    for start, end, name, _ in rows:
        if name in by_name:
            by_name[name].append((start, end))
    n = len(by_name["step"])
    if n == 0 or any(len(v) != n for v in by_name.values()):
        raise BuildError(f"unbalanced NVTX ranges: { {k: len(v) for k, v in by_name.items()} }")
    steps = [
        Step(i, by_name["step"][i], by_name["load_batch"][i], by_name["compute"][i])
        for i in range(n)
    ]
    for st in steps:
        if not (
            st.step[0]
            <= st.load_batch[0]
            < st.load_batch[1]
            <= st.compute[0]
            < st.compute[1]
            <= st.step[1]
        ):
            raise BuildError(f"step {st.index}: ranges not nested as step > load_batch, compute")
    return tids.pop(), steps


def _check_inside(writer: TraceWriter, step: Step, host_end: int) -> None:
    end = max(host_end, writer.gpu_free)
    if end > step.compute[1]:
        raise BuildError(
            f"step {step.index}: generated work ends {end - step.compute[1]} ns after `compute`"
        )


def plant_host_stall(writer: TraceWriter, steps: Sequence[Step]) -> dict[str, Any]:
    rng = writer.rng
    for st in steps:
        host = st.compute[0] + rng.randint(20_000, 40_000)
        if st.index == 0:
            host = writer.malloc(writer.malloc(host))
        h2d_bytes = 64 * MIB
        host = writer.memcpy(
            API_MEMCPY_ASYNC,
            host,
            h2d_bytes,
            COPY_HTOD,
            MEM_PAGEABLE,
            MEM_DEVICE,
            copy_ns=h2d_bytes * 1_000_000_000 // 16_000_000_000 + rng.randint(0, 60_000),
            blocking=True,
        )
        for _ in range(40):
            kernel = rng.choices((GEMM, ADD, LAYER_NORM), weights=(5, 3, 2))[0]
            host = writer.launch(
                kernel,
                host + rng.randint(15_000, 40_000),
                api_ns=rng.randint(4_000, 7_000),
                kernel_ns=rng.randint(100_000, 400_000),
                latency=rng.randint(2_000, 4_000),
            )
        host = writer.memcpy(
            API_MEMCPY_ASYNC,
            host + rng.randint(10_000, 20_000),
            4 * 1024,
            COPY_DTOH,
            MEM_DEVICE,
            MEM_PINNED,
            copy_ns=rng.randint(2_500, 4_000),
            blocking=False,
        )
        host = writer.synchronize(API_STREAM_SYNC, host + rng.randint(5_000, 10_000), SYNC_STREAM)
        _check_inside(writer, st, host)
    return {
        "kernels_per_step": 40,
        "h2d_per_step": {"bytes": 64 * MIB, "api": "cudaMemcpyAsync", "srcKind": "Pageable"},
        "d2h_per_step": {"bytes": 4096, "api": "cudaMemcpyAsync", "dstKind": "Pinned"},
        "stream_syncs_per_step": 1,
    }


def plant_launch_bound(writer: TraceWriter, steps: Sequence[Step]) -> dict[str, Any]:
    rng = writer.rng
    for st in steps:
        host = st.compute[0] + rng.randint(20_000, 40_000)
        if st.index == 0:
            host = writer.malloc(writer.malloc(host))
        for _ in range(500):
            kernel = FILL if rng.random() < 0.5 else SCALE_ADD
            host = writer.launch(
                kernel,
                host + rng.randint(500, 1_500),
                api_ns=rng.randint(6_000, 8_000),
                kernel_ns=rng.randint(2_000, 4_000),
                latency=rng.randint(1_000, 2_500),
            )
        _check_inside(writer, st, host)
    return {"kernels_per_step": 500}


def plant_sync_heavy(writer: TraceWriter, steps: Sequence[Step]) -> dict[str, Any]:
    rng = writer.rng
    for st in steps:
        host = st.compute[0] + rng.randint(20_000, 40_000)
        if st.index == 0:
            host = writer.malloc(writer.malloc(host))
        for _ in range(30):
            host = writer.launch(
                REDUCE,
                host,
                api_ns=rng.randint(5_000, 7_000),
                kernel_ns=rng.randint(100_000, 250_000),
                latency=rng.randint(2_000, 4_000),
            )
            host = writer.synchronize(
                API_DEVICE_SYNC, host + rng.randint(1_000, 3_000), SYNC_CONTEXT
            )
            host = writer.memcpy(
                API_MEMCPY,
                host + rng.randint(2_000, 5_000),
                4,
                COPY_DTOH,
                MEM_DEVICE,
                MEM_PAGEABLE,
                copy_ns=rng.randint(1_500, 2_500),
                blocking=True,
            )
            host += rng.randint(150_000, 250_000)
        _check_inside(writer, st, host)
    return {
        "kernels_per_step": 30,
        "device_syncs_per_step": 30,
        "d2h_per_step": {"count": 30, "bytes": 4, "api": "cudaMemcpy", "dstKind": "Pageable"},
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    description: str
    plant: Callable[[TraceWriter, Sequence[Step]], dict[str, Any]]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "demo_host_stall",
        1001,
        "Per step inside `compute`: 64 MiB pageable H2D cudaMemcpyAsync, 40 kernels of 100-400 us, "
        "a 4 KiB D2H copy and one cudaStreamSynchronize; the GPU idles during every `load_batch`.",
        plant_host_stall,
    ),
    Scenario(
        "demo_launch_bound",
        1002,
        "Per step inside `compute`: 500 tiny kernels (2-4 us) launched back to back with "
        "6-8 us cudaLaunchKernel calls, so CPU launch cost exceeds GPU time.",
        plant_launch_bound,
    ),
    Scenario(
        "demo_sync_heavy",
        1003,
        "Per step inside `compute`: 30 kernels, each followed by a blocking cudaDeviceSynchronize "
        "and a synchronous 4-byte D2H cudaMemcpy into pageable memory.",
        plant_sync_heavy,
    ),
)


def _union(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(busy: Sequence[tuple[int, int]], lo: int, hi: int) -> int:
    return sum(max(0, min(e, hi) - max(s, lo)) for s, e in busy)


def _api_base(name: str) -> str:
    return re.sub(r"_v\d{4,5}$", "", name)


def compute_truth(
    scenario: Scenario, writer: TraceWriter, steps: Sequence[Step], planted: dict[str, Any]
) -> dict[str, Any]:
    """Ground truth derived from the rows that were planted."""
    names = {v: k for k, v in writer._strings.items()}
    kernels, copies = writer.kernels, writer.memcpys
    busy = _union([(r["start"], r["end"]) for r in kernels + copies])
    span = (busy[0][0], busy[-1][1])
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(busy) if b[0] - a[1] > GAP_THRESHOLD_NS]

    api: dict[str, dict[str, int]] = {}
    for r in writer.runtime:
        entry = api.setdefault(_api_base(names[r["nameId"]]), {"count": 0, "total_ns": 0})
        entry["count"] += 1
        entry["total_ns"] += r["end"] - r["start"]

    kernel_names: dict[str, dict[str, int]] = {}
    for r in kernels:
        entry = kernel_names.setdefault(names[r["shortName"]], {"count": 0, "total_ns": 0})
        entry["count"] += 1
        entry["total_ns"] += r["end"] - r["start"]

    copy_kinds = {COPY_HTOD: "HtoD", COPY_DTOH: "DtoH"}
    memcpy: dict[str, dict[str, int]] = {}
    for r in copies:
        entry = memcpy.setdefault(
            copy_kinds[r["copyKind"]], {"count": 0, "bytes": 0, "total_ns": 0}
        )
        entry["count"] += 1
        entry["bytes"] += r["bytes"]
        entry["total_ns"] += r["end"] - r["start"]

    queue = [r["start"] - writer.launch_of[r["correlationId"]][1] for r in kernels]
    per_step = []
    for st in steps:
        lo, hi = st.compute
        in_step = [r for r in kernels if lo <= writer.launch_of[r["correlationId"]][0] < hi]
        ops = [r for r in kernels + copies if lo <= writer.launch_of[r["correlationId"]][0] < hi]
        per_step.append(
            {
                "step": st.index,
                "step_range": list(st.step),
                "load_batch_range": list(st.load_batch),
                "compute_range": list(st.compute),
                "kernels": len(in_step),
                "kernel_ns": sum(r["end"] - r["start"] for r in in_step),
                "gpu_busy_ns": _overlap(busy, st.step[0], st.step[1]),
                "gpu_first_start": min(r["start"] for r in ops),
                "gpu_last_end": max(r["end"] for r in ops),
                "gpu_idle_in_load_batch_ns": (st.load_batch[1] - st.load_batch[0])
                - _overlap(busy, *st.load_batch),
            }
        )
    in_span = [st for st in steps if st.load_batch[0] >= span[0]]
    busy_ns = sum(e - s for s, e in busy)
    return {
        "scenario": scenario.name,
        "synthetic": True,
        "description": scenario.description,
        "base_capture": CAPTURE_NAME,
        "seed": scenario.seed,
        "process": {
            "pid": writer.pid,
            "globalPid": writer.global_pid,
            "globalTid": writer.global_tid,
        },
        "gpu": {
            "name": GPU_INFO["name"],
            "deviceId": DEVICE_ID,
            "contextId": CONTEXT_ID,
            "streamId": STREAM_ID,
        },
        "steps": len(steps),
        **planted,
        "kernels_total": len(kernels),
        "kernel_ns_total": sum(r["end"] - r["start"] for r in kernels),
        "kernel_names": kernel_names,
        "kernel_queue_ns": {
            "min": min(queue),
            "max": max(queue),
            "mean": round(sum(queue) / len(queue), 1),
        },
        "memcpy": memcpy,
        "api": api,
        "sync_rows": len(writer.syncs),
        "gpu_span": list(span),
        "gpu_busy_ns": busy_ns,
        "gpu_idle_in_span_ns": span[1] - span[0] - busy_ns,
        "gpu_idle_in_load_batch_ns": sum(p["gpu_idle_in_load_batch_ns"] for p in per_step),
        "gpu_idle_in_load_batch_in_span_ns": sum(
            st.load_batch[1] - st.load_batch[0] - _overlap(busy, *st.load_batch) for st in in_span
        ),
        "gaps_over_10ms": {
            "count": len(gaps),
            "total_ns": sum(b - a for a, b in gaps),
            "intervals": [list(g) for g in gaps],
        },
        "per_step": per_step,
    }


def build_scenario(base: Path, out: Path, scenario: Scenario) -> dict[str, Any]:
    """Copy the scrubbed capture to ``out`` and plant the scenario's CUDA rows into it."""
    shutil.copyfile(base, out)
    conn = sqlite3.connect(out)
    try:
        global_tid, steps = read_steps(conn)
        writer = TraceWriter(conn, global_tid, random.Random(scenario.seed))
        planted = scenario.plant(writer, steps)
        writer.flush()
        insert_rows(conn, "TARGET_INFO_GPU", [GPU_INFO])
        insert_rows(
            conn,
            "TARGET_INFO_CUDA_NULL_STREAM",
            [
                {
                    "streamId": STREAM_ID,
                    "hwId": 0,
                    "vmId": 1,
                    "processId": writer.pid,
                    "deviceId": DEVICE_ID,
                    "contextId": CONTEXT_ID,
                }
            ],
        )
        insert_rows(
            conn,
            "TARGET_INFO_CUDA_STREAM",
            [
                {
                    "streamId": STREAM_ID,
                    "hwId": 0,
                    "vmId": 1,
                    "processId": writer.pid,
                    "contextId": CONTEXT_ID,
                    "priority": 0,
                    "flag": 3,
                }
            ],
        )
        for table, values in CUDA_ENUMS.items():
            if table in _tables(conn) and not conn.execute(f"SELECT 1 FROM {table}").fetchone():
                conn.executemany(f"INSERT INTO {table} (id, name, label) VALUES (?, ?, ?)", values)
        conn.executemany(
            "INSERT INTO EXPORT_META_DATA (name, value) VALUES (?, ?)",
            [
                ("INFRAPROF_SYNTHETIC", "real CPU capture + generated GPU rows"),
                ("INFRAPROF_SCENARIO", scenario.name),
            ],
        )
        conn.executemany(
            "UPDATE EXPORT_META_DATA SET value = ? WHERE name = ?",
            [
                (out.name, k)
                for k in ("EXPORT_OUTUPT_FILE", "EXPORT_OUTUPT_PATH", "EXPORT_OUTUPT_PATH_ABS")
            ],
        )
        conn.execute("UPDATE TARGET_INFO_SYSTEM_ENV SET value = '1' WHERE name = 'HasDiscreteGpu'")
        conn.commit()
        truth = compute_truth(scenario, writer, steps, planted)
    finally:
        conn.close()
    _vacuum(out)
    return truth


# --------------------------------------------------------------------------- verification


def _nsys(args: Sequence[str], db: Path) -> str:
    """Run nsys on a temporary copy of ``db`` (nsys writes files next to its input)."""
    with tempfile.TemporaryDirectory(prefix="infraprof-verify-") as tmp:
        copy = Path(tmp) / db.name
        shutil.copyfile(db, copy)
        proc = subprocess.run(
            ["nsys", *args, str(copy)],
            capture_output=True,
            text=True,
            timeout=NSYS_TIMEOUT_S,
            cwd=tmp,
        )
    if proc.returncode != 0:
        raise BuildError(f"nsys {' '.join(args)} {db.name}: rc {proc.returncode}\n{proc.stderr}")
    return proc.stdout


def _csv_blocks(text: str) -> list[tuple[str, list[list[str]]]]:
    """(header line, data rows) for each CSV table in nsys ``-f csv -o -`` output."""
    blocks: list[tuple[str, list[list[str]]]] = []
    for chunk in re.split(r"\n\s*\n", text):
        lines = [
            line
            for line in chunk.splitlines()
            if line.strip() and not line.startswith("Processing [")
        ]
        if lines and "," in lines[0]:
            blocks.append((lines[0], [next(csv.reader([line])) for line in lines[1:]]))
    return blocks


def _block(text: str, header_prefix: str, expected: bool = True) -> list[list[str]]:
    """Rows of the one table whose header starts with ``header_prefix``; [] if not ``expected``."""
    found = [rows for header, rows in _csv_blocks(text) if header.startswith(header_prefix)]
    if not expected and not found:
        return []
    if len(found) != 1:
        raise BuildError(f"expected one nsys table starting {header_prefix!r}, got {len(found)}")
    return found[0]


def verify(out_dir: Path, truths: dict[str, dict[str, Any]]) -> list[str]:
    """Check every output with the real nsys; return one summary line per command."""
    if shutil.which("nsys") is None:
        raise BuildError("--verify needs nsys on PATH")
    lines: list[str] = []
    text = _nsys(["stats", "-r", "nvtxsum,osrtsum", "-f", "csv", "-o", "-"], out_dir / CAPTURE_NAME)
    nvtx = {r[-1]: int(r[2]) for r in _block(text, "Time (%),Total Time (ns),Instances,")}
    osrt = {r[-1]: int(r[2]) for r in _block(text, "Time (%),Total Time (ns),Num Calls,")}
    if nvtx != {"step": STEPS, "load_batch": STEPS, "compute": STEPS}:
        raise BuildError(f"nvtxsum on {CAPTURE_NAME}: unexpected ranges {nvtx}")
    if osrt.get("clock_nanosleep", 0) < STEPS:
        raise BuildError(f"osrtsum on {CAPTURE_NAME}: too few clock_nanosleep calls {osrt}")
    lines.append(
        f"nsys stats -r nvtxsum,osrtsum {CAPTURE_NAME}: {nvtx}; "
        f"clock_nanosleep x{osrt['clock_nanosleep']}"
    )

    for name, truth in truths.items():
        db = out_dir / f"{name}.sqlite"
        text = _nsys(
            ["stats", "-r", "gpukernsum,cudaapisum,gpumemtimesum", "-f", "csv", "-o", "-"], db
        )
        kern = _block(
            text, "Time (%),Total Time (ns),Instances,Avg (ns),Med (ns),Min (ns),Max (ns)"
        )
        instances = sum(int(r[2]) for r in kern)
        kernel_ns = sum(int(r[1]) for r in kern)
        if (instances, kernel_ns) != (truth["kernels_total"], truth["kernel_ns_total"]):
            raise BuildError(
                f"gpukernsum on {name}: {instances} kernels / {kernel_ns} ns, truth "
                f"{truth['kernels_total']} / {truth['kernel_ns_total']}"
            )
        apis = {r[-1]: int(r[2]) for r in _block(text, "Time (%),Total Time (ns),Num Calls,")}
        want_apis = {k: v["count"] for k, v in truth["api"].items()}
        if apis != want_apis:
            raise BuildError(f"cudaapisum on {name}: {apis} != truth {want_apis}")
        mem = {
            r[-1]: int(r[2])
            for r in _block(text, "Time (%),Total Time (ns),Count,", bool(truth["memcpy"]))
        }
        want_mem = {f"[CUDA memcpy {k}]": v["count"] for k, v in truth["memcpy"].items()}
        if mem != want_mem:
            raise BuildError(f"gpumemtimesum on {name}: {mem} != truth {want_mem}")

        text = _nsys(
            ["analyze", "-r", "gpu-starv:gap=10,cuda-sync-api", "-f", "csv", "-o", "-"], db
        )
        gaps = _block(text, "Row#,Duration (ns)", truth["gaps_over_10ms"]["count"] > 0)
        if len(gaps) != truth["gaps_over_10ms"]["count"]:
            raise BuildError(
                f"gpu-starv on {name}: {len(gaps)} gaps, truth {truth['gaps_over_10ms']['count']}"
            )
        want_syncs = sum(
            v["count"]
            for k, v in truth["api"].items()
            if k in ("cudaDeviceSynchronize", "cudaStreamSynchronize")
        )
        syncs = _block(text, "Duration (ns),Start (ns),PID,TID,API Name", want_syncs > 0)
        if len(syncs) != min(want_syncs, 50):
            raise BuildError(f"cuda-sync-api on {name}: {len(syncs)} rows, truth {want_syncs}")
        lines.append(
            f"{name}: gpukernsum {instances} kernels / {kernel_ns} ns; cudaapisum {apis}; "
            f"gpumemtimesum {mem}; gpu-starv:gap=10 {len(gaps)} gaps; "
            f"cuda-sync-api {len(syncs)} rows (rule's default rows=50; truth {want_syncs})"
        )
    return lines


# --------------------------------------------------------------------------- main


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    path.write_text(json.dumps(truth, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recapture",
        action="store_true",
        help="capture and scrub a new cpu_only_stall_app.sqlite (needs nsys)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check every output with nsys stats / nsys analyze (needs nsys)",
    )
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="default: sample_traces/")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    capture_db = out_dir / CAPTURE_NAME

    try:
        if args.recapture:
            with tempfile.TemporaryDirectory(prefix="infraprof-capture-") as tmp:
                rep, db = capture(Path(tmp), STEPS)
                check_capture(db, STEPS)
                stats = scrub(db, CAPTURE_NAME)
                check_capture(db, STEPS)
                shutil.copyfile(db, capture_db)
                print(f"captured and scrubbed {capture_db.name}: {stats}")
                rep_out = out_dir / "cpu_only_stall_app.nsys-rep"
                if rep.stat().st_size < MAX_REPORT_BYTES and not report_has_environment(rep):
                    shutil.copyfile(rep, rep_out)
                else:
                    rep_out.unlink(missing_ok=True)
                    print("not keeping the .nsys-rep: it embeds the environment (cannot scrub)")
        if not capture_db.exists():
            raise BuildError(f"{capture_db} is missing; run with --recapture")

        truths: dict[str, dict[str, Any]] = {}
        for scenario in SCENARIOS:
            out = out_dir / f"{scenario.name}.sqlite"
            truth = build_scenario(capture_db, out, scenario)
            write_truth(out_dir / f"{scenario.name}.truth.json", truth)
            truths[scenario.name] = truth
            print(
                f"wrote {out.name} ({out.stat().st_size} B): {truth['kernels_total']} kernels, "
                f"{truth['gaps_over_10ms']['count']} gaps > 10 ms"
            )

        for path in sorted(out_dir.glob("*.sqlite")):
            if path.stat().st_size > MAX_FILE_BYTES:
                raise BuildError(f"{path.name} is {path.stat().st_size} B (> 3 MB)")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                leaks = find_leaks(conn)
            if leaks:
                raise BuildError(f"{path.name}: {leaks[:5]}")

        if args.verify:
            for line in verify(out_dir, truths):
                print(line)
    except BuildError as err:
        print(f"make_sample_traces: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
