"""The camera-pose estimator interface shared by the `colmap`, `droid` and `builtin` backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from egotwin_bench.constants import VIDEO_SIZE


class PoseEstimationError(RuntimeError):
    """The estimator produced no usable trajectory for a clip; the message is the reason."""


@dataclass(frozen=True)
class PoseEstimate:
    """One clip's estimated trajectory.

    Attributes:
        poses: (N, 4, 4) camera-to-world poses, OpenCV camera axes, arbitrary world frame and scale.
        registered: (N,) bool, frames whose pose the estimator solved; the others were filled in
            (interpolated between registered neighbours, or held from the nearest one).
    """

    poses: np.ndarray
    registered: np.ndarray

    @classmethod
    def of(cls, result: "PoseEstimate | np.ndarray") -> "PoseEstimate":
        """`result` itself, or (N, 4, 4) poses of an estimator that solves every frame."""
        if isinstance(result, PoseEstimate):
            return result
        poses = np.asarray(result, dtype=np.float64)
        return cls(poses, np.ones(len(poses), dtype=bool))


@runtime_checkable
class PoseEstimator(Protocol):
    """Estimates per-frame camera poses of a monocular clip with known intrinsics."""

    name: str
    """Backend name recorded in the leaderboard (`colmap`, `droid`, `builtin`)."""

    def unavailable_reason(self) -> str | None:
        """None when the backend can run, else a one-line reason and what to do about it."""

    def cache_id(self) -> str:
        """Backend name + digest of everything that changes its output (settings, weights);
        names the per-clip pose cache, so a changed configuration never reads stale poses."""

    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> "PoseEstimate | np.ndarray":
        """(N, H, W, 3) uint8 RGB frames + (3, 3) pinhole K -> `PoseEstimate` (or (N, 4, 4)
        camera-to-world poses when every frame is solved).

        K follows OpenCV's pixel convention (pixel centres at integers). The world frame and the
        scale are arbitrary (the metrics align both); poses use OpenCV camera axes (x right,
        y down, z forward). Raises `PoseEstimationError` when no trajectory can be estimated.
        """


def check_frames(frames: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate estimator inputs; returns (frames uint8 (N, H, W, 3), K float64 (3, 3))."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 2:
        raise ValueError("need at least two frames to estimate camera motion")
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"intrinsics must be a finite (3, 3) pinhole K, got {K!r}")
    return frames, K


def default_intrinsics(size: int = VIDEO_SIZE, fov_deg: float = 90.0) -> np.ndarray:
    """(3, 3) pinhole K of a square ``size`` image with the given horizontal field of view."""
    f = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])
