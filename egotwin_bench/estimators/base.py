"""The camera-pose estimator interface shared by the `builtin` and `droid` backends."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from egotwin_bench.constants import VIDEO_SIZE


@runtime_checkable
class PoseEstimator(Protocol):
    """Estimates per-frame camera poses of a monocular clip with known intrinsics."""

    name: str
    """Backend name recorded in the leaderboard (`builtin`, `droid`)."""

    def unavailable_reason(self) -> str | None:
        """None when the backend can run, else a one-line reason and what to do about it."""

    def cache_id(self) -> str:
        """Backend name + digest of everything that changes its output (settings, weights);
        names the per-clip pose cache, so a changed configuration never reads stale poses."""

    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames + (3, 3) pinhole K -> (N, 4, 4) camera-to-world poses.

        The world frame and the scale are arbitrary (the metrics align both); poses use OpenCV
        camera axes (x right, y down, z forward).
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
