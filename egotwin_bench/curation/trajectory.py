"""Rigid-pose trajectories sampled at arbitrary times (linear translation, slerp rotation)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

CLOCK_ROUNDING_NS: int = 4
"""Queries at most this far outside a trajectory are clamped onto its ends: TIME_CODE ->
device -> TIME_CODE round trips through a `ClockMap` with drift round to whole ns and can land
a few ns past the last pose. Anything further is a real gap and raises."""


def clamp_to_range(times_ns: np.ndarray, query_ns: np.ndarray, tolerance_ns: int = 0) -> np.ndarray:
    """(M,) int64 queries clamped onto [times[0], times[-1]] when within `tolerance_ns` of it;
    raises ValueError for queries further outside (no extrapolation)."""
    times = np.asarray(times_ns, dtype=np.int64)
    q = np.asarray(query_ns, dtype=np.int64)
    if q.size and (q.min() < times[0] - tolerance_ns or q.max() > times[-1] + tolerance_ns):
        raise ValueError(f"query times [{q.min()}, {q.max()}] leave the trajectory [{times[0]}, {times[-1]}] "
                         f"by more than {tolerance_ns} ns")
    return np.clip(q, times[0], times[-1])


def interpolate_poses(times_ns: np.ndarray, T, query_ns: np.ndarray, tolerance_ns: int = 0) -> np.ndarray:
    """(N,) increasing times, (N, 4, 4) poses -> (M, 4, 4) poses at `query_ns` (M,).

    `T` is an array or anything indexable by row arrays (`nymeria.mps.PoseArray`): only the
    rows around the queries are read. Queries up to `tolerance_ns` outside [times[0], times[-1]]
    take the end pose; further outside raise ValueError (no extrapolation).
    """
    i, alpha = _brackets(times_ns, query_ns, tolerance_ns)
    Ta, Tb = np.asarray(T[i], dtype=np.float64), np.asarray(T[i + 1], dtype=np.float64)
    R, p = _blend(Ta[:, :3, :3], Tb[:, :3, :3], Ta[:, :3, 3], Tb[:, :3, 3], alpha)
    out = np.zeros((R.shape[0], 4, 4))
    out[:, :3, :3] = R
    out[:, :3, 3] = p
    out[:, 3, 3] = 1.0
    return out


def interpolate_rotations_translations(times_ns: np.ndarray, R, p: np.ndarray, query_ns: np.ndarray,
                                       tolerance_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N,) increasing times, (N, 3, 3) rotations (slerp) and (N, 3) translations (linear) ->
    (M, 3, 3), (M, 3) at `query_ns`; only the rows around the queries are read. Clamping as
    `interpolate_poses`."""
    i, alpha = _brackets(times_ns, query_ns, tolerance_ns)
    return _blend(np.asarray(R[i], dtype=np.float64), np.asarray(R[i + 1], dtype=np.float64), p[i], p[i + 1], alpha)


def _brackets(times_ns: np.ndarray, query_ns: np.ndarray, tolerance_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the sample before each (clamped) query and the fraction towards the next one."""
    times = np.asarray(times_ns, dtype=np.int64)
    q = clamp_to_range(times, query_ns, tolerance_ns)
    i = np.clip(np.searchsorted(times, q, side="right") - 1, 0, times.size - 2)
    return i, (q - times[i]).astype(np.float64) / (times[i + 1] - times[i]).astype(np.float64)


def _blend(Ra: np.ndarray, Rb: np.ndarray, pa: np.ndarray, pb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra, rb = Rotation.from_matrix(Ra), Rotation.from_matrix(Rb)
    step = Rotation.from_rotvec((ra.inv() * rb).as_rotvec() * alpha[:, None])
    return (ra * step).as_matrix(), (1.0 - alpha)[:, None] * pa + alpha[:, None] * pb


def max_gap_ns(times_ns: np.ndarray, start_ns: int, end_ns: int, tolerance_ns: int = 0) -> int:
    """Largest time step of the trajectory samples that cover [start, end] (int64 max if they do
    not cover it; ends up to `tolerance_ns` outside count as covered, see `clamp_to_range`)."""
    times = np.asarray(times_ns, dtype=np.int64)
    if times.size < 2:
        return np.iinfo(np.int64).max
    try:
        start_ns, end_ns = clamp_to_range(times, np.array([start_ns, end_ns]), tolerance_ns)
    except ValueError:
        return np.iinfo(np.int64).max
    lo = max(np.searchsorted(times, start_ns, side="right") - 1, 0)
    hi = min(np.searchsorted(times, end_ns, side="left"), times.size - 1)
    return int(np.diff(times[lo : hi + 1]).max()) if hi > lo else 0
