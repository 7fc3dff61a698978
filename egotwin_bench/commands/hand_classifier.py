"""`egotwin-bench train-hand-classifier`: the ViT hand-presence classifier behind HandScore."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train-hand-classifier")
    def train_hand_classifier(
        dataset: Path = typer.Option(..., "--dataset", help="Curated dataset (build-dataset output)."),
        out: Path = typer.Option(..., "--out", help="Folder for model.safetensors + config.json."),
        init_weights: Optional[Path] = typer.Option(None, "--init-weights", help="Local timm checkpoint of --arch (e.g. model.safetensors of timm/vit_base_patch16_224)."),
        random_init: bool = typer.Option(False, "--random-init", help="Train from scratch instead of --init-weights (tests, the tiny arch)."),
        arch: str = typer.Option("vit_base_patch16_224", "--arch", help="vit_base_patch16_224 (paper-like), vit_small_patch16_224, or tiny."),
        epochs: int = typer.Option(5, "--epochs", min=1),
        batch_size: int = typer.Option(32, "--batch-size", min=1),
        lr: float = typer.Option(1e-4, "--lr"),
        max_clips: Optional[int] = typer.Option(None, "--max-clips", min=1, help="At most this many clips per split."),
        frame_stride: int = typer.Option(1, "--frame-stride", min=1, help="Use every n-th frame of each clip."),
        val_split: str = typer.Option("val", "--val-split", help="Split the decision threshold is chosen on (stored with the classifier)."),
        eval_split: str = typer.Option("test", "--eval-split", help="Held-out split for the reported F1 (not the --val-split)."),
        positive_fraction: float = typer.Option(0.3, "--positive-fraction", min=0.0, max=0.95, help="Class-balanced sampling: target share of sampled frames showing each hand (0: off)."),
        augment: bool = typer.Option(True, "--augment/--no-augment", help="Photometric jitter and small shifts during training."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Train the two-logit (left, right) ViT hand classifier with the focal loss; report held-out F1."""
        # lazy: the command's stack (torch, timm) loads when it runs, so `egotwin-bench --help` stays fast
        from egotwin_bench.estimators.hand_classifier import ARCHS
        from egotwin_bench.training.hand_classifier import HandTrainingConfig, train_hand_classifier as run
        from egotwin_bench.weights import MissingWeightsError

        if arch not in ARCHS:
            raise typer.BadParameter(f"--arch must be one of {', '.join(ARCHS)}")
        if init_weights is None and not random_init:
            raise typer.BadParameter(
                "give --init-weights PATH (a local timm checkpoint of the arch) or --random-init", param_hint="--init-weights"
            )
        config = HandTrainingConfig(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                    max_clips=max_clips, frame_stride=frame_stride,
                                    positive_fraction=positive_fraction, augment=augment)
        try:
            metrics = run(dataset, out, None if random_init else init_weights, config, eval_split, val_split)
        except (MissingWeightsError, FileNotFoundError, KeyError, ValueError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        typer.echo(
            f"held-out ({metrics['split']}, {metrics['n_frames']} frames) F1 left {metrics['f1_left']:.3f} "
            f"right {metrics['f1_right']:.3f} mean {metrics['f1_mean']:.3f} at threshold {metrics['threshold']:.2f} "
            f"(chosen on {val_split}); saved to {out}"
        )
