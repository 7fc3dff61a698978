"""`egotwin-model train` and `egotwin-model precompute`: the training stages and the encoder cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

STAGE_HELP = "video-vae (tiny only: trains the small CogVideoX VAE), vae (motion VAE), t2m, joint."


def _settings(config: Optional[str], representation: Optional[str], no_interaction_mask: bool,
              sync_diffusion: bool, variant: Optional[str], weights: Optional[Path]):
    """New run settings when any config/variant option is given, else None (use RUN_DIR/run.json)."""
    # lazy: torch + diffusers load when a command runs, so `egotwin-model --help` stays fast
    from egotwin_model.run import make_run_settings

    if config is None:
        if representation or no_interaction_mask or sync_diffusion or variant or weights:
            raise typer.BadParameter(
                "variant options and --weights need --config paper|tiny|FILE.toml: the run's first stage fixes "
                "them in RUN_DIR/run.json, and later stages read it (leave the options out there)"
            )
        return None
    return make_run_settings(
        config, representation=representation,
        interaction_mask=False if no_interaction_mask else None,
        asynchronous=False if sync_diffusion else None, variant=variant, weights=weights,
    )


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        stage: str = typer.Option(..., "--stage", help=STAGE_HELP),
        out: Path = typer.Option(..., "--out", "--run", help="RUN_DIR: all stages of one run write here; reruns resume."),
        config: Optional[str] = typer.Option(None, "--config", help="paper | tiny | FILE.toml (first stage of a run; later stages reuse RUN_DIR/run.json)."),
        dataset: Optional[Path] = typer.Option(None, "--dataset", help="Curated dataset folder (`egotwin-bench build-dataset`): video-vae trains on it; later stages cache it into RUN_DIR/cache when the cache is missing."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Local CogVideoX-5b folder (tokenizer/ text_encoder/ vae/ transformer/); leave out for tiny runs."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", "--steps", min=1, help="Train until this step (default: per stage; a rerun with a larger value resumes)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
        lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (AdamW)."),
        checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1),
        log_every: Optional[int] = typer.Option(None, "--log-every", min=1),
        seed: Optional[int] = typer.Option(None, "--seed"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu (default) or cuda (under torchrun: each rank's GPU)."),
        ac_every: Optional[int] = typer.Option(None, "--ac-every", min=0, help="CUDA / torchrun: activation checkpointing of every k-th DiT block (0: off; the 5B joint stage on one 141 GB H200 needs 3 or less: 124 GiB peak, none runs out of memory)."),
        keep_checkpoints: Optional[int] = typer.Option(None, "--keep-checkpoints", min=0, help="Keep only the newest K checkpoints of the stage (default 0: all; a paper-size joint checkpoint is ~71 GB)."),
        save_dtype: Optional[str] = typer.Option(None, "--save-dtype", help="dtype of the stage's final model.safetensors: float32 (default) or bfloat16 (half the disk; the next stage loads it back into fp32 master weights)."),
        max_shard_mb: Optional[float] = typer.Option(None, "--max-shard-mb", min=0, help="t2m / joint: final weights above this size (MiB) are written as model-0000K-of-0000N.safetensors shards + model.safetensors.index.json (the diffusers / transformers layout; every reader takes both); default 0: one file."),
        optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw (default; fused on CUDA), adamw8bit (torchao: both moments in 8 bits, fp32 master weights; a paper-size joint checkpoint ~36 GB instead of ~71, ~35 GB less GPU memory) or adamw_bf16 (both moments in bf16: ~47 GB checkpoint, ~23 GB less GPU memory, multi-tensor update)."),
        compile_blocks: bool = typer.Option(False, "--compile", help="CUDA / torchrun: torch.compile each DiT block (faster steps after a minute of compiling)."),
        representation: Optional[str] = typer.Option(None, "--representation", help="head_centric (default) or root_centric (w/o MR)."),
        no_interaction_mask: bool = typer.Option(False, "--no-interaction-mask", help="w/o IM: unmasked joint attention."),
        sync_diffusion: bool = typer.Option(False, "--sync-diffusion", help="w/o AD: one timestep for video and motion, vanilla CFG."),
        variant: Optional[str] = typer.Option(None, "--variant", help="egotwin (default), wo_mr, wo_im, wo_ad, or vidmld (root-centric, no mask, synchronous): the paper's rows."),
    ) -> None:
        """Train one stage of EgoTwin into RUN_DIR (order: video-vae (tiny only), vae, t2m, joint).

        The first stage fixes the run's config and variant (RUN_DIR/run.json). Stages vae/t2m/joint
        build the encoder cache (RUN_DIR/cache) from --dataset when it is missing. Multi-GPU:
        `torchrun --nproc-per-node N -m egotwin_model.train --stage joint --run RUN_DIR --device cuda`.
        """
        # lazy: torch + diffusers load when the command runs, so `egotwin-model --help` stays fast
        from egotwin_model.train import STAGES, run_stage

        if stage not in STAGES:
            raise typer.BadParameter(f"--stage must be one of {', '.join(STAGES)}")
        try:
            log = run_stage(
                stage, out, _settings(config, representation, no_interaction_mask, sync_diffusion, variant, weights),
                dataset=dataset, max_steps=max_steps, batch_size=batch_size, lr=lr,
                checkpoint_every=checkpoint_every, log_every=log_every, seed=seed, device=device, ac_every=ac_every,
                compile=compile_blocks or None, keep_checkpoints=keep_checkpoints, save_dtype=save_dtype,
                max_shard_mb=max_shard_mb,
                optimizer=optimizer,
            )
        except (FileNotFoundError, ValueError, KeyError, ImportError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
            return
        if log:
            typer.echo(f"{stage}: steps {log[0]['step']}..{log[-1]['step']}, loss {log[0]['loss']:.4f} -> {log[-1]['loss']:.4f}")
        else:
            typer.echo(f"{stage}: already at --max-steps; weights in {out / stage}")

    @app.command("precompute")
    def precompute(
        dataset: Path = typer.Option(..., "--dataset", help="Curated dataset folder (`egotwin-bench build-dataset`)."),
        out: Path = typer.Option(..., "--out", "--run", help="RUN_DIR; the cache goes to RUN_DIR/cache (resumable)."),
        config: Optional[str] = typer.Option(None, "--config", help="paper | tiny | FILE.toml when RUN_DIR is new."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Local CogVideoX-5b folder; tiny runs use RUN_DIR/encoders (from --stage video-vae)."),
        splits: str = typer.Option("train,val,test", "--splits", help="Comma-separated splits to cache."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N clips of each split."),
        batch_size: int = typer.Option(4, "--batch-size", min=1),
        device: str = typer.Option("cpu", "--device"),
        dtype: str = typer.Option("float32", "--dtype", help="Storage dtype of embeddings/latents: float32 or bfloat16."),
        representation: Optional[str] = typer.Option(None, "--representation"),
        no_interaction_mask: bool = typer.Option(False, "--no-interaction-mask"),
        sync_diffusion: bool = typer.Option(False, "--sync-diffusion"),
        variant: Optional[str] = typer.Option(None, "--variant"),
    ) -> None:
        """Cache T5 text embeddings, video latents and motion features per clip (training never runs T5/the VAE)."""
        # lazy: torch + diffusers load when the command runs, so `egotwin-model --help` stays fast
        import torch
        from egotwin_model.encoders import MissingWeightsError
        from egotwin_model.run import open_run, precompute_run

        if dtype not in ("float32", "bfloat16"):
            raise typer.BadParameter("--dtype must be float32 or bfloat16")
        try:
            settings = open_run(out, _settings(config, representation, no_interaction_mask, sync_diffusion, variant, weights))
            manifest = precompute_run(out, settings, dataset, device,
                                      splits=[s.strip() for s in splits.split(",") if s.strip()], limit=limit,
                                      batch_size=batch_size, storage_dtype=getattr(torch, dtype))
        except (MissingWeightsError, FileNotFoundError, ValueError, KeyError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        counts = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
        typer.echo(f"cached {counts} clips in {Path(out) / 'cache'}")
