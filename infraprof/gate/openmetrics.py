"""OpenMetrics text (Prometheus Pushgateway, GitLab ``artifacts:reports:metrics``).

One gauge family per metric statistic, in base units (seconds for ``*_ns`` metrics, bytes,
counts, fractions), labelled ``metric="<infraprof metric name>"`` and ``side="base|cand"``,
plus ``infraprof_gate_change_ratio`` (cand/base − 1), ``infraprof_gate_failed`` (0/1) per
metric and ``infraprof_gate_passed``. Ends with ``# EOF``.
"""

from __future__ import annotations

import math

from infraprof.gate.verdict import GateResult
from infraprof.text_safety import printable

_FAMILIES = {"ns": ("infraprof_gate_value_seconds", 1e-9, "seconds"),
             "bytes": ("infraprof_gate_value_bytes", 1.0, "bytes"),
             "count": ("infraprof_gate_value_count", 1.0, ""),
             "ratio": ("infraprof_gate_value_ratio", 1.0, "ratio"),
             "": ("infraprof_gate_value", 1.0, "")}


def label_value(text: str) -> str:
    """Escape a label value: backslash, double quote and newline (the only escapes OpenMetrics
    defines); other control characters, which have no escape, are shown escaped first
    (:func:`~infraprof.text_safety.printable`: CR -> ``\\r``, ESC -> ``\\x1b``)."""
    text = printable(text, keep="\n")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_openmetrics(result: GateResult) -> str:
    """The exposition text, families grouped, ``# EOF`` terminated."""
    families: dict[str, list[str]] = {}
    units: dict[str, str] = {}
    for r in result.results:
        name, scale, unit = _FAMILIES.get(r.unit, _FAMILIES[""])
        units[name] = unit
        lbl = label_value(r.metric)
        for side, value in (("base", r.base), ("cand", r.cand)):
            if value is not None:
                families.setdefault(name, []).append(
                    f'{name}{{metric="{lbl}",side="{side}"}} {_num(value * scale)}')
        if r.change is not None and not math.isinf(r.change):
            families.setdefault("infraprof_gate_change_ratio", []).append(
                f'infraprof_gate_change_ratio{{metric="{lbl}"}} {_num(r.change)}')
        families.setdefault("infraprof_gate_failed", []).append(
            f'infraprof_gate_failed{{metric="{lbl}",verdict="{r.verdict.value}"}} '
            f'{int(r.failed)}')
    lines: list[str] = []
    for name, samples in families.items():
        lines.append(f"# TYPE {name} gauge")
        if units.get(name):
            lines.append(f"# UNIT {name} {units[name]}")
        lines.extend(samples)
    lines += ["# TYPE infraprof_gate_passed gauge",
              f"infraprof_gate_passed {int(not result.failed)}", "# EOF"]
    return "\n".join(lines) + "\n"
