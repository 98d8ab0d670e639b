"""Open an Nsight Compute input as :class:`~infraprof.model.kernel_metrics.KernelMetrics`.

Accepted, by content: an ``.ncu-rep`` report (read with the ``ncu-report`` wheel), an ncu CSV
export of the ``raw`` or the ``details`` page (either layout), any of them gzip-compressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from infraprof.errors import InputError
from infraprof.inputs.detect import NCU_KINDS, InputKind
from infraprof.inputs.source import naming_source, open_input
from infraprof.model.kernel_metrics import KernelMetrics, kernel_metrics_from_tables
from infraprof.readers import ncu_csv, ncu_report

WANTED: Final = "an Nsight Compute report or ncu CSV export"


def load_ncu(path: Path) -> KernelMetrics:
    """Load an ``.ncu-rep`` or ncu CSV export. ``InputError`` (exit 3) for anything else,
    ``ToolError`` (exit 4) for an ``.ncu-rep`` without the ``ncu-report`` wheel."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass the .ncu-rep or CSV file itself")
    opened = open_input(path, NCU_KINDS, WANTED)
    with naming_source(opened):
        if opened.kind is InputKind.NCU_REPORT:
            kernels, stalls, rules = ncu_report.read_ncu_report(opened.path)
            return kernel_metrics_from_tables(str(path), "ncu-rep", kernels, stalls, rules)
        page, (kernels, stalls, rules) = ncu_csv.read_ncu_csv(opened.path)
    return kernel_metrics_from_tables(str(path), "csv-details" if page == "details"
                                      else "csv-raw", kernels, stalls, rules)
