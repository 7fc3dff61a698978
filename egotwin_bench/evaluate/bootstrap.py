"""Bootstrap 95% intervals over clips for set-level metrics."""

from __future__ import annotations

from typing import Callable

import numpy as np

from egotwin_bench.evaluate.protocol import MetricValue


def bootstrap_metric(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    rng: np.random.Generator,
    n_resamples: int = 1000,
    level: float = 0.95,
) -> MetricValue:
    """`statistic(indices)` on all items, with a percentile interval over resampled index sets.

    `statistic` receives an int array of item (clip) indices, drawn with replacement for the
    resamples; NaN resample values are dropped from the interval.
    """
    value = float(statistic(np.arange(n_items)))
    if n_items < 2 or n_resamples <= 0:
        return MetricValue(value)
    samples = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(n_resamples)], dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return MetricValue(value)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return MetricValue(value, float(low), float(high))


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n_resamples: int = 1000) -> MetricValue:
    """Mean of per-clip values (NaN values ignored) with its bootstrap 95% interval."""
    values = np.asarray(values, dtype=float)
    return bootstrap_metric(lambda idx: np.nanmean(values[idx]) if np.any(np.isfinite(values[idx])) else np.nan,
                            len(values), rng, n_resamples)
