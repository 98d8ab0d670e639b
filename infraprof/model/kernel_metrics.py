"""The :class:`KernelMetrics` of one Nsight Compute report, and :func:`load_ncu`.

Accepted inputs, detected by content (not by file name): an ``.ncu-rep`` report (read with the
``ncu-report`` wheel), an ncu CSV export of the ``raw`` page or of the ``details`` page (either
layout). Tables follow :mod:`infraprof.tables_ncu`; missing metrics are NaN/None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from infraprof import tables_ncu as ncu_tables
from infraprof.errors import InputError
from infraprof.readers import ncu_csv, ncu_report

SourceFormat = Literal["ncu-rep", "csv-raw", "csv-details"]


@dataclass(frozen=True)
class KernelMetricsMeta:
    """Where the metrics came from."""

    source: str
    format: SourceFormat


@dataclass(frozen=True)
class KernelMetrics:
    """Normalized tables of one ncu report: per-launch metrics, stalls (long), rules."""

    meta: KernelMetricsMeta
    kernels: pd.DataFrame
    stalls: pd.DataFrame
    rules: pd.DataFrame

    @property
    def has_stalls(self) -> bool:
        """True when any launch carries per-reason stall ratios (``detailed``/``full`` sets);
        a ``basic``/``default`` set or a ``details`` CSV has none."""
        return bool(self.stalls["ratio_per_issue_active"].notna().any())

    @property
    def device_names(self) -> list[str]:
        """Distinct device names of the profiled launches (empty when not recorded)."""
        return sorted({str(d) for d in self.kernels["device_name"].dropna()})


def load_ncu(path: Path) -> KernelMetrics:
    """Load an ``.ncu-rep`` or ncu CSV export. ``InputError`` (exit 3) for anything else,
    ``ToolError`` (exit 4) for an ``.ncu-rep`` without the ``ncu-report`` wheel."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass the .ncu-rep or CSV file itself")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    if size == 0:
        raise InputError(f"{path}: file is empty; re-run the ncu capture or the export")
    fmt: SourceFormat
    if ncu_report.is_ncu_report(path):
        fmt = "ncu-rep"
        kernels, stalls, rules = ncu_report.read_ncu_report(path)
    elif path.suffix == ".ncu-rep":
        raise InputError(f"{path}: not an Nsight Compute report (no NVR magic); is it complete?")
    else:
        page, (kernels, stalls, rules) = ncu_csv.read_ncu_csv(path)
        fmt = "csv-details" if page == "details" else "csv-raw"
    return KernelMetrics(
        meta=KernelMetricsMeta(source=str(path), format=fmt),
        kernels=ncu_tables.build(kernels, ncu_tables.KERNEL_METRICS),
        stalls=ncu_tables.build(stalls, ncu_tables.STALLS),
        rules=ncu_tables.build(rules, ncu_tables.RULES),
    )
