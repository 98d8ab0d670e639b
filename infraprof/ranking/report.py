"""The :class:`Report`: what ``infraprof analyze`` found, in one typed, versioned object.

``Report.to_dict()`` is the machine contract (``--format json``); its schema is documented in
``docs/json-schema.md`` and versioned by :data:`SCHEMA_VERSION` (major bumps break readers).
All times are integer nanoseconds; averages and medians are rounded to the nearest ns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from infraprof._version import __version__
from infraprof.analyses import summary
from infraprof.analyses.context import AnalysisContext
from infraprof.analyses.findings import SEVERITY_ORDER, Finding
from infraprof.analyses.phases import phases_dict
from infraprof.analyses.registry import AnalysisConfig, run_analyses
from infraprof.analyses.results import Results
from infraprof.model import Trace
from infraprof.model.clock import AlignedPyspy
from infraprof.model.kernel_metrics import KernelMetrics

SCHEMA_VERSION = "1.0"
KERNEL_LEVEL_PREFIXES = ("kernel.", "comm.")


@dataclass(frozen=True)
class Report:
    """Summaries and ranked findings of one trace."""

    trace: Trace
    span_start_ns: int
    span_end_ns: int
    devices: list[summary.DeviceBusy]
    kernels: pd.DataFrame
    api_calls: pd.DataFrame
    memcpy: pd.DataFrame
    nvtx: pd.DataFrame
    analysis: Results | None = None
    findings: list[Finding] = field(default_factory=list)
    config: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def span_ns(self) -> int:
        return self.span_end_ns - self.span_start_ns

    @property
    def gpu_busy_ns(self) -> int:
        return sum(d.busy_ns for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (``docs/json-schema.md``)."""
        meta = self.trace.meta
        devices = self._devices_dict()
        t = self.trace
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "infraprof", "version": __version__},
            "inputs": [{
                "path": meta.source,
                "sqlite_path": meta.sqlite_path,
                "nsys_version": meta.nsys_version,
                "export_schema_version": meta.schema_version,
                "session_start_utc_ns": meta.session_start_utc_ns,
                "capture_command": meta.capture_command,
            }],
            "summary": {
                "span_start_ns": self.span_start_ns,
                "span_end_ns": self.span_end_ns,
                "span_ns": self.span_ns,
                "gpu_busy_ns": self.gpu_busy_ns,
                "devices": devices,
                "gpus_in_node": len(t.gpus),
                "counts": {
                    "kernels": len(t.kernels), "api_calls": len(t.api_calls),
                    "memcpy": len(t.memcpy), "memset": len(t.memset),
                    "syncs": len(t.syncs), "nvtx": len(t.nvtx), "osrt": len(t.osrt),
                    "cpu_samples": len(t.cpu_samples),
                },
            },
            "kernels": _records(self.kernels, ["name", "short_name"]),
            "api_calls": _records(self.api_calls, ["name", "api"]),
            "memcpy": _records(self.memcpy, ["operation"], extra_int=[
                "bytes", "min_bytes", "max_bytes"], extra_float=["avg_bytes",
                                                                  "throughput_bytes_per_s"]),
            "nvtx": _records(self.nvtx, ["domain", "name"], extra_int=["p90_ns", "p99_ns", "open"]),
            "timeline": self._timeline_dict(),
            "launch": self._launch_dict(),
            "copies": {"bandwidth": self.analysis.copy_bandwidth if self.analysis else []},
            "nvtx_gpu": _plain_records(self.analysis.nvtx_gpu) if self.analysis else [],
            "python": (self.analysis.python.to_dict()
                       if self.analysis and self.analysis.python else None),
            "findings": [f.to_dict() for f in self.findings],
            "kernel_classes": self._kernel_classes_dict(),
            "phases": phases_dict(self.analysis.phases) if self.analysis else None,
            "host_profile": (self.analysis.host_profile.to_dict()
                             if self.analysis and self.analysis.host_profile else None),
            "gate_samples": self._gate_samples(),
            # rows the reader left out, per table and reason (empty for a clean export)
            "data_quality": [issue.to_dict() for issue in t.data_quality],
        }

    def _kernel_classes_dict(self) -> dict[str, Any] | None:
        """Kernel time per class per device, communication overlap, GPU-bound verdict (None
        when the ``kernel_classes`` analysis did not run)."""
        a = self.analysis
        if a is None or a.gpu_bound is None:
            return None
        comm = {c["device_id"]: c for c in a.communication}
        devices = [{**d, "communication": comm.get(d["device_id"])} for d in a.kernel_classes]
        return {"gpu_bound": a.gpu_bound, "devices": devices}

    def _devices_dict(self) -> list[dict[str, Any]]:
        """Per device: name, SM count and memory bandwidth from the node's GPU table, and the
        busy/idle summary."""
        gpus = self.trace.gpus.set_index("device_id")
        devices = []
        for d in self.devices:
            row = gpus.loc[d.device_id] if d.device_id in gpus.index else None
            devices.append({
                "device_id": d.device_id,
                "name": d.name,
                "sm_count": _opt_int(row["sm_count"]) if row is not None else None,
                "memory_bandwidth_bytes_per_s": (
                    _opt_int(row["memory_bandwidth_bytes_per_s"]) if row is not None else None
                ),
                "span_start_ns": d.span_start_ns,
                "span_end_ns": d.span_end_ns,
                "span_ns": d.span_ns,
                "busy_ns": d.busy_ns,
                "idle_ns": d.idle_ns,
                "busy_share": round(d.busy_ns / d.span_ns, 6) if d.span_ns else 0.0,
                "kernel_ns": d.kernel_ns,
                "memcpy_ns": d.memcpy_ns,
                "memset_ns": d.memset_ns,
                "ops": d.ops,
            })
        return devices

    def _gate_samples(self) -> dict[str, Any] | None:
        """The gate's metrics of this run (``infraprof.gate.run/1``; None when disabled)."""
        run = self.analysis.table("run_metrics", "run") if self.analysis else None
        if run is None:
            return None
        return {**run.to_dict(), "source": self.trace.meta.source}  # == inputs[0].path

    def _timeline_dict(self) -> dict[str, Any]:
        a = self.analysis
        if a is None:
            return {"devices": [], "idle_breakdown_ns": {}, "gaps_attributed": 0}
        devices = [{
            "device_id": t.device_id, "span_ns": t.span_ns, "busy_ns": t.busy_ns,
            "idle_ns": t.idle_ns, "gaps": len(t.gaps), "gap_ns": t.gaps.total_ns,
            "overhead_ns": t.overhead_ns, "short_gaps_ns": t.short_gaps_ns,
            "leading_idle_ns": t.leading_idle_ns, "trailing_idle_ns": t.trailing_idle_ns,
            "streams": [{"stream_id": s.stream_id, "busy_ns": s.busy_ns, "ops": s.ops,
                         "first_start_ns": s.first_start_ns, "last_end_ns": s.last_end_ns}
                        for s in t.streams],
        } for t in a.timelines]
        return {"devices": devices, "idle_breakdown_ns": a.idle_breakdown_ns,
                "gaps_attributed": a.gaps_attributed}

    def _launch_dict(self) -> dict[str, Any]:
        a = self.analysis
        if a is None:
            return {}
        return {
            **a.launch_percentiles,
            "launch_bound_kernels": _plain_records(a.launch_bound),
            "per_kernel": _plain_records(a.launch_summary.head(50)),
        }


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value) if abs(value) >= 1000 else round(value, 3)
    return value


