"""The training stages of EgoTwin (paper §3.3) as small composable pieces.

Stages, run in this order into one RUN_DIR (each finds the earlier ones' weights there):

=============  ===========================================================================
``video-vae``  tiny configs only: trains the small CogVideoX VAE (no downloaded weights);
               also builds the tiny tokenizer + T5 encoder -> ``RUN_DIR/encoders/``
(precompute)   `egotwin-model precompute`: text embeddings, video latents, motion features
``vae``        motion VAE, eq. 1 (reconstruction per loss group + lambda_KL KL)
``t2m``        text-to-motion: text + motion tokens only, text branch frozen, 10% null text
``joint``      text + video + motion (eq. 2), everything trained, 10% null text
=============  ===========================================================================

Pieces (so FSDP2 / torchrun slot in without restructuring, see `egotwin_model.parallel`):
`build_stage` (model + trainable parameters), `build_optimizer`, `batch_indices` (the data
order is a pure function of (seed, step): resuming needs no loader state), `StageBatches`
(loads the batch of a step), the stage's `loss` and `train` (the loop: step, log, checkpoint).

Exact resume: a checkpoint holds model, optimizer, step and the RNG states (torch global,
the training generator, NumPy, Python); a run of N steps equals k steps + resume to N, bit for
bit on CPU.

RUN_DIR layout::

    run.json                      config (representation/variant applied), encoder source, cache
    encoders/                     tiny: tokenizer/ text_encoder/ vae/ (CogVideoX layout)
    cache/                        `precompute` output (see egotwin_model.precompute)
    <stage>/checkpoints/step-N/   DCP checkpoint: model + optimizer + train_state.json
    <stage>/model.safetensors     final weights of the stage (what later stages / sample load)
    <stage>/log.jsonl             one line per logged step: step, loss (+ parts), lr
    vae/latent_stats.json         motion latent scale (1 / std of posterior samples, train split)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from egotwin_bench.constants import VIDEO_SIZE
from egotwin_model.config import EgoTwinConfig
from egotwin_model.precompute import clip_path, load_manifest, load_tensors, write_json

STAGES: tuple[str, ...] = ("video-vae", "vae", "t2m", "joint")
VIDEO_VAE_WINDOW: int = 9
"""Frames per training window of the tiny video VAE (1 + 4k: 3 latent frames)."""


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage (defaults per stage in `STAGE_DEFAULTS`)."""

    stage: str
    max_steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    text_dropout: float = 0.1
    """Probability of replacing a prompt by the null (empty-prompt) embedding (stages t2m, joint)."""
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    ac_every: int = 0
    """FSDP2 runs (torchrun or CUDA): activation checkpointing of every k-th DiT block (0: off)."""
    compile: bool = False
    """FSDP2 runs (torchrun or CUDA): ``torch.compile`` each DiT block (`parallel.apply_compile`)."""


STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "video-vae": dict(max_steps=2000, batch_size=4, lr=1e-3),
    "vae": dict(max_steps=20000, batch_size=64, lr=1e-4),
    "t2m": dict(max_steps=20000, batch_size=32, lr=1e-4, warmup_steps=100, weight_decay=1e-4),
    "joint": dict(max_steps=20000, batch_size=8, lr=2e-5, warmup_steps=100, weight_decay=1e-4),
}
"""Per-stage defaults; a config's ``[train.<stage>]`` TOML section and CLI options override them."""


