"""Xsens body -> Aria world: a drift-tolerant alignment of the Xsens head and the Aria glasses.

Notation (TIME_CODE sample times t at `AlignmentConfig.sample_hz`):

* ``A_t = T_xworld_head``: the Xsens Head segment in the Xsens world (Z up, floor at z = 0);
* ``B_t = T_mworld_device``: the Aria device in the MPS world (gravity aligned);
* ``X = T_head_device``: the glasses on the head (rigid);
* ``M_t = T_mworld_xworld(t) = B_t (A_t X)^-1``: where the Xsens world lies in the MPS world at t.

Xsens is inertial: its global position and heading drift (tens of cm to a metre over a
10-60 min take), so ``M_t`` is *not* constant and no single transform fits a whole sequence.
The solution, following the public Nymeria tools (nymeria_dataset ``HandEyeSolver`` / Nymeria+
``_bake_xsens``: head -> device offset from short relative motions, the body re-anchored on the
Aria head), has three steps:

1. **X from short relative motions** (`solve_head_device`): for pose pairs ``lag_s`` apart,
   ``(A_i^-1 A_j) X = X (B_i^-1 B_j)`` holds whatever the drift does on longer time scales.
   Rotation: the rotation axes agree up to ``R_X`` (`Rotation.align_vectors`, weights = angle);
   translation: ``(R_relA - I) t_X = R_X t_relB - t_relA`` (least squares).
2. **Re-anchoring** (`make_track`, `anchor_at`): each sample gives ``M_t``, projected on a
   rotation about Z plus a translation (both worlds are gravity aligned; the translation is
   chosen so that the head's device point maps exactly). The transform applied to a motion
   frame is the box average of these samples over ``anchor_window_s`` around it, so Xsens drift
   is followed and MPS noise is averaged.
3. **Per-clip residual** (`clip_residual`): RMS over the clip's samples of the translation and
   rotation of ``(M_avg(t) A_t X)^-1 B_t`` (what the averaged anchor does not explain: MPS
   and Xsens head disagreeing within the window, bad sync, a tilt between the worlds). Clips
   above `max_residual_m` / `max_residual_deg` are dropped (``alignment_residual``).

Output world (docs/data_format.md): the MPS world moved by one constant per sequence,
``T_world_mworld = M_mean^-1`` (M_mean: the mean anchor over the sequence), i.e. the Aria world
laid onto the Xsens world's mean position: Z up, floor at z = 0, no drift. Camera poses are MPS
poses in it; motion frames are re-anchored into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from egotwin_bench.geometry import invert_transform, make_transform, rotation_about_z


@dataclass(frozen=True)
class AlignmentConfig:
    sample_hz: float = 30.0
    """Rate of the head / device pose samples (offset solve and re-anchoring track)."""
    lag_s: float = 0.5
    """Relative motions are taken between samples this far apart (drift over it is negligible)."""
    min_rotation_deg: float = 2.0
    """Relative motions that rotate less carry no axis information and are not used."""
    anchor_window_s: float = 1.0
    """The re-anchoring transform of a motion frame is the mean of the samples within this window."""
    max_residual_m: float = 0.03
    """Drop a clip above this RMS translation residual (metres)."""
    max_residual_deg: float = 3.0
    """Drop a clip above this RMS rotation residual (degrees)."""
    min_samples: int = 20
    """Fewest valid samples (and relative-motion pairs) a sequence needs."""


class AlignmentError(ValueError):
    """The head -> device offset is unobservable (too few samples, too little rotation)."""


@dataclass(frozen=True)
class HeadDeviceOffset:
    T_head_device: np.ndarray
    """(4, 4) X: the Aria device frame in the Xsens Head segment frame."""
    residual_m: float
    """RMS translation misfit of ``relA X`` vs ``X relB`` over the pairs, metres."""
    residual_deg: float
    """RMS rotation misfit over the pairs, degrees."""
    pairs: int


@dataclass(frozen=True)
class AlignmentTrack:
    """Per-sample anchors of one sequence (N samples at `AlignmentConfig.sample_hz`)."""

    times_ns: np.ndarray
    """(N,) int64 TIME_CODE sample times, increasing."""
    valid: np.ndarray
    """(N,) bool: Xsens head finite and MPS without a gap at the sample."""
    T_xworld_device: np.ndarray
    """(N, 4, 4) ``A_t X``: the device where the Xsens head puts it (Xsens world)."""
    T_mworld_device: np.ndarray
    """(N, 4, 4) ``B_t``: the MPS device pose."""
    yaw: np.ndarray
    """(N,) rotation about Z of ``M_t``, radians, unwrapped over the valid samples."""
    trans: np.ndarray
    """(N, 3) translation of ``M_t`` (metres) given that yaw."""
    tilt_deg: np.ndarray
    """(N,) angle between ``M_t``'s rotation and its yaw-only part (the worlds' verticals), degrees."""

    @property
    def mean_anchor(self) -> np.ndarray:
        """(4, 4) ``M_mean``: mean yaw and translation of the valid samples."""
        v = self.valid
        return make_transform(rotation_about_z(np.array(self.yaw[v].mean())), self.trans[v].mean(axis=0))


def _yaw_of(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (...,) the rotation about Z closest to R (chordal), radians."""
    return np.arctan2(R[..., 1, 0] - R[..., 0, 1], R[..., 0, 0] + R[..., 1, 1])