def _plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records: NaN -> None, numpy scalars -> Python, large floats -> int."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _opt_int(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


def _records(frame: pd.DataFrame, keys: Sequence[str], extra_int: Sequence[str] = (),
             extra_float: Sequence[str] = ()) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict("records"):
        rec: dict[str, Any] = {
            k: (None if pd.isna(row[k]) or row[k] == "" else str(row[k])) for k in keys
        }
        rec["count"] = int(row["count"])
        rec["total_ns"] = int(row["total_ns"])
        rec["avg_ns"] = int(round(float(row["avg_ns"])))
        rec["median_ns"] = int(round(float(row["median_ns"])))
        rec["min_ns"] = int(row["min_ns"])
        rec["max_ns"] = int(row["max_ns"])
        rec["std_ns"] = int(round(float(row["std_ns"])))
        for c in extra_int:
            rec[c] = int(round(float(row[c])))
        for c in extra_float:
            rec[c] = round(float(row[c]), 3)
        out.append(rec)
    return out


def leads(finding: Finding) -> bool:
    """A kernel-level finding (:data:`KERNEL_LEVEL_PREFIXES`) with recoverable time: these
    lead the ranking of a GPU-bound trace."""
    return finding.impact_ns > 0 and finding.id.startswith(KERNEL_LEVEL_PREFIXES)


def rank(findings: Sequence[Finding], top: int | None = None, min_impact_ns: int = 0,
         gpu_bound: bool = False) -> list[Finding]:
    """Sort by ``impact_ns`` (desc), then severity, id and title; drop findings below
    ``min_impact_ns`` unless they are informational (impact 0 by design); keep ``top``.
    When ``gpu_bound``, kernel-level findings (:func:`leads`) come first, each group in that
    order."""
    kept = [f for f in findings if f.impact_ns >= min_impact_ns or f.impact_ns == 0]
    ranked = sorted(kept, key=lambda f: (gpu_bound and not leads(f), -f.impact_ns,
                                         SEVERITY_ORDER[f.severity], f.id, f.title))
    return ranked[:top] if top is not None else ranked


def build_report(trace: Trace, config: AnalysisConfig | None = None, *,
                 pyspy: AlignedPyspy | None = None, ncu: Sequence[KernelMetrics] = (),
                 top: int | None = None, min_impact_ns: int | None = None,
                 progress: Callable[[str], None] | None = None,
                 lanes: int | None = None) -> Report:
    """Summaries and every enabled analysis of ``trace`` (``config``: settings, default all
    defaults; ``pyspy``: aligned py-spy samples; ``ncu``: Nsight Compute reports to join);
    findings ranked by recoverable time. ``min_impact_ns`` defaults to the config's; ``top``
    keeps every finding unless given (renderers show ``config.top``); ``progress``: called
    with a status line per analysis; ``lanes``: analysis threads, 1 or 2 (default: as
    :func:`~infraprof.analyses.registry.run_analyses` decides; the same report either way)."""
    config = config or AnalysisConfig()
    ctx = AnalysisContext(trace, config.params, pyspy=pyspy, ncu=ncu)
    findings = run_analyses(ctx, config.disabled, progress, lanes)
    results = Results(ctx)
    start, end = ctx.span
    floor = config.min_impact_ns if min_impact_ns is None else min_impact_ns
    gpu_bound = bool((results.gpu_bound or {}).get("gpu_bound"))
    return Report(
        trace=trace,
        span_start_ns=start,
        span_end_ns=end,
        devices=results.devices,
        kernels=results.table("summary", "kernels"),
        api_calls=results.table("summary", "api_calls"),
        memcpy=results.table("summary", "memcpy"),
        nvtx=results.table("summary", "nvtx"),
        analysis=results,
        findings=rank(findings, top, floor, gpu_bound),
        config=config,
    )
