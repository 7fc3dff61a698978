"""What one `evaluate` run takes (`EvaluateOptions`, the CLI flags one to one) and what it gives
(`EvaluationResult`, written by `evaluate.leaderboard`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egotwin_bench.evaluate.submission import ValidationReport


@dataclass
class EvaluateOptions:
    """Everything `evaluate` needs; the CLI flags map one to one onto these fields."""

    reference: Path
    out: Path
    split: str = "test"
    estimator: str = "auto"
    """`colmap`, `droid`, `builtin`, or `auto` (DROID-SLAM when it can run, else colmap)."""
    colmap_preset: str = "default"
    """`egotwin_bench.estimators.colmap.COLMAP_PRESETS` name of the colmap backend (`default`, `fast`)."""
    droid_weights: Path | None = None
    droid_repo: Path | None = None
    """DROID-SLAM checkout (None: ``$DROID_SLAM_DIR``)."""
    hand_classifier: Path | None = None
    inception_weights: Path | None = None
    i3d_weights: Path | None = None
    fvd_network: str = "tfhub"
    """FVD network (`egotwin_bench.estimators.video_features.FVD_NETWORKS`): tfhub (standard) or piergiaj."""
    clip_weights: Path | None = None
    evaluator_dir: Path | None = None
    allow_partial: bool = False
    workers: int = 0
    """Ray CPUs for per-clip work (0: in-process; Ray joins `RAY_ADDRESS` when that is set)."""
    n_bootstrap: int = 1000
    jackknife_groups: int = 20
    """Groups of the I-FID / FVD / M-FID jackknife intervals (each costs one Fréchet distance; 0: none)."""
    replications: int = 20
    """Replications of the text-to-motion protocol (R-Prec, MM-Dist, Diversity intervals)."""
    seed: int = 0
    cache_dir: Path | None = None
    """Per-clip cache; default ``<out>/cache``."""
    plots: bool = True
    device: str = "auto"
    """Torch device of the network metrics (`auto`: CUDA when visible, else CPU)."""


@dataclass
class EvaluationResult:
    """What `evaluate_submissions` computed (also written to `options.out`)."""

    rows: list[dict]
    """Leaderboard rows: method, task, n_clips, estimator, toolkit_version, metric, metric_low/high."""
    per_clip: list[dict]
    skipped: dict[str, str]
    """Provider name -> why it did not run."""
    reports: list[ValidationReport]
    rejected: list[ValidationReport]
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    """``method/task`` -> {clip_id: reason} for clips the pose estimator could not process."""
    provider_failures: dict[str, dict[str, str]] = field(default_factory=dict)
    """``method/task`` -> {provider name: error} for metric groups that raised on that submission
    (their columns stay empty for it; other submissions keep theirs)."""
    trajectories: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Remarks for leaderboard.md (e.g. why `auto` fell back to the builtin pose estimator)."""
