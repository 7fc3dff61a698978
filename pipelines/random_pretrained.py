"""Random-initialised CogVideoX-5B weights in the exact folder layout of ``THUDM/CogVideoX-5b``.

    python pipelines/random_pretrained.py --out WEIGHTS [--scale paper|tiny|FILE.toml]
        [--parts transformer,vae,text_encoder,tokenizer,scheduler] [--dtype bfloat16] [--seed 0]
        [--device cuda|cpu] [--narrations FILE|DATASET] [--override PART.KEY=JSON ...] [--dry-run]

writes what ``huggingface-cli download THUDM/CogVideoX-5b --local-dir WEIGHTS`` gives, with random
weights, so the paper-size pipeline (`egotwin-model precompute/train/sample --weights WEIGHTS`)
runs with no download::

    WEIGHTS/model_index.json                       CogVideoXPipeline's component table
    WEIGHTS/scheduler/scheduler_config.json        CogVideoXDDIMScheduler
    WEIGHTS/transformer/config.json                CogVideoXTransformer3DModel (5.57 B)
    WEIGHTS/transformer/diffusion_pytorch_model-0000K-of-0000N.safetensors (+ .index.json; 10 GB shards)
    WEIGHTS/vae/config.json                        AutoencoderKLCogVideoX (216 M)
    WEIGHTS/vae/diffusion_pytorch_model.safetensors
    WEIGHTS/text_encoder/config.json               T5EncoderModel of T5-v1.1-XXL (4.76 B)
    WEIGHTS/text_encoder/model-0000K-of-0000N.safetensors (+ model.safetensors.index.json; 5 GB shards)
    WEIGHTS/tokenizer/spiece.model, tokenizer_config.json, special_tokens_map.json, added_tokens.json

Configs are the real ``config.json`` values (below); the shard size limits are the libraries'
defaults, which reproduce the real split (transformer 2 shards, text encoder 2). The tensors are
the state dicts of diffusers' / transformers' own classes, stored like their `save_pretrained`
(T5's tied ``encoder.embed_tokens.weight`` left out), in `--dtype` (bf16 as the real files).

**Tokenizer.** T5's real ``spiece.model`` cannot be had offline, so a SentencePiece Unigram model
is trained on narrations (the synthetic world's by default) with T5's conventions: pad 0, eos 1,
unk 2, no bos, 100 ``<extra_id_*>`` sentinels after the pieces (``<extra_id_0>`` last), eos
appended, ``model_max_length`` 226. Its vocabulary is as large as the corpus allows (a few
hundred pieces, not 32 000); the embedding table keeps T5's 32 128 rows.

**Memory.** Networks are built on the meta device; each unit (a transformer / T5 block, the VAE,
an embedding: at most `UNIT_PARAMS` parameters) is materialised on `--device`, filled with NaN,
initialised by the library's own rule (``reset_parameters`` of every torch module for diffusers;
``_init_weights`` bottom-up for transformers, as ``post_init`` does), checked finite, cast to
`--dtype` into its shard and sent back to the meta device; a shard is written as soon as all its
tensors exist. Peak host memory is about one shard (10 GB) plus one fp32 unit (1 GB): the paper
T5-XXL encoder (4.76 B) was written on 2 busy CPU cores in 6.2 min with a 6.9 GB peak RSS. Each
unit draws from its own seed (`--seed` and the unit's name), so the result does not depend on the
shard split (CPU and CUDA draw different numbers). Each part is written to ``PART.tmp`` and renamed when complete; complete parts are kept on
a rerun (``--force`` rewrites them).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import diffusers
import numpy as np
import pyarrow.parquet as pq
import sentencepiece as spm
import torch
import transformers
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm
from transformers import T5Config, T5EncoderModel

from egotwin_bench.evaluate.reference import shard_paths
from egotwin_bench.synthetic import narration
from egotwin_bench.synthetic.scene import make_scene
from egotwin_bench.synthetic.script import make_script
from egotwin_model.config import EgoTwinConfig
from egotwin_model.encoders import TEXT_LENGTH, TinyTextEncoderConfig, TinyVideoVAEConfig

PARTS: tuple[str, ...] = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
UNIT_PARAMS: int = 256_000_000
"""Largest subtree materialised at once (1 GB in fp32); bigger modules are split into children."""
DIFFUSERS_SHARD, TRANSFORMERS_SHARD = "10GB", "5GB"
"""`save_pretrained` defaults of diffusers / transformers (the real CogVideoX-5b shards)."""

# ---------------------------------------------------------------- the real configs

COGVIDEOX_5B_TRANSFORMER: dict[str, Any] = {
    "activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 64, "dropout": 0.0,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 16, "max_text_seq_length": 226,
    "norm_elementwise_affine": True, "norm_eps": 1e-05, "num_attention_heads": 48, "num_layers": 42,
    "out_channels": 16, "patch_size": 2, "sample_frames": 49, "sample_height": 60, "sample_width": 90,
    "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4, "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096, "time_embed_dim": 512, "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": False, "use_rotary_positional_embeddings": True,
}
"""THUDM/CogVideoX-5b transformer/config.json (without _class_name / _diffusers_version)."""

COGVIDEOX_5B_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 256, 512], "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "force_upcast": True, "in_channels": 3, "latent_channels": 16, "latents_mean": None, "latents_std": None,
    "layers_per_block": 3, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_height": 480,
    "sample_width": 720, "scaling_factor": 0.7, "shift_factor": None, "temporal_compression_ratio": 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4, "use_post_quant_conv": False, "use_quant_conv": False,
}
"""THUDM/CogVideoX-5b vae/config.json (scaling factor 0.7; CogVideoX-2b's is 1.15258426)."""

COGVIDEOX_5B_SCHEDULER: dict[str, Any] = {
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "clip_sample_range": 1.0, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True, "sample_max_value": 1.0, "set_alpha_to_one": True, "snr_shift_scale": 1.0,
    "steps_offset": 0, "timestep_spacing": "trailing", "trained_betas": None,
}
"""THUDM/CogVideoX-5b scheduler/scheduler_config.json (CogVideoXDDIMScheduler)."""

T5_V1_1_XXL_ENCODER: dict[str, Any] = {
    "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64, "d_model": 4096,
    "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True, "is_gated_act": True,
    "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24,
    "output_past": True, "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "use_cache": True, "vocab_size": 32128,
}
"""THUDM/CogVideoX-5b text_encoder/config.json (google/t5-v1_1-xxl's encoder)."""

MODEL_INDEX: dict[str, Any] = {
    "_class_name": "CogVideoXPipeline",
    "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLCogVideoX"],
}
"""THUDM/CogVideoX-5b model_index.json (+ _diffusers_version of the writer)."""

