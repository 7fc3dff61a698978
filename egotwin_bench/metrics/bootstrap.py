"""Percentile bootstrap intervals over clips for set-level metrics."""

from __future__ import annotations

from typing import Callable

import numpy as np

from egotwin_bench.evaluate.protocol import MetricValue


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    resamples: int = 1000,
    level: float = 0.95,
) -> MetricValue:
    """`statistic(idx)` on all clips (idx = arange(n)) with a percentile interval over resamples.

    `statistic` receives an index array into the n clips (with repeats in the resamples).
    With `resamples` = 0 the bounds are NaN.
    """
    value = float(statistic(np.arange(n)))
    if resamples <= 0 or n < 2:
        return MetricValue(value)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=np.float64)
    lo, hi = np.nanpercentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return MetricValue(value, float(lo), float(hi))


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> MetricValue:
    """Mean of per-clip values (N,) with its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    return bootstrap(lambda idx: v[idx].mean(), len(v), rng, resamples)
