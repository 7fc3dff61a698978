"""What a checkpoint holds besides DCP's model + optimizer (`egotwin_model.parallel.save_checkpoint`):
the RNG states of a step (exact resume), the latest checkpoint of a stage, and a stage's final
weights: one ``model.safetensors``, or, above a size, the diffusers / transformers sharded layout
``model-00001-of-0000N.safetensors`` ... + ``model.safetensors.index.json`` (``weight_map``: tensor
name -> shard file; ``metadata.total_size``: bytes of the tensors), split by huggingface_hub's
`split_torch_state_dict_into_shards`. Readers (`read_weights`, `load_weights`, `weights_exist`)
take either layout."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from huggingface_hub import split_torch_state_dict_into_shards
from torch import nn

from egotwin_model.precompute import load_tensors, save_tensors, write_json
from egotwin_model.run import SAVE_DTYPE_NAMES, stage_dir

SAVE_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in SAVE_DTYPE_NAMES}
"""`TrainConfig.save_dtype` values -> torch dtypes."""


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


def index_path(path: Path) -> Path:
    """``model.safetensors`` -> ``model.safetensors.index.json`` (the sharded layout's index)."""
    return path.with_name(path.name + ".index.json")


def shard_paths(path: Path) -> list[Path]:
    """The ``<stem>-0000K-of-0000N.safetensors`` files next to `path` (any N)."""
    stem, ext = path.name.rsplit(".", 1)
    return sorted(path.parent.glob(f"{stem}-*-of-*.{ext}"))


def write_weights(path: Path, state: dict[str, torch.Tensor], max_shard_bytes: int | None = None) -> list[Path]:
    """Write `state` at `path` (``.../model.safetensors``): one file, or shards + index when the
    tensors exceed `max_shard_bytes` (None: never). Every file is atomic; the other layout's files
    and stale shards are removed (a reader never sees a mix: the index is written after its
    shards, and dropped before a single file replaces it). Returns the files written."""
    stem, ext = path.name.rsplit(".", 1)
    split = split_torch_state_dict_into_shards(state, filename_pattern=stem + "{suffix}." + ext,
                                               max_shard_size=max_shard_bytes or 2**62)
    index, old = index_path(path), shard_paths(path)
    index.unlink(missing_ok=True)
    if not split.is_sharded:
        save_tensors(path, state)
        for p in old:
            p.unlink()
        return [path]
    written = []
    for name, keys in split.filename_to_tensors.items():
        save_tensors(path.parent / name, {k: state[k] for k in keys})
        written.append(path.parent / name)
    write_json(index, {"metadata": {"total_size": int(split.metadata["total_size"])},
                       "weight_map": dict(sorted(split.tensor_to_filename.items()))})
    path.unlink(missing_ok=True)
    for p in set(old) - set(written):
        p.unlink()
    return written + [index]


def weights_exist(path: Path) -> bool:
    """Whether `path` (``.../model.safetensors``) was written, in either layout."""
    return path.is_file() or index_path(path).is_file()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict at `path` (``.../model.safetensors``): the sharded layout when its index is
    there, else the single file.

    Raises:
        FileNotFoundError: neither exists, or a shard the index names is missing (named).
    """
    index = index_path(path)
    if not index.is_file():
        return load_tensors(path)
    weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(weight_map.values())):
        shard = path.parent / name
        if not shard.is_file():
            raise FileNotFoundError(f"{shard} is missing: {index} names it (copy every shard of the stage)")
        state.update(load_tensors(shard))
    if missing := sorted(set(weight_map) - set(state)):
        raise ValueError(f"{index} maps {len(missing)} tensors its shards lack (e.g. {missing[0]})")
    return state


def save_weights(module: nn.Module, path: Path, dtype: str = "float32", max_shard_mb: float = 0.0) -> None:
    """Atomic safetensors of `module`'s full state dict (written by rank 0 only); floating tensors
    cast to `dtype` (`load_weights` casts back to the module's dtypes); sharded (`write_weights`)
    when larger than `max_shard_mb` MiB (0: one file)."""
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"save dtype {dtype!r}: use one of {', '.join(SAVE_DTYPES)}")
    if max_shard_mb < 0:
        raise ValueError(f"max shard size must be >= 0 MiB (0: one file), got {max_shard_mb}")
    sd = {k: v.to(SAVE_DTYPES[dtype]) if v.is_floating_point() else v for k, v in full_state_dict(module).items()}
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_weights(path, sd, int(max_shard_mb * 2**20) or None)


def load_weights(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Load `path` (strict; one file or the sharded layout) into `module`; a missing file names the
    stage to run."""
    if not weights_exist(path):
        raise FileNotFoundError(f"{path} not found: run `egotwin-model train --stage {what}` into this RUN_DIR first")
    module.load_state_dict(read_weights(path))
    return module
