"""`egotwin-bench build-dataset`: Nymeria sequences -> curated 5 s text-video-motion clips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("build-dataset")
    def build_dataset(
        nymeria_root: Path = typer.Option(..., "--nymeria-root", help="Folder of Nymeria sequence folders (or one sequence folder)."),
        out: Path = typer.Option(..., "--out", help="Output dataset folder (created; reruns resume)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Parallel sequence tasks (Ray CPUs on a local run); --engine local ignores it."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N sequences (sorted by folder name). Splits are computed over these N, so they change with --limit."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray."),
        engine: str = typer.Option("ray", "--engine", help="'ray' (default) or 'local' (in-process, sequential; for debugging)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the train/val/test split \\[default: 0]."),
        test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Share of sequences in test, subjects and locations unseen in train \\[default: 0.1]."),
        val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of sequences in val \\[default: 0.1]."),
        narration_file: Optional[str] = typer.Option(None, "--narration-file", help="Narration CSV stem whose windows make the clips \\[default: atomic_action]."),
        text_column: Optional[str] = typer.Option(None, "--text-column", help="Narration column used as the prompt \\[default: 'Describe my atomic actions']."),
        focal_px: Optional[float] = typer.Option(None, "--focal-px", help="Pinhole focal length (px) of the 480x480 upright view \\[default: 240, a 90° FOV]."),
        max_residual_m: Optional[float] = typer.Option(None, "--max-residual-m", help="Drop a clip whose alignment residual (RMS, Xsens head re-anchored on the Aria device) exceeds this, metres \\[default: 0.03]."),
        max_residual_deg: Optional[float] = typer.Option(None, "--max-residual-deg", help="... or this, degrees \\[default: 3.0]."),
        trim_s: Optional[float] = typer.Option(None, "--trim-s", min=0.0, help="Seconds shaved off each end of the Xsens / MPS / RGB overlap (the official Nymeria rule) \\[default: 1.0]."),
        rgb_source: Optional[str] = typer.Option(None, "--rgb-source", help="'vrs': data.vrs when present, else the exported rgb.mp4; 'exported': the opposite \\[default: vrs]."),
        config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of CurationConfig tables (as pipelines/curation.toml; its \\[run] table is ignored); options given here override it."),
    ) -> None:
        """Curate Nymeria into Parquet shards + manifest + splits + dataset card (resumable)."""
        # lazy: the command's stack (tqdm, ray, av, pyarrow) loads when it runs, so `egotwin-bench --help` stays fast
        from tqdm import tqdm
        from egotwin_bench.curation.config import CurationConfig, load_config_file
        from egotwin_bench.curation.pipeline import build_dataset as run
        from egotwin_bench.nymeria.layout import LayoutError

        if engine not in ("ray", "local"):
            raise typer.BadParameter("--engine must be 'ray' or 'local'")
        if rgb_source not in (None, "vrs", "exported"):
            raise typer.BadParameter("--rgb-source must be 'vrs' or 'exported'")
        if engine == "local" and workers > 1:
            typer.echo(f"warning: --workers {workers} is ignored with --engine local (one sequence at a time); "
                       "use --engine ray for parallel sequences", err=True)
            workers = 1
        base = CurationConfig()
        if config_file is not None:
            try:
                base, _ = load_config_file(config_file)  # the [run] table is for pipelines/curation_job.py
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--config") from exc

        def given(**kw) -> dict:
            return {k: v for k, v in kw.items() if v is not None}

        config = replace(
            base,
            windows=replace(base.windows, **given(narration_file=narration_file, text_column=text_column)),
            alignment=replace(base.alignment, **given(max_residual_m=max_residual_m, max_residual_deg=max_residual_deg)),
            view=replace(base.view, **given(focal_px=focal_px)),
            filters=replace(base.filters, **given(trim_s=trim_s)),
            splits=replace(base.splits, **given(seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)),
            **given(rgb_source=rgb_source),
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
