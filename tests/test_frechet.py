"""Fréchet distance: closed forms, identity, monotonicity, degenerate covariances, the
precomputed-reference form used for bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from egotwin_bench.metrics.frechet import (
    FrechetReference,
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    trace_sqrt_product,
    trace_sqrt_product_low_rank,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_closed_form(rng):
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(GaussianStats(mu1, np.diag(v1), 10), GaussianStats(mu2, np.diag(v2), 10))
    assert got == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_symmetric_form(rng):
    d = 24
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    r1 = scipy.linalg.sqrtm(s1).real
    expected_trace = np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1).real)
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected_trace, rel=1e-8)
    mu = rng.standard_normal(d)
    got = frechet_distance(GaussianStats(mu, s1, 5), GaussianStats(mu + 1.0, s2, 5))
    assert got == pytest.approx(d + np.trace(s1) + np.trace(s2) - 2 * expected_trace, rel=1e-8)


def test_identical_sets_give_zero(rng):
    x = rng.standard_normal((500, 32))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_monotone_in_shift(rng):
    x = rng.standard_normal((400, 16))
    y = rng.standard_normal((400, 16))
    scores = [frechet_distance(x, y + s) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    # noise of growing scale also grows the distance
    noisy = [frechet_distance(x, x + s * rng.standard_normal(x.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy


def test_singular_covariances_fall_back_and_stay_finite(rng):
    # fewer samples than dimensions: rank-deficient covariances (the 2048-d FID case on small sets)
    x = rng.standard_normal((20, 64))
    y = rng.standard_normal((20, 64)) + 0.5
    d = frechet_distance(x, y)
    assert np.isfinite(d) and d > 0
    # the (n, n) low-rank form used for small sets equals the full (D, D) computation
    full = frechet_distance(gaussian_stats(x), gaussian_stats(y))
    assert d == pytest.approx(full, rel=1e-6)
    assert frechet_distance(gaussian_stats(x), y) == pytest.approx(full, rel=1e-6)
    assert trace_sqrt_product_low_rank(x, gaussian_stats(y).sigma) == pytest.approx(
        trace_sqrt_product(gaussian_stats(x).sigma, gaussian_stats(y).sigma), rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    zero = GaussianStats(np.zeros(8), np.zeros((8, 8)), 2)
    assert frechet_distance(zero, zero) == pytest.approx(0.0, abs=1e-12)
    eye = GaussianStats(np.zeros(8), np.eye(8), 2)
    assert frechet_distance(zero, eye) == pytest.approx(8.0, rel=1e-6)


def test_stats_round_trip_and_input_errors(tmp_path, rng):
    stats = gaussian_stats(rng.standard_normal((50, 4)))
    stats.save(tmp_path / "s.npz")
    back = GaussianStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert back.n == 50 and back.mu.dtype == np.float64
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(rng.standard_normal((5, 3)), rng.standard_normal((5, 4)))


@pytest.mark.parametrize("n", [5, 40, 300])
def test_reference_form_matches_frechet_distance(rng, n):
    """Fewer vectors than dimensions (rank-deficient set), about as many, and many more."""
    d = 40
    reference = rng.standard_normal((500, d)) @ rng.standard_normal((d, d)) * 0.3 + 1.0
    ref = FrechetReference.fit(reference)
    x = rng.standard_normal((n, d)) * 1.5
    assert ref.distance(x) == pytest.approx(frechet_distance(x, gaussian_stats(reference)), rel=1e-8)
    assert ref.distance(reference) == pytest.approx(0.0, abs=1e-8)
    assert FrechetReference.fit(gaussian_stats(reference)).distance(x) == pytest.approx(ref.distance(x), rel=1e-12)
    with pytest.raises(ValueError, match=r"\(n, 40\)"):
        ref.distance(x[:, :3])
    with pytest.raises(ValueError, match="at least 2"):
        ref.distance(x[:1])


def test_jackknife_brackets_where_the_bootstrap_does_not(rng):
    """Resamples with repeated clips bias a Fréchet distance up: the percentile bootstrap interval
    of a set of 100 clips sits wholly above its value (the issue's 117 [142, 159]); the grouped
    jackknife interval is symmetric about the value (clipped at 0) and brackets it."""
    from egotwin_bench.metrics.bootstrap import bootstrap, jackknife

    ref = FrechetReference.fit(rng.standard_normal((2000, 64)))
    gen = rng.standard_normal((100, 64)) * 1.2 + 0.3
    stat = lambda idx: ref.distance(gen[idx])  # noqa: E731
    boot = bootstrap(stat, len(gen), rng, 100)
    jack = jackknife(stat, len(gen), rng)
    assert boot.low > boot.value  # the bias the jackknife avoids
    assert 0 < jack.low < jack.value < jack.high and jack.value == boot.value
    assert jack.high - jack.value == pytest.approx(jack.value - jack.low)
    assert np.isnan(jackknife(stat, 2, rng).low)  # too few clips: no interval
    near_zero = jackknife(lambda idx: FrechetReference.fit(gen).distance(gen[idx]), 100, rng)
    assert near_zero.value < 1e-9 and near_zero.low == 0.0 < near_zero.high  # clipped at 0


def test_jackknife_interval_coverage_of_a_known_distance():
    """Coverage of the true d² (same covariance, shifted mean: d² = |shift|²) by the jackknife
    interval of n = 100 vectors against the true reference Gaussian: measured over 200 draws
    (docs/metrics.md gives the larger run of benchmarks/metric_parity.py)."""
    from egotwin_bench.metrics.bootstrap import jackknife
    from egotwin_bench.metrics.frechet import GaussianStats

    rng = np.random.default_rng(5)
    d = 8
    ref = FrechetReference.fit(GaussianStats(np.zeros(d), np.eye(d), 10**9))
    shift = np.full(d, 0.5)
    hits = 0
    for _ in range(200):
        gen = rng.standard_normal((100, d)) + shift
        value = jackknife(lambda idx: ref.distance(gen[idx]), 100, rng)
        hits += value.low <= shift @ shift <= value.high
    print("jackknife coverage", hits / 200)
    assert 0.75 <= hits / 200 <= 1.0  # 0.85 here: the estimator's upward bias is not removed


def test_replication_interval_is_the_originals():
    """mean ± 1.96 · np.std / sqrt(R), as `get_metric_statistics` of text-to-motion."""
    from egotwin_bench.metrics.bootstrap import replication_interval

    v = np.array([0.5, 0.55, 0.6, 0.52, np.nan])
    out = replication_interval(v)
    finite = v[:4]
    assert out.value == pytest.approx(finite.mean())
    assert out.high - out.value == pytest.approx(1.96 * finite.std() / np.sqrt(4))
    assert np.isnan(replication_interval(np.array([np.nan])).value)
