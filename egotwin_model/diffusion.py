"""Noise schedule, asynchronous timesteps, training targets/losses and the sampling step.

Schedule: CogVideoX-5B's `CogVideoXDDIMScheduler` config (scaled-linear betas 0.00085..0.012 over
1000 steps, rescaled to zero terminal SNR, SNR shift 1.0, "trailing" inference timesteps). The
model predicts **v** (v = sqrt(a) eps - sqrt(1 - a) x0, a = alphas_cumprod[t]), not the eps of
the paper's eq. 2: the CogVideoX-5B weights the text/video branches start from were trained
with v-prediction, and with zero terminal SNR (a = 0 at t = T-1) eps-prediction cannot recover
x0 at the first sampling step. The loss is the plain MSE on v, which equals CogVideoX's own
fine-tuning loss (x0-MSE weighted by 1 / (1 - a)). Both modalities use the same schedule.

First-frame / first-pose conditioning. The video VAE is causal, so video latent frame 0 encodes
the first frame alone; the motion VAE is causal, so motion latent 0 encodes the first pose
alone. These two latents are the conditions of every task (the paper's O^0 and P^0): they are
kept clean — the noisy latents get latent 0 replaced by the encoded condition, in training and
at every sampling step — and excluded from the loss (`loss(..., mask_first_latent=True)`).
This holds whatever the modality's timestep, also for a "dropped" modality at t = T-1 in
classifier-free guidance, so the model never sees a noised latent 0.

Latent layouts: video (B, F, C, h, w), motion (B, L, C) — time is dim 1 for both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import CogVideoXDDIMScheduler

from egotwin_model.config import DiffusionConfig


def make_scheduler(config: DiffusionConfig):
    """A `diffusers.CogVideoXDDIMScheduler` with `config`'s (CogVideoX-5B's) settings."""
    return CogVideoXDDIMScheduler(**config.scheduler_kwargs())


def alphas_cumprod(config: DiffusionConfig) -> torch.Tensor:
    """(T,) float64 cumulative alphas of the schedule (a[T-1] = 0: zero terminal SNR)."""
    return make_scheduler(config).alphas_cumprod.to(torch.float64)


def sample_timesteps(
    batch: int,
    asynchronous: bool,
    num_train_timesteps: int = 1000,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_video, t_motion), each (B,) int64 uniform in [0, T). Synchronous -> the same tensor values."""
    t_video = torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=device)
    if not asynchronous:
        return t_video, t_video.clone()
    t_motion = torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=device)
    return t_video, t_motion


def _coefficients(alphas: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(a_t), sqrt(1 - a_t) shaped (B, 1, ...) to broadcast against `like`."""
    a = alphas.to(like.device)[t.to(like.device).long()]
    shape = (-1,) + (1,) * (like.dim() - 1)
    return a.sqrt().to(like.dtype).reshape(shape), (1 - a).sqrt().to(like.dtype).reshape(shape)


def add_noise(alphas: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise; t (B,) per sample."""
    sa, s1a = _coefficients(alphas, t, x0)
    return sa * x0 + s1a * noise


def training_targets(
    alphas: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str = "v_prediction"
) -> torch.Tensor:
    """What the network must output: v (default) or the noise ("epsilon")."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type != "v_prediction":
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    sa, s1a = _coefficients(alphas, t, x0)
    return sa * noise - s1a * x0


def predicted_x0(alphas: torch.Tensor, x_t: torch.Tensor, model_out: torch.Tensor, t: torch.Tensor,
                 prediction_type: str = "v_prediction") -> torch.Tensor:
    """The clean latents implied by a prediction at x_t."""
    sa, s1a = _coefficients(alphas, t, x_t)
    if prediction_type == "epsilon":
        return (x_t - s1a * model_out) / sa
    return sa * x_t - s1a * model_out


def keep_first_latent(noisy: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """`noisy` with latent 0 (dim 1) replaced by the clean condition's latent 0 (first frame/pose)."""
    return torch.cat([condition[:, :1].to(noisy.dtype), noisy[:, 1:]], dim=1)


def noisy_inputs(
    alphas: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t with clean latent 0, noise) for training."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return keep_first_latent(add_noise(alphas, x0, noise, t), x0), noise


def _scored(model_out: torch.Tensor, targets: torch.Tensor, mask_first_latent: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) in fp32 over the latents a loss scores: latent 0 (dim 1, the clean
    condition) dropped when masked; a shape mismatch is an error."""
    if model_out.shape != targets.shape:
        raise ValueError(f"prediction {tuple(model_out.shape)} and target {tuple(targets.shape)} differ")
    if mask_first_latent:
        model_out, targets = model_out[:, 1:], targets[:, 1:]
    return model_out.float(), targets.float()


def loss(model_out: torch.Tensor, targets: torch.Tensor, mask_first_latent: bool = True) -> torch.Tensor:
    """MSE over all elements; latent 0 (dim 1, the clean condition) excluded when masked."""
    return F.mse_loss(*_scored(model_out, targets, mask_first_latent))


def clip_losses(model_out: torch.Tensor, targets: torch.Tensor, mask_first_latent: bool = True) -> torch.Tensor:
    """Per-clip MSE (B,) over each clip's elements (latent 0 excluded when masked); its mean is `loss`."""
    pred, target = _scored(model_out, targets, mask_first_latent)
    return (pred - target).pow(2).flatten(1).mean(1)


def set_inference_steps(scheduler, steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Configure the scheduler for `steps` DDIM steps; returns the (steps,) timesteps, high to low."""
    if steps < 1 or steps > scheduler.config.num_train_timesteps:
        raise ValueError(f"--steps must lie in [1, {scheduler.config.num_train_timesteps}], got {steps}")
    scheduler.set_timesteps(steps, device=device)
    return scheduler.timesteps


def denoise_step(
    scheduler, model_out: torch.Tensor, t: int | torch.Tensor, sample: torch.Tensor,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """One deterministic DDIM step x_t -> x_{t_prev} (eta 0); latent 0 re-set to `condition`'s."""
    t = int(t)
    prev = scheduler.step(model_out, t, sample, return_dict=False)[0]
    return prev if condition is None else keep_first_latent(prev, condition)


def initial_latents(condition: torch.Tensor, shape: torch.Size | tuple[int, ...] | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Pure noise of `shape` (default `condition.shape`) with latent 0 = the condition's."""
    shape = tuple(condition.shape if shape is None else shape)
    noise = torch.randn(shape, generator=generator, device=condition.device, dtype=condition.dtype)
    return keep_first_latent(noise, condition)
