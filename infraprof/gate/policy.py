"""Gate policy: which metrics, what change matters, how sure we must be.

Read from ``[tool.infraprof.gate]`` in ``pyproject.toml`` or ``[gate]`` (or
``[tool.infraprof.gate]``) in ``infraprof.toml``, found by walking up from the working
directory (``infraprof.toml`` wins in the same folder), or from ``--config FILE``; CLI flags
override the file. Keys may use ``-`` or ``_``. Defaults::

    [tool.infraprof.gate]
    metrics = ["*"]                     # fnmatch patterns of metrics to compare
    exclude = ["nvtx:*:total_ns"]
    report-only = ["kernel:*:p50_ns", "launch:latency:*"]   # shown, never fail the gate
    max-regression = "5%"               # practical threshold, relative ("5%" or 5)
    abs-threshold = 0                   # and absolute, in the metric's unit ("250us" ok)
    direction = "lower"                 # lower|higher is better
    alpha = 0.01                        # significance level (CI confidence = 1 - alpha)
    min-samples = 20                    # pooled within-run samples per side
    min-runs = 3                        # runs per side for run-level metrics
    missing = "fail"                    # a metric on one side only: fail|warn
    strict = false                      # inconclusive fails too
    top-kernels = 5                     # kernels (by total time) compared
    top-ranges = 10                     # NVTX ranges (by total time) compared
    step = "auto"                       # auto|none|nvtx:NAME|sync:API
    bootstrap-resamples = 2000
    seed = 0

    [tool.infraprof.gate.metric."nvtx:step <n>:p50_ns"]   # per-metric overrides (patterns ok)
    max-regression = "3%"

A change is *practically significant* when ``|cand − base| > max(max_regression · |base|,
abs_threshold)``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infraprof.config import load_config_file
from infraprof.errors import UsageError
from infraprof.units import parse_duration


@dataclass(frozen=True)
class MetricPolicy:
    """Thresholds of one metric: relative (fraction, 0.05 = 5 %), absolute (metric unit)."""

    max_regression: float = 0.05
    abs_threshold: float = 0.0
    direction: str = "lower"
    report_only: bool = False

    def threshold(self, base: float) -> float:
        """The smallest |change| (metric unit) that counts as practically significant."""
        return max(self.max_regression * abs(base), self.abs_threshold)


@dataclass(frozen=True)
class Policy:
    """Everything the verdict needs besides the data (see the module docstring)."""

    defaults: MetricPolicy = field(default_factory=MetricPolicy)
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ("nvtx:*:total_ns",)
    report_only: tuple[str, ...] = ("kernel:*:p50_ns", "launch:latency:*", "ncu:*:sm_sol_pct",
                                    "ncu:*:mem_sol_pct", "ncu:*:dram_bytes_per_s")
    alpha: float = 0.01
    min_samples: int = 20
    min_runs: int = 3
    missing: str = "fail"
    strict: bool = False
    top_kernels: int = 5
    top_ranges: int = 10
    step: str = "auto"
    bootstrap_resamples: int = 2000
    seed: int = 0
    source: str = "defaults"

    def selected(self, metric: str) -> bool:
        return (any(fnmatch.fnmatchcase(metric, p) for p in self.include)
                and not any(fnmatch.fnmatchcase(metric, p) for p in self.exclude))

    def for_metric(self, metric: str) -> MetricPolicy:
        mp = replace(self.defaults, report_only=any(
            fnmatch.fnmatchcase(metric, p) for p in self.report_only))
        for pattern, values in self.overrides:
            if metric == pattern or fnmatch.fnmatchcase(metric, pattern):
                mp = _apply_metric(mp, values, f"metric {pattern!r}")
        return mp


def parse_relative(value: Any, what: str) -> float:
    """``"5%"`` or ``5`` -> 0.05."""
    text = str(value).strip().rstrip("%").strip()
    try:
        pct = float(text)
    except ValueError:
        raise UsageError(f"{what}: {value!r} is not a percentage (e.g. \"5%\")") from None
    if not math.isfinite(pct):
        raise UsageError(f"{what}: must be a finite percentage (e.g. \"5%\"), got {value!r}")
    if pct < 0:
        raise UsageError(f"{what}: must be >= 0, got {value!r}")
    return pct / 100.0


def parse_absolute(value: Any, what: str) -> float:
    """A number in the metric's unit, or a duration such as ``"250us"`` (-> ns)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        duration = parse_duration(str(value))
        if duration is not None:
            out = duration
        else:
            try:
                out = float(str(value))
            except ValueError:
                raise UsageError(f"{what}: {value!r} is not a number or a duration "
                                 "(e.g. 250us)") from None
    if not math.isfinite(out):
        raise UsageError(f"{what}: must be a finite number or duration (e.g. 250us), got "
                         f"{value!r}")
    if out < 0:
        raise UsageError(f"{what}: must be >= 0, got {value!r}")
    return out


