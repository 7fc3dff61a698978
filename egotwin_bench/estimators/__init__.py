"""Camera-pose estimators (`builtin` OpenCV VO, `droid` DROID-SLAM) and the ViT hand classifier."""

from __future__ import annotations

from pathlib import Path

from egotwin_bench.estimators.base import PoseEstimator

ESTIMATORS: tuple[str, ...] = ("builtin", "droid")


def make_estimator(
    name: str, droid_weights: str | Path | None = None, droid_repo: str | Path | None = None
) -> PoseEstimator:
    """Build a pose estimator by backend name (`builtin` or `droid`).

    `droid_weights` is DROID-SLAM's ``droid.pth``; `droid_repo` its checkout (None: ``$DROID_SLAM_DIR``).
    """
    if name == "builtin":
        from egotwin_bench.estimators.builtin import BuiltinEstimator

        return BuiltinEstimator()
    if name == "droid":
        from egotwin_bench.estimators.droid import DroidEstimator

        return DroidEstimator(droid_weights, droid_repo)
    raise ValueError(f"unknown pose estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
