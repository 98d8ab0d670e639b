"""The :class:`AnalysisContext`: one trace, its inputs, and derived data computed once.

Every analysis reads what it shares with others from here — device timelines, the
kernel↔launch-call join, gap attributions, per-device busy summaries, py-spy frame pools — so
nothing is computed twice, and earlier analyses' outputs (``ctx.outputs[id]``) are visible to
later ones in registry order. The cached values are shared: treat them as read-only.

Memory: the registry drops values once no analysis soon reads them
(:data:`~infraprof.analyses.registry.RELEASED_AFTER`), and the kernel launch join and the
native stacks, which are cheap to compute again (0.04 and 0.09 CPU s at 1 M kernels) but
large to hold (38 and 20 MB), are not cached when a summary is all that is wanted of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from infraprof.analyses import kernel_classes, launch, summary
from infraprof.analyses.attribution import AttributionParams, attribute_table
from infraprof.analyses.base import Output
from infraprof.analyses.gap_table import GapTable
from infraprof.analyses.native_frames import (
    NativePools,
    NativeStacks,
    backtraced_calls,
    native_pools,
    native_stacks,
)
from infraprof.analyses.phases import DevicePhases, device_phases
from infraprof.analyses.python_frames import FramePools, frame_pools
from infraprof.analyses.timeline import DeviceTimeline, TimelineParams, device_timelines
from infraprof.model import Trace
from infraprof.model.clock import AlignedPyspy
from infraprof.model.kernel_metrics import KernelMetrics
from infraprof.shared_value import shared_value


class AnalysisContext:
    """``params`` maps analysis id → its params object (missing ids get defaults);
    ``pyspy``: aligned py-spy samples or None; ``ncu``: Nsight Compute reports to join."""

    def __init__(self, trace: Trace, params: Mapping[str, Any] | None = None,
                 pyspy: AlignedPyspy | None = None, ncu: Sequence[KernelMetrics] = ()) -> None:
        self.trace = trace
        self.params: dict[str, Any] = dict(params or {})
        self.pyspy = pyspy
        self.ncu = tuple(ncu)
        self.outputs: dict[str, Output] = {}
        self._launch_latency: np.ndarray | None = None  # kept when `launches` is released

    def params_of(self, analysis_id: str, default: Any) -> Any:
        """The params of ``analysis_id``, or ``default`` when none were given."""
        return self.params.get(analysis_id, default)

    def release(self, names: Iterable[str]) -> None:
        """Drop the cached values ``names`` (names of this class's cached properties,
        ``launch_latency``: the latencies kept when ``launches`` was released, or ``gpu_ops``:
        the trace's :meth:`~infraprof.model.Trace.gpu_ops` table) so that their
        memory is freed once nothing else holds them; a later read computes a value again."""
        for name in names:
            if name == "launches" and name in self.__dict__:
                # the latencies stay (4 bytes a launch where they fit int32: the column's
                # own width) for run_metrics: a second launch join cost more CPU than this
                self._launch_latency = np.array(self.__dict__[name]["latency_ns"].to_numpy())
            if name == "launch_latency":  # the latencies the launch join's release kept
                self._launch_latency = None
            elif name == "gpu_ops":
                self.trace.release_gpu_ops()
            elif isinstance(getattr(type(self), name, None), cached_property):
                self.__dict__.pop(name, None)
            else:
                raise ValueError(f"{name!r} is no cached value of the analysis context")

    def held(self, name: str) -> Any:
        """The cached value ``name`` when it is held (computed already), else None."""
        return self.__dict__.get(name)

    def _held(self, name: str, compute: Callable[[], Any]) -> Any:
        """The cached value ``name`` when it is held, else ``compute()`` without caching it."""
        return self.__dict__[name] if name in self.__dict__ else compute()

    @shared_value
    def span(self) -> tuple[int, int]:
        """``(start_ns, end_ns)`` of everything recorded (see :func:`summary.trace_span`)."""
        return summary.trace_span(self.trace)

    @shared_value
    def device_busy(self) -> list[summary.DeviceBusy]:
        return summary.device_busy(self.trace)

    @shared_value
    def kernel_summary(self) -> pd.DataFrame:
        """Per kernel name statistics (:func:`summary.kernel_summary`), computed once for the
        summary and the ncu analyses."""
        return summary.kernel_summary(self.trace)

    @shared_value
    def timelines(self) -> list[DeviceTimeline]:
        return device_timelines(self.trace, self.params_of("timeline", TimelineParams()))

    @shared_value
    def active_span_ns(self) -> int:
        """Sum over devices of first-op-start → last-op-end (the share denominator)."""
        return sum(t.span_ns for t in self.timelines)

    @shared_value
    def classified_kernels(self) -> pd.DataFrame:
        """Every kernel with its class (:func:`kernel_classes.classified_kernels`), for the
        kernel classes and the communication analyses; released after the latter (a column
        per kernel: ~350 MB at 10 M kernels)."""
        return kernel_classes.classified_kernels(self.trace)

    @shared_value
    def launches(self) -> pd.DataFrame:
        """Kernels joined to their launch calls (:func:`launch.kernel_launches`)."""
        return launch.kernel_launches(self.trace)

    def launch_latencies(self) -> np.ndarray:
        """Launch-to-start latency of every launched kernel (ns, kernel order, an integer
        type): from :attr:`launches` when it is held or was released (its latencies are
        kept), else without building it."""
        held = self.__dict__.get("launches")
        if held is not None:
            return np.asarray(held["latency_ns"].to_numpy())
        if self._launch_latency is not None:
            return self._launch_latency
        return launch.launch_latencies(self.trace)

    @shared_value
    def launch_summary(self) -> pd.DataFrame:
        """Per kernel name launch statistics, from :attr:`launches` when it is held, else from
        a join that is freed at once (cheaper to redo than to keep: module docstring)."""
        return launch.launch_summary(self._held("launches", lambda: launch.kernel_launches(
            self.trace)))

    @shared_value
    def launch_bound(self) -> pd.DataFrame:
        return launch.launch_bound_kernels(self.launch_summary,
                                           self.params_of("launch", launch.LaunchParams()))

    @shared_value
    def attributions(self) -> GapTable:
        """Every listed gap, attributed (empty without GPU activity)."""
        if not self.trace.has_gpu_activity:
            return GapTable()
        return attribute_table(self.trace, self.timelines,
                              self.params_of("attribution", AttributionParams()))

    @shared_value
    def thread_names(self) -> dict[int, str]:
        threads = self.trace.threads
        return {int(g): str(n) for g, n in zip(threads["global_tid"], threads["name"],
                                                strict=True)}

    @shared_value
    def python_pools(self) -> FramePools | None:
        """py-spy stacks pooled per (category, site) of the host-side gaps, or None."""
        if self.pyspy is None:
            return None
        return frame_pools(self.attributions, self.pyspy)

    @shared_value
    def phases(self) -> list[DevicePhases]:
        """Start-up / steady state / teardown of every active device."""
        return device_phases(self.trace, self.timelines)

    @shared_value
    def native_pools(self) -> NativePools | None:
        """nsys CPU samples pooled per gap and category, with split keys (None without
        samples; no split keys when py-spy frames name the findings)."""
        if self.trace.cpu_samples.empty or not self.attributions:
            return None
        stacks = self._held("native_stacks", lambda: native_stacks(self.trace.callchains))
        return native_pools(self.attributions, self.trace.cpu_samples, stacks,
                            split=self.python_pools is None,
                            backtraced=backtraced_calls(self.trace))

    @shared_value
    def native_stacks(self) -> NativeStacks:
        """The trace's nsys sampling callchains, prepared (system frames marked)."""
        return native_stacks(self.trace.callchains)
