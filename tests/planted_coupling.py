"""A RUN_DIR of the tiny config whose cached latents carry a planted video-motion-text coupling.

For `tests/test_learning.py`: the joint stage trains on it by the normal command (`egotwin-model
train --stage joint`) and `egotwin_model.coupling.conditional_losses` probes its held-out split.
No model code changes; only the inputs of the joint stage are made here instead of by the
video-vae / precompute / vae / t2m stages:

* ``vae/``: a randomly initialised `MotionVAE` of the tiny config, its encoder's log-variance
  pinned to -30 (point-mass posterior: the DiT sees exactly the planted latents) and its mean
  output whitened per channel over the train clips; ``latent_stats.json`` the usual scale.
* ``t2m/model.safetensors``: the DiT's seeded initial weights (the joint stage starts there).
* ``cache/`` per clip: motion features x (81, 288) = N(0, 1), plus the class offset
  `FEATURE_OFFSET` * o_c on frames 1..; motion latents z = VAE(x) (21, C_m). Video latent frame
  i >= 1 is M [z_{2i-1}; z_{2i}] + mu_c: one 2 x 2 patch of C_v channels (C_v x 4 = 2 C_m values,
  M orthogonal) tiled over the latent grid; frame 0 (= the first-frame latent) M_0 z_0. That is
  the interaction mask's pairing (O^i <-> A^{i-1} = P^{2i-1}, P^{2i}), so each video frame and
  its motion chunk determine each other exactly. The prompt embedding is one of `CLASSES` fixed
  random matrices; the null text another one. The class is absent from the first frame and the
  first pose on purpose: those latents are always given clean, and a class they showed would
  make the prompt redundant (measured: null text within 2 % of the real prompt).

``coupled=False`` (the control) writes the same held-out split but breaks the train pairs: each
train clip's video comes from another train clip (a derangement) and its prompt from a random
class, so every marginal is unchanged and no condition says anything about the target.
"""

from __future__ import annotations

from pathlib import Path

import torch

from egotwin_bench.constants import MOTION_FRAMES
from egotwin_model.config import MOTION_LATENTS, REPRESENTATION_DIMS, VIDEO_LATENT_FRAMES
from egotwin_model.dit import EgoTwinDiT
from egotwin_model.motion_vae import MotionVAE
from egotwin_model.precompute import CACHE_VERSION, clip_path, save_tensors, write_json
from egotwin_model.run import RunSettings, dit_path, make_run_settings, motion_vae_path, open_run, stage_dir
from egotwin_model.stages.base import seeded

CLASSES: int = 4
REPRESENTATION: str = "head_centric"
FEATURE_OFFSET: float = 3.0
"""Size of the class offset of the motion features (in feature standard deviations)."""
VIDEO_OFFSET: float = 1.0
"""Size of the class offset mu_c of video frames 1.. (before the video is scaled to unit variance)."""


def _orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen))
    return q * torch.sign(torch.diagonal(r))


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of range(n) with no fixed point (n >= 2)."""
    order = torch.randperm(n, generator=gen)
    out = torch.empty_like(order)
    out[order] = order.roll(1)
    return out


def deterministic_motion_vae(settings: RunSettings, seed: int) -> MotionVAE:
    """The tiny config's MotionVAE, random weights, posterior log-variance pinned to -30."""
    cfg = settings.model_config().motion_vae
    vae = seeded(lambda: MotionVAE(cfg), seed)
    with torch.no_grad():
        conv = vae.encoder.conv_out
        conv.weight[cfg.latent_dim:] = 0.0
        conv.bias[cfg.latent_dim:] = -30.0
    return vae.eval()


