"""Rigid-pose trajectories sampled at arbitrary times (linear translation, slerp rotation)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def interpolate_poses(times_ns: np.ndarray, T: np.ndarray, query_ns: np.ndarray) -> np.ndarray:
    """(N,) increasing times, (N, 4, 4) poses -> (M, 4, 4) poses at `query_ns` (M,).

    Queries outside [times[0], times[-1]] raise ValueError (no extrapolation).
    """
    times = np.asarray(times_ns, dtype=np.int64)
    q = np.asarray(query_ns, dtype=np.int64)
    if q.size and (q.min() < times[0] or q.max() > times[-1]):
        raise ValueError(f"query times [{q.min()}, {q.max()}] leave the trajectory [{times[0]}, {times[-1]}]")
    i = np.clip(np.searchsorted(times, q, side="right") - 1, 0, times.size - 2)
    alpha = (q - times[i]).astype(np.float64) / (times[i + 1] - times[i]).astype(np.float64)
    Ra = Rotation.from_matrix(T[i, :3, :3])
    Rb = Rotation.from_matrix(T[i + 1, :3, :3])
    step = Rotation.from_rotvec((Ra.inv() * Rb).as_rotvec() * alpha[:, None])
    out = np.zeros((q.size, 4, 4))
    out[:, :3, :3] = (Ra * step).as_matrix()
    out[:, :3, 3] = (1.0 - alpha)[:, None] * T[i, :3, 3] + alpha[:, None] * T[i + 1, :3, 3]
    out[:, 3, 3] = 1.0
    return out


def max_gap_ns(times_ns: np.ndarray, start_ns: int, end_ns: int) -> int:
    """Largest time step of the trajectory samples that cover [start, end] (inf if uncovered)."""
    times = np.asarray(times_ns, dtype=np.int64)
    if times.size < 2 or start_ns < times[0] or end_ns > times[-1]:
        return np.iinfo(np.int64).max
    lo = max(np.searchsorted(times, start_ns, side="right") - 1, 0)
    hi = min(np.searchsorted(times, end_ns, side="left"), times.size - 1)
    return int(np.diff(times[lo : hi + 1]).max()) if hi > lo else 0
