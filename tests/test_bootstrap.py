"""Paired bootstrap intervals of `egotwin_bench.metrics.bootstrap` (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from egotwin_bench.metrics.bootstrap import Z95, bootstrap_mean, paired_difference, relative_difference


def test_a_constant_shift_has_a_zero_width_interval() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(1.0, 0.5, 50)
    d = paired_difference(b - 0.25, b, rng, 500)
    assert (d.value, d.low, d.high) == pytest.approx((-0.25, -0.25, -0.25), abs=1e-12)
    r = relative_difference(2 * np.abs(b), np.abs(b), rng, 500)
    assert (r.value, r.low, r.high) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)


def test_the_interval_matches_the_normal_theory_one_for_many_clips() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1.0, 400), np.zeros(400)
    d = paired_difference(a, b, np.random.default_rng(2), 4000)
    half = Z95 * a.std(ddof=1) / np.sqrt(len(a))
    assert d.value == pytest.approx(a.mean())
    assert d.low == pytest.approx(a.mean() - half, abs=0.15 * half)
    assert d.high == pytest.approx(a.mean() + half, abs=0.15 * half)


def test_pairing_resolves_a_difference_the_two_sets_alone_do_not() -> None:
    rng = np.random.default_rng(3)
    b = rng.uniform(0.5, 1.5, 60)  # clips differ a lot from one another
    a = b * 0.95 + rng.normal(0, 0.005, 60)  # but every clip is ~5 % lower with the condition
    sa, sb = bootstrap_mean(a, rng, 1000), bootstrap_mean(b, rng, 1000)
    assert sa.high > sb.low  # the unpaired intervals overlap
    d, r = paired_difference(a, b, rng, 1000), relative_difference(a, b, rng, 1000)
    assert d.high < 0 and r.high < 0
    assert r.low == pytest.approx(-0.05, abs=0.01) and r.high == pytest.approx(-0.05, abs=0.01)


def test_pairs_with_a_nan_are_dropped_and_shapes_must_agree() -> None:
    a, b = np.array([1.0, 2.0, np.nan, 4.0]), np.array([0.5, 1.0, 3.0, 2.0])
    d = paired_difference(a, b, np.random.default_rng(0), 0)
    assert d.value == pytest.approx(np.mean([0.5, 1.0, 2.0]))
    assert np.isnan(d.low) and np.isnan(d.high)
    with pytest.raises(ValueError, match="same clips"):
        paired_difference(a, b[:3], np.random.default_rng(0))
