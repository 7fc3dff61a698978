"""Xsens body motion (`body/xdata.npz`) with Nymeria's two known repairs.

The file holds ``segment_tXYZ`` (F, 69) metres, ``segment_qWXYZ`` (F, 92) world rotations as
w,x,y,z quaternions, ``timestamps_us`` (F,) in the Aria TIME_CODE domain, ``framerate`` (240).

Repairs (as the public Nymeria tools do in `BodyDataProvider`):

* **Irregular timestamps**: every frame step that differs from the nominal 1/240 s by more
  than 1 ms is replaced by the nominal step; if the repaired clock then drifts more than 10 ms
  from the recorded one anywhere, the sequence is rejected (`XsensError`).
* **Zero-norm quaternions** (norm < 0.1): the segment carries its previous frame's rotation
  (identity on frame 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egotwin_bench.constants import XSENS_FPS
from egotwin_bench.geometry import quat_wxyz_to_matrix
from egotwin_bench.skeleton import NUM_SEGMENTS

DT_TOLERANCE_US: float = 1000.0
"""A frame step further than this from 1/240 s is replaced by the nominal step."""
MAX_CLOCK_CORRECTION_US: float = 10_000.0
"""Reject the sequence when the repaired clock drifts more than this from the recorded one."""
MIN_QUATERNION_NORM: float = 0.1


class XsensError(ValueError):
    """The Xsens file is unusable (missing keys, bad shapes, timestamps beyond repair)."""


@dataclass(frozen=True)
class XsensMotion:
    """Xsens motion of one sequence in the Xsens world (Z up, metres)."""

    positions: np.ndarray
    """(F, 23, 3) segment origins, metres, float64."""
    rotations: np.ndarray
    """(F, 23, 3, 3) segment-to-world rotations, float64."""
    timestamps_ns: np.ndarray
    """(F,) int64, TIME_CODE nanoseconds (repaired)."""
    repairs: list[str] = field(default_factory=list)
    """Human-readable notes of what was repaired (empty if nothing)."""

    @property
    def num_frames(self) -> int:
        return int(self.timestamps_ns.shape[0])


def repair_timestamps(timestamps_us: np.ndarray, fps: float = XSENS_FPS) -> tuple[np.ndarray, int, float]:
    """Patch irregular steps to the nominal cadence.

    Returns (repaired timestamps in µs as float64, number of patched steps, max |correction| µs).
    Raises `XsensError` when the correction exceeds `MAX_CLOCK_CORRECTION_US`.
    """
    t = np.asarray(timestamps_us, dtype=np.float64)
    nominal = 1e6 / fps
    dt = np.diff(t)
    bad = np.abs(dt - nominal) > DT_TOLERANCE_US
    if not bad.any():
        return t, 0, 0.0
    dt = np.where(bad, nominal, dt)
    fixed = t[0] + np.concatenate([[0.0], np.cumsum(dt)])
    drift = float(np.max(np.abs(fixed - t)))
    if drift > MAX_CLOCK_CORRECTION_US:
        raise XsensError(
            f"irregular Xsens timestamps: {int(bad.sum())} bad steps, repaired clock drifts "
            f"{drift / 1000:.1f} ms > {MAX_CLOCK_CORRECTION_US / 1000:.0f} ms"
        )
    return fixed, int(bad.sum()), drift


def repair_quaternions(q: np.ndarray) -> tuple[np.ndarray, int]:
    """(F, 23, 4) w,x,y,z -> copy where near-zero quaternions carry the previous frame's value."""
    q = np.array(q, dtype=np.float64)
    invalid = np.linalg.norm(q, axis=-1) < MIN_QUATERNION_NORM
    count = int(invalid.sum())
    if count:
        q[0][invalid[0]] = (1.0, 0.0, 0.0, 0.0)
        for f in np.flatnonzero(invalid[1:].any(axis=1)) + 1:
            q[f][invalid[f]] = q[f - 1][invalid[f]]
    return q, count


def load_xsens(path: str | Path) -> XsensMotion:
    """Read and repair `xdata.npz`; positions (F, 23, 3) m and rotations (F, 23, 3, 3), Z up."""
    path = Path(path)
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise XsensError(f"{path}: unreadable npz ({exc})") from exc
    with data:
        missing = [k for k in ("segment_tXYZ", "segment_qWXYZ", "timestamps_us") if k not in data.files]
        if missing:
            raise XsensError(f"{path}: missing arrays {missing}")
        t_xyz, q_wxyz, t_us = data["segment_tXYZ"], data["segment_qWXYZ"], data["timestamps_us"]
        fps = float(data["framerate"]) if "framerate" in data.files else float(XSENS_FPS)
    frames = t_us.shape[0]
    if t_xyz.shape != (frames, NUM_SEGMENTS * 3) or q_wxyz.shape != (frames, NUM_SEGMENTS * 4):
        raise XsensError(
            f"{path}: expected segment_tXYZ ({frames}, 69) and segment_qWXYZ ({frames}, 92), "
            f"got {t_xyz.shape} and {q_wxyz.shape}"
        )
    if frames < 2:
        raise XsensError(f"{path}: only {frames} frame(s)")
    if not np.all(np.isfinite(t_xyz)) or not np.all(np.isfinite(q_wxyz)):
        raise XsensError(f"{path}: NaN or infinite values in segment arrays")
    repairs: list[str] = []
    t_fixed, n_steps, drift = repair_timestamps(t_us, fps)
    if n_steps:
        repairs.append(f"patched {n_steps} irregular Xsens timestamp steps (max correction {drift / 1000:.2f} ms)")
    q, n_quat = repair_quaternions(q_wxyz.reshape(frames, NUM_SEGMENTS, 4))
    if n_quat:
        repairs.append(f"replaced {n_quat} zero-norm Xsens quaternions by the previous frame's")
    return XsensMotion(
        positions=t_xyz.reshape(frames, NUM_SEGMENTS, 3).astype(np.float64),
        rotations=quat_wxyz_to_matrix(q),
        timestamps_ns=np.round(t_fixed * 1000.0).astype(np.int64),
        repairs=repairs,
    )
