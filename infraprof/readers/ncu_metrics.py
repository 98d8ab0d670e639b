"""ncu metric names -> the columns of :mod:`infraprof.tables_ncu`, shared by both ncu readers.

A reader turns one profiled launch into a mapping ``metric name -> value in base units``
(seconds are *not* base here: ncu's base time unit is the nanosecond, rates are per second,
sizes are bytes) and calls :func:`kernel_row` / :func:`stall_rows`. Derived columns:

* ``fp32_flop_per_s`` = (fadd + fmul + 2·ffma thread instructions per elapsed SMSP cycle) ×
  SMSP clock; ``fp32_peak_flop_per_s`` = 2 × ffma peak per SM cycle × SMSP clock (same for
  fp64 with dadd/dmul/dfma) — ncu's ``SpeedOfLight_RooflineChart`` formulas;
* ``dram_peak_bytes_per_s`` = ``dram__bytes.sum.peak_sustained`` × DRAM clock;
* ``occupancy_limiter`` = the smallest ``launch__occupancy_limit_*`` (ties joined by ``+``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from infraprof.tables_ncu import canonical_reason

Value = float | str | None

# column -> metric names, first present wins.
FLOAT_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "duration_ns": ("gpu__time_duration.sum",),
    "sm_sol_pct": ("sm__throughput.avg.pct_of_peak_sustained_elapsed",),
    "mem_sol_pct": ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",),
    "dram_read_bytes": ("dram__bytes_read.sum",),
    "dram_write_bytes": ("dram__bytes_write.sum",),
    "dram_throughput_bytes_per_s": ("dram__bytes.sum.per_second",),
    "dram_pct_of_peak": (
        "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
        "dram__cycles_active.avg.pct_of_peak_sustained_elapsed",
    ),
    "l1_hit_pct": ("l1tex__t_sector_hit_rate.pct",),
    "l2_hit_pct": ("lts__t_sector_hit_rate.pct",),
    "achieved_occupancy_pct": ("sm__warps_active.avg.pct_of_peak_sustained_active",),
    "theoretical_occupancy_pct": ("sm__maximum_warps_per_active_cycle_pct",),
    "waves_per_sm": ("launch__waves_per_multiprocessor",),
    "issue_active_pct": ("smsp__issue_active.avg.pct_of_peak_sustained_active",),
    "cpi": ("smsp__average_warp_latency_per_inst_issued.ratio",),
    "fp32_pipe_pct": ("sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_elapsed",),
    "fp64_pipe_pct": ("sm__pipe_fp64_cycles_active.avg.pct_of_peak_sustained_elapsed",),
    "tensor_pipe_pct": ("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_elapsed",),
}
INT_METRICS: Final[dict[str, str]] = {
    "grid_x": "launch__grid_dim_x",
    "grid_y": "launch__grid_dim_y",
    "grid_z": "launch__grid_dim_z",
    "block_x": "launch__block_dim_x",
    "block_y": "launch__block_dim_y",
    "block_z": "launch__block_dim_z",
    "grid_size": "launch__grid_size",
    "block_size": "launch__block_size",
    "registers_per_thread": "launch__registers_per_thread",
    "sm_count": "device__attribute_multiprocessor_count",
}
DEVICE_NAME: Final = "device__attribute_display_name"
CC_MAJOR: Final = "device__attribute_compute_capability_major"
CC_MINOR: Final = "device__attribute_compute_capability_minor"
OCCUPANCY_LIMITS: Final[tuple[tuple[str, str], ...]] = (
    ("registers", "launch__occupancy_limit_registers"),
    ("shared_mem", "launch__occupancy_limit_shared_mem"),
    ("warps", "launch__occupancy_limit_warps"),
    ("blocks", "launch__occupancy_limit_blocks"),
)
_FLOP = "smsp__sass_thread_inst_executed_op_{}_pred_on.sum.per_cycle_elapsed"
_PEAK = "sm__sass_thread_inst_executed_op_{}fma_pred_on.sum.peak_sustained"
SMSP_CLOCK: Final = "smsp__cycles_elapsed.avg.per_second"
DRAM_CLOCK: Final = "dram__cycles_elapsed.avg.per_second"
DRAM_PEAK_PER_CYCLE: Final = "dram__bytes.sum.peak_sustained"

STALL_RATIO_RE: Final = re.compile(
    r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$"
)
STALL_PCSAMP_RE: Final = re.compile(r"^smsp__pcsamp_warps_issue_stalled_(\w+)$")


def _num(values: Mapping[str, Value], name: str) -> float | None:
    v = values.get(name)
    if v is None or isinstance(v, str):
        return None
    return None if math.isnan(v) else float(v)


def _first(values: Mapping[str, Value], names: tuple[str, ...]) -> float | None:
    for name in names:
        v = _num(values, name)
        if v is not None:
            return v
    return None


def short_name_of(demangled: str) -> str:
    """Bare function name of a demangled kernel name: no return type, template arguments,
    parameter list or namespace (``void ns::k<(int)8>(int, float *)`` -> ``k``)."""
    depth = 0
    out: list[str] = []
    for ch in demangled.strip():
        if ch in "<([":
            if ch in "([" and depth == 0 and out:
                break
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    head = "".join(out).strip()
    head = head.rsplit(" ", 1)[-1] if " " in head else head
    return head.rsplit("::", 1)[-1] or demangled


def occupancy_limiter(values: Mapping[str, Value]) -> str | None:
    """Name(s) of the resource allowing the fewest resident blocks per SM."""
    limits = {k: _num(values, m) for k, m in OCCUPANCY_LIMITS}
    present = {k: v for k, v in limits.items() if v is not None}
    if not present:
        return None
    low = min(present.values())
    return "+".join(k for k, v in present.items() if v == low)


def _flops(values: Mapping[str, Value], kind: str) -> tuple[float | None, float | None]:
    """(achieved, peak) FLOP/s for ``kind`` ``f`` (fp32) or ``d`` (fp64)."""
    clock = _num(values, SMSP_CLOCK)
    if clock is None:
        return None, None
    add, mul, fma = (_num(values, _FLOP.format(kind + op)) for op in ("add", "mul", "fma"))
    achieved = None
    if add is not None and mul is not None and fma is not None:
        achieved = (add + mul + 2 * fma) * clock
    peak_fma = _num(values, _PEAK.format(kind))
    return achieved, None if peak_fma is None else 2 * peak_fma * clock


def kernel_row(launch_id: int, name: str, values: Mapping[str, Value],
               short_name: str | None = None, mangled_name: str | None = None
               ) -> dict[str, Any]:
    """One :data:`~infraprof.tables_ncu.KERNEL_METRICS` row from base-unit metric values."""
    row: dict[str, Any] = {
        "launch_id": launch_id,
        "name": name,
        "short_name": short_name or short_name_of(name),
        "mangled_name": mangled_name,
    }
    for col, names in FLOAT_METRICS.items():
        row[col] = _first(values, names)
    for col, metric in INT_METRICS.items():
        v = _num(values, metric)
        row[col] = None if v is None else round(v)
    if row["issue_active_pct"] is None:
        per_cycle = _num(values, "smsp__issue_active.avg.per_cycle_active")
        row["issue_active_pct"] = None if per_cycle is None else 100 * per_cycle
    device = values.get(DEVICE_NAME)
    row["device_name"] = device if isinstance(device, str) and device else None
    major, minor = _num(values, CC_MAJOR), _num(values, CC_MINOR)
    row["cc"] = None if major is None or minor is None else f"{int(major)}.{int(minor)}"
    row["occupancy_limiter"] = occupancy_limiter(values)
    row["fp32_flop_per_s"], row["fp32_peak_flop_per_s"] = _flops(values, "f")
    row["fp64_flop_per_s"], row["fp64_peak_flop_per_s"] = _flops(values, "d")
    peak, clock = _num(values, DRAM_PEAK_PER_CYCLE), _num(values, DRAM_CLOCK)
    row["dram_peak_bytes_per_s"] = None if peak is None or clock is None else peak * clock
    return row


def stall_rows(launch_id: int, values: Mapping[str, Value]) -> list[dict[str, Any]]:
    """:data:`~infraprof.tables_ncu.STALLS` rows: one per reason seen in either family."""
    ratio: dict[str, float | None] = {}
    pcsamp: dict[str, float | None] = {}
    for name in values:
        m = STALL_RATIO_RE.match(name)
        if m:
            ratio[canonical_reason(m.group(1))] = _num(values, name)
            continue
        m = STALL_PCSAMP_RE.match(name)
        if m and not m.group(1).endswith("_not_issued"):
            pcsamp[canonical_reason(m.group(1))] = _num(values, name)
    reasons = sorted(set(ratio) | set(pcsamp))
    return [
        {"launch_id": launch_id, "reason": r, "ratio_per_issue_active": ratio.get(r),
         "pcsamp_count": pcsamp.get(r)}
        for r in reasons
    ]


# --- units (CSV exports print auto-scaled units) -------------------------------------------

_PREFIX: Final[dict[str, float]] = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
}
_BASE: Final[dict[str, float]] = {"second": 1e9}
_PREFIXABLE: Final = re.compile(
    r"^([nuµmkKMGT]?)(second|byte|cycle|inst|warp|thread|sector|request|sample|block|hz|Hz|"
    r"register|transaction|wavefront)$"
)
_SHORT_TIME: Final[dict[str, float]] = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def _unit_factor(token: str) -> float | None:
    token = token.strip()
    if token in ("", "%"):
        return 1.0
    if token in _SHORT_TIME:
        return _SHORT_TIME[token]
    m = _PREFIXABLE.match(token)
    if not m:
        return None
    prefix = _PREFIX.get(m.group(1).replace("µ", "u"), 1.0) if m.group(1) else 1.0
    return prefix * _BASE.get(m.group(2), 1.0)


def unit_factor(unit: str, *, rate: bool) -> float | None:
    """Multiplier from ``unit`` to ncu base units (``ns``, ``byte``, per-second rates).

    A plain time (``msecond``) converts to ns; a rate (``Gbyte/second``, ``cycle/usecond``)
    converts to per *second*. ``rate`` says whether the unit has a denominator. Unknown units
    return ``None`` (the caller keeps the value unscaled).
    """
    if not rate:
        return _unit_factor(unit)
    num, den = unit.split("/", 1)
    fn, fd = _unit_factor(num), _unit_factor(den)
    if fn is None or fd is None:
        return None
    # a time denominator was scaled to ns above; rates are per second
    return fn / (fd / 1e9) if den.strip() in _TIME_TOKENS else fn / fd


_TIME_TOKENS: Final = frozenset(
    {"second", "nsecond", "usecond", "msecond", "ns", "us", "ms", "s"}
)


def to_base(value: float, unit: str | None) -> float:
    """``value`` printed with ``unit`` in base units (see :func:`unit_factor`)."""
    if not unit:
        return value
    factor = unit_factor(unit, rate="/" in unit)
    return value if factor is None else value * factor


def parse_number(text: str) -> float | None:
    """A CSV cell as a float: thousands separators removed; ``None`` if not a finite number
    (``inf``/``nan`` cells would otherwise overflow integer metrics)."""
    t = text.strip().replace(",", "")
    if not t:
        return None
    try:
        value = float(t)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
