"""The :class:`KernelMetrics` of one Nsight Compute report (loaded by
:func:`infraprof.inputs.ncu.load_ncu`). Tables follow :mod:`infraprof.tables_ncu`; missing
metrics are NaN/None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from infraprof import tables_ncu as ncu_tables

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


def kernel_metrics_from_tables(source: str, fmt: SourceFormat, kernels: list[dict[str, Any]],
                               stalls: list[dict[str, Any]], rules: list[dict[str, Any]]
                               ) -> KernelMetrics:
    """Normalize reader rows into typed tables (:mod:`infraprof.tables_ncu`)."""
    return KernelMetrics(
        meta=KernelMetricsMeta(source=source, format=fmt),
        kernels=ncu_tables.build(kernels, ncu_tables.KERNEL_METRICS),
        stalls=ncu_tables.build(stalls, ncu_tables.STALLS),
        rules=ncu_tables.build(rules, ncu_tables.RULES),
    )
