"""The gate's statistics: false-alarm rate under pure noise and power for a planted slowdown.

Each test measures a rate over many seeds and prints it (``pytest -s`` shows the numbers).
With ``max_regression = 0`` the practical threshold is off, so the measured false-alarm rate
is that of the statistical rule alone (bootstrap CI excludes 1 and Mann-Whitney p < alpha).
"""

from __future__ import annotations

import numpy as np
import pytest

from infraprof.gate import stats
from infraprof.gate.policy import MetricPolicy, Policy
from infraprof.gate.verdict import Verdict, compare_metric
from tests.gate_helpers import synthetic_runs

METRIC = "step:duration:p50_ns"
ALPHA = 0.05
FAST = {"bootstrap_resamples": 500}


def _rate(seeds: int, policy: Policy, verdict: Verdict = Verdict.REGRESSION,
          **kw: float) -> float:
    hits = 0
    slowdown = float(kw.pop("slowdown", 0.0))
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        base = synthetic_runs(rng, **kw)  # type: ignore[arg-type]
        cand = synthetic_runs(rng, slowdown=slowdown, **kw)  # type: ignore[arg-type]
        hits += compare_metric(METRIC, base, cand, policy).verdict is verdict
    return hits / seeds


def test_false_alarm_rate_iid_noise_within_alpha() -> None:
    policy = Policy(defaults=MetricPolicy(max_regression=0.0), alpha=ALPHA, **FAST)
    rate = _rate(200, policy)
    print(f"false-alarm rate, iid lognormal, K=5x50, threshold off: {rate:.3f}")
    assert rate <= ALPHA + 0.02


def test_false_alarm_rate_with_run_to_run_noise_within_alpha() -> None:
    """Runs differ by a 2 % lognormal offset each: the hierarchical bootstrap must absorb it
    (pooled Mann-Whitney alone would fire far more often)."""
    policy = Policy(defaults=MetricPolicy(max_regression=0.0), alpha=ALPHA, **FAST)
    rate = _rate(200, policy, between=0.02)
    print(f"false-alarm rate, 2 % run-to-run offsets, threshold off: {rate:.3f}")
    assert rate <= ALPHA + 0.03


def test_default_policy_never_flags_pure_noise() -> None:
    rate = _rate(100, Policy(**FAST), between=0.02)
    assert rate == 0.0


@pytest.mark.parametrize("cv", [0.03, 0.05])
def test_planted_10_percent_slowdown_detected_with_k5(cv: float) -> None:
    rate = _rate(40, Policy(**FAST), slowdown=0.10, cv=cv, between=0.01)
    print(f"power, +10 % slowdown, CV {cv:.0%}, K=5x50: {rate:.3f}")
    assert rate >= 0.95


def test_planted_1_percent_slowdown_not_a_regression() -> None:
    policy = Policy(**FAST)
    assert _rate(40, policy, slowdown=0.01) == 0.0
    assert _rate(40, policy, slowdown=0.01, between=0.01) == 0.0


def test_improvement_is_not_a_regression() -> None:
    rate = _rate(20, Policy(**FAST), verdict=Verdict.IMPROVEMENT, slowdown=-0.10)
    assert rate == 1.0


def test_few_samples_inconclusive_with_need_estimate() -> None:
    rng = np.random.default_rng(1)
    base = synthetic_runs(rng, k=1, n=5)
    cand = synthetic_runs(rng, k=1, n=5, slowdown=0.5)
    r = compare_metric(METRIC, base, cand, Policy())
    assert r.verdict is Verdict.INCONCLUSIVE and r.need == 20
    assert "too few samples" in r.reason


def test_noisy_change_inconclusive_says_how_many_samples() -> None:
    rng = np.random.default_rng(2)
    base = synthetic_runs(rng, k=1, n=30, cv=0.5)
    cand = synthetic_runs(rng, k=1, n=30, cv=0.5, slowdown=0.08)
    r = compare_metric(METRIC, base, cand, Policy(**FAST))
    assert r.verdict is Verdict.INCONCLUSIVE
    assert r.need is not None and r.need > 30
    assert "need ≈" in r.reason


def test_bootstrap_is_deterministic_and_brackets_truth() -> None:
    rng = np.random.default_rng(3)
    base = [rng.lognormal(0, 0.05, 200) for _ in range(3)]
    cand = [1.2 * rng.lognormal(0, 0.05, 200) for _ in range(3)]
    a = stats.bootstrap_ratio_ci(base, cand, 0.5, 0.99, 500, seed=0)
    b = stats.bootstrap_ratio_ci(base, cand, 0.5, 0.99, 500, seed=0)
    assert a == b and a is not None and a.ratio
    assert a.low < 1.2 < a.high


def test_unequal_run_lengths_and_zero_base() -> None:
    rng = np.random.default_rng(4)
    base = [rng.normal(10, 1, 30), rng.normal(10, 1, 50)]
    cand = [rng.normal(10, 1, 40), rng.normal(10, 1, 20)]
    ci = stats.bootstrap_ratio_ci(base, cand, 0.5, 0.95, 300)
    assert ci is not None and ci.low < 1 < ci.high
    zero = stats.bootstrap_ratio_ci([np.zeros(10)], [np.ones(10)], 0.5, 0.95, 200)
    assert zero is not None and not zero.ratio and zero.low == 1.0
    assert stats.mann_whitney_p(np.ones(5), np.ones(5)) == 1.0
