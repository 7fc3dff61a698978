"""View consistency (paper §4.1, appendix B): TransErr and RotErr.

The camera trajectory estimated from the generated video is compared with the head-camera
trajectory implied by the generated motion:

1. the motion (81 frames, 16 FPS) is downsampled by taking every other frame (-> 41 frames, the
   video's 8 FPS); the head-camera pose of motion frame 2k is ``T_world_head @ T_head_camera``
   with the reference clip's ``T_head_camera``;
2. both trajectories are expressed relative to their first frame: ``T_0^-1 @ T_k``;
3. the estimated camera translations are scaled by the least-squares factor
   ``s = max(0, <t_c, t_m> / <t_c, t_c>)`` (monocular estimators have no metric scale; a
   negative factor would mirror the trajectory through its start, which is not a change of
   scale, so a camera moving backwards is scored against the forward head motion, not fitted
   to it);
4. ``TransErr = mean_k ||s t_c(k) - t_m(k)||`` in metres and
   ``RotErr = mean_k arccos((tr(R_c(k)^T R_m(k)) - 1) / 2)`` in radians, over frames 1..40
   (frame 0 is the identity in both by construction).

All poses are camera-to-world (4, 4) matrices, OpenCV camera axes (x right, y down, z forward).

What the formula rewards: with a motionless head (``t_m = 0``) the fitted scale is 0 and the
TransErr is 0 whatever the video shows. The formula is kept as the paper's; the leaderboard
reports beside it the mean head path length of the motions (`head_path_length`), so a
motionless submission is visible as one. An estimate with no translation, or with fewer than
half of its frames registered, is a *pose failure*
(`egotwin_bench.evaluate.providers.view_consistency.pose_failure`), not a score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egotwin_bench import geometry, skeleton
from egotwin_bench.constants import MOTION_FRAMES, VIDEO_FRAMES
from egotwin_bench.metrics.bootstrap import MetricValue, bootstrap_mean


def relative_to_first(poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses -> (N, 4, 4) poses in the frame of pose 0 (``T_0^-1 T_k``)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must have shape (N, 4, 4), got {poses.shape}")
    return geometry.invert_transform(poses[0]) @ poses


def least_squares_scale(estimated: np.ndarray, target: np.ndarray) -> float:
    """Scale s >= 0 minimising ``sum ||s * estimated - target||^2`` for (N, 3) translations.

    The unconstrained optimum ``<e, t> / <e, e>`` is clamped at 0: a negative factor mirrors the
    trajectory (point reflection through frame 0), which is not a scale, and would give a
    camera moving backwards zero error against forward head motion. With s = 0 (also for an
    all-zero, rotation-only estimate) the error equals the target's own displacement.
    """
    estimated = np.asarray(estimated, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if estimated.shape != target.shape:
        raise ValueError(f"translations differ in shape: {estimated.shape} vs {target.shape}")
    denom = float(np.sum(estimated * estimated))
    return max(0.0, float(np.sum(estimated * target)) / denom) if denom > 0.0 else 0.0


@dataclass(frozen=True)
class ViewErrors:
    """Per-clip view-consistency errors: TransErr (metres) and RotErr (radians), plus the scale."""

    trans_err: float
    rot_err: float
    scale: float


def view_errors(camera_poses: np.ndarray, head_camera_poses: np.ndarray) -> ViewErrors:
    """TransErr / RotErr between an estimated camera trajectory and the motion's head camera.

    Args:
        camera_poses: (N, 4, 4) estimated camera-to-world poses (any world frame, any scale).
        head_camera_poses: (N, 4, 4) head-camera-to-world poses from the motion, metres.

    Returns:
        The frame-averaged errors over frames 1..N-1 (appendix B).
    """
    cam = relative_to_first(camera_poses)
    head = relative_to_first(head_camera_poses)
    if cam.shape != head.shape:
        raise ValueError(f"trajectories differ in length: {cam.shape} vs {head.shape}")
    if cam.shape[0] < 2:
        raise ValueError("need at least two frames")
    t_c, t_m = cam[1:, :3, 3], head[1:, :3, 3]
    s = least_squares_scale(t_c, t_m)
    trans = np.linalg.norm(s * t_c - t_m, axis=-1)
    # arccos((tr(Rc^T Rm) - 1) / 2), computed stably through the rotation vector.
    rot = geometry.geodesic_distance(cam[1:, :3, :3], head[1:, :3, :3])
    return ViewErrors(trans_err=float(trans.mean()), rot_err=float(rot.mean()), scale=s)


def head_camera_trajectory(
    positions: np.ndarray, rotations: np.ndarray, T_head_camera: np.ndarray
) -> np.ndarray:
    """Head-camera poses at the video frames from a motion clip.

    Args:
        positions: (81, 23, 3) world segment positions, metres, Z up, 16 FPS.
        rotations: (81, 23, 3, 3) world segment rotations.
        T_head_camera: (4, 4) camera pose in the Head segment frame.

    Returns:
        (41, 4, 4) ``T_world_camera`` of motion frames 0, 2, ..., 80 (video frames 0..40).
    """
    positions = np.asarray(positions, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    if positions.shape[0] != MOTION_FRAMES or rotations.shape[0] != MOTION_FRAMES:
        raise ValueError(
            f"expected {MOTION_FRAMES} motion frames, got {positions.shape} / {rotations.shape}"
        )
    step = (MOTION_FRAMES - 1) // (VIDEO_FRAMES - 1)
    T_world_head = geometry.make_transform(
        rotations[::step, skeleton.HEAD], positions[::step, skeleton.HEAD]
    )
    return T_world_head @ np.asarray(T_head_camera, dtype=np.float64)


def head_path_length(head_camera_poses: np.ndarray) -> float:
    """Length (metres) of the polyline through the (N, 4, 4) head-camera positions."""
    t = np.asarray(head_camera_poses, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(np.diff(t, axis=0), axis=1).sum())


def finite_mean(values: np.ndarray, rng: np.random.Generator, resamples: int):
    """Bootstrap mean over the finite per-clip values (failed clips are NaN and left out)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return bootstrap_mean(values, rng, resamples) if values.size else MetricValue(float("nan"))
