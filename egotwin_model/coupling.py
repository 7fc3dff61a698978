"""Does a trained joint model use its conditions? Held-out losses with each condition given or removed.

For the clips of one split of a run's cache (issue #15, the paper's claim of video-motion
coupling), with fixed noise and timesteps (the same draws for every probe):

============================  =================================================================
probe                         what the DiT sees
============================  =================================================================
``motion|video_clean``        motion at t_m ~ U[0, T); the clip's video latents clean (t_v = 0)
``motion|video_noised``       the same motion input; video pure noise (t_v = T - 1, zero SNR)
``video|motion_clean``        video at t_v ~ U[0, T); motion latents clean (t_m = 0)
``video|motion_noised``       the same video input; motion pure noise (t_m = T - 1)
``motion|text`` / ``|null``   motion + video both noised at their own t; real prompt / null text
``video|text`` / ``|null``    the same, the video loss
============================  =================================================================

Each value is the v-MSE over latents 1.. (latent 0, the first frame / first pose, is the clean
condition everywhere, as in training). A model that ignores a condition scores the same with it
clean and noised. Beside them, ``gaussian_motion`` / ``gaussian_video``: the v-MSE of the best
*per-dimension Gaussian* denoiser (the optimal denoiser when every latent dimension is an
independent Gaussian with the train split's mean and variance) at the same timesteps — a model
that has learned nothing beyond marginal statistics scores about that.

Synchronous runs ("w/o AD", VidMLD) cannot take t_v != t_m: for them only the text probes (at
t_v = t_m) and the Gaussian baseline are reported.

The result holds each probe's mean over the clips, ``per_clip`` (every probe's value per clip,
in ``clip_ids`` order) and ``differences``: for each pair of `PROBE_PAIRS` (a condition given vs
removed, the model vs the Gaussian baseline) the mean per-clip difference and the relative one
(mean / mean - 1), each with a paired bootstrap 95 % interval over clips
(`egotwin_bench.metrics.bootstrap`, the leaderboard's). A clip's value is the mean over
``draws`` independent draws of noise and timesteps (default 1; the first draw is the same for
any ``draws``): the interval is over clips, and more draws shrink the noise-draw part of the
per-clip spread.

    python -m egotwin_model.coupling --run RUN_DIR [--split test] [--draws 1] [--device cuda] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from egotwin_bench.metrics.bootstrap import paired_difference, relative_difference
from egotwin_model import diffusion
from egotwin_model.dit import EgoTwinDiT, inference_dit
from egotwin_model.precompute import write_json
from egotwin_model.cached_clips import CachedClips
from egotwin_model.checkpoint import load_weights
from egotwin_model.run import dit_path, open_run
from egotwin_model.stages.motion_vae import load_motion_vae
from egotwin_model.stages.t2m_joint import motion_latents, video_condition

PROBE_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("motion|video", "motion|video_clean", "motion|video_noised"),
    ("video|motion", "video|motion_clean", "video|motion_noised"),
    ("motion|text", "motion|text", "motion|null_text"),
    ("video|text", "video|text", "video|null_text"),
    ("motion|model_vs_gaussian", "motion|text", "gaussian_motion"),
    ("video|model_vs_gaussian", "video|text", "gaussian_video"),
)
"""(name, with, without): the paired differences reported, ``with - without`` per clip (negative:
the condition, or the model, lowers the loss)."""
BOOTSTRAP_RESAMPLES: int = 2000


def probe_differences(per_clip: dict[str, list[float]], seed: int = 0,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, dict[str, float]]:
    """Per `PROBE_PAIRS` entry whose two probes exist: ``difference`` (mean of with - without per
    clip), ``relative`` (mean(with) / mean(without) - 1), each with ``_low`` / ``_high`` paired
    bootstrap 95 % bounds, and ``clips`` (pairs with both values finite)."""
    out = {}
    for name, a, b in PROBE_PAIRS:
        if a not in per_clip or b not in per_clip:
            continue
        x, y = np.asarray(per_clip[a], dtype=np.float64), np.asarray(per_clip[b], dtype=np.float64)
        diff = paired_difference(x, y, np.random.default_rng(seed), resamples)
        rel = relative_difference(x, y, np.random.default_rng(seed), resamples)
        out[name] = {"with": a, "without": b, "clips": int(np.sum(np.isfinite(x) & np.isfinite(y))),
                     "difference": diff.value, "difference_low": diff.low, "difference_high": diff.high,
                     "relative": rel.value, "relative_low": rel.low, "relative_high": rel.high}
    return out


def gaussian_denoiser_mse(x0: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, alphas: torch.Tensor,
                          t: torch.Tensor) -> torch.Tensor:
    """Expected v-MSE (over latents 1..) of the optimal denoiser under a per-dimension Gaussian prior.

    x0: (B, L, ...) latents (only the shape is used); mean/var: (L, ...) prior per dimension;
    t: (B,) timesteps; returns (B,) per clip. With x_t = a x0 + b eps and v = a eps - b x0 (a^2 + b^2 = 1), the
    posterior-mean error is Var(v) - Cov(v, x_t)^2 / Var(x_t), where Var(v) = a^2 + b^2 s^2,
    Cov = a b (1 - s^2), Var(x_t) = a^2 s^2 + b^2.
    """
    a2 = alphas.to(x0.device)[t.long()].to(torch.float64)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    a2 = a2.reshape(shape)
    b2 = 1 - a2
    s2 = var.to(torch.float64)[None]
    err = a2 + b2 * s2 - (a2 * b2 * (1 - s2) ** 2) / (a2 * s2 + b2).clamp_min(1e-12)
    return err.expand(x0.shape)[:, 1:].flatten(1).mean(1)


@torch.no_grad()
def conditional_losses(run_dir: str | Path, split: str = "test", batch_size: int = 16, seed: int = 0,
                       device: str = "cpu", limit: int | None = None,
                       resamples: int = BOOTSTRAP_RESAMPLES, draws: int = 1) -> dict:
    """The probes of the module docstring for the joint model of `run_dir` on `split` of its cache:
    means, ``per_clip`` values (each the mean over `draws` draws of noise and timesteps) and the
    paired ``differences`` (`probe_differences`)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    run_dir = Path(run_dir)
    settings = open_run(run_dir, None)
    config = settings.model_config()
    dev = torch.device(device)
    keys = ("text_emb", "motion", "video_latents", "first_frame_latent")
    data = CachedClips(run_dir / "cache", split, config.representation, keys)
    train = CachedClips(run_dir / "cache", "train", config.representation, keys)
    vae, scale = load_motion_vae(run_dir, config)
    vae.to(dev)
    dit = inference_dit(load_weights(EgoTwinDiT(config.dit), dit_path(run_dir, "joint"), "joint"), dev)
    alphas = diffusion.alphas_cumprod(config.diffusion).to(dev)
    T = config.diffusion.num_train_timesteps
    pred = config.diffusion.prediction_type
    null_text = data.null_text.to(dev)

    # Per-dimension Gaussian prior of the train latents (the marginal statistics a model must beat).
    prior_gen = torch.Generator(device=dev).manual_seed(seed)
    zm_train, zv_train = [], []
    for start in range(0, len(train), batch_size):
        b = {k: v.to(dev) for k, v in train.batch(list(range(start, min(start + batch_size, len(train))))).items()}
        zm_train.append(motion_latents(vae, scale, b["motion"], prior_gen))
        zv_train.append(video_condition(b["video_latents"], b["first_frame_latent"]))
    zm_train, zv_train = torch.cat(zm_train).double(), torch.cat(zv_train).double()
    prior = {"motion": (zm_train.mean(0), zm_train.var(0)), "video": (zv_train.mean(0), zv_train.var(0))}

    n = len(data) if limit is None else min(limit, len(data))
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    per_draw: list[dict[str, list[float]]] = []

    def add(name: str, value: torch.Tensor) -> None:
        per_draw[-1].setdefault(name, []).extend(value.double().cpu().tolist())

    for _ in range(draws):  # draw after draw over every batch: the first is the same for any `draws`
        per_draw.append({})
        for start in range(0, n, batch_size):
            idx = list(range(start, min(start + batch_size, n)))
            b = {k: v.to(dev) for k, v in data.batch(idx).items()}
            B = len(idx)
            zm = motion_latents(vae, scale, b["motion"], gen)
            zv = video_condition(b["video_latents"], b["first_frame_latent"])
            t_v, t_m = diffusion.sample_timesteps(B, config.dit.asynchronous, T, generator=gen, device=dev)
            xm, nm = diffusion.noisy_inputs(alphas, zm, t_m, gen)
            xv, nv = diffusion.noisy_inputs(alphas, zv, t_v, gen)
            tgt_m = diffusion.training_targets(alphas, zm, nm, t_m, pred)
            tgt_v = diffusion.training_targets(alphas, zv, nv, t_v, pred)
            text = b["text_emb"]
            null = null_text[None].expand_as(text)

            out = dit(text, xv, xm, t_v, t_m)
            add("motion|text", diffusion.clip_losses(out.motion, tgt_m))
            add("video|text", diffusion.clip_losses(out.video, tgt_v))
            out = dit(null, xv, xm, t_v, t_m)
            add("motion|null_text", diffusion.clip_losses(out.motion, tgt_m))
            add("video|null_text", diffusion.clip_losses(out.video, tgt_v))
            add("gaussian_motion", gaussian_denoiser_mse(zm, *prior["motion"], alphas, t_m))
            add("gaussian_video", gaussian_denoiser_mse(zv, *prior["video"], alphas, t_v))
            if config.dit.asynchronous:
                zero, last = torch.zeros_like(t_v), torch.full_like(t_v, T - 1)
                pure_v, _ = diffusion.noisy_inputs(alphas, zv, last, gen)
                pure_m, _ = diffusion.noisy_inputs(alphas, zm, last, gen)
                add("motion|video_clean", diffusion.clip_losses(dit(text, zv, xm, zero, t_m).motion, tgt_m))
                add("motion|video_noised", diffusion.clip_losses(dit(text, pure_v, xm, last, t_m).motion, tgt_m))
                add("video|motion_clean", diffusion.clip_losses(dit(text, xv, zm, t_v, zero).video, tgt_v))
                add("video|motion_noised", diffusion.clip_losses(dit(text, xv, pure_m, t_v, last).video, tgt_v))
    per_clip = {k: np.mean([d[k] for d in per_draw], axis=0).tolist() for k in per_draw[0]}
    return {"run": str(run_dir), "variant": settings.variant, "split": split, "clips": n, "seed": seed,
            "draws": draws,
            **{k: float(np.mean(v)) for k, v in per_clip.items()},
            "differences": probe_differences(per_clip, seed, resamples),
            "per_clip": {"clip_ids": data.ids[:n], **per_clip}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Held-out losses of a joint run with each condition given or removed.")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--draws", type=int, default=1,
                        help="draws of noise and timesteps per clip, averaged (the first is the same for any N)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES,
                        help="paired bootstrap resamples of the differences' 95 %% intervals (0: none)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (atomically)")
    args = parser.parse_args(argv)
    result = conditional_losses(args.run, args.split, args.batch_size, args.seed, args.device, args.limit,
                                args.bootstrap, args.draws)
    if args.out is not None:
        write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_clip"}))


if __name__ == "__main__":
    main()