T5_EXTRA_IDS: int = 100
T5_SPIECE_PIECES: int = 32000
"""Pieces of T5's SentencePiece model (ids 0..31999); the sentinels follow, the table has 32128 rows."""

# The transformer keys that EgoTwin's [dit] section mirrors (one source of truth: the model config).
_DIT_KEYS = tuple(k for k in COGVIDEOX_5B_TRANSFORMER if k != "use_learned_positional_embeddings")


# ---------------------------------------------------------------- configs per scale


def part_configs(scale: str, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """{part: config dict} for the EgoTwin config `scale` ("paper" | "tiny" | FILE.toml).

    The transformer takes the DiT's CogVideoX keys (for "paper" these are the real values). A DiT
    with CogVideoX-5B's text width (4096) and latent channels (16) gets the real VAE and T5-XXL;
    any other gets `egotwin_model.encoders`'s tiny encoder sizes at its widths. `overrides` are
    ``PART.KEY=JSON`` strings applied last."""
    dit = EgoTwinConfig.load(scale).dit
    transformer = {**COGVIDEOX_5B_TRANSFORMER, **{k: getattr(dit, k) for k in _DIT_KEYS}}
    vae, t5 = copy.deepcopy(COGVIDEOX_5B_VAE), copy.deepcopy(T5_V1_1_XXL_ENCODER)
    if (dit.text_embed_dim, dit.in_channels) != (T5_V1_1_XXL_ENCODER["d_model"], COGVIDEOX_5B_VAE["latent_channels"]):
        tv, tt = TinyVideoVAEConfig(), TinyTextEncoderConfig()
        size = 8 * dit.sample_height
        vae.update(block_out_channels=list(tv.block_out_channels), latent_channels=dit.in_channels,
                   layers_per_block=tv.layers_per_block, norm_num_groups=tv.norm_num_groups,
                   sample_height=size, sample_width=size)
        t5.update(d_model=dit.text_embed_dim, d_kv=dit.text_embed_dim // tt.num_heads, d_ff=tt.d_ff,
                  num_layers=tt.num_layers, num_decoder_layers=tt.num_layers, num_heads=tt.num_heads,
                  vocab_size=tt.vocab_size)
    configs = {"transformer": transformer, "vae": vae, "text_encoder": t5,
               "scheduler": copy.deepcopy(COGVIDEOX_5B_SCHEDULER), "tokenizer": {"model_max_length": TEXT_LENGTH}}
    for item in overrides:
        key, sep, value = item.partition("=")
        part, dot, field = key.partition(".")
        if not sep or not dot or part not in configs:
            raise ValueError(f"--override {item!r}: expected PART.KEY=JSON with PART one of {', '.join(configs)}")
        configs[part][field] = json.loads(value)
    if configs["vae"]["latent_channels"] != configs["transformer"]["in_channels"]:
        raise ValueError("vae.latent_channels must equal transformer.in_channels")
    if configs["text_encoder"]["d_model"] != configs["transformer"]["text_embed_dim"]:
        raise ValueError("text_encoder.d_model must equal transformer.text_embed_dim")
    return configs


# ---------------------------------------------------------------- meta-device models


def build_meta(part: str, config: dict[str, Any]) -> nn.Module:
    """The part's network on the meta device (no memory), from its config dict."""
    with torch.device("meta"):
        if part == "transformer":
            return CogVideoXTransformer3DModel.from_config(config)
        if part == "vae":
            return AutoencoderKLCogVideoX.from_config(config)
        if part == "text_encoder":
            return T5EncoderModel(T5Config.from_dict(config))
    raise ValueError(f"{part} has no network")


def saved_keys(model: nn.Module) -> list[str]:
    """State-dict keys `save_pretrained` stores (tied copies, e.g. T5's encoder.embed_tokens, left out)."""
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    return [k for k in model.state_dict() if k not in tied]


@dataclass(frozen=True)
class Unit:
    """A module materialised at once: its whole subtree, or only its direct tensors."""

    prefix: str
    module: nn.Module
    recurse: bool

    def tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        for name, t in [*self.module.named_parameters(recurse=self.recurse),
                        *self.module.named_buffers(recurse=self.recurse)]:
            yield self.prefix + name, t


def units(module: nn.Module, limit: int = UNIT_PARAMS, prefix: str = "") -> list[Unit]:
    """Split `module` into units of at most `limit` parameters (a larger leaf is one unit), in
    state-dict order."""
    size = sum(p.numel() for p in module.parameters())
    children = list(module.named_children())
    if size <= limit or not children:
        return [Unit(prefix, module, True)]
    out: list[Unit] = []
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        out.append(Unit(prefix, module, False))
    for name, child in children:
        out += units(child, limit, f"{prefix}{name}.")
    return out


def _ancestors(root: nn.Module, prefix: str) -> list[nn.Module]:
    """Modules above `prefix` (nearest first, root last)."""
    parts = prefix.rstrip(".").split(".") if prefix else []
    chain = [root]
    for p in parts[:-1]:
        chain.append(getattr(chain[-1], p))
    return chain[::-1] if parts else []


def init_unit(root: nn.Module, unit: Unit, library: str) -> None:
    """Initialise `unit`'s (materialised) tensors with the library's own rule."""
    mods = list(unit.module.modules()) if unit.recurse else [unit.module]
    if library == "diffusers":  # torch defaults: every module's reset_parameters (diffusers adds none here)
        for m in mods:
            if any(True for _ in m.parameters(recurse=False)):
                if not hasattr(m, "reset_parameters"):
                    raise TypeError(f"{unit.prefix}: {type(m).__name__} has parameters but no reset_parameters")
                m.reset_parameters()
    else:  # transformers: _init_weights children first, then the ancestors (post_init's order)
        for m in [*reversed(mods), *_ancestors(root, unit.prefix)]:
            root._init_weights(m)


def _unit_seed(seed: int, prefix: str) -> int:
    return zlib.crc32(f"{seed}:{prefix}".encode())


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class ShardPlan:
    files: dict[str, list[str]]  # file name -> tensor names
    weight_map: dict[str, str]
    total_size: int
    index_name: str | None  # None: one unsharded file


def plan_shards(model: nn.Module, weights_name: str, dtype: torch.dtype, max_shard_size: str | int) -> ShardPlan:
    """The `save_pretrained` split of the model's saved tensors (huggingface_hub's splitter)."""
    state = model.state_dict()
    meta = {k: torch.empty(state[k].shape, dtype=dtype if state[k].is_floating_point() else state[k].dtype,
                           device="meta") for k in saved_keys(model)}
    stem, ext = weights_name.rsplit(".", 1)
    split = split_torch_state_dict_into_shards(meta, filename_pattern=stem + "{suffix}." + ext,
                                               max_shard_size=max_shard_size)
    return ShardPlan(files={f: list(v) for f, v in split.filename_to_tensors.items()},
                     weight_map=dict(sorted(split.tensor_to_filename.items())),
                     total_size=int(split.metadata["total_size"]),
                     index_name=f"{weights_name}.index.json" if split.is_sharded else None)


def write_weights(model: nn.Module, folder: Path, plan: ShardPlan, library: str, dtype: torch.dtype,
                  device: torch.device, seed: int, progress: bool = True) -> None:
    """Materialise `model` unit by unit and write the shards of `plan` into `folder`."""
    owner = {name: file for file, names in plan.files.items() for name in names}
    pending: dict[str, dict[str, torch.Tensor]] = {f: {} for f in plan.files}
    todo = [u for u in units(model) if any(n in owner for n, _ in u.tensors())]
    devices = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    for unit in tqdm(todo, desc=f"init {folder.name}", unit="unit", disable=not progress):
        unit.module.to_empty(device=device, recurse=unit.recurse)
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            for _, t in unit.tensors():
                if t.is_floating_point():
                    t.fill_(float("nan"))
            torch.manual_seed(_unit_seed(seed, unit.prefix))
            init_unit(model, unit, library)
            for name, t in unit.tensors():
                if name not in owner:
                    continue
                if t.is_floating_point() and not bool(torch.isfinite(t.sum(dtype=torch.float64))):  # a NaN left
                    raise RuntimeError(f"{name} was not initialised by the {library} init rule")
                out = t.detach().to(dtype if t.is_floating_point() else t.dtype).to("cpu").contiguous()
                pending[owner[name]][name] = out
        unit.module.to_empty(device="meta", recurse=unit.recurse)
        for file in [f for f, got in pending.items() if len(got) == len(plan.files[f])]:
            save_file(pending.pop(file), str(folder / file), metadata={"format": "pt"})
    if pending:
        raise RuntimeError(f"tensors never materialised for {sorted(pending)}")
    if plan.index_name:
        index = {"metadata": {"total_size": plan.total_size}, "weight_map": plan.weight_map}
        (folder / plan.index_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _diffusers_config(model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    return {"_class_name": type(model).__name__, "_diffusers_version": diffusers.__version__, **config}


def write_network(part: str, config: dict[str, Any], folder: Path, dtype: torch.dtype, device: torch.device,
                  seed: int, max_shard_size: str | int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write `part`'s config.json + weights into `folder`; returns a summary."""
    model = build_meta(part, config)
    library = "transformers" if part == "text_encoder" else "diffusers"
    if library == "diffusers":
        plan = plan_shards(model, "diffusion_pytorch_model.safetensors", dtype, max_shard_size or DIFFUSERS_SHARD)
        cfg = _diffusers_config(model, config)
    else:
        plan = plan_shards(model, "model.safetensors", dtype, max_shard_size or TRANSFORMERS_SHARD)
        cfg = {**config, "torch_dtype": str(dtype).removeprefix("torch."), "transformers_version": transformers.__version__}
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    write_weights(model, folder, plan, library, dtype, device, seed, progress)
    return summary(part, model, plan)


def summary(part: str, model: nn.Module, plan: ShardPlan) -> dict[str, Any]:
    names = set(saved_keys(model))
    params = sum(p.numel() for n, p in model.named_parameters(remove_duplicate=False) if n in names)
    return {"part": part, "class": type(model).__name__, "parameters": params, "bytes": plan.total_size,
            "files": sorted(plan.files), "index": plan.index_name}


# ---------------------------------------------------------------- tokenizer


def synthetic_narrations(scenes: int = 8, seconds: float = 240.0, seed: int = 0) -> list[str]:
    """Narrations of the synthetic world (egotwin_bench.synthetic): every column of every window
    of one scripted recording in each of `scenes` rooms."""
    texts: list[str] = []
    for loc in range(scenes):
        scene = make_scene(loc, seed)
        rng = np.random.default_rng([seed, loc])
        script = make_script(scene, seconds, rng)
        for window in narration.group_windows(script, seconds, rng):
            texts.append(narration.atomic_text(window, rng))
            texts += narration.motion_texts(window, rng).values()
        texts.append(narration.activity_summary(script))
    return texts


def read_narrations(source: Path) -> list[str]:
    """Narrations from a text file (one per line) or a curated dataset's ``text`` column."""
    if source.is_file():
        return [line.strip() for line in source.read_text().splitlines() if line.strip()]
    return [str(t) for path in shard_paths(source) for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()]


def train_spiece(texts: Sequence[str], max_pieces: int = T5_SPIECE_PIECES) -> bytes:
    """A SentencePiece Unigram model with T5's special ids (pad 0, eos 1, unk 2, no bos); the
    vocabulary is as large as `texts` support, at most `max_pieces`."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no narration to train the tokenizer on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="unigram", vocab_size=max_pieces,
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )
    return model.getvalue()


def write_tokenizer(folder: Path, spiece: bytes, model_max_length: int = TEXT_LENGTH) -> dict[str, Any]:
    """The four files of CogVideoX-5b's tokenizer/ (T5Tokenizer) around `spiece`."""
    pieces = spm.SentencePieceProcessor(model_proto=spiece).get_piece_size()
    extra = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    ids = {tok: pieces + T5_EXTRA_IDS - 1 - i for i, tok in enumerate(extra)}  # <extra_id_0> is the last id

    def special(content: str) -> dict[str, Any]:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}

    decoder = {"0": special("<pad>"), "1": special("</s>"), "2": special("<unk>")}
    decoder.update({str(i): special(tok) for tok, i in sorted(ids.items(), key=lambda kv: kv[1])})
    config = {"add_prefix_space": True, "added_tokens_decoder": decoder, "additional_special_tokens": extra,
              "clean_up_tokenization_spaces": True, "eos_token": "</s>", "extra_ids": T5_EXTRA_IDS, "legacy": True,
              "model_max_length": model_max_length, "pad_token": "<pad>", "sp_model_kwargs": {},
              "tokenizer_class": "T5Tokenizer", "unk_token": "<unk>"}
    folder.mkdir(parents=True)
    (folder / "spiece.model").write_bytes(spiece)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    specials = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    (folder / "added_tokens.json").write_text(json.dumps(ids, indent=2) + "\n")
    return {"part": "tokenizer", "class": "T5Tokenizer", "pieces": pieces, "vocab": pieces + T5_EXTRA_IDS,
            "files": sorted(p.name for p in folder.iterdir())}


# ---------------------------------------------------------------- the whole folder


def write_random_pretrained(out: str | Path, scale: str = "paper", parts: Sequence[str] = PARTS,
                            dtype: torch.dtype = torch.bfloat16, seed: int = 0, device: str | torch.device = "cpu",
                            narrations: Sequence[str] | None = None, overrides: Sequence[str] = (),
                            max_shard_size: str | int | None = None, force: bool = False,
                            progress: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Write the parts into `out` (see the module doc); returns one summary dict per part written."""
    out = Path(out)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; parts: {', '.join(PARTS)}")
    configs = part_configs(scale, overrides)
    device = torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    index = {**MODEL_INDEX, "_diffusers_version": _diffusers_version()}
    (out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    done: list[dict[str, Any]] = []
    for part in [p for p in PARTS if p in parts]:
        folder = out / part
        if folder.exists() and not force:
            log(f"{part}: {folder} exists, kept (--force rewrites it)")
            continue
        tmp = folder.with_name(part + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        if part == "scheduler":
            CogVideoXDDIMScheduler.from_config(configs[part]).save_pretrained(tmp)
            info: dict[str, Any] = {"part": part, "class": "CogVideoXDDIMScheduler", "files": ["scheduler_config.json"]}
        elif part == "tokenizer":
            texts = list(narrations) if narrations is not None else synthetic_narrations()
            info = write_tokenizer(tmp, train_spiece(texts), configs[part]["model_max_length"])
            info["narrations"] = len(texts)
        else:
            info = write_network(part, configs[part], tmp, dtype, device, seed, max_shard_size, progress)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        log(json.dumps(info))
        done.append(info)
    return done


def plan_random_pretrained(scale: str = "paper", dtype: torch.dtype = torch.bfloat16, overrides: Sequence[str] = (),
                           max_shard_size: str | int | None = None) -> list[dict[str, Any]]:
    """What `write_random_pretrained` would write for the networks (meta device only, no memory)."""
    configs = part_configs(scale, overrides)
    out = []
    for part in ("transformer", "vae", "text_encoder"):
        model = build_meta(part, configs[part])
        if part == "text_encoder":
            plan = plan_shards(model, "model.safetensors", dtype, max_shard_size or TRANSFORMERS_SHARD)
        else:
            plan = plan_shards(model, "diffusion_pytorch_model.safetensors", dtype, max_shard_size or DIFFUSERS_SHARD)
        out.append(summary(part, model, plan))
    return out


def _diffusers_version() -> str:
    return diffusers.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder to write (the --weights DIR of egotwin-model)")
    parser.add_argument("--scale", default="paper", help="paper (the real CogVideoX-5b sizes) | tiny | FILE.toml")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where units are initialised (cuda: minutes for the paper size)")
    parser.add_argument("--narrations", type=Path, default=None,
                        help="tokenizer corpus: a text file (one narration a line) or a curated dataset folder; "
                             "default: the synthetic world's narrations")
    parser.add_argument("--override", action="append", default=[], metavar="PART.KEY=JSON",
                        help="change one config value, e.g. transformer.num_layers=2 (repeatable)")
    parser.add_argument("--max-shard-size", default=None, help="shard limit (default 10GB diffusers, 5GB transformers)")
    parser.add_argument("--force", action="store_true", help="rewrite parts that already exist")
    parser.add_argument("--dry-run", action="store_true", help="print parameter counts and shard files; write nothing")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    try:
        if args.dry_run:
            for info in plan_random_pretrained(args.scale, dtype, args.override, args.max_shard_size):
                print(json.dumps(info))
            return 0
        if args.out is None:
            parser.error("--out is required (or --dry-run)")
        texts = read_narrations(args.narrations) if args.narrations else None
        write_random_pretrained(args.out, args.scale, [p.strip() for p in args.parts.split(",") if p.strip()], dtype,
                                args.seed, args.device, texts, args.override, args.max_shard_size, args.force,
                                progress=not args.no_progress)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
