"""ncu CSV exports (``ncu --import R.ncu-rep --csv --page raw|details``).

* ``raw``: wide, one row per launch; header row, then a **units row** (empty identity cells),
  then the launches. Values are auto-scaled per column (``msecond``, ``Kbyte``,
  ``cycle/usecond`` ...); they are converted to base units (ns, bytes, per second).
* ``details``: long, one row per (launch, section, metric label) plus one row per fired rule.
  Two layouts are accepted by header name: ncu 2022.3 (15 columns, ``Kernel Time``) and newer
  (20 columns: ``Block Size``/``Grid Size`` like ``(256, 1, 1)``, ``Device`` (an index),
  ``CC``, ``Estimated Speedup Type``/``Estimated Speedup``). Metric *labels* are mapped to
  metric names by :data:`DETAIL_LABELS`; the details page carries no per-reason stall metrics,
  DRAM byte counts or roofline inputs, so those stay missing.

Both: leading ``==PROF==``/``==WARNING==`` lines are skipped (the header is the first line with
a ``"Kernel Name"`` cell) and numbers may carry thousands separators (``4,963,609,951.19``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Final

from infraprof.errors import InputError
from infraprof.readers.ncu_metrics import Value, kernel_row, parse_number, stall_rows, to_base

IDENTITY_COLUMNS: Final = frozenset({
    "ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Kernel Time", "Context",
    "Stream", "Block Size", "Grid Size", "Device", "CC",
})

# (label, unit is a percentage?) -> metric name; ``None`` for "either unit".
DETAIL_LABELS: Final[dict[tuple[str, bool | None], str]] = {
    ("Duration", None): "gpu__time_duration.sum",
    ("Compute (SM) [%]", None): "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    ("Compute (SM) Throughput", None): "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    ("Memory [%]", None): "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    ("Memory Throughput", True):
        "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    ("Memory Throughput", False): "dram__bytes.sum.per_second",
    ("DRAM Throughput", True): "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
    ("L1/TEX Hit Rate", None): "l1tex__t_sector_hit_rate.pct",
    ("L2 Hit Rate", None): "lts__t_sector_hit_rate.pct",
    ("Achieved Occupancy", None): "sm__warps_active.avg.pct_of_peak_sustained_active",
    ("Theoretical Occupancy", None): "sm__maximum_warps_per_active_cycle_pct",
    ("Waves Per SM", None): "launch__waves_per_multiprocessor",
    ("One or More Eligible", None): "smsp__issue_active.avg.pct_of_peak_sustained_active",
    ("Warp Cycles Per Issued Instruction", None):
        "smsp__average_warp_latency_per_inst_issued.ratio",
    ("Registers Per Thread", None): "launch__registers_per_thread",
    ("Block Size", None): "launch__block_size",
    ("Grid Size", None): "launch__grid_size",
    ("# SMs", None): "device__attribute_multiprocessor_count",
    ("Block Limit Registers", None): "launch__occupancy_limit_registers",
    ("Block Limit Shared Mem", None): "launch__occupancy_limit_shared_mem",
    ("Block Limit Warps", None): "launch__occupancy_limit_warps",
    ("Block Limit SM", None): "launch__occupancy_limit_blocks",
}
_DIMS = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")


def _read_rows(path: Path) -> list[list[str]]:
    """CSV rows from the header line (the first with a ``Kernel Name`` cell) on."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not an ncu CSV export (binary content)") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
    lines = text.splitlines()
    start = _header_line(lines)
    if start is not None:
        return [r for r in csv.reader(lines[start:]) if r and not r[0].startswith("==")]
    raise InputError(
        f"{path}: not an ncu CSV export (no header with \"ID\" and \"Kernel Name\"); export with "
        "`ncu --import R.ncu-rep --csv --page raw`"
    )


def _header_line(lines: list[str]) -> int | None:
    """Index of the header line: the first, after ``==PROF==`` lines, whose cells include
    ``Kernel Name`` and ``ID``."""
    for i, line in enumerate(lines):
        if line.startswith("==") or '"Kernel Name"' not in line:
            continue
        if "ID" in next(csv.reader([line]), []):
            return i
    return None


def csv_page_of_text(text: str) -> str | None:
    """``"raw"`` or ``"details"`` when ``text`` (a whole export or its first lines) is an ncu
    CSV export, else ``None``. Used to sniff inputs by content."""
    lines = text.splitlines()
    start = _header_line(lines)
    if start is None:
        return None
    return "details" if "Metric Name" in next(csv.reader([lines[start]])) else "raw"


def _value(text: str, unit: str | None) -> Value:
    number = parse_number(text)
    if number is None:
        return text if text.strip() else None
    return to_base(number, unit)


def _dims(text: str | None, prefix: str, values: dict[str, Value]) -> None:
    m = _DIMS.match((text or "").strip())
    if m:
        for axis, v in zip("xyz", m.groups(), strict=True):
            values[f"launch__{prefix}_dim_{axis}"] = float(v)


