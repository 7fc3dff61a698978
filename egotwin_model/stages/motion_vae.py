"""Stage ``vae``: the motion VAE (paper eq. 1) on the cached train features, and loading it back."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from egotwin_model.cached_clips import CachedClips
from egotwin_model.checkpoint import load_weights, save_weights
from egotwin_model.config import EgoTwinConfig
from egotwin_model.motion_vae import MotionVAE, group_indices
from egotwin_model.precompute import write_json
from egotwin_model.run import motion_vae_path, stage_dir
from egotwin_model.stages.base import Stage, seeded

def load_motion_vae(run_dir: str | Path, config: EgoTwinConfig) -> tuple[nn.Module, float]:
    """The trained motion VAE (eval, frozen) and its latent scale from RUN_DIR/vae/."""
    vae = load_weights(MotionVAE(config.motion_vae), motion_vae_path(run_dir), "vae")
    stats = json.loads((stage_dir(run_dir, "vae") / "latent_stats.json").read_text())
    return vae.eval().requires_grad_(False), float(stats["scale"])


def build_motion_vae_stage(run_dir: Path, config: EgoTwinConfig, device: str | torch.device = "cpu") -> Stage:
    """Motion VAE on the cached, normalised train features; loss eq. 1 over the four groups.

    `finalize` writes ``vae/model.safetensors`` and ``vae/latent_stats.json`` with the latent
    scale 1 / std of posterior samples of the train clips (latents enter the DiT unit-variance,
    like Stable Diffusion's / CogVideoX's scaling factor).
    """
    rep = config.representation
    data = CachedClips(Path(run_dir) / "cache", "train", rep, keys=("motion",))
    device = torch.device(device)
    vae = seeded(lambda: MotionVAE(config.motion_vae), seed=0).to(device)
    groups = group_indices(rep)

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in data.batch(indices).items()}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return vae.loss(b["motion"], groups, generator=gen)

    def finalize() -> None:
        save_weights(vae, motion_vae_path(run_dir))
        vae.eval()
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            z = torch.cat([vae.encode(batch(list(range(i, min(i + 32, len(data)))))["motion"]).sample(gen)
                           for i in range(0, len(data), 32)])
        write_json(stage_dir(run_dir, "vae") / "latent_stats.json",
                   {"scale": float(1.0 / z.std().clamp_min(1e-6)), "representation": rep})

    return Stage("vae", vae, len(data), batch, loss, finalize)