def train_config(stage: str, config: EgoTwinConfig, **overrides: Any) -> TrainConfig:
    """Stage defaults <- config ``[train.<stage>]`` <- `overrides` (None values ignored)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    values = dict(STAGE_DEFAULTS[stage])
    values.update(config.extra.get("train", {}).get(stage, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return TrainConfig(stage=stage, **values)


@dataclass
class RunSettings:
    """What every stage of a run shares; stored in ``RUN_DIR/run.json`` by the first stage."""

    config: dict[str, Any]
    """`EgoTwinConfig.to_dict()` with representation and variant applied."""
    weights: str | None = None
    """CogVideoX-style folder (tokenizer/, text_encoder/, vae/, transformer/); None: tiny, built here."""
    variant: str = "egotwin"

    def model_config(self) -> EgoTwinConfig:
        return EgoTwinConfig.from_dict(self.config, name=self.config.get("name", "custom"))


def make_run_settings(
    config: str | Path,
    representation: str | None = None,
    interaction_mask: bool | None = None,
    asynchronous: bool | None = None,
    variant: str | None = None,
    weights: str | Path | None = None,
) -> RunSettings:
    """Resolve the config and the paper's switches.

    `variant` names a row of `egotwin_model.config.VARIANTS` (egotwin, wo_mr, wo_im, wo_ad,
    vidmld = all three off); the single switches (`representation`, `interaction_mask`,
    `asynchronous`) then override it. The stored variant name is the row the result matches
    ("custom" for other combinations).
    """
    cfg = EgoTwinConfig.load(config)
    if variant is not None:
        cfg = cfg.with_ablation(variant)
    if representation is not None:
        cfg = cfg.with_representation(representation)
    cfg = cfg.with_variant(interaction_mask=interaction_mask, asynchronous=asynchronous)
    config_json = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as run.json stores them
    return RunSettings(config=config_json, weights=str(Path(weights).resolve()) if weights else None,
                       variant=cfg.variant or "custom")


def open_run(run_dir: str | Path, settings: RunSettings | None) -> RunSettings:
    """Create ``run.json`` or check `settings` against it (a run keeps one config/variant)."""
    path = Path(run_dir) / "run.json"
    if path.is_file():
        stored = RunSettings(**json.loads(path.read_text()))
        if settings is not None and (settings.config != stored.config or settings.variant != stored.variant
                                     or (settings.weights and settings.weights != stored.weights)):
            raise ValueError(
                f"{run_dir} was started with another config/variant/weights (see {path}); "
                "use a new --out RUN_DIR, or leave the config and variant options out"
            )
        return stored
    if settings is None:
        raise FileNotFoundError(f"{path} not found: start the run with --config (and variant options)")
    write_json(path, dataclasses.asdict(settings))
    return settings


def encoders_dir(run_dir: Path, settings: RunSettings) -> Path:
    """Folder with tokenizer/, text_encoder/, vae/: the user's weights or RUN_DIR/encoders (tiny)."""
    return Path(settings.weights) if settings.weights else Path(run_dir) / "encoders"


# ------------------------------------------------------------------------------- RNG state


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


# ------------------------------------------------------------------------------------ data


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


