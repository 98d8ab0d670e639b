"""Column specifications of the normalized Nsight Compute (ncu) tables.

Three tables describe one ncu report (or its CSV export):

* :data:`KERNEL_METRICS` — one row per profiled kernel launch (an ncu *action*);
* :data:`STALLS` — long format, one row per (launch, warp-stall reason);
* :data:`RULES` — one row per guided-analysis rule message.

Conventions (as in :mod:`infraprof.tables`): durations are nanoseconds (``*_ns``, float because
ncu reports fractional values after unit scaling), sizes are bytes, rates are per second and
named with their unit, percentages are 0–100 (``*_pct``). A metric the report does not carry is
``NaN`` (floats), ``<NA>`` (``Int64``) or ``None`` (text), never 0: a basic-set report has no
stall or DRAM-byte metrics, and the analyses must say so rather than read zeros.

Stall reasons use ncu's ratio-family spelling; the PC-sampling family's ``no_instructions`` is
stored as ``no_instruction`` (see :data:`STALL_REASON_ALIASES`).
"""

from __future__ import annotations

from typing import Any, Final, cast

import pandas as pd

from infraprof.tables import TableSpec, as_frame

KERNEL_METRICS: Final[TableSpec] = {
    "launch_id": "int64",
    "name": "object",
    "short_name": "object",
    "mangled_name": "object",
    "grid_x": "Int64",
    "grid_y": "Int64",
    "grid_z": "Int64",
    "block_x": "Int64",
    "block_y": "Int64",
    "block_z": "Int64",
    "grid_size": "Int64",
    "block_size": "Int64",
    "device_name": "object",
    "cc": "object",
    "sm_count": "Int64",
    "duration_ns": "float64",
    "sm_sol_pct": "float64",
    "mem_sol_pct": "float64",
    "dram_read_bytes": "float64",
    "dram_write_bytes": "float64",
    "dram_throughput_bytes_per_s": "float64",
    "dram_pct_of_peak": "float64",
    "dram_peak_bytes_per_s": "float64",
    "l1_hit_pct": "float64",
    "l2_hit_pct": "float64",
    "achieved_occupancy_pct": "float64",
    "theoretical_occupancy_pct": "float64",
    "occupancy_limiter": "object",
    "registers_per_thread": "Int64",
    "waves_per_sm": "float64",
    "issue_active_pct": "float64",
    "cpi": "float64",
    "fp32_pipe_pct": "float64",
    "fp64_pipe_pct": "float64",
    "tensor_pipe_pct": "float64",
    "fp32_flop_per_s": "float64",
    "fp64_flop_per_s": "float64",
    "fp32_peak_flop_per_s": "float64",
    "fp64_peak_flop_per_s": "float64",
}
"""Per launch. ``name`` is the demangled kernel name (with parameter list for C++ kernels),
``short_name`` the bare function name, ``cc`` the compute capability as ``"7.0"``.

SOL percentages are of peak sustained over elapsed cycles; ``dram_pct_of_peak`` is
``gpu__dram_throughput`` (falling back to ``dram__cycles_active``); ``cpi`` is warp cycles per
issued instruction; ``issue_active_pct`` is the share of active cycles in which a scheduler
issued; ``*_pipe_pct`` are pipe utilisations (FMA pipe for fp32); ``*_flop_per_s`` and
``*_peak_flop_per_s`` are the roofline inputs (FMA counted as 2 FLOP); ``dram_peak_bytes_per_s``
is the DRAM roof at the measured DRAM clock; ``occupancy_limiter`` names the smallest
``launch__occupancy_limit_*`` (``registers``, ``shared_mem``, ``warps``, ``blocks``; ties joined
by ``+``)."""

STALLS: Final[TableSpec] = {
    "launch_id": "int64",
    "reason": "object",
    "ratio_per_issue_active": "float64",
    "pcsamp_count": "float64",
}
"""Per (launch, reason): warps stalled on ``reason`` per issued instruction (the values sum to
about the CPI) and the PC-sampling count summed over all SASS PCs (``NaN`` when absent)."""

RULES: Final[TableSpec] = {
    "launch_id": "int64",
    "rule": "object",
    "section": "object",
    "type": "object",
    "title": "object",
    "message": "object",
    "estimated_speedup_pct": "float64",
    "speedup_type": "object",
}
"""Per rule message: ``rule`` is the rule identifier (``SOLBottleneck``, ``CPIStall``...),
``type`` one of ``OPT``/``WRN``/``INF``/``ERR`` or ``None``; ``estimated_speedup_pct`` (0–100)
and ``speedup_type`` (``local``/``global``) only where the ncu version estimates one."""

STALL_REASON_ALIASES: Final[dict[str, str]] = {"no_instructions": "no_instruction"}

RULE_TYPES: Final[dict[int, str | None]] = {0: None, 1: "INF", 2: "OPT", 3: "WRN", 4: "ERR"}
"""ncu ``MsgType`` value -> the ``Rule Type`` label the CSV export prints."""


def canonical_reason(reason: str) -> str:
    """One spelling per stall reason (``no_instructions`` -> ``no_instruction``)."""
    return STALL_REASON_ALIASES.get(reason, reason)


def build(rows: list[dict[str, Any]], spec: TableSpec) -> pd.DataFrame:
    """A table of ``spec`` from row dicts; absent keys become NaN/``<NA>``/``None``."""
    cols: dict[str, pd.Series] = {}
    for col, dtype in spec.items():
        values = [r.get(col) for r in rows]
        if dtype == "float64":
            cols[col] = pd.Series(
                [float("nan") if v is None else float(v) for v in values], dtype="float64"
            )
        elif dtype == "object":
            cols[col] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
        else:
            cols[col] = pd.Series(values, dtype=cast(Any, dtype))
    return as_frame(pd.DataFrame(cols, index=pd.RangeIndex(len(rows))))
