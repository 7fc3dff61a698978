"""Built-in CPU monocular visual odometry on OpenCV (no weights).

Pipeline per clip (frames in order):

1. Shi-Tomasi corners tracked frame to frame by pyramidal Lucas-Kanade with a forward-backward
   check; new corners are detected whenever the track count drops (low texture just means fewer
   tracks, never an exception).
2. *Initialisation*: until the map exists, each frame is compared with a reference frame. The
   rotation is the Kabsch fit of the bearing vectors of the homography-RANSAC inliers; if the
   median parallax left after removing that rotation is below ``min_parallax_deg`` the motion is
   treated as a pure rotation (translation 0). Otherwise the essential matrix (RANSAC, known K)
   gives R and a unit translation, and the shared tracks are triangulated into the map.
3. *Tracking*: once the map exists, each frame's pose comes from PnP-RANSAC on the tracked map
   points (refined by Levenberg-Marquardt on the inliers); tracks without a 3D point are
   triangulated against their first observation as soon as their parallax is large enough, so the
   map follows the camera (a sliding window over the tracks' lifetimes).
4. *Fallback* (too few map points, e.g. a blank wall): rotation-only update from the frame-to-frame
   bearing vectors, or the previous pose if nothing can be tracked.

The scale is the one of the initial baseline (arbitrary); the view metrics align it. Frames
posed by the fallback are reported as not registered (`PoseEstimate.registered`); a clip that
never leaves the pure-rotation branch has no translation at all, which the view metric counts
as a pose failure, not as a score.

A fast, labelled option (`--estimator builtin`), less accurate than `colmap` (docs/benchmark.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from egotwin_bench import geometry
from egotwin_bench.estimators.base import PoseEstimate, check_frames
from egotwin_bench.hashing import digest


@dataclass(frozen=True)
class BuiltinVOConfig:
    """Tunables of the built-in visual odometry (pixels refer to the input frames)."""

    max_features: int = 800
    min_features: int = 300
    quality_level: float = 0.003
    min_distance_px: int = 8
    lk_window_px: int = 21
    lk_levels: int = 3
    fb_threshold_px: float = 1.0
    ransac_threshold_px: float = 1.0
    min_parallax_deg: float = 3.0
    min_triangulation_deg: float = 4.0
    min_pnp_points: int = 12
    max_reprojection_px: float = 2.0
    min_rotation_tracks: int = 8


@dataclass
class _Tracks:
    """Live feature tracks: ids, current pixel positions, and every observation per id."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float32))
    history: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    next_id: int = 0


