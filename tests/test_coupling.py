"""Held-out condition probes of `egotwin_model.coupling`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from egotwin_model import diffusion
from egotwin_model.config import DiffusionConfig
from egotwin_model.coupling import PROBE_PAIRS, conditional_losses, gaussian_denoiser_mse


def test_gaussian_denoiser_error_matches_a_monte_carlo_of_the_posterior_mean() -> None:
    alphas = diffusion.alphas_cumprod(DiffusionConfig())
    gen = torch.Generator().manual_seed(0)
    mean, var = torch.tensor([[0.5, -1.0, 0.0]]).double(), torch.tensor([[0.3, 2.0, 1.0]]).double()
    n = 200_000
    for t_value in (0, 300, 700, 999):
        t = torch.full((n,), t_value)
        x0 = mean + var.sqrt() * torch.randn(n, 1, 3, generator=gen, dtype=torch.float64)
        x0 = torch.cat([x0, x0], dim=1)  # latent 0 is excluded from the loss: give it the same law
        eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        a, b = math.sqrt(float(alphas[t_value])), math.sqrt(1 - float(alphas[t_value]))
        xt, v = a * x0 + b * eps, a * eps - b * x0
        # the linear posterior mean, fitted on the samples themselves
        mu_x, mu_v = xt.mean(0), v.mean(0)
        cov = ((xt - mu_x) * (v - mu_v)).mean(0) / (xt - mu_x).pow(2).mean(0).clamp_min(1e-12)
        empirical = (v - (mu_v + cov * (xt - mu_x))).pow(2)[:, 1:].mean()
        mean2, var2 = torch.cat([mean, mean]), torch.cat([var, var])
        analytic = gaussian_denoiser_mse(x0, mean2, var2, alphas, t).mean()
        assert abs(float(analytic) - float(empirical)) < 0.01 * max(float(empirical), 0.05), t_value


def test_conditional_losses_report_every_probe_of_an_asynchronous_run(tiny_run) -> None:
    result = conditional_losses(tiny_run, split="test", batch_size=2)
    probes = ("motion|text", "motion|null_text", "video|text", "video|null_text", "gaussian_motion",
              "gaussian_video", "motion|video_clean", "motion|video_noised", "video|motion_clean",
              "video|motion_noised")
    assert result["clips"] == 3
    for name in probes:
        assert math.isfinite(result[name]) and result[name] > 0, name
    # the same draws: a second call gives the same numbers
    again = conditional_losses(tiny_run, split="test", batch_size=2)
    assert all(again[k] == result[k] for k in probes)


def test_conditional_losses_give_per_clip_values_and_paired_intervals(tiny_run) -> None:
    result = conditional_losses(tiny_run, split="test", batch_size=2, resamples=200)
    per_clip = result["per_clip"]
    assert len(per_clip["clip_ids"]) == 3 and len(set(per_clip["clip_ids"])) == 3
    for name, values in per_clip.items():
        if name != "clip_ids":
            assert len(values) == 3 and result[name] == np.mean(values), name
    assert set(result["differences"]) == {name for name, _, _ in PROBE_PAIRS}
    for name, a, b in PROBE_PAIRS:
        d = result["differences"][name]
        x, y = np.array(per_clip[a]), np.array(per_clip[b])
        assert d["clips"] == 3 and d["difference"] == pytest.approx(float(np.mean(x - y)))
        assert d["relative"] == pytest.approx(float(x.mean() / y.mean() - 1))
        assert d["difference_low"] <= d["difference"] <= d["difference_high"], name
        assert d["relative_low"] <= d["relative"] <= d["relative_high"], name


def test_more_draws_average_new_draws_of_noise_and_timesteps(tiny_run) -> None:
    one = conditional_losses(tiny_run, split="test", batch_size=2, resamples=0)
    two = conditional_losses(tiny_run, split="test", batch_size=2, resamples=0, draws=2)
    assert one["draws"] == 1 and two["draws"] == 2 and two["clips"] == 3
    for name in ("motion|video_clean", "video|motion_noised", "motion|text", "gaussian_video"):
        first, mean2 = np.array(one["per_clip"][name]), np.array(two["per_clip"][name])
        second = 2 * mean2 - first  # the second draw, implied: the first is the same for any `draws`
        assert np.all(np.isfinite(second)) and np.all(second > 0), name
        assert not np.allclose(second, first), f"{name}: the second draw repeated the first"
    with pytest.raises(ValueError, match="draws"):
        conditional_losses(tiny_run, split="test", draws=0)
