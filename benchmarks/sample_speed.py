"""Seconds per T2VM sample at paper size: 50 DDIM steps, all CFG passes batched in one forward.

Random weights (bf16, inference). T2VM with asynchronous diffusion needs 5 model evaluations per
step (eq. 4: full, and text-only / unconditional for each branch), stacked along the batch
(`egotwin_model.guidance.guided_prediction`). Also times the decoders: the CogVideoX 3D causal
VAE (diffusers' default `AutoencoderKLCogVideoX` config = CogVideoX's) on 11 latent frames of
60 x 60 -> 41 x 480 x 480, and the motion VAE. Prints ONE JSON line; ``cfg_overhead`` = guided
step time / one unguided forward.

    python benchmarks/sample_speed.py --steps 50
    python benchmarks/sample_speed.py --config tiny --device cpu --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from diffusers import AutoencoderKLCogVideoX

from _timing import sync  # benchmarks/_timing.py (this script's folder)
from egotwin_model.config import MOTION_LATENTS, VIDEO_LATENT_FRAMES, EgoTwinConfig
from egotwin_model.diffusion import denoise_step, initial_latents, make_scheduler, set_inference_steps
from egotwin_model.dit import EgoTwinDiT
from egotwin_model.guidance import guided_prediction
from egotwin_model.motion_vae import MotionVAE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="paper")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1, help="samples generated together")
    ap.add_argument("--backend", default="merged")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-video-vae", action="store_true", help="skip timing the CogVideoX VAE decoder")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = EgoTwinConfig.load(args.config)
    d = cfg.dit
    hw = 60 if args.config == "paper" else d.sample_height
    torch.manual_seed(0)
    with torch.device(device):
        model = EgoTwinDiT(d, attention_backend=args.backend).to(dtype).eval()
        mvae = MotionVAE(cfg.motion_vae).to(dtype).eval()
    b = args.batch
    g = torch.Generator(device=device).manual_seed(0)
    text = torch.randn(b, d.max_text_seq_length, d.text_embed_dim, device=device, dtype=dtype, generator=g)
    null = torch.zeros(1, d.max_text_seq_length, d.text_embed_dim, device=device, dtype=dtype)
    v_cond = torch.randn(b, VIDEO_LATENT_FRAMES, d.in_channels, hw, hw, device=device, dtype=dtype, generator=g)
    m_cond = torch.randn(b, MOTION_LATENTS, d.motion_channels, device=device, dtype=dtype, generator=g)
    scheduler = make_scheduler(cfg.diffusion)
    timesteps = set_inference_steps(scheduler, args.steps, device)

    with torch.no_grad():
        # Warm-up (kernels, masks), then one unguided forward as the reference.
        video, motion = initial_latents(v_cond, generator=g), initial_latents(m_cond, generator=g)
        t0 = torch.full((b,), int(timesteps[0]), device=device)
        for _ in range(2):
            model(text, video, motion, t0, t0)
        sync(device)
        s = time.perf_counter()
        model(text, video, motion, t0, t0)
        sync(device)
        single = time.perf_counter() - s

        v_noise, m_noise = torch.randn_like(video), torch.randn_like(motion)
        sync(device)
        s = time.perf_counter()
        for t in timesteps:
            out = guided_prediction(model, "t2vm", text=text, null_text=null, video=video, motion=motion, t=t,
                                    scales=cfg.guidance, asynchronous=d.asynchronous,
                                    video_noise=v_noise, motion_noise=m_noise, t_max=d.num_train_timesteps - 1)
            video = denoise_step(scheduler, out.video, t, video, v_cond)
            motion = denoise_step(scheduler, out.motion, t, motion, m_cond)
        sync(device)
        denoise = time.perf_counter() - s

        s = time.perf_counter()
        mvae.decode(motion)
        sync(device)
        motion_decode = time.perf_counter() - s
        video_decode = None
        if not args.no_video_vae and args.config == "paper":
            with torch.device(device):
                vae = AutoencoderKLCogVideoX().to(dtype).eval()
            vae.enable_tiling()
            s = time.perf_counter()
            vae.decode(video.permute(0, 2, 1, 3, 4))  # (B, C, F, h, w)
            sync(device)
            video_decode = time.perf_counter() - s

    total = denoise + motion_decode + (video_decode or 0.0)
    print(json.dumps({
        "benchmark": "sample_speed",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "config": args.config,
        "task": "t2vm",
        "steps": args.steps,
        "batch": b,
        "passes_per_step": 5 if d.asynchronous else 2,
        "mask_backend": args.backend,
        "denoise_s": round(denoise, 3),
        "step_s": round(denoise / args.steps, 4),
        "single_forward_s": round(single, 4),
        "cfg_overhead": round(denoise / args.steps / single, 3),
        "video_decode_s": round(video_decode, 3) if video_decode is not None else None,
        "motion_decode_s": round(motion_decode, 4),
        "seconds_per_sample": round(total / b, 3),
    }))


if __name__ == "__main__":
    main()
