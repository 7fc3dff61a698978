"""`egotwin-bench build-dataset`: Nymeria sequences -> curated 5 s text-video-motion clips."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("build-dataset")
    def build_dataset(
        nymeria_root: Path = typer.Option(..., "--nymeria-root", help="Folder of Nymeria sequence folders (or one sequence folder)."),
        out: Path = typer.Option(..., "--out", help="Output dataset folder (created; reruns resume)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Parallel sequence tasks (Ray CPUs on a local run)."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N sequences (sorted by folder name)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray."),
        engine: str = typer.Option("ray", "--engine", help="'ray' (default) or 'local' (in-process, sequential; for debugging)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the train/val/test split."),
        test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of sequences in test (subjects and locations unseen in train)."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of sequences in val."),
        narration_file: str = typer.Option("atomic_action", "--narration-file", help="Narration CSV stem whose windows make the clips."),
        text_column: str = typer.Option("Describe my atomic actions", "--text-column", help="Narration column used as the prompt."),
        focal_px: float = typer.Option(240.0, "--focal-px", help="Pinhole focal length of the 480x480 upright view (240 = 90° FOV)."),
        max_residual_m: float = typer.Option(0.05, "--max-residual-m", help="Reject a sequence whose hand-eye RMS residual exceeds this (m)."),
        max_residual_deg: float = typer.Option(5.0, "--max-residual-deg", help="... or this (degrees)."),
        rgb_source: str = typer.Option("vrs", "--rgb-source", help="'vrs': data.vrs when present, else the exported rgb.mp4; 'exported': the opposite."),
    ) -> None:
        """Curate Nymeria into Parquet shards + manifest + splits + dataset card (resumable)."""
        from dataclasses import replace

        from tqdm import tqdm

        from egotwin_bench.curation.config import CurationConfig
        from egotwin_bench.curation.pipeline import build_dataset as run
        from egotwin_bench.nymeria.layout import LayoutError

        if engine not in ("ray", "local"):
            raise typer.BadParameter("--engine must be 'ray' or 'local'")
        if rgb_source not in ("vrs", "exported"):
            raise typer.BadParameter("--rgb-source must be 'vrs' or 'exported'")
        base = CurationConfig()
        config = replace(
            base,
            windows=replace(base.windows, narration_file=narration_file, text_column=text_column),
            alignment=replace(base.alignment, max_residual_m=max_residual_m, max_residual_deg=max_residual_deg),
            view=replace(base.view, focal_px=focal_px),
            splits=replace(base.splits, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction),
            rgb_source=rgb_source,
        )

        def progress(stream, total):
            bar = tqdm(stream, total=total, unit="seq", desc="curating")
            for report in bar:
                bar.set_postfix_str(f"{report['sequence_id']}: {report['status']} ({report['clips']} clips)")
                yield report

        try:
            card = run(nymeria_root, out, config, workers=workers, limit=limit, engine=engine,
                       ray_address=ray_address, progress=progress)
        except LayoutError as exc:
            raise typer.BadParameter(str(exc)) from exc
        clips = card["clips"]
        typer.echo(
            f"{out}: {clips['total']} clips (train {clips['train']}, val {clips['val']}, test {clips['test']}) "
            f"from {card['sequences']['ok']}/{card['sequences']['total']} sequences; "
            f"skipped: {card['skip_reasons'] or 'none'}; see {out / 'dataset_card.md'}"
        )