def _cc(text: str | None, values: dict[str, Value]) -> None:
    parts = (text or "").strip().split(".")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        values["device__attribute_compute_capability_major"] = float(parts[0])
        values["device__attribute_compute_capability_minor"] = float(parts[1])


def _launch_id(text: str, path: Path) -> int:
    try:
        return int(text.replace(",", ""))
    except ValueError as exc:
        raise InputError(f"{path}: ncu CSV row has a non-numeric ID {text!r}") from exc


Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


def read_raw(path: Path, rows: list[list[str]] | None = None) -> Rows:
    """Kernel-metric, stall and (always empty) rule rows of a ``--page raw`` export."""
    rows = rows if rows is not None else _read_rows(path)
    header = rows[0]
    col = {name: i for i, name in enumerate(header)}
    body = rows[1:]
    units: list[str] = [""] * len(header)
    if body and not body[0][col["ID"]].strip():
        units = body[0] + [""] * (len(header) - len(body[0]))
        body = body[1:]
    kernels: list[dict[str, Any]] = []
    stalls: list[dict[str, Any]] = []
    for r in body:
        if len(r) < len(header):
            raise InputError(f"{path}: truncated ncu CSV row (ID {r[0] if r else '?'})")
        values: dict[str, Value] = {
            name: _value(r[i], units[i]) for name, i in col.items()
            if name not in IDENTITY_COLUMNS
        }
        _dims(r[col["Block Size"]] if "Block Size" in col else None, "block", values)
        _dims(r[col["Grid Size"]] if "Grid Size" in col else None, "grid", values)
        if "CC" in col:
            _cc(r[col["CC"]], values)
        launch_id = _launch_id(r[col["ID"]], path)
        kernels.append(kernel_row(launch_id, r[col["Kernel Name"]], values))
        stalls.extend(stall_rows(launch_id, values))
    if not kernels:
        raise InputError(f"{path}: ncu CSV export lists no kernels")
    return kernels, stalls, []


def _detail_metric(label: str, unit: str) -> str | None:
    pct = unit.strip() == "%"
    return DETAIL_LABELS.get((label, pct)) or DETAIL_LABELS.get((label, None))


def read_details(path: Path, rows: list[list[str]] | None = None) -> Rows:
    """Kernel-metric, (empty) stall and rule rows of a ``--page details`` export."""
    rows = rows if rows is not None else _read_rows(path)
    header = rows[0]
    missing = {"ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"} - set(header)
    if missing:
        raise InputError(f"{path}: ncu details CSV lacks columns {sorted(missing)}")
    col = {name: i for i, name in enumerate(header)}

    def cell(r: list[str], name: str) -> str:
        i = col.get(name)
        return r[i] if i is not None and i < len(r) else ""

    names: dict[int, str] = {}
    launches: dict[int, dict[str, Value]] = {}
    rules: list[dict[str, Any]] = []
    for r in rows[1:]:
        launch_id = _launch_id(cell(r, "ID"), path)
        if launch_id not in launches:
            names[launch_id] = cell(r, "Kernel Name")
            values: dict[str, Value] = {}
            _dims(cell(r, "Block Size"), "block", values)
            _dims(cell(r, "Grid Size"), "grid", values)
            _cc(cell(r, "CC"), values)
            launches[launch_id] = values
        rule = cell(r, "Rule Name").strip()
        if rule:
            speedup = parse_number(cell(r, "Estimated Speedup"))
            rules.append({
                "launch_id": launch_id,
                "rule": rule,
                "section": cell(r, "Section Name") or None,
                "type": cell(r, "Rule Type").strip() or None,
                "title": None,
                "message": cell(r, "Rule Description").strip(),
                "estimated_speedup_pct": speedup,
                "speedup_type": cell(r, "Estimated Speedup Type").strip().lower() or None,
            })
            continue
        metric = _detail_metric(cell(r, "Metric Name"), cell(r, "Metric Unit"))
        if metric is not None:
            launches[launch_id][metric] = _value(cell(r, "Metric Value"), cell(r, "Metric Unit"))
    if not launches:
        raise InputError(f"{path}: ncu CSV export lists no kernels")
    kernels = [kernel_row(i, names[i], v) for i, v in sorted(launches.items())]
    stalls = [s for i, v in sorted(launches.items()) for s in stall_rows(i, v)]
    return kernels, stalls, rules


def read_ncu_csv(path: Path) -> tuple[str, Rows]:
    """``(page, rows)`` of an ncu CSV export, the page detected from its header."""
    rows = _read_rows(path)
    if "Metric Name" in rows[0]:
        return "details", read_details(path, rows)
    if "Kernel Name" not in rows[0]:
        raise InputError(f"{path}: not an ncu CSV export (no \"Kernel Name\" column)")
    return "raw", read_raw(path, rows)
