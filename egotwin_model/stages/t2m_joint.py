"""Stages ``t2m`` (text + motion, text branch frozen) and ``joint`` (text + video + motion): the DiT
on cached latents with v-prediction, asynchronous timesteps and 10% null text (paper §3.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from egotwin_model import diffusion
from egotwin_model.cached_clips import CachedClips
from egotwin_model.checkpoint import load_weights, save_weights
from egotwin_model.config import EgoTwinConfig
from egotwin_model.dit import EgoTwinDiT, _is_motion
from egotwin_model.run import RunSettings, TrainConfig, dit_path
from egotwin_model.stages.motion_vae import load_motion_vae
from egotwin_model.stages.base import Stage, seeded

def motion_latents(vae: nn.Module, scale: float, motion: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Normalised features (B, 81, D) -> scaled motion latents (B, 21, C_m) for the DiT.

    Latents 1.. are a posterior sample (None generator: the mean); latent 0, the condition,
    is the posterior mean of the first pose encoded alone, exactly as at sampling time.
    """
    with torch.no_grad():
        post = vae.encode(motion)
        z = post.mean if generator is None else post.sample(generator)
        first = vae.encode(motion[:, :1]).mean
        return torch.cat([first, z[:, 1:]], dim=1) * scale


def video_condition(video_latents: torch.Tensor, first_frame_latent: torch.Tensor) -> torch.Tensor:
    """Clip latents (B, F', C, h, w) with latent 0 := the first frame encoded alone (the condition)."""
    return torch.cat([first_frame_latent, video_latents[:, 1:]], dim=1)


TIME_EMBEDDING_WEIGHT: str = "time_embedding.linear_1.weight"
"""The first Linear of the timestep MLP: its input is [sinusoid(t_video), sinusoid(t_motion)]."""


def freeze_text_branch(dit: nn.Module) -> tuple[tuple[str, ...], Callable[[nn.Module], None] | None]:
    """Stage t2m: freeze all but the motion branch (sets ``requires_grad``).

    The timestep MLP is shared; with asynchronous timesteps its first Linear sees
    [sinusoid(t_video), sinusoid(t_motion)], and the t_motion columns (zero when initialised
    from CogVideoX) are the only way the network learns the motion noise level, so those columns
    train and the t_video columns stay frozen: the returned `post_backward` zeroes their
    gradient and the weight gets no weight decay (returned name). Everything else the
    text/video branch owns stays frozen. Returns (no_decay names, post_backward).
    """
    for name, p in dit.named_parameters():
        p.requires_grad_(_is_motion(name))
    if not dit.config.asynchronous:
        return (), None
    dict(dit.named_parameters())[TIME_EMBEDDING_WEIGHT].requires_grad_(True)

    def zero_video_columns(model: nn.Module) -> None:
        grad = dict(model.named_parameters())[TIME_EMBEDDING_WEIGHT].grad
        if grad is None:
            return
        local = grad.to_local() if hasattr(grad, "to_local") else grad  # FSDP2 shards rows (dim 0)
        local[:, : local.shape[1] // 2] = 0

    return (TIME_EMBEDDING_WEIGHT,), zero_video_columns


def drop_text(text_emb: torch.Tensor, null_text: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free-guidance dropout: each row of `text_emb` (B, Lt, Dt) becomes `null_text`
    (Lt, Dt), the empty prompt's embedding, with probability `p` (paper §3.3: 0.1 in stages 2, 3)."""
    drop = torch.rand(text_emb.shape[0], generator=generator, device=generator.device).to(text_emb.device) < p
    return torch.where(drop[:, None, None], null_text[None].to(text_emb.dtype), text_emb)


def build_diffusion_stage(stage: str, run_dir: Path, config: EgoTwinConfig, settings: RunSettings,
                          tc: TrainConfig) -> Stage:
    """Stage t2m (text + motion, text branch frozen) or joint (text + video + motion, all trained).

    Per step: null text with p = `text_dropout`; (t_v, t_m) independent (synchronous for
    "w/o AD"); latent 0 of each modality kept clean and out of the loss; loss = MSE on v of each
    given modality, summed.
    """
    joint = stage == "joint"
    keys = ("text_emb", "motion") + (("video_latents", "first_frame_latent") if joint else ())
    data = CachedClips(Path(run_dir) / "cache", "train", config.representation, keys)
    device = torch.device(tc.device)
    motion_vae, scale = load_motion_vae(run_dir, config)
    motion_vae.to(device)
    dit = seeded(lambda: EgoTwinDiT(config.dit), tc.seed).to(device)
    no_decay, post_backward = (), None
    if joint:
        load_weights(dit, dit_path(run_dir, "t2m"), "t2m")
    else:
        if settings.weights:
            dit.load_cogvideox(Path(settings.weights) / "transformer")
        no_decay, post_backward = freeze_text_branch(dit)
    alphas = diffusion.alphas_cumprod(config.diffusion).to(device)
    null_text = data.null_text.to(device)
    pred = config.diffusion.prediction_type
    T = config.diffusion.num_train_timesteps

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in data.batch(indices).items()}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = b["text_emb"].shape[0]
        text = drop_text(b["text_emb"], null_text, tc.text_dropout, gen)
        zm = motion_latents(motion_vae, scale, b["motion"], gen)
        t_v, t_m = diffusion.sample_timesteps(n, config.dit.asynchronous, T, generator=gen, device=gen.device)
        t_v, t_m = t_v.to(device), t_m.to(device)
        xm, nm = diffusion.noisy_inputs(alphas, zm, t_m, gen)
        xv = zv = nv = None
        if joint:
            zv = video_condition(b["video_latents"], b["first_frame_latent"])
            xv, nv = diffusion.noisy_inputs(alphas, zv, t_v, gen)
        out = dit(text, xv, xm, t_v if joint else None, t_m)
        parts = {"motion": diffusion.loss(out.motion, diffusion.training_targets(alphas, zm, nm, t_m, pred))}
        if joint:
            parts["video"] = diffusion.loss(out.video, diffusion.training_targets(alphas, zv, nv, t_v, pred))
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}

    def finalize() -> None:
        save_weights(dit, dit_path(run_dir, stage), tc.save_dtype, tc.max_shard_mb)

    return Stage(stage, dit, len(data), batch, loss, finalize, post_backward=post_backward, no_decay=no_decay,
                 blocks=dit.blocks)
