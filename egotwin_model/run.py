"""A training run's folder and settings: ``run.json``, the per-stage optimisation settings, where
each stage's files live, and the precomputed cache every stage after ``video-vae`` reads.

RUN_DIR layout::

    run.json                      config (representation/variant applied), encoder source, cache
    encoders/                     tiny: tokenizer/ text_encoder/ vae/ (CogVideoX layout)
    cache/                        `precompute` output (see egotwin_model.precompute)
    <stage>/checkpoints/step-N/   DCP checkpoint: model + optimizer + train_state.json
    <stage>/model.safetensors     final weights of the stage (what later stages / sample load), or
                                  model-0000K-of-0000N.safetensors + model.safetensors.index.json
    <stage>/log.jsonl             one line per logged step: step, loss (+ parts), lr
    vae/latent_stats.json         motion latent scale (1 / std of posterior samples, train split)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egotwin_bench.constants import VIDEO_SIZE
from egotwin_model.config import EgoTwinConfig
from egotwin_model.encoders import load_encoders
from egotwin_model.optim import OPTIMIZERS
from egotwin_model.precompute import precompute, write_json

STAGES: tuple[str, ...] = ("video-vae", "vae", "t2m", "joint")

SAVE_DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16")
"""`TrainConfig.save_dtype` values (torch dtype names; `checkpoint.SAVE_DTYPES` maps them)."""


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
    keep_checkpoints: int = 0
    """Keep only the newest k checkpoints of the stage (0: all). Paper size: a joint checkpoint is ~71 GB."""
    save_dtype: str = "float32"
    """dtype of the floating tensors of the stage's final ``model.safetensors`` (float32 or bfloat16)."""
    max_shard_mb: float = 0.0
    """t2m / joint: write the final weights as ``model-0000K-of-0000N.safetensors`` shards of at most
    this many MiB + ``model.safetensors.index.json`` when larger (0: one file; `checkpoint.write_weights`)."""
    optimizer: str = "adamw"
    """`egotwin_model.optim.OPTIMIZERS`: adamw, adamw8bit (8-bit moments: a 4x smaller optimizer state)
    or adamw_bf16 (bf16 moments: 2x smaller, multi-tensor update)."""


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
    tc = TrainConfig(stage=stage, **values)
    if tc.optimizer not in OPTIMIZERS:  # checked before training, not at the first step
        raise ValueError(f"optimizer {tc.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if tc.save_dtype not in SAVE_DTYPE_NAMES:  # likewise: not after the last step, at the final save
        raise ValueError(f"save dtype {tc.save_dtype!r}: use one of {', '.join(SAVE_DTYPE_NAMES)}")
    return tc


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


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage


def video_size(config: EgoTwinConfig) -> int:
    """Square pixel size the model works at: 8 x the DiT's latent height (480 paper, 64 tiny)."""
    return min(8 * config.dit.sample_height, VIDEO_SIZE)


def motion_vae_path(run_dir: str | Path) -> Path:
    return stage_dir(run_dir, "vae") / "model.safetensors"


def dit_path(run_dir: str | Path, stage: str) -> Path:
    return stage_dir(run_dir, stage) / "model.safetensors"


def precompute_run(run_dir: str | Path, settings: RunSettings, dataset: str | Path, device: str = "cpu",
                   progress: bool = True, **options: Any) -> dict:
    """Fill RUN_DIR/cache with `egotwin_model.precompute.precompute` (resumable); returns its manifest.

    The encoders come from `encoders_dir` (the user's CogVideoX folder, or RUN_DIR/encoders
    written by ``--stage video-vae`` for tiny runs). `options` go to `precompute` (splits,
    limit, batch_size, storage_dtype).
    """
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