def solve_head_device(A: np.ndarray, B: np.ndarray, valid: np.ndarray, lag: int,
                      min_rotation_deg: float = 2.0, min_pairs: int = 20) -> HeadDeviceOffset:
    """X = T_head_device from the relative motions of (N, 4, 4) head poses A and device poses B
    sampled at the same N instants, between samples `lag` apart that are both `valid`."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.shape != B.shape or A.shape[1:] != (4, 4) or valid.shape != A.shape[:1]:
        raise AlignmentError(f"A, B must be (N, 4, 4) with a (N,) mask, got {A.shape}, {B.shape}, {valid.shape}")
    i = np.flatnonzero(valid[:-lag] & valid[lag:]) if 0 < lag < len(A) else np.zeros(0, dtype=np.int64)
    if i.size < min_pairs:
        raise AlignmentError(f"{i.size} pose pairs {lag} samples apart with valid Xsens and MPS data, need >= {min_pairs}")
    relA = invert_transform(A[i]) @ A[i + lag]
    relB = invert_transform(B[i]) @ B[i + lag]
    rvA = Rotation.from_matrix(relA[:, :3, :3]).as_rotvec()
    rvB = Rotation.from_matrix(relB[:, :3, :3]).as_rotvec()
    angle = np.linalg.norm(rvA, axis=-1)
    use = (angle > np.deg2rad(min_rotation_deg)) & (angle < np.deg2rad(170.0))
    if use.sum() < 3:
        raise AlignmentError(f"the head barely rotates within {lag} samples: the head -> device offset is unobservable")
    RX = Rotation.align_vectors(rvA[use], rvB[use], weights=angle[use])[0].as_matrix()
    # (R_relA - I) t_X = R_X t_relB - t_relA over every pair (small rotations add little, harmlessly).
    M = (relA[:, :3, :3] - np.eye(3)).reshape(-1, 3)
    rhs = ((RX @ relB[:, :3, 3:])[..., 0] - relA[:, :3, 3]).reshape(-1)
    s = np.linalg.svd(M, compute_uv=False)
    if s[-1] < 1e-3 * s[0]:
        raise AlignmentError("the head rotates about one axis only: the head -> device translation is unobservable")
    tX = np.linalg.lstsq(M, rhs, rcond=None)[0]
    X = make_transform(RX, tX)
    E = invert_transform(relA @ X) @ (X @ relB)
    return HeadDeviceOffset(
        T_head_device=X,
        residual_m=float(np.sqrt(np.mean(np.sum(E[:, :3, 3] ** 2, axis=-1)))),
        residual_deg=float(np.rad2deg(np.sqrt(np.mean(Rotation.from_matrix(E[:, :3, :3]).magnitude() ** 2)))),
        pairs=int(i.size),
    )


def make_track(times_ns: np.ndarray, A: np.ndarray, B: np.ndarray, valid: np.ndarray, X: np.ndarray) -> AlignmentTrack:
    """Per-sample anchors ``M_t = B_t (A_t X)^-1`` as yaw + translation (see the module doc)."""
    AX = A @ X
    R_M = B[:, :3, :3] @ np.swapaxes(AX[:, :3, :3], -1, -2)
    yaw = _yaw_of(R_M)
    valid = valid & np.isfinite(yaw)
    yaw = yaw.copy()
    yaw[valid] = np.unwrap(yaw[valid])
    Rz = rotation_about_z(yaw)
    trans = B[:, :3, 3] - (Rz @ AX[:, :3, 3:])[..., 0]
    tilt = np.zeros(len(yaw))
    if valid.any():
        tilt[valid] = np.rad2deg(Rotation.from_matrix(np.swapaxes(Rz[valid], -1, -2) @ R_M[valid]).magnitude())
    return AlignmentTrack(np.asarray(times_ns, dtype=np.int64), valid, AX, B, yaw, trans, tilt)


def anchor_at(track: AlignmentTrack, query_ns: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean anchor of the valid samples within ``window_s / 2`` of each query time.

    Returns yaw (M,) radians, translation (M, 3) metres and the number of samples averaged (M,)
    (0 where none: yaw and translation are NaN there)."""
    v = np.flatnonzero(track.valid)
    t = track.times_ns[v]
    half = int(round(window_s * 5e8))
    q = np.asarray(query_ns, dtype=np.int64)
    lo = np.searchsorted(t, q - half, side="left")
    hi = np.searchsorted(t, q + half, side="right")
    count = hi - lo
    cum_yaw = np.concatenate([[0.0], np.cumsum(track.yaw[v])])
    cum_tr = np.concatenate([np.zeros((1, 3)), np.cumsum(track.trans[v], axis=0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        yaw = (cum_yaw[hi] - cum_yaw[lo]) / count
        trans = (cum_tr[hi] - cum_tr[lo]) / count[:, None]
    return yaw, trans, count


def clip_residual(track: AlignmentTrack, t0_ns: int, t1_ns: int, window_s: float) -> tuple[float, float, int]:
    """RMS translation (m) and rotation (deg) of ``(M_avg(t) A_t X)^-1 B_t`` over the valid samples
    in [t0, t1], and their number (residuals are inf when there is none)."""
    lo, hi = np.searchsorted(track.times_ns, [t0_ns, t1_ns], side="left")
    idx = lo + np.flatnonzero(track.valid[lo:hi])
    if idx.size == 0:
        return float("inf"), float("inf"), 0
    yaw, trans, _ = anchor_at(track, track.times_ns[idx], window_s)
    M = make_transform(rotation_about_z(yaw), trans)
    E = invert_transform(M @ track.T_xworld_device[idx]) @ track.T_mworld_device[idx]
    rm = float(np.sqrt(np.mean(np.sum(E[:, :3, 3] ** 2, axis=-1))))
    rd = float(np.rad2deg(np.sqrt(np.mean(Rotation.from_matrix(E[:, :3, :3]).magnitude() ** 2))))
    return rm, rd, int(idx.size)


def reanchor_motion(positions: np.ndarray, rotations: np.ndarray, yaw: np.ndarray, trans: np.ndarray,
                    T_world_mworld: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move (T, S, 3) positions and (T, S, 3, 3) rotations from the Xsens world into the output
    world with per-frame anchors (yaw (T,), trans (T, 3)) and the sequence's ``T_world_mworld``."""
    T = T_world_mworld @ make_transform(rotation_about_z(yaw), trans)  # (T, 4, 4) T_world_xworld
    R = T[:, None, :3, :3]
    return (R @ positions[..., None])[..., 0] + T[:, None, :3, 3], R @ rotations
