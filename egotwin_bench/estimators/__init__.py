"""Camera-pose estimators (`colmap` COLMAP/pycolmap, `droid` DROID-SLAM, `builtin` OpenCV VO) and
the ViT hand classifier.

`select_estimator` is the one place that decides which pose backend a run uses: `auto` is
DROID-SLAM when its checkout, extensions, GPU and weights are all there, else COLMAP. The builtin
visual odometry is a labelled fast option, chosen only by name (it is never a fallback).
"""

from __future__ import annotations

from pathlib import Path

from egotwin_bench.estimators.base import PoseEstimator

ESTIMATORS: tuple[str, ...] = ("colmap", "droid", "builtin")
ESTIMATOR_CHOICES: tuple[str, ...] = ("auto", *ESTIMATORS)
ESTIMATOR_HELP: str = (
    "Camera-pose backend: auto (droid when DROID-SLAM, a GPU and --droid-weights are all there, else colmap), "
    "colmap (COLMAP global SfM through pycolmap, CPU, ~30 CPU-s per clip, clips in parallel over --workers), "
    "droid (DROID-SLAM, the paper's; CUDA), or builtin (fast OpenCV visual odometry, ~0.5 s per clip, "
    "less accurate: a quick look, not a reported number)."
)
COLMAP_PRESET_HELP: str = (
    "COLMAP settings (egotwin_bench.estimators.colmap.COLMAP_PRESETS): default (480 px SIFT, exhaustive "
    "matching), or fast (240 px, 2048 keypoints, sequential matching: 4-6x fewer CPU seconds, as accurate on "
    "10 synthetic clips and their 128 px drafts; docs/benchmark.md, \"COLMAP presets\"). The "
    "leaderboard's estimator column names it (colmap, colmap-fast)."
)


def make_estimator(
    name: str, droid_weights: str | Path | None = None, droid_repo: str | Path | None = None,
    colmap_preset: str = "default",
) -> PoseEstimator:
    """Build a pose estimator by backend name (`colmap`, `droid` or `builtin`).

    `droid_weights` is DROID-SLAM's ``droid.pth``; `droid_repo` its checkout (None: ``$DROID_SLAM_DIR``);
    `colmap_preset` a name of `egotwin_bench.estimators.colmap.COLMAP_PRESETS` (the colmap backend only).
    """
    if name == "colmap":
        # lazy: cv2 + pycolmap (and `egotwin-bench --help` reads this package's choices)
        from egotwin_bench.estimators.colmap import ColmapEstimator, colmap_preset as preset

        return ColmapEstimator(preset(colmap_preset))
    if name == "droid":
        # lazy: cv2; DROID-SLAM's checkout (and `egotwin-bench --help` reads this package's choices)
        from egotwin_bench.estimators.droid import DroidEstimator

        return DroidEstimator(droid_weights, droid_repo)
    if name == "builtin":
        # lazy: cv2 (and `egotwin-bench --help` reads this package's choices)
        from egotwin_bench.estimators.builtin import BuiltinEstimator

        return BuiltinEstimator()
    raise ValueError(f"unknown pose estimator {name!r}; choose one of {', '.join(ESTIMATOR_CHOICES)}")


def select_estimator(
    name: str, droid_weights: str | Path | None = None, droid_repo: str | Path | None = None,
    colmap_preset: str = "default",
) -> tuple[PoseEstimator, str | None]:
    """The estimator a run uses for `--estimator name`, and a note for the leaderboard saying
    why `auto` did not pick DROID-SLAM (None for an explicit choice or when DROID runs)."""
    if name != "auto":
        return make_estimator(name, droid_weights, droid_repo, colmap_preset), None
    droid = make_estimator("droid", droid_weights, droid_repo)
    why = droid.unavailable_reason()
    if why is None:
        return droid, None
    return make_estimator("colmap", colmap_preset=colmap_preset), f"Camera poses from COLMAP (--estimator auto; DROID-SLAM not used: {why})."
