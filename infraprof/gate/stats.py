"""Statistics for the gate: Mann-Whitney U and a (hierarchical) bootstrap of a quantile ratio.

Inputs are *runs*: a list of 1-D arrays, one per run, each holding that run's within-run
samples (e.g. per-step latencies in ns). A run-level metric (one number per run) is a list of
1-element arrays, so the same code covers both levels.

* :func:`mann_whitney_p` — two-sided Mann-Whitney U p-value on the pooled samples (scipy,
  exact for small untied samples, normal approximation otherwise). Returns 1.0 when no test
  is possible (an empty side, or every value identical).
* :func:`welch_log_p` — two-sided Welch t-test on the log of run-level values (one per run,
  e.g. each run's median step time): the across-runs test, valid with few runs because it
  uses the t distribution rather than resampling 3–5 values.
* :func:`bootstrap_ratio_ci` — percentile bootstrap confidence interval of
  ``quantile(cand) / quantile(base)``. With one run per side it resamples the samples; with
  K ≥ 2 runs it is *hierarchical*: it resamples runs with replacement, then samples within
  each chosen run, so run-to-run variation (clocks, placement, another tenant) widens the
  interval instead of being mistaken for a change. A single run with more than 2000 samples
  draws the resampled order statistic from its exact binomial law instead of resampling
  (same distribution, O(n) instead of O(n · resamples)). The seed is fixed (default 0), so the same
  inputs always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
_CHUNK_ELEMENTS = 2_000_000
_EXACT_ABOVE = 2_000


def pooled(runs: Sequence[FloatArray]) -> FloatArray:
    """All samples of all runs, concatenated."""
    if not runs:
        return np.empty(0, dtype=np.float64)
    return np.concatenate([np.asarray(r, dtype=np.float64) for r in runs])


def mann_whitney_p(base: FloatArray, cand: FloatArray) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 when a side is empty or all values tie)."""
    if base.size == 0 or cand.size == 0:
        return 1.0
    if np.all(base == base[0]) and np.all(cand == base[0]):
        return 1.0
    result = sps.mannwhitneyu(cand, base, alternative="two-sided")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def welch_log_p(base: FloatArray, cand: FloatArray) -> float:
    """Two-sided Welch t-test p-value on run-level values (on their logarithms when all are
    positive, so the test is about the ratio). Needs ≥ 2 values per side, else 1.0. With zero
    variance on both sides it is 0.0 when the means differ, else 1.0."""
    if base.size < 2 or cand.size < 2:
        return 1.0
    if np.all(base > 0) and np.all(cand > 0):
        base, cand = np.log(base), np.log(cand)
    if np.ptp(base) == 0 and np.ptp(cand) == 0:
        return 0.0 if base[0] != cand[0] else 1.0
    p = float(sps.ttest_ind(cand, base, equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


def _side_stats(runs: Sequence[FloatArray], q: float, n_resamples: int,
                rng: np.random.Generator) -> FloatArray:
    """``n_resamples`` bootstrap replicates of the pooled ``q``-quantile of one side."""
    arrays = [np.asarray(r, dtype=np.float64) for r in runs]
    k = len(arrays)
    out = np.empty(n_resamples, dtype=np.float64)
    if k == 1 and arrays[0].size > _EXACT_ABOVE:
        # Exact shortcut: the resample's j-th order statistic is <= x_(i) iff at least j of
        # the n draws fall at or below x_(i), i.e. Binomial(n, i/n) >= j. Sample that CDF.
        x = np.sort(arrays[0])
        n = x.size
        j = max(1, math.ceil(q * n))
        cdf = sps.binom.sf(j - 1, n, np.arange(1, n + 1) / n)
        idx = np.searchsorted(cdf, rng.random(n_resamples), side="left")
        out[:] = x[np.minimum(idx, n - 1)]
        return out
    if k == 1:
        x = arrays[0]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, x.size))
        for lo in range(0, n_resamples, chunk):
            b = min(chunk, n_resamples - lo)
            idx = rng.integers(0, x.size, size=(b, x.size))
            out[lo:lo + b] = np.quantile(x[idx], q, axis=1)
        return out
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    n_max = int(sizes.max())
    table = np.full((k, n_max), np.nan)
    for i, a in enumerate(arrays):
        table[i, :a.size] = a
    equal = bool(np.all(sizes == n_max))
    chunk = max(1, _CHUNK_ELEMENTS // (k * n_max))
    for lo in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - lo)
        chosen = rng.integers(0, k, size=(b, k))
        n_chosen = sizes[chosen][..., None]
        idx = np.floor(rng.random((b, k, n_max)) * n_chosen).astype(np.int64)
        values = table[chosen[..., None], idx]
        if equal:
            out[lo:lo + b] = np.quantile(values.reshape(b, -1), q, axis=1)
        else:
            mask = np.arange(n_max)[None, None, :] < n_chosen
            values = np.where(mask, values, np.nan)
            out[lo:lo + b] = np.nanquantile(values.reshape(b, -1), q, axis=1)
    return out


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of ``cand/base`` (``ratio``) or, when a base replicate is 0,
    of ``cand − base`` (``ratio`` is False)."""

    low: float
    high: float
    ratio: bool


def bootstrap_ratio_ci(base: Sequence[FloatArray], cand: Sequence[FloatArray], q: float = 0.5,
                       confidence: float = 0.99, n_resamples: int = 2000,
                       seed: int = 0) -> Interval | None:
    """Percentile bootstrap CI (two-sided, ``confidence``) of the ratio of ``q``-quantiles,
    cand over base; hierarchical when a side has several runs. None if a side is empty."""
    if not base or not cand or any(np.asarray(r).size == 0 for r in (*base, *cand)):
        return None
    rng = np.random.default_rng(seed)
    b = _side_stats(base, q, n_resamples, rng)
    c = _side_stats(cand, q, n_resamples, rng)
    tail = 100 * (1 - confidence) / 2
    if np.all(b > 0):
        r = c / b
        lo, hi = np.percentile(r, [tail, 100 - tail])
        return Interval(float(lo), float(hi), True)
    d = c - b
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return Interval(float(lo), float(hi), False)


def samples_needed(n: int, half_width: float, margin: float) -> int | None:
    """Samples per side for a CI half-width of ``margin`` when ``n`` samples gave
    ``half_width`` (the width shrinks as 1/sqrt(n)); 10 % headroom. None if hopeless."""
    if n <= 0 or margin <= 0 or not math.isfinite(half_width):
        return None
    return max(n + 1, math.ceil(1.1 * n * (half_width / margin) ** 2))
