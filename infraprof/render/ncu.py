"""Nsight Compute report on its own (``infraprof analyze X.ncu-rep``): terminal text and JSON.

One row per profiled launch, slowest first: duration, bound class, SM/memory SOL, DRAM
throughput, CPI and top warp-stall reasons (share of CPI), occupancy, and the estimated headroom
with its source. Names are ``rich.text.Text`` in the terminal (no markup interpretation).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infraprof._version import __version__
from infraprof.analyses.ncu_kernels import KernelDiagnosis
from infraprof.text_safety import printable
from infraprof.units import fmt_ns

NCU_SCHEMA_VERSION = "1.0"


def _safe(value: object, style: str = "") -> Text:
    """A name (or text holding names) for the terminal: control characters shown escaped."""
    return Text(printable(value), style=style)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def diagnosis_dict(d: KernelDiagnosis) -> dict[str, Any]:
    m = d.metrics
    return {
        "launch_id": d.launch_id, "name": d.name, "short_name": d.short_name,
        "duration_ns": _num(d.duration_ns), "bound": d.bound, "bound_detail": d.bound_detail,
        "sm_sol_pct": _num(m.get("sm_sol_pct")), "mem_sol_pct": _num(m.get("mem_sol_pct")),
        "dram_throughput_bytes_per_s": _num(m.get("dram_throughput_bytes_per_s")),
        "cpi": _num(m.get("cpi")),
        "stalls": [{"reason": s.reason, "value": _num(s.value), "share": _num(s.share),
                    "explanation": s.explanation} for s in d.top_stalls],
        "stalls_note": d.stalls_note, "occupancy": d.occupancy,
        "headroom": _num(d.headroom), "headroom_source": d.headroom_source,
    }


def render_ncu_json(source: str, diagnoses: list[KernelDiagnosis]) -> str:
    """``{"schema_version", "tool", "inputs", "ncu": {"kernels": [...]}}`` (NaN -> null)."""
    ordered = sorted(diagnoses, key=lambda d: -(_num(d.duration_ns) or 0.0))
    doc = {"schema_version": NCU_SCHEMA_VERSION,
           "tool": {"name": "infraprof", "version": __version__},
           "inputs": [{"path": source}],
           "ncu": {"kernels": [diagnosis_dict(d) for d in ordered]}}
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render_ncu_terminal(source: str, diagnoses: list[KernelDiagnosis], width: int = 120,
                        top: int = 20) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, color_system=None, highlight=False)
    console.print(_safe("infraprof analyze (Nsight Compute): ", style="bold") + _safe(source))
    t = Table(box=box.SIMPLE_HEAD, expand=True, title="Profiled kernels, slowest first",
              title_justify="left")
    for col, just in (("duration", "right"), ("bound", "left"), ("SM %", "right"),
                      ("mem %", "right"), ("CPI", "right"), ("top stalls (share of CPI)", "left"),
                      ("headroom", "right"), ("name", "left")):
        t.add_column(col, justify=just, no_wrap=True,  # type: ignore[arg-type]
                     overflow="ellipsis", ratio=1 if col in ("name", "top stalls (share of CPI)")
                     else None)
    ordered = sorted(diagnoses, key=lambda d: -(_num(d.duration_ns) or 0.0))
    for d in ordered[:top]:
        row = diagnosis_dict(d)
        stalls = ", ".join(f"{s['reason']} {100 * (s['share'] or 0):.0f} %"
                           for s in row["stalls"]) or "-"
        t.add_row(fmt_ns(row["duration_ns"]), d.bound,
                  "-" if row["sm_sol_pct"] is None else f"{row['sm_sol_pct']:.1f}",
                  "-" if row["mem_sol_pct"] is None else f"{row['mem_sol_pct']:.1f}",
                  "-" if row["cpi"] is None else f"{row['cpi']:.1f}", _safe(stalls),
                  f"{100 * (row['headroom'] or 0):.0f} %", _safe(d.short_name or d.name))
    console.print(t)
    notes = {d.stalls_note for d in diagnoses if d.stalls_note}
    for note in sorted(notes):
        console.print(_safe("note: " + note))
    return buf.getvalue()
