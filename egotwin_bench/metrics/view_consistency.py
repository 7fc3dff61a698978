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
half of its frames registered, is a *pose failure* (`pose_failure`), not a score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egotwin_bench import geometry, skeleton
from egotwin_bench.constants import MOTION_FRAMES, VIDEO_FRAMES
from egotwin_bench.estimators.base import PoseEstimate, PoseEstimationError

MIN_REGISTERED_FRACTION: float = 0.5
"""A clip with fewer registered frames than this fraction is a pose failure."""
ZERO_TRANSLATION: float = 1e-9
"""Estimated relative camera positions all within this (estimator units) count as no translation."""


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


def pose_failure(estimate: PoseEstimate) -> str | None:
    """Why an estimated trajectory cannot be scored, or None when it can.

    Failures: non-finite poses; fewer than `MIN_REGISTERED_FRACTION` of the frames registered;
    no estimated translation (every relative camera position within `ZERO_TRANSLATION`, e.g. a
    rotation-only estimate), for which TransErr would just be the motion's own displacement.
    """
    poses, registered = np.asarray(estimate.poses), np.asarray(estimate.registered, dtype=bool)
    if not np.all(np.isfinite(poses)):
        return "non-finite estimated poses"
    n, k = len(registered), int(registered.sum())
    if k < MIN_REGISTERED_FRACTION * n:
        return f"only {k}/{n} frames registered (< {MIN_REGISTERED_FRACTION:.0%})"
    t = relative_to_first(poses)[1:, :3, 3]
    if float(np.abs(t).max(initial=0.0)) <= ZERO_TRANSLATION:
        return "no estimated camera translation (rotation-only trajectory): TransErr undefined"
    return None


# -- metric provider ---------------------------------------------------------------------------

def _estimate_poses(job: tuple) -> tuple[PoseEstimate | None, str | None, bool]:
    """One clip's estimate, or (None, reason, cacheable) when the estimator fails on it;
    `cacheable`: the estimator itself declared the failure (`PoseEstimationError`), so the same
    video fails the same way again."""
    estimator, clip = job
    try:
        return PoseEstimate.of(estimator.estimate(clip.load_video(), clip.intrinsics)), None, False
    except PoseEstimationError as err:
        return None, str(err), True
    except Exception as err:  # noqa: BLE001 - a per-clip skip with its reason
        return None, f"{type(err).__name__}: {err}", False


