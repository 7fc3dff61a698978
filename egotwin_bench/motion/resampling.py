"""Resample Xsens motion (240 Hz, possibly irregular) to a clip rate (e.g. 16 FPS).

Positions are interpolated linearly, rotations by slerp on SO(3)
(``R_a exp(alpha log(R_a^T R_b))`` through roma), per segment.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from egotwin_bench.motion._checks import check_pose_sequence


def frame_times_ns(t0_ns: int, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) int64 timestamps ``t0 + round(k * 1e9 / fps)`` in nanoseconds."""
    return int(t0_ns) + np.round(np.arange(n_frames) * (1e9 / fps)).astype(np.int64)


def resample(
    positions: np.ndarray,
    rotations: np.ndarray,
    timestamps_ns: np.ndarray,
    fps: float,
    t0_ns: int,
    n_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a motion at ``t0_ns + k / fps`` for k in [0, n_frames).

    Args:
        positions: (F, 23, 3) metres. rotations: (F, 23, 3, 3). timestamps_ns: (F,) strictly
            increasing int64 nanoseconds (any clock, as long as t0_ns uses the same one).
        fps: output rate in Hz. t0_ns: time of output frame 0. n_frames: output length.

    Returns:
        positions (n_frames, 23, 3) and rotations (n_frames, 23, 3, 3), float64 NumPy arrays.

    Raises:
        ValueError: if the window [t0, t0 + (n-1)/fps] leaves [timestamps[0], timestamps[-1]],
            or the timestamps are not strictly increasing.
    """
    positions = np.asarray(positions)
    rotations = np.asarray(rotations)
    check_pose_sequence(positions, rotations)
    if positions.ndim != 3:
        raise ValueError(f"resample takes one sequence (F, 23, 3), got {positions.shape}")
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    if ts.shape != (positions.shape[0],):
        raise ValueError(f"timestamps_ns must have shape ({positions.shape[0]},), got {ts.shape}")
    if ts.size < 2 or np.any(np.diff(ts) <= 0):
        raise ValueError("timestamps_ns must hold at least two strictly increasing values")
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need n_frames >= 1 and fps > 0, got n_frames={n_frames}, fps={fps}")
    t = frame_times_ns(t0_ns, fps, n_frames)
    if t[0] < ts[0] or t[-1] > ts[-1]:
        raise ValueError(
            f"window [{t[0]}, {t[-1]}] ns leaves the data [{ts[0]}, {ts[-1]}] ns; "
            "choose a window inside the recording"
        )
    i = np.clip(np.searchsorted(ts, t, side="right") - 1, 0, ts.size - 2)
    alpha = (t - ts[i]).astype(np.float64) / (ts[i + 1] - ts[i]).astype(np.float64)

    a = alpha[:, None, None]
    pos = (1.0 - a) * positions[i] + a * positions[i + 1]

    Ra = torch.as_tensor(rotations[i], dtype=torch.float64)
    Rb = torch.as_tensor(rotations[i + 1], dtype=torch.float64)
    delta = roma.rotmat_to_rotvec(Ra.transpose(-1, -2) @ Rb)
    step = roma.rotvec_to_rotmat(delta * torch.as_tensor(alpha)[:, None, None])
    rot = (Ra @ step).numpy()
    return pos.astype(np.float64), rot
