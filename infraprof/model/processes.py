"""One trace per process: a report holding several processes (a launcher such as ``torchrun``
or ``mpirun`` profiled as a whole) split into one :class:`Trace` per rank process.

A **rank process** is a process with GPU work (kernels, memcpys, memsets) or NVTX *ranges* of
its own; processes with only NVTX marks (e.g. a launcher's clock marks) or only CPU activity
are not ranks. A trace is split only when it has at least two rank processes; a
single-process trace is analysed whole, as always.

Every table with a ``pid`` (or a ``global_tid``/``global_pid`` to decode one from) keeps the
rows of the process; call-chain frames keep the chains its samples and OS-runtime calls use;
the GPU table (the node's GPUs) is kept whole and marked ``used`` from the process's own work.
Times stay on the report's timeline (one session, one clock).

**MPI ranks** (:func:`mpi_ranks`): nsys's MPI tracing (``--trace=mpi``) names the thread that
calls ``MPI_Init`` ``MPI Rank <N>`` (an NVTX thread name in the ``MPI`` domain, exported to
``ThreadNames``; seen in a real nsys 2022.2 export of an MPI+CUDA job). A process whose
threads carry exactly one such rank states that rank.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Final

import numpy as np
import pandas as pd

from infraprof.model.trace import Trace
from infraprof.tables import as_frame, decode_pid

MPI_RANK_THREAD: Final = re.compile(r"^MPI Rank (\d{1,9})$")
MPI_RANK_SOURCE: Final = "MPI Rank thread name (nsys --trace=mpi)"
_PID_TABLES = ("kernels", "api_calls", "memcpy", "memset", "syncs", "nvtx", "osrt",
               "cpu_samples", "threads", "processes", "um_cpu_faults", "um_gpu_faults")


def rank_pids(trace: Trace) -> list[int]:
    """Pids of the trace's rank processes (module docstring), ascending."""
    gpu = [trace.kernels["pid"], trace.memcpy["pid"], trace.memset["pid"]]
    ranges = trace.nvtx.loc[trace.nvtx["kind"] == "range", "pid"]
    pids = pd.unique(pd.concat([*gpu, ranges], ignore_index=True).astype("int64"))
    return sorted(int(p) for p in pids)


def mpi_ranks(trace: Trace) -> dict[int, int]:
    """``{pid: rank}`` from ``MPI Rank <N>`` thread names (module docstring); a process whose
    threads name two different ranks states none."""
    threads = trace.threads
    found = threads["name"].astype(str).str.extract(MPI_RANK_THREAD, expand=False)
    named = threads.loc[found.notna(), ["pid"]].assign(rank=found.dropna().astype("int64"))
    per_pid = named.drop_duplicates().groupby("pid")["rank"]
    ranks = per_pid.first()[per_pid.nunique() == 1]
    return {int(pid): int(rank) for pid, rank in ranks.items()}


def is_multi_process(trace: Trace) -> bool:
    """True when the trace holds two or more rank processes (then it is split per rank)."""
    return len(rank_pids(trace)) >= 2


def _rows_of(frame: pd.DataFrame, pid: int) -> pd.DataFrame:
    return as_frame(frame[frame["pid"].to_numpy(np.int64) == pid].reset_index(drop=True))


def process_trace(trace: Trace, pid: int) -> Trace:
    """The part of ``trace`` that belongs to process ``pid`` (module docstring)."""
    parts: dict[str, Any] = {name: _rows_of(getattr(trace, name), pid) for name in _PID_TABLES}
    overhead = trace.overhead
    overhead = as_frame(overhead[decode_pid(overhead["global_tid"]) == pid]
                        .reset_index(drop=True))
    chains = pd.concat([parts["cpu_samples"]["callchain_id"],
                        parts["osrt"]["callchain_id"].dropna()], ignore_index=True)
    callchains = trace.callchains
    callchains = as_frame(callchains[callchains["callchain_id"].isin(chains.astype("int64"))]
                          .reset_index(drop=True))
    used = pd.concat([parts["kernels"]["device_id"], parts["memcpy"]["device_id"],
                      parts["memset"]["device_id"]], ignore_index=True)
    gpus = trace.gpus.assign(used=trace.gpus["device_id"].isin(used).astype(bool))
    return replace(trace, overhead=overhead, callchains=callchains, gpus=gpus, **parts)
