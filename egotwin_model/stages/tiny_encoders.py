"""Stage ``video-vae`` (tiny configs only): the tiny CogVideoX video VAE, trained here, and the tiny
tokenizer + T5 text encoder it builds first, both saved to ``RUN_DIR/encoders/``."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from egotwin_bench.evaluate.reference import split_ids
from egotwin_model.config import EgoTwinConfig
from egotwin_model.encoders import (
    TinyTextEncoderConfig,
    TinyVideoVAEConfig,
    build_tiny_text_encoder,
    build_tiny_video_vae,
    frames_to_tensor,
    tensor_to_frames,
)
from egotwin_model.precompute import read_clips
from egotwin_model.run import video_size
from egotwin_model.stages.base import Stage

VIDEO_VAE_WINDOW: int = 9
"""Frames per training window of the tiny video VAE (1 + 4k: 3 latent frames)."""


def tiny_encoder_configs(config: EgoTwinConfig):
    """The tiny text encoder / video VAE sizes: ``[encoders]`` TOML keys over the defaults.

    The text width is the DiT's `text_embed_dim`, the VAE latent channels its `in_channels`
    and the video size 8 x the DiT's latent `sample_height` (64 for the tiny config).
    """
    enc = dict(config.extra.get("encoders", {}))
    text = TinyTextEncoderConfig(**{"d_model": config.dit.text_embed_dim, **enc.get("text", {})})
    vae_kw = {"latent_channels": config.dit.in_channels, "size": video_size(config), **enc.get("video_vae", {})}
    if "block_out_channels" in vae_kw:
        vae_kw["block_out_channels"] = tuple(vae_kw["block_out_channels"])
    return text, TinyVideoVAEConfig(**vae_kw)


def build_tiny_text_encoder_into(run_dir: Path, dataset: str | Path, config: EgoTwinConfig) -> None:
    """Train the tiny tokenizer on the train narrations + init the tiny T5; save in RUN_DIR/encoders."""
    folder = Path(run_dir) / "encoders"
    if (folder / "text_encoder" / "config.json").exists():
        return
    texts = [c.text for c in read_clips(dataset, "train", with_video=False)]
    text_cfg, _ = tiny_encoder_configs(config)
    build_tiny_text_encoder(texts, text_cfg).save(folder)


def load_train_frames(dataset: str | Path, size: int, progress: bool = True) -> torch.Tensor:
    """All train-split videos as uint8 (N, 41, size, size, 3) in memory (small configs only)."""
    n = len(split_ids(dataset, "train"))
    out = []
    for clip in tqdm(read_clips(dataset, "train"), total=n, desc="load videos", disable=not progress):
        out.append(tensor_to_frames(frames_to_tensor(clip.frames()[None], size))[0])
    return torch.stack(out)


SCALING_CLIPS = 32
"""Train clips whose latents set the tiny video VAE's ``scaling_factor``."""


def build_video_vae_stage(run_dir: Path, dataset: str | Path, config: EgoTwinConfig, progress: bool = True,
                          kl_weight: float = 1e-6, device: str | torch.device = "cpu") -> Stage:
    """Tiny CogVideoX VAE on random `VIDEO_VAE_WINDOW`-frame windows: MSE + kl_weight x KL.

    `finalize` sets ``scaling_factor`` = 1 / std of the train clips' latents (as CogVideoX's
    own factor makes latents unit-variance) and saves ``RUN_DIR/encoders/vae``. The frames stay
    in host memory as uint8; each batch moves to `device`.
    """
    _, vae_cfg = tiny_encoder_configs(config)
    build_tiny_text_encoder_into(run_dir, dataset, config)
    frames = load_train_frames(dataset, vae_cfg.size, progress)  # (N, 41, s, s, 3)
    device = torch.device(device)
    vae = build_tiny_video_vae(vae_cfg).to(device)

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {"frames": frames[indices].to(device)}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        start = int(torch.randint(0, frames.shape[1] - VIDEO_VAE_WINDOW + 1, (1,), generator=gen, device=gen.device))
        x = b["frames"][:, start:start + VIDEO_VAE_WINDOW].permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen, device=gen.device)
        recon = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(recon, x)
        # per-element KL to N(0, I) (diffusers' `kl()` sums only dims 1-3 of a 5-D latent)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}

    def finalize() -> None:
        vae.eval()
        with torch.no_grad():  # latent std over (up to) SCALING_CLIPS train clips
            z = torch.cat([vae.encode(frames[i:i + 2].to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0).latent_dist.mean
                           for i in range(0, min(len(frames), SCALING_CLIPS), 2)])
        vae.register_to_config(scaling_factor=float(1.0 / z.std().clamp_min(1e-6)))
        target = Path(run_dir) / "encoders" / "vae"
        tmp = target.with_name("vae.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        vae.to("cpu").save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    return Stage("video-vae", vae, len(frames), batch, loss, finalize)