def check_step(value: Any, what: str) -> str:
    """A step source (``auto``, ``none``, ``nvtx:NAME``, ``sync:API``) or ``UsageError``."""
    text = str(value)
    if text in ("auto", "none") or (text.startswith(("nvtx:", "sync:")) and len(text) > 5):
        return text
    raise UsageError(f"{what}: {text!r} not understood; use auto, none, nvtx:NAME or sync:API")


def _norm(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def _apply_metric(mp: MetricPolicy, raw: Mapping[str, Any], where: str) -> MetricPolicy:
    values = _norm(raw)
    changes: dict[str, Any] = {}
    if "max_regression" in values:
        v = values["max_regression"]
        if isinstance(v, str) and parse_duration(v) is not None:
            changes["abs_threshold"] = parse_absolute(v, f"{where}: max-regression")
            changes["max_regression"] = 0.0
        else:
            changes["max_regression"] = parse_relative(v, f"{where}: max-regression")
    if "abs_threshold" in values:
        changes["abs_threshold"] = parse_absolute(values["abs_threshold"],
                                                  f"{where}: abs-threshold")
    if "direction" in values:
        d = str(values["direction"]).lower()
        if d not in ("lower", "higher"):
            raise UsageError(f"{where}: direction must be 'lower' or 'higher', got {d!r}")
        changes["direction"] = d
    if "report_only" in values:
        changes["report_only"] = bool(values["report_only"])
    return replace(mp, **changes)


def _patterns(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise UsageError(f"{what}: expected a list of patterns, got {value!r}")


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what}: expected an integer >= {minimum}, got {value!r}")
    return value


def policy_from_mapping(raw: Mapping[str, Any], source: str = "config",
                        base: Policy | None = None) -> Policy:
    """Apply a ``[tool.infraprof.gate]``-style mapping (or CLI overrides) to ``base``."""
    policy = base or Policy()
    values = _norm(raw)
    known = {"metrics", "include", "exclude", "report_only", "max_regression", "abs_threshold",
             "direction", "alpha", "min_samples", "min_runs", "missing", "strict",
             "top_kernels", "top_ranges", "step", "bootstrap_resamples", "seed", "metric"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{source}: unknown gate setting(s) {', '.join(unknown)}")
    changes: dict[str, Any] = {"source": source}
    per_metric = {k: v for k, v in values.items() if k != "report_only"}
    changes["defaults"] = _apply_metric(policy.defaults, per_metric, source)
    for key in ("metrics", "include"):
        if key in values:
            changes["include"] = _patterns(values[key], f"{source}: {key}")
    for key in ("exclude", "report_only"):
        if key in values:
            changes[key] = _patterns(values[key], f"{source}: {key}")
    if "alpha" in values:
        alpha = values["alpha"]
        if not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 0.5:
            raise UsageError(f"{source}: alpha must be in (0, 0.5), got {alpha!r}")
        changes["alpha"] = float(alpha)
    for key, minimum in (("min_samples", 1), ("min_runs", 1), ("top_kernels", 0),
                         ("top_ranges", 0), ("bootstrap_resamples", 100), ("seed", 0)):
        if key in values:
            changes[key] = _int(values[key], f"{source}: {key.replace('_', '-')}", minimum)
    if "missing" in values:
        missing = str(values["missing"]).lower()
        if missing not in ("fail", "warn"):
            raise UsageError(f"{source}: missing must be 'fail' or 'warn', got {missing!r}")
        changes["missing"] = missing
    if "strict" in values:
        changes["strict"] = bool(values["strict"])
    if "step" in values:
        changes["step"] = check_step(values["step"], f"{source}: step")
    if "metric" in values:
        per = values["metric"]
        if not isinstance(per, Mapping):
            raise UsageError(f"{source}: [metric] must be a table of metric tables")
        extra = tuple((str(k), dict(v)) for k, v in per.items() if isinstance(v, Mapping))
        for name, table in extra:
            _apply_metric(MetricPolicy(), table, f"{source}: metric {name!r}")  # validate
        changes["overrides"] = policy.overrides + extra
    return replace(policy, **changes)


def load_policy(config: Path | None = None, start: Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> Policy:
    """Defaults, then the config file (``config`` or the nearest one), then ``overrides``."""
    policy = Policy()
    found = load_config_file(config, start)
    if found.gate is not None:
        policy = policy_from_mapping(found.gate, found.source, policy)
    if overrides:
        where = "command line" if policy.source == "defaults" else f"{policy.source} + flags"
        policy = policy_from_mapping(overrides, where, policy)
    return policy
