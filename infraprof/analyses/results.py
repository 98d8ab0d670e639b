"""Read-only, typed access to what the registered analyses produced for one trace.

:class:`Results` wraps the :class:`~infraprof.analyses.context.AnalysisContext` after
:func:`~infraprof.analyses.registry.run_analyses`: each property reads one named table of one
analysis's output, with the value an absent (disabled) analysis stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from infraprof.analyses.context import AnalysisContext
from infraprof.analyses.gap_table import CATEGORIES, GapTable
from infraprof.analyses.host_profile import HostProfile
from infraprof.analyses.phases import DevicePhases
from infraprof.analyses.python_frames import PythonSummary
from infraprof.analyses.summary import DeviceBusy
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model.clock import AlignedPyspy


@dataclass(frozen=True)
class Results:
    """The outputs of one run of the registry (``context.outputs``, by analysis id)."""

    context: AnalysisContext

    def table(self, analysis_id: str, name: str, default: Any = None) -> Any:
        """Table ``name`` of analysis ``analysis_id``, or ``default`` when it did not run."""
        output = self.context.outputs.get(analysis_id)
        return default if output is None else output.tables.get(name, default)

    @property
    def timelines(self) -> list[DeviceTimeline]:
        return list(self.table("timeline", "devices", []))

    @property
    def devices(self) -> list[DeviceBusy]:
        return list(self.table("summary", "devices", []))

    @property
    def attributions(self) -> GapTable:
        """Every attributed gap (an empty table when attribution did not run)."""
        found = self.table("attribution", "attributions")
        return found if isinstance(found, GapTable) else GapTable()

    @property
    def idle_breakdown_ns(self) -> dict[str, int]:
        return dict(self.table("attribution", "idle_breakdown_ns", dict.fromkeys(CATEGORIES, 0)))

    @property
    def gaps_attributed(self) -> int:
        return int(self.table("attribution", "gaps_attributed", 0))

    @property
    def launch_summary(self) -> pd.DataFrame:
        return self._frame("launch", "per_kernel")

    @property
    def launch_bound(self) -> pd.DataFrame:
        return self._frame("launch", "launch_bound")

    @property
    def launch_percentiles(self) -> dict[str, int | None]:
        return dict(self.table("launch", "percentiles", {}))

    @property
    def copy_bandwidth(self) -> list[dict[str, Any]]:
        return list(self.table("copies", "bandwidth", []))

    @property
    def nvtx_gpu(self) -> pd.DataFrame:
        return self._frame("nvtx", "distributions")

    @property
    def python(self) -> PythonSummary | None:
        found = self.table("python", "summary")
        return found if isinstance(found, PythonSummary) else None

    @property
    def kernel_classes(self) -> list[dict[str, Any]]:
        """Per device: kernel time and count per class (``kernel_classes`` analysis)."""
        return list(self.table("kernel_classes", "per_device", []))

    @property
    def gpu_bound(self) -> dict[str, Any] | None:
        """The GPU-bound verdict (``busy_share``, ``threshold``, ``gpu_bound``) or None."""
        found = self.table("kernel_classes", "gpu_bound")
        return dict(found) if isinstance(found, dict) else None

    @property
    def communication(self) -> list[dict[str, Any]]:
        """Per device with collective kernels: comm, overlap and exposed time."""
        return list(self.table("communication", "devices", []))

    @property
    def host_profile(self) -> HostProfile | None:
        found = self.table("host_profile", "profile")
        return found if isinstance(found, HostProfile) else None

    @property
    def phases(self) -> list[DevicePhases]:
        """Start-up / steady / teardown per active device (empty without GPU activity)."""
        return list(self.context.phases) if self.context.trace.has_gpu_activity else []

    @property
    def pyspy(self) -> AlignedPyspy | None:
        return self.context.pyspy

    def _frame(self, analysis_id: str, name: str) -> pd.DataFrame:
        found = self.table(analysis_id, name)
        return found if isinstance(found, pd.DataFrame) else pd.DataFrame()
