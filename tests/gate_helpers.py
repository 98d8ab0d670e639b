"""Synthetic runs for the gate tests (lognormal per-step latencies)."""

from __future__ import annotations

import numpy as np

from infraprof.gate.metrics import RunMetrics


def synthetic_runs(rng: np.random.Generator, k: int = 5, n: int = 50,
                   median_ns: float = 1e6, cv: float = 0.04, between: float = 0.0,
                   slowdown: float = 0.0, prefix: str = "run") -> list[RunMetrics]:
    """K runs of n per-step latencies: lognormal within-run noise (sigma ≈ CV) and an optional
    lognormal run-level offset (``between``); ``slowdown`` scales every step."""
    out = []
    for i in range(k):
        offset = float(np.exp(rng.normal(0.0, between))) if between else 1.0
        x = median_ns * (1 + slowdown) * offset * np.exp(rng.normal(0.0, cv, n))
        out.append(RunMetrics(
            source=f"{prefix}{i}",
            samples={"step:duration": [float(v) for v in x]},
            values={"step:duration:p50_ns": float(np.median(x)), "launch:calls": 100.0},
        ))
    return out
