"""Python frames behind GPU idle time (py-spy samples aligned to the nsys timeline).

For every gap with ``host-cpu`` or ``host-wait`` time, the launching thread's py-spy samples
inside the gap are summarised (:func:`~infraprof.analyses.host_frames.windows_stacks`); each
frame's share of the window is weighted by the gap's host-side idle time. Findings of those
categories then name the dominant frame ("host in ``collate()`` loader.py:87") and carry the
top frames with their idle time, share and sample count.

Gaps shorter than the py-spy alignment error are not attributed to samples (the sample could
belong to the neighbouring activity); they are counted in ``python_refused_gaps``. Without
timestamps (speedscope/raw/SVG from elsewhere) only the aggregate profile is reported, with the
note that time correlation was not possible.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import pandas as pd

from infraprof.analyses.attribution import GapAttribution
from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_findings import site_of
from infraprof.analyses.host_frames import range_name_breakdown, summarize_stacks, windows_stacks
from infraprof.model.clock import AlignedPyspy

HOST = ("host-cpu", "host-wait")


@dataclass(frozen=True)
class PythonSummary:
    """What the report shows about Python: alignment, notes, per-range and aggregate frames."""

    alignment_error_ns: int | None
    notes: tuple[str, ...]
    ranges: list[dict[str, Any]] = field(default_factory=list)
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    idle_windows: list[tuple[int, int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"alignment_error_ns": self.alignment_error_ns, "notes": list(self.notes),
                "ranges": self.ranges, "aggregate": self.aggregate}


def _label(frame: tuple[str, str, int]) -> str:
    fn, path, line = frame
    return f"{fn}() {PurePath(path).name}:{line}" if path else f"{fn}()"


def _aggregate(pyspy: AlignedPyspy, top: int = 10) -> list[dict[str, Any]]:
    agg = pyspy.profile.aggregate
    if agg.empty:
        return []
    counts: Counter[tuple[tuple[str, str, int], ...]] = Counter()
    for sid, n in agg.groupby("stack_id")["count"].sum().items():
        counts[tuple(pyspy.profile.stack(int(str(sid))))] += int(n)
    _, frames, _ = summarize_stacks(counts, top)
    return [{"frame": f.label, "share": round(f.share, 4), "samples": f.samples}
            for f in frames]


def _ranges(trace_nvtx: pd.DataFrame, pyspy: AlignedPyspy, err: int) -> list[dict[str, Any]]:
    assert pyspy.samples is not None
    out = []
    for name, w in range_name_breakdown(trace_nvtx, pyspy.samples, pyspy.frames, err,
                                        pyspy.period_ns).items():
        out.append({"name": name, "samples": w.samples, "refused": w.refused,
                    "frames": [{"frame": f.label, "share": round(f.share, 4),
                                "samples": f.samples} for f in w.frames[:5]]})
    return out


def python_frames(findings: list[Finding], attributions: list[GapAttribution],
                  pyspy: AlignedPyspy, nvtx: pd.DataFrame) -> tuple[list[Finding], PythonSummary]:
    """Findings with Python frames added to host-side gap findings, plus the summary."""
    if pyspy.samples is None or pyspy.alignment is None:
        return findings, PythonSummary(None, pyspy.notes, aggregate=_aggregate(pyspy))
    err = int(pyspy.alignment.error_ns)
    by_tid: dict[int, list[GapAttribution]] = defaultdict(list)
    for a in attributions:
        if a.global_tid is not None and any(c in a.parts for c in HOST):
            by_tid[a.global_tid & 0xFFFFFF].append(a)
    weights: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    samples: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    refused: Counter[tuple[str, str]] = Counter()
    windows: list[tuple[int, int, int]] = []
    for tid, atts in by_tid.items():
        results = windows_stacks(pyspy.samples, pyspy.frames, tid,
                                 [(a.start_ns, a.end_ns) for a in atts], err, pyspy.period_ns)
        for a, w in zip(atts, results, strict=True):
            windows.append((tid, a.start_ns, a.end_ns))
            for cat in HOST:
                ns = a.parts.get(cat, 0)
                if ns <= 0:
                    continue
                key = (cat, site_of(a, cat))
                if w.refused is not None:
                    refused[key] += 1
                    continue
                for fr in w.frames:
                    weights[key][fr.label] += round(ns * fr.share)
                    samples[key][fr.label] += fr.samples
    out = []
    for f in findings:
        key = (f.category, str(f.evidence.get("site")))
        if not f.id.startswith("gap.") or f.category not in HOST or (
                key not in weights and key not in refused):
            out.append(f)
            continue
        ev = dict(f.evidence)
        idle = max(1, int(ev.get("gpu_idle_ns", 1)))
        top = weights[key].most_common(5)
        ev["python_frames"] = [{"frame": label, "idle_ns": ns, "share_of_idle": round(ns / idle, 4),
                                "samples": samples[key][label]} for label, ns in top]
        ev["python_refused_gaps"] = refused[key]
        ev["alignment_error_ns"] = err
        title = f.title
        if top and top[0][1] / idle >= 0.25:
            active = f.impact_ns / f.share if f.share > 0 else 0
            pct = f" ({100 * idle / active:.0f} % of the GPU's active span)" if active else ""
            title = f"GPU idle {idle / 1e6:.1f} ms{pct}: host in `{top[0][0]}` — {f.title}"
        out.append(Finding(f.id, f.category, title, f.severity, f.impact_ns, f.share, ev,
                           f.recommendation))
    summary = PythonSummary(err, pyspy.notes, _ranges(nvtx, pyspy, err),
                            _aggregate(pyspy), windows)
    return out, summary
