"""Paper-size EgoTwin training step: time, tokens/s, MFU, peak memory, mask overhead.

Random weights; text 226, video 9900 (11 x 30 x 30), motion 21 tokens per sample. Runs the
same pieces as training (`egotwin_model.parallel`: FSDP2 with bf16 compute / fp32 master
weights and reductions, activation checkpointing, optional per-block torch.compile) under
``torchrun`` or as one process, and prints ONE JSON line.

    python benchmarks/train_step.py --stage joint --batch 2
    torchrun --nproc-per-node 2 benchmarks/train_step.py --stage joint --batch 2
    python benchmarks/train_step.py --config tiny --device cpu --steps 2   # smoke test

Model FLOPs are analytic (`egotwin_model.flops`, formula in its docstring); MFU divides the
achieved model FLOP/s per GPU by the dense bf16 peak of the GPU (989 TFLOP/s for H100 SXM and
H200). ``mask_overhead`` = step time with the interaction mask / without it (same model).
``--repeats N`` times the masked and the unmasked step N times, alternating, in one process (the
model and its compiled graphs built once): the JSON has each repeat and the medians.
``--float8 tensorwise|rowwise`` (torchao float8 GEMMs in the blocks' linear layers) is a separate,
labelled option: its MFU still divides the *model* FLOPs by the dense bf16 peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from _timing import sync, time_calls  # benchmarks/_timing.py (this script's folder)

from egotwin_model.config import VIDEO_LATENT_FRAMES, EgoTwinConfig
from egotwin_model.dit import EgoTwinDiT
from egotwin_model.flops import dit_flops
from egotwin_model.optim import OPTIMIZERS, make_optimizer
from egotwin_model.parallel import (
    apply_activation_checkpointing,
    apply_compile,
    apply_float8,
    apply_fsdp,
    init_distributed,
    use_tf32_matmuls,
)

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _batch(cfg, stage: str, batch: int, video_hw: int, device, gen) -> dict:
    d = cfg.dit
    text = torch.randn(batch, d.max_text_seq_length, d.text_embed_dim, device=device, generator=gen)
    motion = torch.randn(batch, d.motion_length, d.motion_channels, device=device, generator=gen)
    t = torch.randint(0, d.num_train_timesteps, (2, batch), device=device, generator=gen)
    video = None
    if stage == "joint":
        video = torch.randn(batch, VIDEO_LATENT_FRAMES, d.in_channels, video_hw, video_hw, device=device, generator=gen)
    return {"text": text, "video": video, "motion": motion, "t_video": t[0] if video is not None else None,
            "t_motion": t[1] if d.asynchronous else (t[0] if video is not None else t[1])}


def _train_step(model, opt, batch):
    """(step, forward_backward, update): one training step, and its two halves."""
    def forward_backward() -> None:
        out = model(batch["text"], batch["video"], batch["motion"], batch["t_video"], batch["t_motion"])
        loss = out.motion.float().pow(2).mean()
        if out.video is not None:
            loss = loss + out.video.float().pow(2).mean()
        loss.backward()

    def update() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step() -> None:
        forward_backward()
        update()

    return step, forward_backward, update


def _time_parts(forward_backward, update, steps: int, device) -> tuple[float, float]:
    """Mean seconds of forward+backward and of the optimizer update, each timed on its own
    (synchronised between the halves, so they add to a little more than a step)."""
    totals = [0.0, 0.0]
    for _ in range(steps):
        for i, part in enumerate((forward_backward, update)):
            sync(device)
            t0 = time.perf_counter()
            part()
            sync(device)
            totals[i] += time.perf_counter() - t0
    return totals[0] / steps, totals[1] / steps


def _profile(step, rows: int, device) -> None:
    """One step under torch.profiler; the `rows` costliest kernels go to stderr."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=70), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="paper")
    ap.add_argument("--stage", choices=["joint", "t2m"], default="joint")
    ap.add_argument("--batch", type=int, default=1, help="samples per GPU")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--backend", default="merged", help="masked attention backend: merged | flex | dense")
    ap.add_argument("--no-ac", action="store_true", help="disable activation checkpointing")
    ap.add_argument("--ac-every", type=int, default=1, help="checkpoint every k-th block (1: all)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile one step and print the N costliest kernels to stderr")
    ap.add_argument("--compile", action="store_true", help="torch.compile each block")
    ap.add_argument("--device", default=None)
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw",
                    help="adamw (fused), adamw8bit (torchao, 8-bit moments: frees ~35 GB at paper size) "
                         "or adamw_bf16 (bf16 moments: frees ~23 GB)")
    ap.add_argument("--skip-unmasked", action="store_true", help="do not time the unmasked variant")
    ap.add_argument("--repeats", type=int, default=1, help="time masked and unmasked N times, alternating")
    ap.add_argument("--float8", choices=["tensorwise", "rowwise"], default=None,
                    help="torchao float8 GEMMs in the blocks' linear layers (a labelled option; use with --compile)")
    args = ap.parse_args()

    info = init_distributed(args.device)
    device = info.device
    if device.type == "cuda":
        use_tf32_matmuls()  # as training does
    cfg = EgoTwinConfig.load(args.config)
    video_hw = cfg.dit.sample_height if args.config != "paper" else 60  # 480 / 8
    torch.manual_seed(0)
    with torch.device(device):
        model = EgoTwinDiT(cfg.dit, attention_backend=args.backend)
    if args.stage == "t2m":  # text branch frozen: only the motion stream trains
        for name, p in model.named_parameters():
            p.requires_grad_("motion" in name)
    float8_linears = apply_float8(model.blocks, args.float8) if args.float8 else 0
    if not args.no_ac:
        apply_activation_checkpointing(model.blocks, every=args.ac_every)
    if args.compile:
        apply_compile(model.blocks)
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    apply_fsdp(model, [model.blocks], info, param_dtype=compute_dtype)
    opt = make_optimizer([{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}],
                         args.optimizer, lr=1e-5, device=device)
    gen = torch.Generator(device=device).manual_seed(info.rank)
    batch = _batch(cfg, args.stage, args.batch, video_hw, device, gen)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, forward_backward, update = _train_step(model, opt, batch)
    masked_runs, unmasked_runs = [], []
    for _ in range(args.repeats):
        masked_runs.append(time_calls(step, args.steps, args.warmup, device))
        if not args.skip_unmasked:
            model.config = dataclasses.replace(model.config, interaction_mask=False)
            unmasked_runs.append(time_calls(step, args.steps, args.warmup, device))
            model.config = dataclasses.replace(model.config, interaction_mask=True)
    fb_s, update_s = _time_parts(forward_backward, update, args.steps, device)
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    # cudaMalloc retries (the caching allocator freed its cache to satisfy a request): near the
    # memory limit these stall steps, a cost that FLOP counts do not show
    alloc_retries = torch.cuda.memory_stats(device).get("num_alloc_retries") if device.type == "cuda" else None
    masked = statistics.median(masked_runs)
    unmasked = statistics.median(unmasked_runs) if unmasked_runs else None
    if args.profile and info.is_main:
        _profile(step, args.profile, device)

    d = cfg.dit
    video_tokens = VIDEO_LATENT_FRAMES * (video_hw // d.patch_size) ** 2 if args.stage == "joint" else 0
    flops = dit_flops(d, d.max_text_seq_length, video_tokens, d.motion_length, frozen_text_video=args.stage == "t2m")
    tokens = d.max_text_seq_length + video_tokens + d.motion_length
    achieved = flops.train * args.batch / masked
    peak = _peak(device)
    result = {
        "benchmark": "train_step",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "gpus": info.world_size,
        "torch": torch.__version__,
        "config": args.config,
        "stage": args.stage,
        "batch_per_gpu": args.batch,
        "tokens_per_sample": tokens,
        "activation_checkpointing": f"every {args.ac_every}" if not args.no_ac else False,
        "compile": args.compile,
        "optimizer": args.optimizer,
        "float8": args.float8 or False,
        "float8_linears": float8_linears,
        "mask_backend": args.backend,
        "step_time_s": round(masked, 4),
        "tokens_per_s_per_gpu": round(tokens * args.batch / masked, 1),
        "model_tflops_per_step_per_gpu": round(flops.train * args.batch / 1e12, 2),
        "achieved_tflops_per_gpu": round(achieved / 1e12, 1),
        "mfu": round(achieved / peak, 4) if peak else None,
        "peak_memory_gib": round(peak_mem, 2) if peak_mem is not None else None,
        "alloc_retries": alloc_retries,
        "forward_backward_s": round(fb_s, 4),
        "optimizer_update_s": round(update_s, 4),
        "step_time_unmasked_s": round(unmasked, 4) if unmasked else None,
        "mask_overhead": round(masked / unmasked, 4) if unmasked else None,
        "repeats": args.repeats,
        "step_time_s_each": [round(t, 4) for t in masked_runs],
        "step_time_unmasked_s_each": [round(t, 4) for t in unmasked_runs],
        "mask_overhead_each": [round(m / u, 4) for m, u in zip(masked_runs, unmasked_runs)],
    }
    if info.is_main:
        print(json.dumps(result))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
