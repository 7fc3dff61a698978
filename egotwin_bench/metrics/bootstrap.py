"""Intervals of set-level metrics: percentile bootstrap, grouped jackknife, protocol replications.

Which one a metric gets (docs/metrics.md, "Intervals"):

* **Means of per-clip values** (CLIP-SIM, TransErr, RotErr) and ratio statistics (HandScore):
  the percentile bootstrap over clips (`bootstrap`, `bootstrap_mean`); differences of two
  measurements of the same clips (e.g. a condition probe clean vs noised) the paired bootstrap
  (`paired_difference`, `relative_difference`).
* **Fréchet distances of a set against a fixed reference** (I-FID, FVD, M-FID): *not* the bootstrap. A
  resample with replacement repeats clips, which shrinks the set's effective size and so biases
  every Fréchet distance upwards: the percentile interval then sits wholly above the point value
  (512-d, N = 100: 117 [142, 159]; a ground-truth set scored 0 [0.0025, 50.4]). `jackknife` gives
  the grouped (delete-a-group) jackknife standard error instead, and the interval
  value ± 1.96 se (clipped at 0), which brackets the estimate by construction. Its coverage of a
  known distance is measured in docs/metrics.md (the estimator's own finite-sample bias is not
  removed, so it under-covers when that bias is large against the spread).
* **The text-to-motion protocol metrics** (R-Precision, MM-Dist, Diversity): Guo et al.'s protocol,
  `replications` of the shuffled evaluation and mean ± 1.96·sd/√R (`replication_interval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Z95: float = 1.96
"""Normal quantile of the 95% intervals (the original text-to-motion code's 1.96)."""
JACKKNIFE_GROUPS: int = 20
"""Groups of the delete-a-group jackknife (each costs one evaluation of the statistic)."""
REPLICATIONS: int = 20
"""Replications of the text-to-motion protocol (`replication_times` of the original code)."""


@dataclass
class MetricValue:
    """A set-level metric with its 95% interval (NaN bounds when none; the module docstring says
    which method each metric uses)."""

    value: float
    low: float = float("nan")
    high: float = float("nan")


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    resamples: int = 1000,
    level: float = 0.95,
) -> MetricValue:
    """`statistic(idx)` on all clips (idx = arange(n)) with a percentile interval over resamples.

    `statistic` receives an index array into the n clips (with repeats in the resamples); NaN
    draws are ignored. With `resamples` = 0 the bounds are NaN. Not for Fréchet distances (above).
    """
    value = float(statistic(np.arange(n)))
    if resamples <= 0 or n < 2:
        return MetricValue(value)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=np.float64)
    if not np.isfinite(draws).any():
        return MetricValue(value)
    lo, hi = np.nanpercentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return MetricValue(value, float(lo), float(hi))


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> MetricValue:
    """Mean of per-clip values (N,) with its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    return bootstrap(lambda idx: v[idx].mean(), len(v), rng, resamples)


def paired_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> MetricValue:
    """Mean of the per-clip differences a - b (N,) of two measurements of the same clips, with the
    paired percentile bootstrap (clips resampled, each keeping its pair). Pairs with a NaN are
    dropped; raises when a and b differ in length."""
    d = _pairs(a, b)
    return bootstrap_mean(d[:, 0] - d[:, 1], rng, resamples)


def relative_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> MetricValue:
    """mean(a) / mean(b) - 1 over the same clips (e.g. -0.06: a is 6 % lower), with the paired
    percentile bootstrap; pairs with a NaN are dropped."""
    d = _pairs(a, b)
    return bootstrap(lambda idx: d[idx, 0].mean() / d[idx, 1].mean() - 1.0, len(d), rng, resamples)


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two (N,) arrays of the same clips, got {a.shape} and {b.shape}")
    d = np.stack([a, b], axis=1)
    return d[np.isfinite(d).all(axis=1)]


def jackknife(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    groups: int = JACKKNIFE_GROUPS,
    lower_bound: float | None = 0.0,
) -> MetricValue:
    """`statistic(arange(n))` with value ± 1.96 × its grouped-jackknife standard error.

    The n clips are dealt at random into g = min(groups, n) groups of near-equal size; θ_(k) is
    the statistic without group k, and se² = (g − 1)/g · Σ_k (θ_(k) − mean θ_(.))² (the
    delete-a-group jackknife; g = n is the ordinary delete-one jackknife). The interval is
    symmetric about the full-set value, so it always contains it; `lower_bound` clips it (a
    distance is >= 0). `groups` = 0 or n < 3 gives NaN bounds.
    """
    value = float(statistic(np.arange(n)))
    g = min(groups, n)
    if groups <= 0 or n < 3 or g < 2:
        return MetricValue(value)
    labels = rng.permutation(np.arange(n) % g)
    leave_out = np.array([statistic(np.flatnonzero(labels != k)) for k in range(g)], dtype=np.float64)
    se = float(np.sqrt((g - 1) / g * np.sum((leave_out - leave_out.mean()) ** 2)))
    lo, hi = value - Z95 * se, value + Z95 * se
    if lower_bound is not None:
        lo = max(lo, lower_bound)
    return MetricValue(value, lo, hi)


def replication_interval(values: np.ndarray) -> MetricValue:
    """Mean of R replications with the original's interval mean ± 1.96 · sd / √R (sd with ddof 0,
    as `np.std` in Guo et al.'s `get_metric_statistics`); NaN replications are left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return MetricValue(float("nan"))
    mean = float(v.mean())
    half = Z95 * float(v.std()) / np.sqrt(v.size)
    return MetricValue(mean, mean - half, mean + half)
