"""GitLab code-quality report (``artifacts:reports:codequality``): a JSON array of issues.

Each failing or warning metric becomes ``{description, check_name, fingerprint, severity,
location: {path, lines: {begin}}}``. ``fingerprint`` is the SHA-256 of the metric name,
stable across runs and unique per metric (GitLab shows only the first issue per
fingerprint). Severity: failed → ``major``, warnings → ``minor``. ``location.path`` is the
policy file (or ``pyproject.toml``), since performance metrics have no source line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any

from infraprof.gate.text import ordered
from infraprof.gate.verdict import GateResult


def render_gitlab(result: GateResult) -> str:
    """The JSON text (an empty array when nothing failed or warned)."""
    path = result.policy.source
    if path in ("defaults", "command line") or "+" in path:
        path = "pyproject.toml"
    else:
        with contextlib.suppress(ValueError):
            path = os.path.relpath(path)
    issues: list[dict[str, Any]] = []
    for r in ordered(result):
        if not (r.failed or r.warning):
            continue
        check = f"infraprof-gate-{r.verdict.value}"
        digest = hashlib.sha256(f"infraprof-gate\0{r.metric}".encode()).hexdigest()
        issues.append({
            "description": r.describe(),
            "check_name": check,
            "fingerprint": digest,
            "severity": "major" if r.failed else "minor",
            "location": {"path": path, "lines": {"begin": 1}},
        })
    return json.dumps(issues, indent=2, ensure_ascii=False) + "\n"
