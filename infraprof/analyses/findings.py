"""The :class:`Finding`: one ranked bottleneck with its evidence and recoverable time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["high", "medium", "low", "info"]


@dataclass(frozen=True)
class Finding:
    """A bottleneck: ``impact_ns`` is the GPU time a fix would recover (estimated)."""

    id: str
    category: str
    title: str
    severity: Severity
    impact_ns: int
    share: float
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""

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
        }
