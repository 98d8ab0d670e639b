"""The :class:`Finding`: one ranked bottleneck with its evidence and recoverable time.

One severity rule for every finding (:func:`severity_for`): the share of the GPUs' active span
that the finding's ``impact_ns`` would recover — high ≥ 20 %, medium ≥ 5 %, low ≥ 1 %, else
info. Findings with no recoverable time by design (caveats, hints, copy rules whose idle time
is counted by the gap findings) are ``info``. Build findings with :func:`impact_finding` or
:func:`info_finding` so that the rule holds everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["high", "medium", "low", "info"]
SEVERITY_THRESHOLDS: tuple[tuple[Severity, float], ...] = (
    ("high", 0.20), ("medium", 0.05), ("low", 0.01))
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


@dataclass(frozen=True)
class Finding:
    """A bottleneck: ``impact_ns`` is the GPU time a fix would recover (estimated);
    ``share`` is ``impact_ns`` over the GPUs' active span; ``phase``: ``startup``, ``steady``
    or ``teardown`` for findings built from GPU idle gaps (see
    :mod:`~infraprof.analyses.phases`), else None."""

    id: str
    category: str
    title: str
    severity: Severity
    impact_ns: int
    share: float
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "title": self.title,
            "severity": self.severity,
            "impact_ns": int(self.impact_ns),
            "share": round(float(self.share), 6),
            "evidence": self.evidence,
            "recommendation": self.recommendation,
            "phase": self.phase,
        }


def severity_for(share: float) -> Severity:
    """The severity of recovering ``share`` of the GPUs' active span (module docstring)."""
    for severity, threshold in SEVERITY_THRESHOLDS:
        if share >= threshold:
            return severity
    return "info"


def impact_finding(id: str, category: str, title: str, impact_ns: int, active_span_ns: int,
                   evidence: dict[str, Any], recommendation: str) -> Finding:
    """A finding that recovers ``impact_ns``; share and severity follow from the active span
    (all devices' first-op-to-last-op spans, summed; 1 ns when there is none)."""
    share = impact_ns / (active_span_ns or 1)
    return Finding(id, category, title, severity_for(share), int(impact_ns), share, evidence,
                   recommendation)


def info_finding(id: str, category: str, title: str, evidence: dict[str, Any],
                 recommendation: str) -> Finding:
    """A finding with no recoverable time of its own (severity ``info``, impact 0)."""
    return Finding(id, category, title, "info", 0, 0.0, evidence, recommendation)
