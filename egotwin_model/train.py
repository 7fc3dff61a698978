"""The training loop of EgoTwin (paper §3.3): one stage of a run, from its latest checkpoint to
`max_steps`, in one process or under ``torchrun`` (FSDP2, `egotwin_model.parallel`).

The pieces live beside it: the run folder and settings (`egotwin_model.run`), the stage builders
(`egotwin_model.stages`: tiny encoders, motion VAE, t2m / joint), checkpoint state
(`egotwin_model.checkpoint`). Here: the data order (`batch_indices`, a pure function of (seed,
step): resuming needs no loader state), the optimizer, one step, the loop (step, log, checkpoint)
and `run_stage`, which joins them.

Exact resume: a checkpoint holds model, optimizer, step and the RNG states (torch global,
the training generator, NumPy, Python); a run of N steps equals k steps + resume to N, bit for
bit on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from egotwin_model.checkpoint import _json_safe, latest_checkpoint, rng_state, set_rng_state
from egotwin_model.optim import make_optimizer, set_lr
from egotwin_model.parallel import (
    init_distributed,
    is_main,
    launched_by_torchrun,
    load_checkpoint,
    parallelize,
    rank_batch,
    save_checkpoint,
    use_tf32_matmuls,
)
from egotwin_model.run import STAGES, RunSettings, TrainConfig, ensure_cache, open_run, stage_dir, train_config
from egotwin_model.stages.base import Stage
from egotwin_model.stages.motion_vae import build_motion_vae_stage
from egotwin_model.stages.t2m_joint import build_diffusion_stage
from egotwin_model.stages.tiny_encoders import build_video_vae_stage


def batch_indices(num_items: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Items of step `step`: consecutive slices of per-epoch permutations seeded by (seed, epoch)."""
    if num_items <= 0:
        raise ValueError("no training items")
    out: list[int] = []
    start = step * batch_size
    perm_epoch, perm = -1, None
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, num_items)
        if epoch != perm_epoch:
            perm = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            perm_epoch = epoch
        out.append(int(perm[i]))
    return out


def lr_at(step: int, tc: TrainConfig) -> float:
    """Constant learning rate after a linear warm-up of `warmup_steps`."""
    return tc.lr * min(1.0, (step + 1) / tc.warmup_steps) if tc.warmup_steps else tc.lr


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, tc: TrainConfig, no_decay: Iterable[str] = ()) -> torch.optim.Optimizer:
    """`tc.optimizer` (AdamW, `egotwin_model.optim`) over `model`'s trainable parameters; `no_decay`
    names get weight decay 0.

    The lr is set every step by `lr_at`.
    """
    skip = set(no_decay)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"stage {tc.stage}: no trainable parameter")
    groups = [{"params": [p for n, p in named if n not in skip], "weight_decay": tc.weight_decay},
              {"params": [p for n, p in named if n in skip], "weight_decay": 0.0}]
    return make_optimizer([g for g in groups if g["params"]], tc.optimizer, tc.lr, tc.betas, tc.device)


def seed_everything(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Seed torch / NumPy / Python and return the stage's training generator on `device`."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def train_step(stage: Stage, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               generator: torch.Generator, lr: float, grad_clip: float) -> dict[str, float]:
    """One optimisation step; returns the loss, its parts and the gradient norm as floats."""
    stage.model.train()
    set_lr(optimizer, lr)
    loss, parts = stage.loss(batch, generator)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"stage {stage.name}: non-finite loss {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if stage.post_backward is not None:
        stage.post_backward(stage.model)
    params = trainable_parameters(stage.model)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip > 0 else torch.tensor(0.0)
    if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP2
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": lr,
            **{k: float(v) for k, v in parts.items()}}


@torch.no_grad()
def evaluation_loss(stage: Stage, indices: list[int], seed: int = 0, draws: int = 4) -> float:
    """Mean loss of `stage` on items `indices` over `draws` fixed random draws (noise, timesteps,
    text dropout), in eval mode: the same number for the same weights, whatever the RNG state."""
    stage.model.eval()
    generator = torch.Generator(device=next(stage.model.parameters()).device).manual_seed(seed)
    batch = stage.batch(indices)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        total = sum(float(stage.loss(batch, generator)[0]) for _ in range(draws))
    return total / draws


