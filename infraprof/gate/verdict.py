"""Per-metric verdicts: a regression must be practically AND statistically significant.

For each metric the *estimate* of a side is the pooled quantile of its within-run samples
(``p50``/``p90``/``p99`` metrics whose samples every run carries), otherwise the median of its
run-level values (one value per run). ``delta = cand − base``; the practical threshold is
``thr = max(max_regression · |base|, abs_threshold)`` (see
:class:`~infraprof.gate.policy.MetricPolicy`).

Statistical evidence, at level ``alpha`` (default 0.01), needs every applicable test:

* the bootstrap ``1 − alpha`` confidence interval of ``quantile(cand) / quantile(base)``
  (hierarchical over runs when a side has several, see :mod:`infraprof.gate.stats`) excludes 1;
* for medians of within-run samples, the two-sided Mann-Whitney U p-value on the pooled
  samples is below ``alpha``;
* with ≥ 2 runs per side, the two-sided Welch t-test on the log of the run-level values (each
  run's statistic) is below ``alpha`` — so run-to-run variation is never mistaken for a change
  just because each run has many samples.

``p_value`` reports the largest of the applied tests' p-values. The rule, per metric:

* **regression** / **improvement** — ``|delta| > thr`` and the evidence holds, in the worse /
  better direction for the metric (``direction`` lower|higher is better);
* **unchanged** — ``|delta| ≤ thr`` and the whole interval lies within ``±thr``;
* **inconclusive** — too few samples (``min_samples`` pooled per side, at least ``5/(1 − q)``
  for a ``q`` quantile; ``min_runs`` for run-level metrics), or the interval is too wide to
  decide; the result carries an estimate of the samples per side that would decide it;
* **missing** — a metric present on one side only (or in only some runs of a side).

Counts and byte totals (``:calls``, ``:bytes``) whose runs agree exactly on each side are
deterministic: the threshold alone decides. The gate fails (exit 1) on a regression of a gated
(not report-only) metric, on ``missing`` when ``missing = "fail"`` (the default), and on
``inconclusive`` with ``strict``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infraprof.analyses.run_metrics import QUANTILE_STATS, RunMetrics
from infraprof.gate import stats
from infraprof.gate.policy import MetricPolicy, Policy
from infraprof.text_safety import printable
from infraprof.units import fmt_bytes, fmt_ns

SCHEMA = "infraprof.gate/1"
_RANKED_FAMILIES = {"kernel": "top_kernels", "nvtx": "top_ranges"}


class Verdict(str, enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"
    MISSING = "missing"


def metric_unit(name: str) -> str:
    """``ns``, ``bytes``, ``count``, ``ratio`` or ``""`` from the metric name."""
    if name.endswith("_ns") or name.endswith(":ns"):
        return "ns"
    if name.endswith("bytes"):
        return "bytes"
    if name.endswith(":calls"):
        return "count"
    if name.endswith("_share"):
        return "ratio"
    return ""


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ns":
        return fmt_ns(value)
    if unit == "bytes":
        return fmt_bytes(value)
    if unit == "ratio":
        return f"{100 * value:.1f} %"
    return f"{value:.6g}"


@dataclass(frozen=True)
class MetricResult:
    """One metric's comparison. ``change`` is relative (0.1 = +10 %), ``ci`` the bootstrap
    interval of the ratio (or of the difference when ``ci_is_ratio`` is False)."""

    metric: str
    unit: str
    verdict: Verdict
    policy: MetricPolicy
    failed: bool
    base: float | None = None
    cand: float | None = None
    delta: float | None = None
    change: float | None = None
    threshold: float | None = None
    ci: tuple[float, float] | None = None
    ci_is_ratio: bool = True
    p_value: float | None = None
    n_base: int = 0
    n_cand: int = 0
    runs_base: int = 0
    runs_cand: int = 0
    level: str = "samples"
    need: int | None = None
    reason: str = ""
    base_runs: tuple[float, ...] = ()
    cand_runs: tuple[float, ...] = ()
    alpha: float = 0.01

    @property
    def gated(self) -> bool:
        return not self.policy.report_only

    @property
    def warning(self) -> bool:
        return not self.failed and self.verdict in (
            Verdict.REGRESSION, Verdict.MISSING, Verdict.INCONCLUSIVE)

    def change_text(self) -> str:
        if self.change is None:
            return "-"
        if math.isinf(self.change):
            return "new" if self.change > 0 else "gone"
        return f"{100 * self.change:+.1f} %"

    def ci_text(self) -> str:
        if self.ci is None:
            return "-"
        lo, hi = self.ci
        if self.ci_is_ratio:
            return f"{100 * (lo - 1):+.1f} … {100 * (hi - 1):+.1f} %"
        return f"{fmt_value(lo, self.unit)} … {fmt_value(hi, self.unit)}"

    def describe(self) -> str:
        """One line with the numbers, e.g. for a JUnit failure or a GitHub annotation."""
        name = printable(self.metric)
        if self.verdict is Verdict.MISSING:
            return f"{name}: {self.reason}"
        conf = 100 * (1 - self.alpha)
        parts = [f"{name} {self.change_text()} ({fmt_value(self.base, self.unit)} -> "
                 f"{fmt_value(self.cand, self.unit)}"]
        if self.ci is not None:
            parts.append(f"; {conf:g}% CI {self.ci_text()}")
        if self.p_value is not None:
            parts.append(f"; p={self.p_value:.2g}")
        parts.append(f"; n={self.n_base}/{self.n_cand}")
        if self.runs_base > 1 or self.runs_cand > 1:
            parts.append(f"; runs={self.runs_base}/{self.runs_cand}")
        parts.append(f"): {self.verdict.value}")
        if self.reason:
            parts.append(f" — {self.reason}")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "unit": self.unit, "verdict": self.verdict.value,
            "failed": self.failed, "gated": self.gated, "direction": self.policy.direction,
            "base": self.base, "cand": self.cand, "delta": self.delta,
            "change": None if self.change is None or math.isinf(self.change) else self.change,
            "threshold": self.threshold,
            "max_regression": self.policy.max_regression,
            "abs_threshold": self.policy.abs_threshold,
            "ci": list(self.ci) if self.ci else None, "ci_is_ratio": self.ci_is_ratio,
            "p_value": self.p_value, "n_base": self.n_base, "n_cand": self.n_cand,
            "runs_base": self.runs_base, "runs_cand": self.runs_cand, "level": self.level,
            "need_samples": self.need, "reason": self.reason,
            "base_runs": list(self.base_runs), "cand_runs": list(self.cand_runs),
        }


@dataclass(frozen=True)
class GateResult:
    """All metric results of one comparison, plus what was compared under which policy."""

    results: list[MetricResult]
    policy: Policy
    base_sources: list[str]
    cand_sources: list[str]

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def count(self, verdict: Verdict) -> int:
        return sum(r.verdict is verdict for r in self.results)

    def headline(self) -> str:
        counts = ", ".join(f"{self.count(v)} {v.value}" for v in Verdict if self.count(v))
        status = "FAILED" if self.failed else "passed"
        return f"infraprof gate {status}: {len(self.results)} metrics ({counts or 'none'})"

    def to_dict(self) -> dict[str, Any]:
        p = self.policy
        return {
            "schema_version": SCHEMA,
            "passed": not self.failed,
            "exit_code": self.exit_code,
            "headline": self.headline(),
            "base": self.base_sources,
            "cand": self.cand_sources,
            "policy": {"source": p.source, "alpha": p.alpha, "min_samples": p.min_samples,
                       "min_runs": p.min_runs, "missing": p.missing, "strict": p.strict,
                       "max_regression": p.defaults.max_regression,
                       "abs_threshold": p.defaults.abs_threshold,
                       "bootstrap_resamples": p.bootstrap_resamples, "seed": p.seed},
            "counts": {v.value: self.count(v) for v in Verdict},
            "metrics": [r.to_dict() for r in self.results],
        }


def _split(metric: str) -> tuple[str, str, str]:
    family, _, rest = metric.partition(":")
    subject, _, stat = rest.rpartition(":")
    return family, subject, stat


def select_metrics(base: Sequence[RunMetrics], cand: Sequence[RunMetrics],
                   policy: Policy) -> list[str]:
    """Metric names on either side that the policy selects; kernels and NVTX ranges are
    limited to the ``top_kernels``/``top_ranges`` subjects (by median total) of either side."""
    names: set[str] = set()
    for run in (*base, *cand):
        names.update(run.values)
    allowed: dict[str, set[str]] = {}
    for family, attr in _RANKED_FAMILIES.items():
        top: set[str] = set()
        for side in (base, cand):
            totals: dict[str, list[float]] = {}
            for run in side:
                for name, value in run.values.items():
                    fam, subject, stat = _split(name)
                    if fam == family and stat == "total_ns":
                        totals.setdefault(subject, []).append(value)
            ranked = sorted(totals, key=lambda s: (-float(np.median(totals[s])), s))
            top.update(ranked[:int(getattr(policy, attr))])
        allowed[family] = top
    out = []
    for name in sorted(names):
        family, subject, _ = _split(name)
        if family in allowed and subject not in allowed[family]:
            continue
        if policy.selected(name):
            out.append(name)
    return out


def _side_data(runs: Sequence[RunMetrics], metric: str,
               q: float | None) -> tuple[list[stats.FloatArray], str] | None:
    """Per-run arrays for one side: within-run samples, or 1-element run-level values."""
    key = metric.rpartition(":")[0]
    if q is not None and runs and all(key in r.samples and r.samples[key] for r in runs):
        return [np.asarray(r.samples[key], dtype=np.float64) for r in runs], "samples"
    values = []
    for r in runs:
        if metric in r.values:
            values.append(r.values[metric])
        elif q is not None and r.samples.get(key):
            values.append(float(np.quantile(r.samples[key], q)))
        else:
            return None
    return [np.array([v], dtype=np.float64) for v in values], "runs"


@dataclass
class _Comparison:
    """What one metric's verdict is decided from: both sides' per-run arrays at one level
    (``samples`` or ``runs``), pooled, and the quantile ``qq`` the estimates take."""

    metric: str
    policy: Policy
    metric_policy: MetricPolicy
    level: str
    qq: float
    b_runs: list[stats.FloatArray]
    c_runs: list[stats.FloatArray]
    common: dict[str, Any]

    def result(self, verdict: Verdict, reason: str = "", **extra: Any) -> MetricResult:
        failed = self.metric_policy.report_only is False and (
            verdict is Verdict.REGRESSION
            or (verdict is Verdict.INCONCLUSIVE and self.policy.strict))
        return MetricResult(verdict=verdict, failed=failed, reason=reason, **self.common,
                            **extra)


def compare_metric(metric: str, base: Sequence[RunMetrics], cand: Sequence[RunMetrics],
                   policy: Policy) -> MetricResult:
    """The verdict of one metric (see the module docstring for the rule)."""
    mp = policy.for_metric(metric)
    q = QUANTILE_STATS.get(metric.rpartition(":")[2])
    common: dict[str, Any] = {"metric": metric, "unit": metric_unit(metric), "policy": mp,
                              "runs_base": len(base), "runs_cand": len(cand),
                              "alpha": policy.alpha}
    b_data, c_data = _side_data(base, metric, q), _side_data(cand, metric, q)
    if b_data is None or c_data is None:
        have_b = sum(metric in r.values for r in base)
        have_c = sum(metric in r.values for r in cand)
        reason = (f"present in {have_b}/{len(base)} baseline and {have_c}/{len(cand)} "
                  "candidate runs")
        return MetricResult(verdict=Verdict.MISSING, failed=mp.report_only is False
                            and policy.missing == "fail", reason=reason, **common)
    level = "samples" if b_data[1] == c_data[1] == "samples" else "runs"
    comparison = _Comparison(
        metric, policy, mp, level, q if (q is not None and level == "samples") else 0.5,
        _run_arrays(base, metric, q, b_data[0], level),
        _run_arrays(cand, metric, q, c_data[0], level), common)
    return _decide(comparison)


def _decide(cmp: _Comparison) -> MetricResult:
    """Estimates, practical threshold, deterministic shortcut and sample sufficiency."""
    mp, policy, qq, common = cmp.metric_policy, cmp.policy, cmp.qq, cmp.common
    b_all, c_all = stats.pooled(cmp.b_runs), stats.pooled(cmp.c_runs)
    est_b, est_c = float(np.quantile(b_all, qq)), float(np.quantile(c_all, qq))
    delta = est_c - est_b
    change = delta / abs(est_b) if est_b else (0.0 if delta == 0 else math.copysign(
        math.inf, delta))
    thr = mp.threshold(est_b)
    common.update(base=est_b, cand=est_c, delta=delta, change=change, threshold=thr,
                  n_base=int(b_all.size), n_cand=int(c_all.size), level=cmp.level,
                  base_runs=tuple(float(np.quantile(r, qq)) for r in cmp.b_runs),
                  cand_runs=tuple(float(np.quantile(r, qq)) for r in cmp.c_runs))
    worse = delta > 0 if mp.direction == "lower" else delta < 0
    moving = Verdict.REGRESSION if worse else Verdict.IMPROVEMENT
    practical = abs(delta) > thr
    exact = common["unit"] in ("count", "bytes") and all(
        np.all(x == x[0]) for x in (np.array(common["base_runs"]),
                                    np.array(common["cand_runs"])))
    if exact and cmp.level == "runs":
        return cmp.result(moving if practical else Verdict.UNCHANGED,
                          "deterministic (runs agree exactly); threshold only")
    need = policy.min_runs if cmp.level == "runs" else max(
        policy.min_samples, math.ceil(5 / (1 - qq)))
    n_min = min(b_all.size, c_all.size)
    if n_min < need:
        what = "runs" if cmp.level == "runs" else "samples"
        return cmp.result(Verdict.INCONCLUSIVE,
                          f"too few {what} ({b_all.size}/{c_all.size}); need ≥ {need} per side",
                          need=need)
    return _decide_statistically(cmp, b_all, c_all, moving, int(n_min))


def _decide_statistically(cmp: _Comparison, b_all: stats.FloatArray, c_all: stats.FloatArray,
                          moving: Verdict, n_min: int) -> MetricResult:
    """The tests, the bootstrap interval and the verdict they support."""
    policy, common = cmp.policy, cmp.common
    est_b, delta, thr = common["base"], common["delta"], common["threshold"]
    tests: list[float] = []
    if cmp.level == "samples" and cmp.qq == 0.5:
        tests.append(stats.mann_whitney_p(b_all, c_all))
    if len(cmp.b_runs) >= 2 and len(cmp.c_runs) >= 2:
        tests.append(stats.welch_log_p(np.array(common["base_runs"]),
                                       np.array(common["cand_runs"])))
    p = max(tests) if tests else None
    ci = stats.bootstrap_ratio_ci(cmp.b_runs, cmp.c_runs, cmp.qq, 1 - policy.alpha,
                                  policy.bootstrap_resamples, policy.seed)
    extra: dict[str, Any] = {"p_value": p}
    if ci is None:
        return cmp.result(Verdict.INCONCLUSIVE, "no data to bootstrap", **extra)
    extra.update(ci=(ci.low, ci.high), ci_is_ratio=ci.ratio)
    if ci.ratio and est_b != 0:
        lo, hi, margin_unit = ci.low - 1, ci.high - 1, abs(est_b)
    else:
        lo, hi, margin_unit = ci.low, ci.high, 1.0
    half = (hi - lo) / 2
    rel_thr = thr / margin_unit if margin_unit else math.inf
    rel_delta = abs(delta) / margin_unit if margin_unit else math.inf
    practical = abs(delta) > thr
    ci_moves = (lo > 0 and delta > 0) or (hi < 0 and delta < 0)
    if practical and ci_moves and (p is None or p < policy.alpha):
        return cmp.result(moving, **extra)
    if not practical and -rel_thr <= lo and hi <= rel_thr:
        return cmp.result(Verdict.UNCHANGED, **extra)
    need_n = stats.samples_needed(n_min, half, rel_delta if practical else rel_thr - rel_delta)
    what = "runs" if cmp.level == "runs" else "samples"
    if practical:
        reason = f"change not significant at alpha={policy.alpha:g}"
    else:
        reason = "interval too wide to rule out a change beyond the threshold"
    if need_n is not None:
        reason += f"; need ≈{need_n} {what} per side"
    return cmp.result(Verdict.INCONCLUSIVE, reason, need=need_n, **extra)


def _run_arrays(runs: Sequence[RunMetrics], metric: str, q: float | None,
                arrays: list[stats.FloatArray], level: str) -> list[stats.FloatArray]:
    if level == "samples" or all(a.size == 1 for a in arrays):
        return arrays
    key = metric.rpartition(":")[0]
    out = []
    for r in runs:
        v = r.values.get(metric)
        if v is None and q is not None:
            v = float(np.quantile(r.samples[key], q))
        out.append(np.array([v], dtype=np.float64))
    return out


def compare(base: Sequence[RunMetrics], cand: Sequence[RunMetrics], policy: Policy,
            metrics: Sequence[str] | None = None) -> GateResult:
    """Compare K baseline runs with K' candidate runs under ``policy``."""
    names = list(metrics) if metrics is not None else select_metrics(base, cand, policy)
    results = [compare_metric(m, base, cand, policy) for m in names]
    return GateResult(results=results, policy=policy,
                      base_sources=[r.source for r in base],
                      cand_sources=[r.source for r in cand])
