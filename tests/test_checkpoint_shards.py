"""A stage's final weights as one safetensors file or the diffusers / transformers sharded layout
(`egotwin_model.checkpoint.write_weights`), read back by every reader (`load_weights`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from egotwin_model.checkpoint import load_weights, read_weights, save_weights, weights_exist, write_weights
from egotwin_model.coupling import conditional_losses
from egotwin_model.run import dit_path
from tests.fixtures_model import TINY_BATCH, TINY_LR, TINY_STEPS, cli
from tests.test_train import fork_run


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    state = {f"blocks.{i}.weight": torch.randn(64, 64, generator=gen) for i in range(6)}  # 16 KiB each
    state["head.bias"] = torch.randn(7, generator=gen).to(torch.bfloat16)
    state["step"] = torch.tensor([3, 1, 4], dtype=torch.int64)
    return state


def test_sharded_weights_round_trip_exactly_in_the_transformers_layout(tmp_path: Path) -> None:
    state, path = _state(), tmp_path / "joint" / "model.safetensors"
    written = write_weights(path, state, max_shard_bytes=40 * 1024)
    shards = sorted(p.name for p in path.parent.glob("model-*.safetensors"))
    assert shards == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)] and not path.exists()
    assert set(written) == {path.parent / s for s in shards} | {path.parent / "model.safetensors.index.json"}
    for s in shards:  # each shard's tensors within the limit (+ its JSON header)
        assert (path.parent / s).stat().st_size <= 40 * 1024 + 1024
    index = json.loads((path.parent / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    back = read_weights(path)
    assert back.keys() == state.keys() and weights_exist(path)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in state.items())
    # huggingface_hub's own loader reads the folder: the layout is the convention, not a look-alike
    from huggingface_hub import load_torch_model

    module = nn.Module()
    for k, v in state.items():
        module.register_buffer(k.replace(".", "_"), torch.zeros_like(v))
    renamed = tmp_path / "hf"
    write_weights(renamed / "model.safetensors", {k.replace(".", "_"): v for k, v in state.items()}, 40 * 1024)
    load_torch_model(module, renamed, strict=True)
    assert torch.equal(module.blocks_5_weight, state["blocks.5.weight"])


def test_one_layout_replaces_the_other_and_no_stale_shard_survives(tmp_path: Path) -> None:
    state, path = _state(), tmp_path / "model.safetensors"
    write_weights(path, state, max_shard_bytes=40 * 1024)  # 3 shards
    write_weights(path, state, max_shard_bytes=70 * 1024)  # 2 shards: the 3-shard files go
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    write_weights(path, state)  # one file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert all(torch.equal(read_weights(path)[k], v) for k, v in state.items())


def test_a_missing_shard_or_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with pytest.raises(FileNotFoundError, match="egotwin-model train --stage joint"):
        load_weights(nn.Linear(2, 2), path, "joint")
    write_weights(path, _state(), max_shard_bytes=40 * 1024)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00003.safetensors is missing"):
        read_weights(path)


def test_save_weights_shards_a_module_in_bf16_and_load_weights_reads_it(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Linear(128, 128), nn.Linear(128, 128), nn.Linear(128, 3))
    path = tmp_path / "model.safetensors"
    save_weights(module, path, "bfloat16", max_shard_mb=0.05)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) >= 2
    other = load_weights(nn.Sequential(nn.Linear(128, 128), nn.Linear(128, 128), nn.Linear(128, 3)), path, "joint")
    for a, b in zip(module.state_dict().values(), other.state_dict().values()):
        assert b.dtype == torch.float32 and torch.equal(b, a.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match=">= 0 MiB"):
        save_weights(module, path, max_shard_mb=-1)


def test_a_joint_stage_trained_with_max_shard_mb_is_read_by_the_probes(tiny_run: Path, tmp_path: Path) -> None:
    """`train --max-shard-mb` writes shards; the weights equal the one-file run's and the probes
    (like sample and the next stage, through `load_weights`) read them to the same numbers."""
    run = fork_run(tiny_run, tmp_path / "run", ("vae", "t2m"))
    cli("train", "--stage", "joint", "--config", "tiny", "--run", run, "--steps", TINY_STEPS["joint"],
        "--batch-size", TINY_BATCH["joint"], "--lr", TINY_LR, "--log-every", 1, "--max-shard-mb", 0.25)
    path = dit_path(run, "joint")
    assert not path.exists() and len(list(path.parent.glob("model-*-of-*.safetensors"))) >= 2
    one = read_weights(dit_path(tiny_run, "joint"))
    sharded = read_weights(path)
    assert sharded.keys() == one.keys() and all(torch.equal(sharded[k], one[k]) for k in one)
    a = conditional_losses(run, split="test", batch_size=2, resamples=0)
    b = conditional_losses(tiny_run, split="test", batch_size=2, resamples=0)
    assert a["motion|video_clean"] == b["motion|video_clean"] and a["video|text"] == b["video|text"]
