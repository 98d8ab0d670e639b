"""infraprof: why is my GPU program slow, with evidence, and did it get slower?

Library use (``docs/python-api.md``)::

    import infraprof
    report = infraprof.analyze("run.sqlite")      # what `infraprof analyze` runs
    report.findings, report.kernels, report.to_dict()
    job = infraprof.analyze_many(["rank0.sqlite", "rank1.sqlite"])  # `analyze A B …`
    result = infraprof.compare("base-runs", "pr-runs")   # what `infraprof compare` runs

The heavy modules (pandas, numpy, plotly) load on first use, not on ``import infraprof``.
"""

from __future__ import annotations

import importlib
from typing import Any

from infraprof._version import __version__

__all__ = ["__version__", "analysis_config", "analyze", "analyze_many", "compare"]


def __getattr__(name: str) -> Any:
    if name in ("analyze", "analyze_many", "compare", "analysis_config"):
        return getattr(importlib.import_module("infraprof.api"), name)
    raise AttributeError(f"module 'infraprof' has no attribute {name!r}")