def _gather_rng(generator: torch.Generator, info) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank order), JSON-able; collective under torchrun."""
    mine = _json_safe(rng_state(generator))
    if info is None or info.world_size == 1:
        return [mine]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, mine)
    return states


def train(stage: Stage, tc: TrainConfig, run_dir: str | Path, progress: bool = True, info=None) -> list[dict[str, float]]:
    """Run `stage` to `tc.max_steps`, resuming from its latest checkpoint; returns this call's log.

    Checkpoints (`egotwin_model.parallel.save_checkpoint`: DCP, atomic) every
    `checkpoint_every` steps and at `max_steps`, then calls `stage.finalize()`. `info`: the
    `DistInfo` of a torchrun job (the model already wrapped by `parallelize`), None for one
    plain process. Only rank 0 logs.
    """
    out = stage_dir(run_dir, stage.name)
    out.mkdir(parents=True, exist_ok=True)
    rank = 0 if info is None else info.rank
    generator = seed_everything(tc.seed + rank, tc.device)
    optimizer = build_optimizer(stage.model, tc, stage.no_decay)
    step = 0
    ckpt = latest_checkpoint(run_dir, stage.name)
    if ckpt is not None:
        state = load_checkpoint(ckpt, stage.model, optimizer)
        if state.get("batch_size") != tc.batch_size or state.get("seed") != tc.seed:
            raise ValueError(f"{ckpt} was written with batch size {state.get('batch_size')} and seed "
                             f"{state.get('seed')}; resume with the same --batch-size/--seed")
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) != (1 if info is None else info.world_size):
            raise ValueError(f"{ckpt} was written by {len(rngs)} rank(s); resume with as many")
        step = int(state["step"])
        set_rng_state(rngs[rank], generator)
    log: list[dict[str, float]] = []
    main = is_main(info)
    bar = tqdm(total=tc.max_steps, initial=step, desc=f"train {stage.name}", disable=not (progress and main))
    with (out / "log.jsonl").open("a") as logfile:
        while step < tc.max_steps:
            indices = rank_batch(batch_indices(stage.num_items, tc.batch_size, step, tc.seed), info)
            batch = stage.batch(indices)
            record = {"step": step + 1, **train_step(stage, optimizer, batch, generator, lr_at(step, tc), tc.grad_clip)}
            step += 1
            log.append(record)
            if main and (step % tc.log_every == 0 or step == tc.max_steps):
                logfile.write(json.dumps(record) + "\n")
                logfile.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            bar.update(1)
            if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                state = {"step": step, "stage": stage.name, "batch_size": tc.batch_size, "seed": tc.seed,
                         "data_position": step * tc.batch_size, "rng": _gather_rng(generator, info),
                         **stage.extra_state}
                save_checkpoint(out / "checkpoints" / f"step-{step}", stage.model, optimizer, state, tc.keep_checkpoints)
    bar.close()
    stage.finalize()
    return log


def build_stage(stage: str, run_dir: str | Path, settings: RunSettings, tc: TrainConfig,
                dataset: str | Path | None = None, progress: bool = True) -> Stage:
    """Dispatch to the stage builders (the video-vae stage reads raw videos from `dataset`)."""
    run_dir = Path(run_dir)
    config = settings.model_config()
    if stage == "video-vae":
        if settings.weights:
            raise ValueError("--stage video-vae trains the tiny video VAE; this run uses pretrained weights "
                             f"from {settings.weights} (its CogVideoX VAE)")
        if dataset is None:
            raise ValueError("--stage video-vae needs --dataset (it trains on the raw train videos)")
        return build_video_vae_stage(run_dir, dataset, config, progress, device=tc.device)
    if stage == "vae":
        return build_motion_vae_stage(run_dir, config, tc.device)
    if stage in ("t2m", "joint"):
        return build_diffusion_stage(stage, run_dir, config, settings, tc)
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def run_stage(stage: str, run_dir: str | Path, settings: RunSettings | None = None, dataset: str | Path | None = None,
              progress: bool = True, **overrides: Any) -> list[dict[str, float]]:
    """Open/check RUN_DIR, build `stage` and train it to `max_steps` (resuming); returns the log.

    Stages vae/t2m/joint build RUN_DIR/cache from `dataset` first if it is missing. Under
    ``torchrun``, and on CUDA (a world of one without torchrun), the process group is joined
    (`egotwin_model.parallel.init_distributed`) and the t2m/joint DiT is sharded with FSDP2 in
    bf16 (`parallelize`); rank 0 alone writes cache and logs. A plain CPU process trains in fp32
    without FSDP (`tests/test_train.py` covers the FSDP2 path on CPU too).
    """
    settings = open_run(run_dir, settings)
    tc = train_config(stage, settings.model_config(), **overrides)
    info = None
    if launched_by_torchrun() or tc.device.startswith("cuda"):
        info = init_distributed(tc.device)
        tc = dataclasses.replace(tc, device=str(info.device))
        if info.world_size > 1 and stage in ("video-vae", "vae"):
            raise ValueError(f"--stage {stage} trains a small VAE in one process: run it without torchrun "
                             "(or with --nproc-per-node 1)")
    if stage != "video-vae":
        if is_main(info):
            ensure_cache(run_dir, settings, dataset, "cpu" if info is None else tc.device, progress)
        if info is not None:
            dist.barrier()
    built = build_stage(stage, run_dir, settings, tc, dataset, progress)
    if info is not None and info.device.type == "cuda":
        use_tf32_matmuls()
    if info is not None and stage in ("t2m", "joint"):
        parallelize(built, info, tc)
    return train(built, tc, run_dir, progress, info)


def main(argv: list[str] | None = None) -> None:
    """``python -m egotwin_model.train ARGS`` = ``egotwin-model train ARGS`` (for torchrun)."""
    # lazy: the CLI imports this module for its `train` command; `python -m egotwin_model.train` (torchrun) enters here
    from egotwin_model.cli import app

    app(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
