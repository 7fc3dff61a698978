"""Distributed training pieces in the torchtitan style: small, composable, one job each.

The same code path serves one CPU process (gloo, world size 1: the tiny config in CI), one GPU
and N GPUs under ``torchrun`` (NCCL):

* `init_distributed` — process group from torchrun's environment, or a world of one;
* `use_tf32_matmuls` — TF32 for the few fp32 products left under bf16 mixed precision;
* `apply_activation_checkpointing` — wrap each transformer block;
* `apply_compile` — ``torch.compile`` each block (FlexAttention is compiled inside);
* `apply_float8` — torchao float8 GEMMs for the blocks' linear layers (a labelled benchmark
  option, `benchmarks/train_step.py --float8`; not used by `train`);
* `apply_fsdp` — FSDP2 ``fully_shard`` per block, then the root, bf16 params / fp32 reductions;
* `save_checkpoint` / `load_checkpoint` — ``torch.distributed.checkpoint`` (sharded, resharding
  on load) of model + optimizer + a small JSON-able training state;
* `parallelize` — the above applied to a training `Stage`; `rank_batch`, `is_main`,
  `launched_by_torchrun` — what the loop asks of the process group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from egotwin_model.optim import TORCHAO_INSTALL
from egotwin_model.run import TrainConfig
from egotwin_model.stages.base import Stage


CHECKPOINT_WRITER_THREADS: int = 8
"""Threads (hence files per rank) DCP writes a checkpoint with."""


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(device: str | None = None) -> DistInfo:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU), or make a world of one.

    Args:
        device: "cuda" or "cpu"; default CUDA when available.
    """
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local)
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:  # not under torchrun: a private world of one
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(_free_port())
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                device_id=dev if use_cuda else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def use_tf32_matmuls() -> None:
    """Let fp32 matrix products use TF32 tensor cores (CUDA training and benchmarks).

    Under bf16 mixed precision the only fp32 products left are small ones (the masked attention's
    dense parts, losses) whose inputs are bf16, so TF32 (10 mantissa bits) loses nothing there.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; mixing it with the legacy flags is an error
        matmul.fp32_precision = "tf32"
    else:
        torch.set_float32_matmul_precision("high")


def apply_activation_checkpointing(blocks: nn.ModuleList, every: int = 1) -> None:
    """Recompute the activations of every `every`-th block in backward.

    `every=1` checkpoints all blocks (least memory, ~1/3 more compute); `every=2` half of them.
    """
    for i, block in enumerate(blocks):
        if i % every == 0:
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(blocks: nn.ModuleList) -> None:
    """``torch.compile`` each block separately (fast compile, repeated structure reused)."""
    for i, block in enumerate(blocks):
        blocks[i] = torch.compile(block, fullgraph=False)


FLOAT8_HINT = f"--float8 needs torchao: {TORCHAO_INSTALL}"


def apply_float8(blocks: nn.ModuleList, recipe: str = "tensorwise", emulate: bool = False) -> int:
    """Swap the `nn.Linear` layers of `blocks` for torchao's ``Float8Linear``; returns how many.

    Forward and both backward GEMMs run in float8 with dynamic scales per `recipe` (torchao's
    ``tensorwise``: one scale per tensor, e4m3 / e5m2 gradients; ``rowwise``: one per row, e4m3
    throughout); weights, gradients and optimizer state stay in their own dtypes. Layers whose
    dimensions are not multiples of 16 (what the float8 GEMM needs) keep bf16. Apply before activation checkpointing, ``torch.compile`` and
    FSDP (torchtitan's order); fast only compiled. `emulate`: float8 casts with fp32 GEMMs (CPU
    tests).
    """
    try:
        # lazy: optional dependency (a labelled benchmark option); importing torchao costs ~1 s
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as err:
        raise ImportError(FLOAT8_HINT) from err
    # pad_inner_dim: the GEMMs' inner dimension (tokens, in the weight-gradient GEMM: 21 motion,
    # 226 text, 9900 video) must be a multiple of 16; torchao pads it
    config = dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), pad_inner_dim=True, emulate=emulate)
    count = 0

    def eligible(module: nn.Module, _fqn: str) -> bool:
        nonlocal count
        ok = isinstance(module, nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0
        count += ok
        return ok

    for block in blocks:
        convert_to_float8_training(block, config=config, module_filter_fn=eligible)
    return count


def apply_fsdp(
    model: nn.Module,
    block_lists: Iterable[nn.ModuleList],
    info: DistInfo,
    param_dtype: torch.dtype = torch.bfloat16,
    reduce_dtype: torch.dtype = torch.float32,
    reshard_after_forward: bool | None = None,
) -> nn.Module:
    """FSDP2: shard every block of `block_lists`, then the root (embeddings, heads).

    Parameters stay fp32 (the optimizer's master copy); compute runs in `param_dtype`,
    gradients are reduced in `reduce_dtype`. `reshard_after_forward` defaults to True on several
    ranks (free gathered blocks, gather again in backward) and False on one (nothing to gather:
    keep the `param_dtype` copy instead of re-casting it in backward).
    """
    if reshard_after_forward is None:
        reshard_after_forward = info.world_size > 1
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for blocks in block_lists:
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    # The root (embeddings, output heads) is needed again first thing in backward: keep it gathered.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)
    return model


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], keep: int = 0) -> None:
    """Sharded checkpoint of model + optimizer (DCP) and `state` (JSON, rank 0), atomically.

    Written to ``path.tmp`` then renamed, so a killed run never leaves a half checkpoint. Frozen
    parameters (``requires_grad`` False: the text/video branch in stage t2m) are not written:
    every run rebuilds them identically from the stage's source (pretrained folder or seeded
    init), and at paper size they are 5.2 B of stage t2m's 5.9 B parameters. `keep` > 0 then
    deletes all but the newest `keep` ``step-*`` siblings.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [],
                                        options=StateDictOptions(ignore_frozen_params=True))
    payload = {"model": model_sd}
    if optimizer is not None:
        payload["optim"] = optim_sd
    # several writer threads: one thread pickles ~0.55 GB/s (a 36 GB paper-size checkpoint: 65 s on the H200 host)
    writer = dcp.FileSystemWriter(str(tmp), thread_count=CHECKPOINT_WRITER_THREADS)
    dcp.save(payload, storage_writer=writer)
    if not dist.is_initialized() or dist.get_rank() == 0:
        (tmp / "train_state.json").write_text(json.dumps(state, indent=2))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        if keep > 0:
            steps = sorted((int(p.name.split("-")[1]), p) for p in path.parent.glob("step-*")
                           if p.is_dir() and not p.name.endswith(".tmp"))
            for _, old in steps[:-keep]:
                shutil.rmtree(old)
    if dist.is_initialized():
        dist.barrier()


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Load a `save_checkpoint` folder into (possibly differently sharded) model/optimizer.

    Every trainable parameter must be in the checkpoint (DCP raises on a missing key); frozen
    ones keep the values the stage was built with.
    """
    path = Path(path)
    if not (path / "train_state.json").exists():
        raise FileNotFoundError(f"no checkpoint at {path} (missing train_state.json)")
    options = StateDictOptions(ignore_frozen_params=True)
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [], options=options)
    payload = {"model": model_sd}
    if optimizer is not None:
        payload["optim"] = optim_sd
    dcp.load(payload, checkpoint_id=str(path))
    set_state_dict(model, optimizer if optimizer is not None else [], model_state_dict=payload["model"],
                   optim_state_dict=payload.get("optim", {}), options=StateDictOptions(ignore_frozen_params=True, strict=False))
    return json.loads((path / "train_state.json").read_text())


# ------------------------------------------------------------------------- training stages

def launched_by_torchrun() -> bool:
    """True under ``torchrun`` (it sets RANK / LOCAL_RANK / WORLD_SIZE)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def parallelize(stage: Stage, info, tc: TrainConfig) -> None:
    """FSDP2 (`egotwin_model.parallel.apply_fsdp`): shard `stage.blocks` one by one, then the root.

    bf16 compute / fp32 master weights on CUDA, fp32 on CPU; activation checkpointing of every
    `tc.ac_every`-th block (0: off), then ``torch.compile`` per block if `tc.compile` (the order
    of torchtitan: AC wrapper inside the compiled unit, FSDP outside).
    """
    blocks = [stage.blocks] if stage.blocks is not None else []
    if tc.ac_every and blocks:
        apply_activation_checkpointing(stage.blocks, every=tc.ac_every)
    if tc.compile and blocks:
        apply_compile(stage.blocks)
    dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    apply_fsdp(stage.model, blocks, info, param_dtype=dtype)


def rank_batch(indices: list[int], info) -> list[int]:
    """This rank's share of the global batch (`indices` split round-robin over the ranks)."""
    if info is None or info.world_size == 1:
        return indices
    if len(indices) % info.world_size:
        raise ValueError(f"--batch-size {len(indices)} must be a multiple of the {info.world_size} ranks")
    return indices[info.rank::info.world_size]


def is_main(info) -> bool:
    return info is None or info.is_main
