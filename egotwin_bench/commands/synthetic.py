"""`egotwin-bench make-synthetic`: a small Nymeria-format dataset with exact ground truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("make-synthetic")
    def make_synthetic(
        out: Path = typer.Option(..., "--out", help="Output folder; one Nymeria-layout folder per sequence (reruns keep finished ones)."),
        sequences: int = typer.Option(4, "--sequences", min=1, help="Number of sequences. The last one has a subject and a location of its own (for an unseen test split)."),
        seconds: float = typer.Option(30.0, "--seconds", min=6.0, help="Length of each sequence, seconds."),
        seed: int = typer.Option(0, "--seed", help="Seed: same seed and options -> identical files."),
        resolution: int = typer.Option(704, "--resolution", min=64, help="RGB image width = height in pixels (Aria: 1408)."),
        fps: int = typer.Option(10, "--fps", min=1, help="RGB frame rate; must divide 6000."),
        trajectory_hz: int = typer.Option(1000, "--trajectory-hz", min=1, help="MPS closed-loop trajectory rate (MPS: 1000)."),
        faults: Optional[str] = typer.Option(None, "--faults", help="Comma-separated faults, each applied to one sequence: jittered_timestamps, irregular_timestamps, zero_quaternions, truncated_mp4, missing_narration, missing_trajectory."),
        realism: bool = typer.Option(False, "--realism", help="Add the nuisances of real captures, with exact ground truth: Xsens drift, 1 s unusable ends, MPS noise, Xsens timestamp spikes, narrations in the released schema (device seconds, BOM). See docs/synthetic.md."),
        drift_m: Optional[float] = typer.Option(None, "--drift-m", min=0.0, help="With --realism: largest horizontal Xsens drift over each sequence, metres \\[default: 0.3-1 m per 20 min, scaled by sqrt(length / 20 min)]."),
        drift_deg: Optional[float] = typer.Option(None, "--drift-deg", min=0.0, help="With --realism: largest Xsens heading drift over each sequence, degrees \\[default: 2-5° per 20 min, scaled likewise]."),
        workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering sequences in parallel."),
    ) -> None:
        """Write procedurally generated sequences (scenes, bodies, glasses, fisheye RGB, narrations) in the Nymeria layout."""
        # lazy: the command's stack (tqdm, cv2, av, ray) loads when it runs, so `egotwin-bench --help` stays fast
        from tqdm import tqdm
        from egotwin_bench.synthetic.faults import parse_faults
        from egotwin_bench.synthetic.writer import SyntheticConfig, frames_per_sequence, make_synthetic as run, pending_specs

        try:
            config = SyntheticConfig(sequences=sequences, seconds=seconds, seed=seed, resolution=resolution, fps=fps,
                                     trajectory_hz=trajectory_hz, faults=parse_faults(faults), realism=realism,
                                     drift_m=drift_m, drift_deg=drift_deg)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        started = time.perf_counter()
        try:
            todo = len(pending_specs(out, config))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from exc
        if todo < sequences:
            typer.echo(f"{out}: {sequences - todo} of {sequences} sequences already complete; writing the other {todo}")
        with tqdm(total=todo * frames_per_sequence(config), unit="frame", desc="rendering") as bar:
            paths = run(out, config, workers=workers, progress=bar.update)
        typer.echo(f"{out}: {len(paths)} sequences ({time.perf_counter() - started:.1f} s)")