def write_planted_run(run_dir: str | Path, n_train: int = 64, n_test: int = 32, seed: int = 0,
                      coupled: bool = True, grid: int | None = None, **variant: bool | None) -> Path:
    """Write run.json, vae/, t2m/ and cache/ of a planted tiny run (module docstring); return run_dir.

    `variant`: switches of `make_run_settings` (interaction_mask, asynchronous).
    """
    run_dir = Path(run_dir)
    settings = make_run_settings("tiny", representation=REPRESENTATION, **variant)
    if grid is not None:  # a smaller latent grid (fewer video tokens), same architecture
        settings.config["dit"].update(sample_height=grid, sample_width=grid)
    open_run(run_dir, settings)
    config = settings.model_config()
    dit_cfg = config.dit
    cm, cv, h, w = dit_cfg.motion_channels, dit_cfg.in_channels, dit_cfg.sample_height, dit_cfg.sample_width
    if cv * 4 != 2 * cm:
        raise ValueError("the planted coupling needs C_v x 2 x 2 == 2 C_m (tiny: 4 x 4 == 16)")
    gen = torch.Generator().manual_seed(seed)
    d_feat = REPRESENTATION_DIMS[REPRESENTATION]

    vae = deterministic_motion_vae(settings, seed)
    save_tensors(dit_path(run_dir, "t2m"), seeded(lambda: EgoTwinDiT(dit_cfg), seed).state_dict())

    # fixed draws of the planted world
    text_classes = torch.randn(CLASSES, dit_cfg.max_text_seq_length, dit_cfg.text_embed_dim, generator=gen)
    null_text = torch.randn(dit_cfg.max_text_seq_length, dit_cfg.text_embed_dim, generator=gen)
    feature_offsets = FEATURE_OFFSET * torch.randn(CLASSES, d_feat, generator=gen)
    video_offsets = VIDEO_OFFSET * torch.randn(CLASSES, 2 * cm, generator=gen)
    mix = _orthogonal(2 * cm, gen)  # [z_{2i-1}; z_{2i}] -> a 2x2 patch of C_v channels
    mix0 = _orthogonal(2 * cm, gen)[:, :cm] * 2 ** 0.5  # z_0 -> the first frame's patch

    n = n_train + n_test
    classes = torch.randint(0, CLASSES, (n,), generator=gen)
    features = torch.randn(n, MOTION_FRAMES, d_feat, generator=gen)
    features[:, 1:] += feature_offsets[classes][:, None]  # not frame 0: the clean first pose hides the class
    with torch.no_grad():  # whiten the VAE's mean output per channel over the train clips
        z = vae.encode(features[:n_train]).mean
        mu, sd = z.mean((0, 1)), z.std((0, 1))
        conv = vae.encoder.conv_out
        conv.weight[:cm] /= sd[:, None, None]
        conv.bias[:cm] = (conv.bias[:cm] - mu) / sd
        z = vae.encode(features).mean  # (n, 21, C_m); latent 0 = the first pose alone (causal)
    assert z.shape[1] == MOTION_LATENTS
    save_tensors(motion_vae_path(run_dir), vae.state_dict())
    scale = float(1.0 / z[:n_train].std())
    z = z * scale
    pairs = z[:, 1:].reshape(n, VIDEO_LATENT_FRAMES - 1, 2 * cm)  # frame i <- (z_{2i-1}, z_{2i})
    patches = torch.cat([(z[:, :1] @ mix0.T), pairs @ mix.T + video_offsets[classes][:, None]], dim=1)
    video_scale = float(1.0 / patches[:n_train].std())
    patches = patches * video_scale
    video = patches.reshape(n, VIDEO_LATENT_FRAMES, cv, 2, 2).repeat(1, 1, 1, h // 2, w // 2)

    text = text_classes[classes]
    if not coupled:  # train pairs broken: another clip's video, a random class's prompt
        video[:n_train] = video[:n_train][derangement(n_train, gen)]
        text[:n_train] = text_classes[torch.randint(0, CLASSES, (n_train,), generator=gen)]

    cache = run_dir / "cache"
    splits = {"train": [f"train{i:04d}" for i in range(n_train)], "val": [], "test": [f"test{i:04d}" for i in range(n_test)]}
    for i, clip_id in enumerate(splits["train"] + splits["test"]):
        split = "train" if i < n_train else "test"
        save_tensors(clip_path(cache, split, clip_id), {
            "text_emb": text[i].clone(), "video_latents": video[i].clone(),
            "first_frame_latent": video[i, :1].clone(), REPRESENTATION: features[i].clone()})
    save_tensors(cache / "null_text.safetensors", {"text_emb": null_text})
    save_tensors(cache / "motion_stats.safetensors",  # identity normalisation: features enter as drawn
                 {f"{REPRESENTATION}_mean": torch.zeros(d_feat), f"{REPRESENTATION}_std": torch.ones(d_feat)})
    write_json(cache / "manifest.json", {"version": CACHE_VERSION, "dataset": "planted", "splits": splits,
                                         "video_latent_shape": list(video.shape[1:])})
    write_json(stage_dir(run_dir, "vae") / "latent_stats.json", {"scale": scale, "representation": REPRESENTATION})
    return run_dir