def _bearings(pts: np.ndarray, K_inv: np.ndarray) -> np.ndarray:
    """(M, 2) pixels -> (M, 3) unit bearing vectors in the camera frame."""
    rays = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ K_inv.T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def kabsch_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R minimising ``sum ||R a_i - b_i||^2`` for (M, 3) vectors."""
    U, _, Vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    return Vt.T @ np.diag([1.0, 1.0, d]) @ U.T


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.rad2deg(np.arccos(np.clip(np.sum(a * b, axis=1), -1.0, 1.0)))


def _world_to_camera(T_world_camera: np.ndarray) -> np.ndarray:
    return geometry.invert_transform(T_world_camera)[:3]


class BuiltinEstimator:
    """CPU visual odometry (OpenCV), no weights: the fast option, never chosen by `auto`."""

    name = "builtin"

    def __init__(self, config: BuiltinVOConfig | None = None) -> None:
        self.config = config or BuiltinVOConfig()
        self.fallback_frames = 0
        """Frames of the last clip whose pose came from the fallback (diagnostics)."""

    def unavailable_reason(self) -> str | None:
        return None

    def cache_id(self) -> str:
        """``builtin-<digest of BuiltinVOConfig>`` (the pose cache's name)."""
        return f"{self.name}-{digest(asdict(self.config))}"

    # -- tracking -------------------------------------------------------------------------
    def _detect(self, gray: np.ndarray, tracks: _Tracks, frame: int) -> None:
        cfg = self.config
        if len(tracks.ids) >= cfg.min_features:
            return
        mask = np.full(gray.shape, 255, dtype=np.uint8)
        for x, y in tracks.pts:
            cv2.circle(mask, (int(x), int(y)), cfg.min_distance_px, 0, -1)
        new = cv2.goodFeaturesToTrack(
            gray, cfg.max_features - len(tracks.ids), cfg.quality_level, cfg.min_distance_px, mask=mask
        )
        if new is None:
            return
        new = new.reshape(-1, 2).astype(np.float32)
        ids = np.arange(tracks.next_id, tracks.next_id + len(new))
        tracks.next_id += len(new)
        for i, p in zip(ids, new):
            tracks.history[int(i)] = {frame: p.astype(np.float64)}
        tracks.ids = np.concatenate([tracks.ids, ids])
        tracks.pts = np.concatenate([tracks.pts, new])

    def _track(self, prev: np.ndarray, cur: np.ndarray, tracks: _Tracks, frame: int) -> None:
        cfg = self.config
        if len(tracks.ids) == 0:
            return
        lk = dict(winSize=(cfg.lk_window_px, cfg.lk_window_px), maxLevel=cfg.lk_levels)
        p0 = tracks.pts.reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **lk)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **lk)
        h, w = cur.shape
        p1 = p1.reshape(-1, 2)
        good = (
            (st1.ravel() == 1)
            & (st2.ravel() == 1)
            & (np.linalg.norm(p0r.reshape(-1, 2) - tracks.pts, axis=1) < cfg.fb_threshold_px)
            & (p1[:, 0] >= 0) & (p1[:, 0] < w) & (p1[:, 1] >= 0) & (p1[:, 1] < h)
        )
        tracks.ids, tracks.pts = tracks.ids[good], p1[good]
        for i, p in zip(tracks.ids, tracks.pts):
            tracks.history[int(i)][frame] = p.astype(np.float64)

    # -- geometry ---------------------------------------------------------------------------
    def _rotation_between(self, pa: np.ndarray, pb: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Rotation R_b_a (bearing_b = R bearing_a) of two views + median residual parallax (deg)."""
        cfg = self.config
        if len(pa) < cfg.min_rotation_tracks:
            return None
        K_inv = np.linalg.inv(K)
        ba, bb = _bearings(pa, K_inv), _bearings(pb, K_inv)
        _, mask = cv2.findHomography(pa, pb, cv2.RANSAC, 2.0 * cfg.ransac_threshold_px)
        inl = mask.ravel().astype(bool) if mask is not None else np.ones(len(pa), dtype=bool)
        if inl.sum() < cfg.min_rotation_tracks:
            inl = np.ones(len(pa), dtype=bool)
        R = kabsch_rotation(ba[inl], bb[inl])
        parallax = float(np.median(_angles_deg(ba @ R.T, bb)))
        return R, parallax

    def _triangulate(
        self, K: np.ndarray, Ta: np.ndarray, Tb: np.ndarray, pa: np.ndarray, pb: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Triangulate (M, 2) pixel pairs seen from camera-to-world poses Ta, Tb.

        Returns (M, 3) world points and an (M,) mask of points in front of both cameras with a
        small reprojection error and enough parallax.
        """
        cfg = self.config
        Pa, Pb = K @ _world_to_camera(Ta), K @ _world_to_camera(Tb)
        X = cv2.triangulatePoints(Pa, Pb, pa.T.astype(np.float64), pb.T.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            X = (X[:3] / X[3]).T
        ok = np.all(np.isfinite(X), axis=1)
        for P, p in ((Pa, pa), (Pb, pb)):
            x = np.concatenate([X, np.ones((len(X), 1))], axis=1) @ P.T
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.linalg.norm(x[:, :2] / x[:, 2:] - p, axis=1)
            ok &= (x[:, 2] > 0) & (err < cfg.max_reprojection_px)
        ray_a = X - Ta[:3, 3]
        ray_b = X - Tb[:3, 3]
        ray_a /= np.linalg.norm(ray_a, axis=1, keepdims=True) + 1e-12
        ray_b /= np.linalg.norm(ray_b, axis=1, keepdims=True) + 1e-12
        ok &= _angles_deg(ray_a, ray_b) > cfg.min_triangulation_deg
        return X, ok

    def _pnp(self, K: np.ndarray, X: np.ndarray, p: np.ndarray, guess: np.ndarray) -> np.ndarray | None:
        cfg = self.config
        if len(X) < cfg.min_pnp_points:
            return None
        T_cw = _world_to_camera(guess)
        rvec, _ = cv2.Rodrigues(T_cw[:, :3])
        tvec = T_cw[:, 3:].copy()
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            X.astype(np.float64), p.astype(np.float64), K, None, rvec, tvec,
            useExtrinsicGuess=True, iterationsCount=200,
            reprojectionError=cfg.max_reprojection_px, flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not ok or inliers is None or len(inliers) < cfg.min_pnp_points:
            return None
        inl = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(X[inl], p[inl].astype(np.float64), K, None, rvec, tvec)
        R, _ = cv2.Rodrigues(rvec)
        return geometry.invert_transform(geometry.make_transform(R, tvec.ravel()))

    # -- main loop --------------------------------------------------------------------------
    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> PoseEstimate:
        """(N, H, W, 3) uint8 RGB + (3, 3) K -> camera-to-world poses (frame 0 = I); frames
        posed by the fallback are not `registered`."""
        frames, K = check_frames(frames, intrinsics)
        grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        n = len(grays)
        poses = np.tile(np.eye(4), (n, 1, 1))
        tracks = _Tracks()
        points: dict[int, np.ndarray] = {}
        ref = 0
        self.fallback_frames = 0
        registered = np.ones(n, dtype=bool)
        self._detect(grays[0], tracks, 0)
        for k in range(1, n):
            before = self.fallback_frames
            prev_ids = tracks.ids.copy()
            self._track(grays[k - 1], grays[k], tracks, k)
            if points:
                pose = self._pose_from_map(K, tracks, points, poses[k - 1])
                if pose is None:
                    pose = self._fallback(K, tracks, prev_ids, poses[k - 1], k)
                poses[k] = pose
            else:
                ref = self._initialise(K, tracks, points, poses, ref, k)
            if points:
                self._extend_map(K, tracks, points, poses, k)
            self._detect(grays[k], tracks, k)
            registered[k] = self.fallback_frames == before
        return PoseEstimate(poses, registered)

    def _shared(self, tracks: _Tracks, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = [int(i) for i in tracks.ids if a in tracks.history[int(i)]]
        pa = np.array([tracks.history[i][a] for i in ids]).reshape(-1, 2)
        pb = np.array([tracks.history[i][b] for i in ids]).reshape(-1, 2)
        return np.array(ids, dtype=np.int64), pa, pb

    def _initialise(
        self, K: np.ndarray, tracks: _Tracks, points: dict[int, np.ndarray], poses: np.ndarray, ref: int, k: int
    ) -> int:
        """Pose of frame k before the map exists; builds the map when the parallax allows.

        Returns the reference frame to use for the next frame.
        """
        ids, pa, pb = self._shared(tracks, ref, k)
        rot = self._rotation_between(pa, pb, K)
        if rot is None:  # lost the reference: continue from the previous frame
            self.fallback_frames += 1
            poses[k] = poses[k - 1]
            return k
        R, parallax = rot
        if parallax >= self.config.min_parallax_deg and len(pa) >= self.config.min_pnp_points:
            E, mask = cv2.findEssentialMat(pa, pb, K, cv2.RANSAC, 0.999, self.config.ransac_threshold_px)
            if E is not None and E.shape == (3, 3):
                _, R_e, t_e, mask = cv2.recoverPose(E, pa, pb, K, mask=mask)
                T_k_ref = geometry.make_transform(R_e, t_e.ravel())
                poses[k] = poses[ref] @ geometry.invert_transform(T_k_ref)
                inl = mask.ravel() > 0
                X, ok = self._triangulate(K, poses[ref], poses[k], pa[inl], pb[inl])
                if ok.sum() >= self.config.min_pnp_points:
                    for i, x in zip(ids[inl][ok], X[ok]):
                        points[int(i)] = x
                    self._refine_since(K, tracks, points, poses, ref, k)
                    return ref
        T_k_ref = geometry.make_transform(R, np.zeros(3))
        poses[k] = poses[ref] @ geometry.invert_transform(T_k_ref)
        # Re-anchor when the reference has few tracks left (large rotations).
        return ref if len(pa) >= self.config.min_features // 2 else k

    def _refine_since(
        self, K: np.ndarray, tracks: _Tracks, points: dict[int, np.ndarray], poses: np.ndarray, ref: int, k: int
    ) -> None:
        """Re-estimate the rotation-only poses between the reference and k with PnP on the new map."""
        for f in range(ref + 1, k):
            ids = [i for i in points if f in tracks.history[i]]
            if not ids:
                continue
            X = np.array([points[i] for i in ids])
            p = np.array([tracks.history[i][f] for i in ids])
            pose = self._pnp(K, X, p, poses[f])
            if pose is not None:
                poses[f] = pose

    def _pose_from_map(
        self, K: np.ndarray, tracks: _Tracks, points: dict[int, np.ndarray], guess: np.ndarray
    ) -> np.ndarray | None:
        sel = [j for j, i in enumerate(tracks.ids) if int(i) in points]
        if len(sel) < self.config.min_pnp_points:
            return None
        X = np.array([points[int(tracks.ids[j])] for j in sel])
        return self._pnp(K, X, tracks.pts[sel].astype(np.float64), guess)

    def _fallback(
        self, K: np.ndarray, tracks: _Tracks, prev_ids: np.ndarray, prev_pose: np.ndarray, k: int
    ) -> np.ndarray:
        """Rotation-only update from frame k-1 to k, or the previous pose when nothing tracks."""
        self.fallback_frames += 1
        ids, pa, pb = self._shared(tracks, k - 1, k)
        rot = self._rotation_between(pa, pb, K)
        if rot is None:
            return prev_pose.copy()
        return prev_pose @ geometry.invert_transform(geometry.make_transform(rot[0], np.zeros(3)))

    def _extend_map(
        self, K: np.ndarray, tracks: _Tracks, points: dict[int, np.ndarray], poses: np.ndarray, k: int
    ) -> None:
        """Triangulate live tracks without a 3D point against their first observation."""
        by_first: dict[int, list[int]] = {}
        for i in tracks.ids:
            i = int(i)
            if i in points:
                continue
            first = min(tracks.history[i])
            if first < k:
                by_first.setdefault(first, []).append(i)
        for first, ids in by_first.items():
            pa = np.array([tracks.history[i][first] for i in ids])
            pb = np.array([tracks.history[i][k] for i in ids])
            X, ok = self._triangulate(K, poses[first], poses[k], pa, pb)
            for i, x, good in zip(ids, X, ok):
                if good:
                    points[i] = x
