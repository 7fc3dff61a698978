"""What a checkpoint holds besides DCP's model + optimizer (`egotwin_model.parallel.save_checkpoint`):
the RNG states of a step (exact resume), the latest checkpoint of a stage, and a stage's final
weights as one safetensors file."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from egotwin_model.precompute import load_tensors, save_tensors
from egotwin_model.run import stage_dir

SAVE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""`TrainConfig.save_dtype` values."""


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """All random states a step consumes, JSON-able (torch ones base64)."""
    b64 = lambda t: base64.b64encode(t.numpy().tobytes()).decode()  # noqa: E731
    state = {
        "torch": b64(torch.get_rng_state()), "generator": b64(generator.get_state()),
        "numpy": np.random.get_state(legacy=False), "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    unb64 = lambda s: torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)  # noqa: E731
    torch.set_rng_state(unb64(state["torch"]))
    generator.set_state(unb64(state["generator"]))
    np_state = dict(state["numpy"])
    np_state["state"] = {**np_state["state"], "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(np_state)
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([unb64(s) for s in state["cuda"]])


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def latest_checkpoint(run_dir: str | Path, stage: str) -> Path | None:
    """The checkpoint of the highest step of `stage`, or None."""
    root = stage_dir(run_dir, stage) / "checkpoints"
    found = [(int(p.name.split("-")[1]), p) for p in root.glob("step-*")
             if p.is_dir() and not p.name.endswith(".tmp") and (p / "train_state.json").exists()]
    return max(found)[1] if found else None


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s full (unsharded) state dict on the CPU; collective when FSDP2-wrapped."""
    # lazy: torch.distributed.checkpoint (~1.5 s to import) only when a checkpoint is written
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in sd.items()}


def save_weights(module: nn.Module, path: Path, dtype: str = "float32") -> None:
    """Atomic safetensors of `module`'s full state dict (written by rank 0 only); floating tensors
    cast to `dtype` (`load_weights` casts back to the module's dtypes)."""
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"save dtype {dtype!r}: use one of {', '.join(SAVE_DTYPES)}")
    sd = {k: v.to(SAVE_DTYPES[dtype]) if v.is_floating_point() else v for k, v in full_state_dict(module).items()}
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_tensors(path, sd)


def load_weights(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Load `path` (strict) into `module`; a missing file names the stage to run."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `egotwin-model train --stage {what}` into this RUN_DIR first")
    module.load_state_dict(load_tensors(path))
    return module