class ViewConsistencyProvider:
    """TransErr / RotErr of generated videos (pose estimator) against generated motions.

    Per-clip estimates depend on the video (and the reference intrinsics) only, so they are
    cached by the video bytes' hash under ``poses-<estimator cache_id>-egotwin<version>``: a
    submission whose videos were already scored (e.g. the motion-shuffled baseline after the
    ground truth) estimates no pose. A clip whose estimate fails (the estimator raises, or
    `pose_failure` rejects it) gets NaN errors and its reason in `failures`; set-level values
    are means over the clips that worked, and `row_columns` carries ``pose_failures`` (their
    count) and ``head_path_m`` (mean head path length of the motions) for the leaderboard row.
    Per clip it also reports ``registered_frames`` and ``pose_scale`` (the fitted s).
    `trajectories` keeps, per clip id, the scaled relative camera positions and the head-camera
    positions (41, 3) each, for plots.
    """

    name = "view_consistency"
    metric_names = ("TransErr", "RotErr")
    higher_is_better = {"TransErr": False, "RotErr": False}

    def __init__(self, estimator, cache=None, n_bootstrap: int = 1000, parallel: bool = False) -> None:
        from egotwin_bench.evaluate.clip_cache import ClipCache

        self.estimator = estimator
        self.cache = cache if cache is not None else ClipCache(None)
        self.n_bootstrap = n_bootstrap
        self.parallel = parallel
        """Estimate poses as Ray tasks (the runner sets it for `--workers N > 0` or `$RAY_ADDRESS`)."""
        self.failures: dict[str, str] = {}
        self.row_columns: dict[str, float | int] = {}
        self.trajectories: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def unavailable_reason(self) -> str | None:
        return self.estimator.unavailable_reason()

    @staticmethod
    def pose_key(clip) -> str:
        """Cache key of a clip's estimated poses: its video hash + a digest of its intrinsics."""
        from egotwin_bench.hashing import digest

        return f"{clip.video_key}-{digest(np.asarray(clip.intrinsics, dtype=np.float64), length=8)}"

    def camera_poses(self, clips: list) -> list[PoseEstimate | str]:
        """Per clip its `PoseEstimate` (cached), or the reason the estimator failed on it.

        Failures the estimator declares (`PoseEstimationError`) are cached like poses; other
        errors are not (a rerun tries again)."""
        from egotwin_bench.evaluate.clip_cache import namespace
        from egotwin_bench.evaluate.parallel import map_items

        space = namespace("poses", self.estimator.cache_id())
        out: list[PoseEstimate | str] = [""] * len(clips)
        todo: dict[str, list[int]] = {}  # key -> clips sharing it (identical videos estimate once)
        for i, clip in enumerate(clips):
            hit = self.cache.get(space, self.pose_key(clip))
            if hit is None:
                todo.setdefault(self.pose_key(clip), []).append(i)
            elif "failure" in hit:
                out[i] = str(hit["failure"])
            else:
                out[i] = PoseEstimate(hit["poses"], hit["registered"] if "registered" in hit
                                      else np.ones(len(hit["poses"]), dtype=bool))
        first = [idx[0] for idx in todo.values()]
        results = map_items(_estimate_poses, [(self.estimator, clips[i]) for i in first],
                            desc=f"camera poses ({self.estimator.name})", parallel=self.parallel,
                            num_cpus=getattr(self.estimator, "num_cpus", 1))
        for (key, idx), (estimate, reason, cacheable) in zip(todo.items(), results):
            for i in idx:
                out[i] = estimate if estimate is not None else reason
            if estimate is not None:
                self.cache.put(space, key, poses=estimate.poses, registered=estimate.registered)
            elif cacheable:
                self.cache.put(space, key, failure=np.array(reason))
        return out

    def evaluate(self, generated: list, reference: list, rng: np.random.Generator):
        from egotwin_bench.evaluate.protocol import ProviderResult

        n = len(generated)
        trans, rot, scale, registered, path = (np.full(n, np.nan) for _ in range(5))
        for i, (clip, estimate) in enumerate(zip(generated, self.camera_poses(generated))):
            head = head_camera_trajectory(clip.positions, clip.rotations, clip.T_head_camera)
            path[i] = head_path_length(head)
            if isinstance(estimate, str):
                self.failures[clip.clip_id] = estimate
                continue
            registered[i] = float(np.sum(estimate.registered))
            reason = pose_failure(estimate)
            if reason is not None:
                self.failures[clip.clip_id] = reason
                continue
            err = view_errors(estimate.poses, head)
            trans[i], rot[i], scale[i] = err.trans_err, err.rot_err, err.scale
            self.trajectories[clip.clip_id] = (
                err.scale * relative_to_first(estimate.poses)[:, :3, 3],
                relative_to_first(head)[:, :3, 3],
            )
        self.row_columns = {"pose_failures": int(np.sum(~np.isfinite(trans))),
                            "head_path_m": float(np.mean(path)) if n else float("nan")}
        return ProviderResult(
            metrics={"TransErr": finite_mean(trans, rng, self.n_bootstrap),
                     "RotErr": finite_mean(rot, rng, self.n_bootstrap)},
            per_clip={"TransErr": trans, "RotErr": rot, "registered_frames": registered,
                      "pose_scale": scale, "head_path_m": path},
        )


def finite_mean(values: np.ndarray, rng: np.random.Generator, resamples: int):
    """Bootstrap mean over the finite per-clip values (failed clips are NaN and left out)."""
    from egotwin_bench.evaluate.protocol import MetricValue
    from egotwin_bench.metrics.bootstrap import bootstrap_mean

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return bootstrap_mean(values, rng, resamples) if values.size else MetricValue(float("nan"))
