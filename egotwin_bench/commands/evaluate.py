"""`egotwin-bench evaluate` and `egotwin-bench make-submission`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from egotwin_bench.estimators import COLMAP_PRESET_HELP, ESTIMATOR_CHOICES, ESTIMATOR_HELP


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        submissions: Path = typer.Argument(..., help="A folder of submission folders (or one submission folder)."),
        reference: Path = typer.Option(..., "--reference", help="Curated dataset (build-dataset output) whose split is the reference."),
        out: Path = typer.Option(Path("results"), "--out", help="Where leaderboard.csv/.md, per_clip.parquet, plots/ and cache/ go."),
        split: str = typer.Option("test", "--split", help="Reference split."),
        estimator: str = typer.Option("auto", "--estimator", help=ESTIMATOR_HELP),
        colmap_preset: str = typer.Option("default", "--colmap-preset", help=COLMAP_PRESET_HELP),
        droid_weights: Optional[Path] = typer.Option(None, "--droid-weights", help="DROID-SLAM droid.pth (local file)."),
        droid_repo: Optional[Path] = typer.Option(None, "--droid-repo", envvar="DROID_SLAM_DIR", help="DROID-SLAM checkout with its extensions built (docs/benchmark.md); default $DROID_SLAM_DIR."),
        hand_classifier: Optional[Path] = typer.Option(None, "--hand-classifier", help="Folder written by train-hand-classifier (HandScore)."),
        inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="Inception-v3 weights (I-FID)."),
        i3d_weights: Optional[Path] = typer.Option(None, "--i3d-weights", help="I3D weights (FVD): i3d_torchscript.pt or i3d_pretrained_400.pt (tfhub), rgb_imagenet.pt (piergiaj)."),
        fvd_network: str = typer.Option("tfhub", "--fvd-network", help="FVD network: tfhub (the TF-Hub i3d-kinetics-400 of published FVDs) or piergiaj (DeepMind's released I3D; not comparable)."),
        clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="CLIP folder (CLIP-SIM)."),
        evaluator_dir: Optional[Path] = typer.Option(None, "--evaluator-dir", help="Folder written by train-evaluators (M-FID, R-Prec, MM-Dist)."),
        allow_partial: bool = typer.Option(False, "--allow-partial", help="Score the valid clips of submissions that have problems."),
        workers: int = typer.Option(2, "--workers", min=0, help="Ray CPUs for per-clip work (0: in-process; $RAY_ADDRESS joins a cluster)."),
        n_bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals of means (CLIP-SIM, TransErr, RotErr, HandScore)."),
        jackknife_groups: int = typer.Option(20, "--jackknife-groups", min=0, help="Groups of the I-FID / FVD / M-FID jackknife intervals (each costs one Fréchet distance; 0: no interval)."),
        replications: int = typer.Option(20, "--replications", min=1, help="Replications of the text-to-motion protocol (R-Prec, MM-Dist, Diversity: mean ± 1.96 sd/sqrt(R))."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Per-clip cache (default OUT/cache)."),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots."),
        device: str = typer.Option("auto", "--device", help="Torch device of the network metrics (auto: cuda when visible)."),
    ) -> None:
        """Validate every submission, run all available metrics, write the leaderboard.

        Writes OUT/leaderboard.csv, leaderboard.md (skipped metrics and rejected submissions with
        every problem), per_clip.parquet and plots/. Exits 1 when no submission could be scored.
        """
        # lazy: the command's stack (torch, pycolmap, polars) loads when it runs, so `egotwin-bench --help` stays fast
        from egotwin_bench.evaluate.runner import EvaluateOptions, evaluate_submissions, find_submissions

        if estimator not in ESTIMATOR_CHOICES:
            raise typer.BadParameter(f"--estimator must be one of {', '.join(ESTIMATOR_CHOICES)}")
        options = EvaluateOptions(
            reference=reference, out=out, split=split, estimator=estimator, colmap_preset=colmap_preset, droid_weights=droid_weights, droid_repo=droid_repo,
            hand_classifier=hand_classifier, inception_weights=inception_weights, i3d_weights=i3d_weights, fvd_network=fvd_network,
            clip_weights=clip_weights, evaluator_dir=evaluator_dir, allow_partial=allow_partial, workers=workers,
            n_bootstrap=n_bootstrap, jackknife_groups=jackknife_groups, replications=replications, seed=seed, cache_dir=cache_dir, plots=plots, device=device,
        )
        try:
            folders = find_submissions(submissions)
            result = evaluate_submissions(folders, options)
        except (FileNotFoundError, KeyError, ValueError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        for report in result.reports:
            typer.echo(report.summary())
        for name, reason in result.skipped.items():
            typer.secho(f"skipped {name}: {reason}", fg=typer.colors.YELLOW)
        for key, fails in result.provider_failures.items():
            for name, reason in fails.items():
                typer.secho(f"{name} failed on {key}: {reason}", fg=typer.colors.RED, err=True)
        typer.echo((out / "leaderboard.md").read_text())
        for report in result.rejected:
            typer.secho(f"not evaluated: {report.path} ({len(report.problems)} problem(s), listed in "
                        f"{out / 'leaderboard.md'})", fg=typer.colors.RED, err=True)
        if result.rejected and not result.rows:
            raise typer.Exit(1)

    @app.command("make-submission")
    def make_submission(
        from_reference: Path = typer.Option(..., "--from-reference", help="Curated dataset whose split becomes the submission."),
        out: Path = typer.Option(..., "--out", help="Submission folder to write."),
        shuffle_motion: bool = typer.Option(False, "--shuffle-motion", help="Give every clip the motion of another clip (sanity baseline)."),
        split: str = typer.Option("test", "--split", help="Reference split."),
        seed: int = typer.Option(0, "--seed", help="Shuffle seed."),
        method: Optional[str] = typer.Option(None, "--method", help="Method name (default ground_truth / shuffled_motion)."),
    ) -> None:
        """Write the reference split as a submission (ground truth, or motion-shuffled)."""
        # lazy: the command's stack (pyarrow, av) loads when it runs, so `egotwin-bench --help` stays fast
        from egotwin_bench.evaluate.baselines import make_reference_submission

        try:
            folder = make_reference_submission(from_reference, out, shuffle_motion, split, seed, method)
        except (FileNotFoundError, KeyError, ValueError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        typer.echo(f"wrote {folder}")
