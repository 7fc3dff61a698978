"""Writing evaluation results: leaderboard.csv / .md, per_clip.parquet and PNG plots.

``leaderboard.csv`` has one row per method x task with ``method, task, n_clips, estimator,
toolkit_version``, the view-consistency facts ``pose_failures, head_path_m`` (`INFO_COLUMNS`)
and, for every metric that ran, ``<metric>, <metric>_low, <metric>_high`` (the 95% interval;
docs/metrics.md says which method per metric). Metrics that did not run have no column;
``leaderboard.md`` says why.
All files are written atomically (temp file + rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import polars as pl

from egotwin_bench.curation.shards import atomic_write_text
from egotwin_bench.evaluate.options import EvaluateOptions, EvaluationResult
from egotwin_bench.evaluate.plots import plot_metric_bars, plot_trajectories
from egotwin_bench.evaluate.reference import reference_name

ID_COLUMNS: tuple[str, ...] = ("method", "task", "n_clips", "estimator", "toolkit_version")
INFO_COLUMNS: dict[str, str] = {"pose_failures": "pose failures", "head_path_m": "head path (m)"}
"""Per-row facts without an interval (view consistency): clips the pose estimator failed on, and the
motions' mean head path length (a motionless head scores TransErr 0); column -> Markdown header."""


def metric_names(rows: list[dict]) -> list[str]:
    """Metric columns present in the rows, in first-seen order (interval columns excluded)."""
    names: list[str] = []
    for row in rows:
        for k in row:
            if k not in ID_COLUMNS and k not in INFO_COLUMNS and not k.endswith(("_low", "_high")) and k not in names:
                names.append(k)
    return names


def leaderboard_frame(rows: list[dict]):
    """The leaderboard as a polars DataFrame (id columns, then each metric with its interval)."""
    info = [c for c in INFO_COLUMNS if any(c in row for row in rows)]
    columns = list(ID_COLUMNS) + info + [c for m in metric_names(rows) for c in (m, f"{m}_low", f"{m}_high")]
    return pl.DataFrame([{c: row.get(c) for c in columns} for row in rows], schema_overrides={
        c: pl.Int64 if c == "pose_failures" else pl.Float64 for c in columns if c not in ID_COLUMNS
    }, orient="row") if rows else pl.DataFrame({c: [] for c in columns})


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


def leaderboard_markdown(result: EvaluationResult, reference: str) -> str:
    """The human-readable leaderboard with skipped metrics, rejected submissions and failures."""
    metrics = metric_names(result.rows)
    arrows = {m: (" ↑" if result.higher_is_better.get(m) else " ↓") for m in metrics}
    lines = [f"# Leaderboard\n\nReference: `{reference}`. Values with 95% intervals: bootstrap over clips for means "
             "(CLIP-SIM, TransErr, RotErr, HandScore), grouped jackknife for I-FID / FVD / M-FID, 20 "
             "replications of the text-to-motion protocol for R-Prec / MM-Dist / Diversity (docs/metrics.md).\n"]
    info = [c for c in INFO_COLUMNS if any(c in row for row in result.rows)]
    header = ["method", "task", "n clips", "estimator"] + [INFO_COLUMNS[c] for c in info] + [m + arrows[m] for m in metrics]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in result.rows:
        cells = [row["method"], row["task"], str(row["n_clips"]), row["estimator"] or "n/a"]
        cells += [_fmt(row.get(c)) if c != "pose_failures" else str(row.get(c, "n/a")) for c in info]
        cells += [f"{_fmt(row.get(m))} [{_fmt(row.get(m + '_low'))}, {_fmt(row.get(m + '_high'))}]" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if result.rows:
        lines.append(f"\nToolkit version {result.rows[0]['toolkit_version']}.")
    lines += [f"\n{note}" for note in result.notes]
    if result.skipped:
        lines.append("\n## Metrics not computed\n")
        lines += [f"- **{name}**: {reason}" for name, reason in result.skipped.items()]
    if result.rejected:
        lines.append("\n## Submissions not evaluated\n")
        for report in result.rejected:
            lines.append(f"- `{report.path.name}`: {len(report.problems)} problem(s)")
            lines += [f"  - {p}" for p in report.problems]
    partial = [r for r in result.reports if r not in result.rejected and not r.ok]
    if partial:
        lines.append("\n## Evaluated partially (--allow-partial)\n")
        for report in partial:
            lines.append(f"- `{report.path.name}`: {len(report.valid_clips)}/{report.n_expected} clips; "
                         f"{len(report.problems)} problem(s)")
            lines += [f"  - {p}" for p in report.problems]
    if result.provider_failures:
        lines.append("\n## Metric groups that failed on a submission (no values for it)\n")
        for key, fails in result.provider_failures.items():
            lines += [f"- `{key}` **{name}**: {reason}" for name, reason in fails.items()]
    if result.failures:
        lines.append("\n## Pose failures: clips the pose estimator could not process (NaN, left out of TransErr/RotErr)\n")
        for key, fails in result.failures.items():
            lines += [f"- `{key}` {clip}: {reason}" for clip, reason in fails.items()]
    return "\n".join(lines) + "\n"


def _atomic_parquet(frame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def write_results(result: EvaluationResult, options: EvaluateOptions) -> None:
    """Write leaderboard.csv, leaderboard.md, per_clip.parquet and (optionally) plots/ to options.out."""
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(leaderboard_frame(result.rows).write_csv(), out / "leaderboard.csv")
    atomic_write_text(leaderboard_markdown(result, reference_name(options.reference, options.split)),
                      out / "leaderboard.md")
    per_clip = pl.DataFrame(result.per_clip) if result.per_clip else pl.DataFrame(
        {"method": [], "task": [], "clip_id": []}, schema={"method": pl.String, "task": pl.String, "clip_id": pl.String})
    _atomic_parquet(per_clip, out / "per_clip.parquet")
    if options.plots and result.rows:
        plot_metric_bars(result.rows, metric_names(result.rows), out / "plots")
        for key, trajectories in result.trajectories.items():
            errors = {r["clip_id"]: r["TransErr"] for r in result.per_clip
                      if f"{r['method']}/{r['task']}" == key and np.isfinite(r.get("TransErr", np.nan))}
            plot_trajectories(key, trajectories, errors, out / "plots")
