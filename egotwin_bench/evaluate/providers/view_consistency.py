"""The view-consistency provider: TransErr / RotErr of generated videos (a pose estimator) against
generated motions (the formulas: `egotwin_bench.metrics.view_consistency`), with per-clip pose
estimates cached by video hash and pose failures counted, never scored."""

from __future__ import annotations

import numpy as np

from egotwin_bench.estimators.base import PoseEstimate, PoseEstimationError
from egotwin_bench.evaluate.clip_cache import ClipCache, namespace
from egotwin_bench.evaluate.parallel import map_items
from egotwin_bench.evaluate.protocol import ProviderResult
from egotwin_bench.hashing import digest
from egotwin_bench.metrics.view_consistency import (
    finite_mean,
    head_camera_trajectory,
    head_path_length,
    relative_to_first,
    view_errors,
)

MIN_REGISTERED_FRACTION: float = 0.5
"""A clip with fewer registered frames than this fraction is a pose failure."""
ZERO_TRANSLATION: float = 1e-9
"""Estimated relative camera positions all within this (estimator units) count as no translation."""


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
        return f"{clip.video_key}-{digest(np.asarray(clip.intrinsics, dtype=np.float64), length=8)}"

    def camera_poses(self, clips: list) -> list[PoseEstimate | str]:
        """Per clip its `PoseEstimate` (cached), or the reason the estimator failed on it.

        Failures the estimator declares (`PoseEstimationError`) are cached like poses; other
        errors are not (a rerun tries again)."""
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
