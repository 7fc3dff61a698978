"""`egotwin-model sample`: classifier-free-guided sampling of a trained run into a submission."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from egotwin_bench.constants import VIDEO_SIZE


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample(
        task: str = typer.Option(..., "--task", help="t2vm (text -> video + motion), tm2v (text + motion -> video), tv2m (text + video -> motion)."),
        checkpoint: Path = typer.Option(..., "--checkpoint", "--run", help="RUN_DIR of a run trained through --stage joint."),
        reference: Path = typer.Option(..., "--reference", "--dataset", help="Curated dataset whose test split is sampled (prompts, first frames/poses)."),
        out: Path = typer.Option(..., "--out", help="Submission folder, e.g. submissions/NAME (its name is the method name)."),
        steps: Optional[int] = typer.Option(None, "--steps", min=1, help="DDIM steps (default: the config's, 50 at paper size)."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first K test clips."),
        w_text: Optional[float] = typer.Option(None, "--w-text", help="Text guidance scale w_t (default 6)."),
        w_video: Optional[float] = typer.Option(None, "--w-video", help="Video guidance scale w_v (default 4)."),
        w_motion: Optional[float] = typer.Option(None, "--w-motion", help="Motion guidance scale w_m (default 4)."),
        batch_size: int = typer.Option(2, "--batch-size", min=1, help="Clips per batch (each step runs up to 5 guidance passes)."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("cpu", "--device"),
        video_size: int = typer.Option(VIDEO_SIZE, "--video-size", min=8, help=f"Side of the written videos (default {VIDEO_SIZE}, what evaluate takes; a smaller side writes a draft that pipelines/small_pack.py finish upsamples)."),
    ) -> None:
        """Sample the reference test split and write a submission `egotwin-bench evaluate` accepts."""
        # lazy: torch + diffusers load when the command runs, so `egotwin-model --help` stays fast
        from egotwin_model.encoders import MissingWeightsError
        from egotwin_model.sample import SampleConfig, write_submission

        if task not in ("t2vm", "tm2v", "tv2m"):
            raise typer.BadParameter("--task must be t2vm, tm2v or tv2m")
        sc = SampleConfig(task=task, steps=steps, text_scale=w_text, video_scale=w_video, motion_scale=w_motion,
                          seed=seed, batch_size=batch_size, limit=limit, device=device, video_size=video_size)
        try:
            folder = write_submission(checkpoint, reference, out, sc)
        except (MissingWeightsError, FileNotFoundError, ValueError, KeyError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {folder}")