class CachedClips:
    """The precomputed clips of one split (see `egotwin_model.precompute`), loaded lazily.

    Motion features are normalised with the train split's mean/std of the run's representation.
    """

    def __init__(self, cache: str | Path, split: str, representation: str, keys: Iterable[str]) -> None:
        self.cache = Path(cache)
        manifest = load_manifest(cache)
        self.ids: list[str] = manifest["splits"].get(split, [])
        if not self.ids:
            raise ValueError(f"the cache {cache} has no clip of split {split!r}: run `egotwin-model precompute`")
        self.split, self.representation, self.keys = split, representation, tuple(keys)
        stats = load_tensors(self.cache / "motion_stats.safetensors")
        self.mean, self.std = stats[f"{representation}_mean"], stats[f"{representation}_std"]
        self.null_text = load_tensors(self.cache / "null_text.safetensors")["text_emb"].float()

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, i: int) -> dict[str, torch.Tensor]:
        t = load_tensors(clip_path(self.cache, self.split, self.ids[i]))
        out = {k: t[k].float() for k in self.keys if k != "motion"}
        if "motion" in self.keys:
            out["motion"] = (t[self.representation].float() - self.mean) / self.std
        return out

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        items = [self.item(i) for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ----------------------------------------------------------------------------- checkpoints


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage


def latest_checkpoint(run_dir: str | Path, stage: str) -> Path | None:
    """The checkpoint of the highest step of `stage`, or None."""
    root = stage_dir(run_dir, stage) / "checkpoints"
    found = [(int(p.name.split("-")[1]), p) for p in root.glob("step-*")
             if p.is_dir() and not p.name.endswith(".tmp") and (p / "train_state.json").exists()]
    return max(found)[1] if found else None


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s full (unsharded) state dict on the CPU; collective when FSDP2-wrapped."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in sd.items()}


def save_weights(module: nn.Module, path: Path) -> None:
    """Atomic safetensors of `module`'s full state dict (written by rank 0 only)."""
    import torch.distributed as dist

    from egotwin_model.precompute import save_tensors

    sd = full_state_dict(module)
    if not dist.is_initialized() or dist.get_rank() == 0:
        save_tensors(path, sd)


def load_weights(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Load `path` (strict) into `module`; a missing file names the stage to run."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `egotwin-model train --stage {what}` into this RUN_DIR first")
    module.load_state_dict(load_tensors(path))
    return module


# ----------------------------------------------------------------------------------- loop


@dataclass
class Stage:
    """A built stage: the checkpointed module, its data and loss.

    The trainable parameters are those of `model` with ``requires_grad`` (looked up after
    FSDP wrapping, which replaces the parameter objects). `loss(batch, generator)` returns
    (scalar, parts); every random draw of a step comes from `generator` (or torch's global RNG,
    e.g. dropout), both of which are checkpointed. `post_backward(model)` may edit gradients
    before clipping; `no_decay` names parameters without weight decay. `finalize()` writes what
    later stages load (called on every rank once `max_steps` is reached).
    """

    name: str
    model: nn.Module
    num_items: int
    batch: Callable[[list[int]], dict[str, torch.Tensor]]
    loss: Callable[[dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    finalize: Callable[[], None] = lambda: None
    post_backward: Callable[[nn.Module], None] | None = None
    no_decay: tuple[str, ...] = ()
    blocks: nn.ModuleList | None = None
    """Transformer blocks to shard one by one under FSDP2 (None: the root only)."""
    extra_state: dict[str, Any] = field(default_factory=dict)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, tc: TrainConfig, no_decay: Iterable[str] = ()) -> torch.optim.Optimizer:
    """AdamW over `model`'s trainable parameters; `no_decay` names get weight decay 0.

    The lr is set every step by `lr_at`.
    """
    skip = set(no_decay)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"stage {tc.stage}: no trainable parameter")
    groups = [{"params": [p for n, p in named if n not in skip], "weight_decay": tc.weight_decay},
              {"params": [p for n, p in named if n in skip], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=tc.lr, betas=tc.betas)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with its random initialisation drawn from `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


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
    for group in optimizer.param_groups:
        group["lr"] = lr
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


# ---------------------------------------------------------------------------- distributed


def launched_by_torchrun() -> bool:
    """True under ``torchrun`` (it sets RANK / LOCAL_RANK / WORLD_SIZE)."""
    import os

    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def parallelize(stage: Stage, info, tc: TrainConfig) -> None:
    """FSDP2 (`egotwin_model.parallel.apply_fsdp`): shard `stage.blocks` one by one, then the root.

    bf16 compute / fp32 master weights on CUDA, fp32 on CPU; activation checkpointing of every
    `tc.ac_every`-th block (0: off), then ``torch.compile`` per block if `tc.compile` (the order
    of torchtitan: AC wrapper inside the compiled unit, FSDP outside).
    """
    from egotwin_model.parallel import apply_activation_checkpointing, apply_compile, apply_fsdp

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


def _gather_rng(generator: torch.Generator, info) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank order), JSON-able; collective under torchrun."""
    import torch.distributed as dist

    mine = _json_safe(rng_state(generator))
    if info is None or info.world_size == 1:
        return [mine]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, mine)
    return states


def is_main(info) -> bool:
    return info is None or info.is_main


def train(stage: Stage, tc: TrainConfig, run_dir: str | Path, progress: bool = True, info=None) -> list[dict[str, float]]:
    """Run `stage` to `tc.max_steps`, resuming from its latest checkpoint; returns this call's log.

    Checkpoints (`egotwin_model.parallel.save_checkpoint`: DCP, atomic) every
    `checkpoint_every` steps and at `max_steps`, then calls `stage.finalize()`. `info`: the
    `DistInfo` of a torchrun job (the model already wrapped by `parallelize`), None for one
    plain process. Only rank 0 logs.
    """
    from tqdm import tqdm

    from egotwin_model.parallel import load_checkpoint, save_checkpoint

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
                save_checkpoint(out / "checkpoints" / f"step-{step}", stage.model, optimizer, state)
    bar.close()
    stage.finalize()
    return log


# ------------------------------------------------------------------------- stage: video-vae


def tiny_encoder_configs(config: EgoTwinConfig):
    """The tiny text encoder / video VAE sizes: ``[encoders]`` TOML keys over the defaults.

    The text width is the DiT's `text_embed_dim`, the VAE latent channels its `in_channels`
    and the video size 8 x the DiT's latent `sample_height` (64 for the tiny config).
    """
    from egotwin_model.encoders import TinyTextEncoderConfig, TinyVideoVAEConfig

    enc = dict(config.extra.get("encoders", {}))
    text = TinyTextEncoderConfig(**{"d_model": config.dit.text_embed_dim, **enc.get("text", {})})
    vae_kw = {"latent_channels": config.dit.in_channels, "size": video_size(config), **enc.get("video_vae", {})}
    if "block_out_channels" in vae_kw:
        vae_kw["block_out_channels"] = tuple(vae_kw["block_out_channels"])
    return text, TinyVideoVAEConfig(**vae_kw)


def video_size(config: EgoTwinConfig) -> int:
    """Square pixel size the model works at: 8 x the DiT's latent height (480 paper, 64 tiny)."""
    return min(8 * config.dit.sample_height, VIDEO_SIZE)


def build_tiny_text_encoder_into(run_dir: Path, dataset: str | Path, config: EgoTwinConfig) -> None:
    """Train the tiny tokenizer on the train narrations + init the tiny T5; save in RUN_DIR/encoders."""
    from egotwin_model.encoders import build_tiny_text_encoder
    from egotwin_model.precompute import read_clips

    folder = Path(run_dir) / "encoders"
    if (folder / "text_encoder" / "config.json").exists():
        return
    texts = [c.text for c in read_clips(dataset, "train", with_video=False)]
    text_cfg, _ = tiny_encoder_configs(config)
    build_tiny_text_encoder(texts, text_cfg).save(folder)


def load_train_frames(dataset: str | Path, size: int, progress: bool = True) -> torch.Tensor:
    """All train-split videos as uint8 (N, 41, size, size, 3) in memory (small configs only)."""
    from tqdm import tqdm

    from egotwin_bench.evaluate.reference import split_ids
    from egotwin_model.encoders import frames_to_tensor, tensor_to_frames
    from egotwin_model.precompute import read_clips

    n = len(split_ids(dataset, "train"))
    out = []
    for clip in tqdm(read_clips(dataset, "train"), total=n, desc="load videos", disable=not progress):
        out.append(tensor_to_frames(frames_to_tensor(clip.frames()[None], size))[0])
    return torch.stack(out)


SCALING_CLIPS = 32
"""Train clips whose latents set the tiny video VAE's ``scaling_factor``."""


def build_video_vae_stage(run_dir: Path, dataset: str | Path, config: EgoTwinConfig, progress: bool = True,
                          kl_weight: float = 1e-6, device: str | torch.device = "cpu") -> Stage:
    """Tiny CogVideoX VAE on random `VIDEO_VAE_WINDOW`-frame windows: MSE + kl_weight x KL.

    `finalize` sets ``scaling_factor`` = 1 / std of the train clips' latents (as CogVideoX's
    own factor makes latents unit-variance) and saves ``RUN_DIR/encoders/vae``. The frames stay
    in host memory as uint8; each batch moves to `device`.
    """
    from egotwin_model.encoders import build_tiny_video_vae

    _, vae_cfg = tiny_encoder_configs(config)
    build_tiny_text_encoder_into(run_dir, dataset, config)
    frames = load_train_frames(dataset, vae_cfg.size, progress)  # (N, 41, s, s, 3)
    device = torch.device(device)
    vae = build_tiny_video_vae(vae_cfg).to(device)

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {"frames": frames[indices].to(device)}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        start = int(torch.randint(0, frames.shape[1] - VIDEO_VAE_WINDOW + 1, (1,), generator=gen, device=gen.device))
        x = b["frames"][:, start:start + VIDEO_VAE_WINDOW].permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen, device=gen.device)
        recon = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(recon, x)
        # per-element KL to N(0, I) (diffusers' `kl()` sums only dims 1-3 of a 5-D latent)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}

    def finalize() -> None:
        import shutil

        vae.eval()
        with torch.no_grad():  # latent std over (up to) SCALING_CLIPS train clips
            z = torch.cat([vae.encode(frames[i:i + 2].to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0).latent_dist.mean
                           for i in range(0, min(len(frames), SCALING_CLIPS), 2)])
        vae.register_to_config(scaling_factor=float(1.0 / z.std().clamp_min(1e-6)))
        target = Path(run_dir) / "encoders" / "vae"
        tmp = target.with_name("vae.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        vae.to("cpu").save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    return Stage("video-vae", vae, len(frames), batch, loss, finalize)


# ------------------------------------------------------------------------------- stage: vae


def motion_vae_path(run_dir: str | Path) -> Path:
    return stage_dir(run_dir, "vae") / "model.safetensors"


def load_motion_vae(run_dir: str | Path, config: EgoTwinConfig) -> tuple[nn.Module, float]:
    """The trained motion VAE (eval, frozen) and its latent scale from RUN_DIR/vae/."""
    from egotwin_model.motion_vae import MotionVAE

    vae = load_weights(MotionVAE(config.motion_vae), motion_vae_path(run_dir), "vae")
    stats = json.loads((stage_dir(run_dir, "vae") / "latent_stats.json").read_text())
    return vae.eval().requires_grad_(False), float(stats["scale"])


def build_motion_vae_stage(run_dir: Path, config: EgoTwinConfig, device: str | torch.device = "cpu") -> Stage:
    """Motion VAE on the cached, normalised train features; loss eq. 1 over the four groups.

    `finalize` writes ``vae/model.safetensors`` and ``vae/latent_stats.json`` with the latent
    scale 1 / std of posterior samples of the train clips (latents enter the DiT unit-variance,
    like Stable Diffusion's / CogVideoX's scaling factor).
    """
    from egotwin_model.motion_vae import MotionVAE, group_indices

    rep = config.representation
    data = CachedClips(Path(run_dir) / "cache", "train", rep, keys=("motion",))
    device = torch.device(device)
    vae = seeded(lambda: MotionVAE(config.motion_vae), seed=0).to(device)
    groups = group_indices(rep)

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in data.batch(indices).items()}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return vae.loss(b["motion"], groups, generator=gen)

    def finalize() -> None:
        save_weights(vae, motion_vae_path(run_dir))
        vae.eval()
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            z = torch.cat([vae.encode(batch(list(range(i, min(i + 32, len(data)))))["motion"]).sample(gen)
                           for i in range(0, len(data), 32)])
        write_json(stage_dir(run_dir, "vae") / "latent_stats.json",
                   {"scale": float(1.0 / z.std().clamp_min(1e-6)), "representation": rep})

    return Stage("vae", vae, len(data), batch, loss, finalize)


# ------------------------------------------------------------------------ stages: t2m, joint


def dit_path(run_dir: str | Path, stage: str) -> Path:
    return stage_dir(run_dir, stage) / "model.safetensors"


def motion_latents(vae: nn.Module, scale: float, motion: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Normalised features (B, 81, D) -> scaled motion latents (B, 21, C_m) for the DiT.

    Latents 1.. are a posterior sample (None generator: the mean); latent 0, the condition,
    is the posterior mean of the first pose encoded alone, exactly as at sampling time.
    """
    with torch.no_grad():
        post = vae.encode(motion)
        z = post.mean if generator is None else post.sample(generator)
        first = vae.encode(motion[:, :1]).mean
        return torch.cat([first, z[:, 1:]], dim=1) * scale


def video_condition(video_latents: torch.Tensor, first_frame_latent: torch.Tensor) -> torch.Tensor:
    """Clip latents (B, F', C, h, w) with latent 0 := the first frame encoded alone (the condition)."""
    return torch.cat([first_frame_latent, video_latents[:, 1:]], dim=1)


TIME_EMBEDDING_WEIGHT: str = "time_embedding.linear_1.weight"
"""The first Linear of the timestep MLP: its input is [sinusoid(t_video), sinusoid(t_motion)]."""


def freeze_text_branch(dit: nn.Module) -> tuple[tuple[str, ...], Callable[[nn.Module], None] | None]:
    """Stage t2m: freeze all but the motion branch (sets ``requires_grad``).

    The timestep MLP is shared; with asynchronous timesteps its first Linear sees
    [sinusoid(t_video), sinusoid(t_motion)], and the t_motion columns (zero when initialised
    from CogVideoX) are the only way the network learns the motion noise level, so those columns
    train and the t_video columns stay frozen: the returned `post_backward` zeroes their
    gradient and the weight gets no weight decay (returned name). Everything else the
    text/video branch owns stays frozen. Returns (no_decay names, post_backward).
    """
    from egotwin_model.dit import _is_motion

    for name, p in dit.named_parameters():
        p.requires_grad_(_is_motion(name))
    if not dit.config.asynchronous:
        return (), None
    dict(dit.named_parameters())[TIME_EMBEDDING_WEIGHT].requires_grad_(True)

    def zero_video_columns(model: nn.Module) -> None:
        grad = dict(model.named_parameters())[TIME_EMBEDDING_WEIGHT].grad
        if grad is None:
            return
        local = grad.to_local() if hasattr(grad, "to_local") else grad  # FSDP2 shards rows (dim 0)
        local[:, : local.shape[1] // 2] = 0

    return (TIME_EMBEDDING_WEIGHT,), zero_video_columns


def drop_text(text_emb: torch.Tensor, null_text: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free-guidance dropout: each row of `text_emb` (B, Lt, Dt) becomes `null_text`
    (Lt, Dt), the empty prompt's embedding, with probability `p` (paper §3.3: 0.1 in stages 2, 3)."""
    drop = torch.rand(text_emb.shape[0], generator=generator, device=generator.device).to(text_emb.device) < p
    return torch.where(drop[:, None, None], null_text[None].to(text_emb.dtype), text_emb)


def build_diffusion_stage(stage: str, run_dir: Path, config: EgoTwinConfig, settings: RunSettings,
                          tc: TrainConfig) -> Stage:
    """Stage t2m (text + motion, text branch frozen) or joint (text + video + motion, all trained).

    Per step: null text with p = `text_dropout`; (t_v, t_m) independent (synchronous for
    "w/o AD"); latent 0 of each modality kept clean and out of the loss; loss = MSE on v of each
    given modality, summed.
    """
    from egotwin_model import diffusion
    from egotwin_model.dit import EgoTwinDiT

    joint = stage == "joint"
    keys = ("text_emb", "motion") + (("video_latents", "first_frame_latent") if joint else ())
    data = CachedClips(Path(run_dir) / "cache", "train", config.representation, keys)
    device = torch.device(tc.device)
    motion_vae, scale = load_motion_vae(run_dir, config)
    motion_vae.to(device)
    dit = seeded(lambda: EgoTwinDiT(config.dit), tc.seed).to(device)
    no_decay, post_backward = (), None
    if joint:
        load_weights(dit, dit_path(run_dir, "t2m"), "t2m")
    else:
        if settings.weights:
            dit.load_cogvideox(Path(settings.weights) / "transformer")
        no_decay, post_backward = freeze_text_branch(dit)
    alphas = diffusion.alphas_cumprod(config.diffusion).to(device)
    null_text = data.null_text.to(device)
    pred = config.diffusion.prediction_type
    T = config.diffusion.num_train_timesteps

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in data.batch(indices).items()}

    def loss(b: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = b["text_emb"].shape[0]
        text = drop_text(b["text_emb"], null_text, tc.text_dropout, gen)
        zm = motion_latents(motion_vae, scale, b["motion"], gen)
        t_v, t_m = diffusion.sample_timesteps(n, config.dit.asynchronous, T, generator=gen, device=gen.device)
        t_v, t_m = t_v.to(device), t_m.to(device)
        xm, nm = diffusion.noisy_inputs(alphas, zm, t_m, gen)
        xv = zv = nv = None
        if joint:
            zv = video_condition(b["video_latents"], b["first_frame_latent"])
            xv, nv = diffusion.noisy_inputs(alphas, zv, t_v, gen)
        out = dit(text, xv, xm, t_v if joint else None, t_m)
        parts = {"motion": diffusion.loss(out.motion, diffusion.training_targets(alphas, zm, nm, t_m, pred))}
        if joint:
            parts["video"] = diffusion.loss(out.video, diffusion.training_targets(alphas, zv, nv, t_v, pred))
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}

    def finalize() -> None:
        save_weights(dit, dit_path(run_dir, stage))

    return Stage(stage, dit, len(data), batch, loss, finalize, post_backward=post_backward, no_decay=no_decay,
                 blocks=dit.blocks)


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


def precompute_run(run_dir: str | Path, settings: RunSettings, dataset: str | Path, device: str = "cpu",
                   progress: bool = True, **options: Any) -> dict:
    """Fill RUN_DIR/cache with `egotwin_model.precompute.precompute` (resumable); returns its manifest.

    The encoders come from `encoders_dir` (the user's CogVideoX folder, or RUN_DIR/encoders
    written by ``--stage video-vae`` for tiny runs). `options` go to `precompute` (splits,
    limit, batch_size, storage_dtype).
    """
    from egotwin_model.encoders import load_encoders
    from egotwin_model.precompute import precompute

    cfg = settings.model_config()
    text, video = load_encoders(encoders_dir(Path(run_dir), settings), cfg.dit.max_text_seq_length,
                                video_size(cfg), device=device)
    return precompute(dataset, Path(run_dir) / "cache", text, video, progress=progress, **options)


def ensure_cache(run_dir: str | Path, settings: RunSettings, dataset: str | Path | None,
                 device: str = "cpu", progress: bool = True) -> Path:
    """RUN_DIR/cache; built from `dataset` (all splits) by `precompute_run` if it is missing."""
    cache = Path(run_dir) / "cache"
    if (cache / "manifest.json").is_file():
        return cache
    if dataset is None:
        raise FileNotFoundError(f"{cache / 'manifest.json'} not found: pass --dataset DIR (the cache is built "
                                "from it) or run `egotwin-model precompute` first")
    precompute_run(run_dir, settings, dataset, device, progress)
    return cache


def run_stage(stage: str, run_dir: str | Path, settings: RunSettings | None = None, dataset: str | Path | None = None,
              progress: bool = True, **overrides: Any) -> list[dict[str, float]]:
    """Open/check RUN_DIR, build `stage` and train it to `max_steps` (resuming); returns the log.

    Stages vae/t2m/joint build RUN_DIR/cache from `dataset` first if it is missing. Under
    ``torchrun``, and on CUDA (a world of one without torchrun), the process group is joined
    (`egotwin_model.parallel.init_distributed`) and the t2m/joint DiT is sharded with FSDP2 in
    bf16 (`parallelize`); rank 0 alone writes cache and logs. A plain CPU process trains in fp32
    without FSDP (`tests/test_train.py` covers the FSDP2 path on CPU too).
    """
    import torch.distributed as dist

    from egotwin_model.parallel import init_distributed, use_tf32_matmuls

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
    import sys

    from egotwin_model.cli import app

    app(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
