"""`egotwin-bench train-evaluators`: the GRU text/motion evaluators behind M-FID, R-Prec and MM-Dist."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("train-evaluators")
    def train_evaluators(
        dataset: Path = typer.Option(..., "--dataset", help="Curated dataset (build-dataset output); trains on its train split."),
        glove: Optional[Path] = typer.Option(None, "--glove", help="GloVe 300-d vectors: glove.6B.300d.txt (.gz ok) or the text-to-motion 'glove' folder (our_vab_data.npy + our_vab_words.pkl)."),
        random_word_vectors: bool = typer.Option(False, "--random-word-vectors", help="Instead of --glove: random vectors per word (synthetic data / demo only; recorded in evaluators.json, scores not comparable with GloVe evaluators)."),
        out: Path = typer.Option(..., "--out", help="Folder for evaluators.safetensors + evaluators.json (+ checkpoint.pt, history.json; a rerun resumes)."),
        steps: int = typer.Option(20_000, "--steps", min=1, help="Optimiser steps (batches of --batch-size clips)."),
        batch_size: int = typer.Option(32, "--batch-size", min=2),
        lr: float = typer.Option(1e-4, "--lr"),
        margin: float = typer.Option(10.0, "--margin", help="Negative margin of the hinge contrastive loss (the original's 10)."),
        validate_every: int = typer.Option(500, "--validate-every", min=1, help="Validate (and checkpoint) every N steps."),
        val_split: str = typer.Option("val", "--val-split", help="Split whose R-Precision picks the best evaluator."),
        report_split: str = typer.Option("test", "--report-split", help="Split the kept evaluator is scored on once (unbiased; not --val-split)."),
        device: str = typer.Option("auto", "--device", help="Torch device (auto: cuda when visible)."),
        seed: int = typer.Option(0, "--seed"),
        tagger: str = typer.Option("auto", "--tagger", help="Part-of-speech tagging: auto (spaCy en_core_web_sm when installed, as the original; else the built-in lexicon tagger), lexicon, or a spaCy pipeline name or folder."),
    ) -> None:
        """Train the text and motion encoders (Guo et al. 2022) on head-centric motion with a contrastive loss.

        Prints the validation R-Precision (top-1/2/3, batches of 32) and MM-Dist of the kept evaluator.
        Exits 1 when the motion embeddings collapsed at every validation (nothing saved) or when the
        kept evaluator does not rank above chance (saved, marked unusable: evaluate refuses it).
        """
        # lazy: the command's stack (torch) loads when it runs, so `egotwin-bench --help` stays fast
        import torch
        from egotwin_bench.metrics.motion_quality import EvaluatorCollapsedError
        from egotwin_bench.training.gru_evaluators import TrainConfig, train_from_dataset

        if (glove is None) == (not random_word_vectors):
            typer.secho("error: pass --glove PATH (glove.6B.300d.txt from https://nlp.stanford.edu/projects/glove/) "
                        "or, for synthetic data, --random-word-vectors", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, negative_margin=margin,
                             validate_every=validate_every, seed=seed, device=device)
        try:
            model, history = train_from_dataset(dataset, glove, out, config, val_split, report_split=report_split,
                                                tagger=tagger)
        except (FileNotFoundError, KeyError, ValueError, ImportError, OSError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except EvaluatorCollapsedError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        training = model.config.training
        best, held = training.get("best", {}), training.get("held_out")
        typer.echo(f"kept step {best.get('step')} (best of the validations on {training.get('val_clips')} "
                   f"{val_split} clips: {_scores(best)}, optimistic: chosen on that split)")
        if held:
            typer.echo(f"held-out {held['split']} ({held['clips']} clips): {_scores(held)}")
        else:
            typer.echo(f"no held-out score: split {report_split!r} has fewer than 2 clips")
        typer.echo(f"saved to {out}")
        if training.get("usable") is False:
            typer.secho(f"error: the kept evaluators are marked unusable ({training['unusable_reason']}); "
                        "`evaluate` will refuse them. Train longer (--steps) or on more clips, or check the data.",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(1)


def _scores(s: dict) -> str:
    """R-Precision top-1/2/3 and MM-Dist of a validation record."""
    nan = float("nan")
    return (f"R-Precision top-1 {s.get('top1', nan):.3f} top-2 {s.get('top2', nan):.3f} "
            f"top-3 {s.get('top3', nan):.3f} (chance {s.get('chance_top3', nan):.3f}, p {s.get('p_top3', nan):.2g}), "
            f"MM-Dist {s.get('mm_dist', nan):.3f}, motion-embedding spread {s.get('spread', nan):.2g}")
