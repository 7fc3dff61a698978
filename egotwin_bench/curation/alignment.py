"""Hand-eye calibration between the Xsens head and the Aria glasses.

Per instant t, the Xsens head pose ``A_t = T_xworld_head`` and the MPS device pose
``B_t = T_mworld_device`` satisfy ``A_t X = Y B_t`` with the unknowns
``X = T_head_device`` (rigid offset of the glasses on the head) and
``Y = T_xworld_mworld`` (MPS world expressed in the Xsens world).

Solution (closed form, then refined with `scipy.optimize.least_squares`):

1. rotation of X from relative motions: the rotation axis of ``A_i^-1 A_j`` is R_X times the
   axis of ``B_i^-1 B_j`` — aligned over all pairs with `Rotation.align_vectors` (weights =
   rotation angles);
2. ``R_Y`` = chordal mean of ``R_A R_X R_B^T``;
3. translations from the linear system ``R_A t_X - t_Y = R_Y t_B - t_A`` (least squares);
4. joint refinement of the 12 parameters on ``A X - Y B`` with a soft-L1 loss.

The residual reported is the RMS over samples of the translation (metres) and rotation
(degrees) of ``(A_t X)^-1 Y B_t``. Sequences whose residual exceeds
`AlignmentConfig.max_residual_m` / `max_residual_deg` are rejected: a large residual means the
body and glasses trajectories disagree (bad sync, Xsens drift, MPS failure), so neither camera
poses nor hand visibility could be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from egotwin_bench.geometry import invert_transform, make_transform


@dataclass(frozen=True)
class AlignmentConfig:
    sample_hz: float = 10.0
    """Rate at which poses are sampled over the sequence for the solve."""
    max_residual_m: float = 0.05
    """Reject the sequence above this RMS translation residual (metres)."""
    max_residual_deg: float = 5.0
    """Reject the sequence above this RMS rotation residual (degrees)."""
    min_samples: int = 20
    min_rotation_deg: float = 5.0
    """Relative motions smaller than this carry no axis information and are not used in step 1."""


@dataclass(frozen=True)
class HandEyeResult:
    T_head_device: np.ndarray
    """(4, 4) X: the Aria device frame in the Xsens Head segment frame."""
    T_xworld_mworld: np.ndarray
    """(4, 4) Y: MPS world -> Xsens world."""
    residual_m: float
    residual_deg: float
    num_samples: int


class AlignmentError(ValueError):
    """The hand-eye problem is degenerate (too few samples, no rotation)."""


def residuals(A: np.ndarray, B: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample translation (m) and rotation (rad) error of ``A X`` vs ``Y B``; (N,), (N,)."""
    E = invert_transform(A @ X) @ (Y @ B)
    trans = np.linalg.norm(E[:, :3, 3], axis=-1)
    rot = Rotation.from_matrix(E[:, :3, :3]).magnitude()
    return trans, rot


def _closed_form(A: np.ndarray, B: np.ndarray, min_rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    n = A.shape[0]
    stride = max(1, n // 200)
    i = np.arange(0, n, stride)
    pairs = [(a, b) for k, a in enumerate(i) for b in i[k + 1 :: max(1, len(i) // 20)]]
    ia, ib = np.array(pairs).T
    relA = Rotation.from_matrix(np.swapaxes(A[ia, :3, :3], -1, -2) @ A[ib, :3, :3]).as_rotvec()
    relB = Rotation.from_matrix(np.swapaxes(B[ia, :3, :3], -1, -2) @ B[ib, :3, :3]).as_rotvec()
    angle = np.linalg.norm(relA, axis=-1)
    use = (angle > np.deg2rad(min_rotation_deg)) & (angle < np.deg2rad(170.0))
    if use.sum() < 3:
        raise AlignmentError("the head barely rotates over the sequence: hand-eye rotation is unobservable")
    RX, _ = Rotation.align_vectors(relA[use], relB[use], weights=angle[use])
    RX = RX.as_matrix()
    RY = Rotation.from_matrix(A[:, :3, :3] @ RX @ np.swapaxes(B[:, :3, :3], -1, -2)).mean().as_matrix()
    # R_A t_X - t_Y = R_Y t_B - t_A  ->  [R_A, -I] [t_X; t_Y] = rhs
    M = np.concatenate([A[:, :3, :3], -np.broadcast_to(np.eye(3), (n, 3, 3))], axis=2).reshape(3 * n, 6)
    rhs = ((RY @ B[:, :3, 3:])[..., 0] - A[:, :3, 3]).reshape(3 * n)
    t, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    return make_transform(RX, t[:3]), make_transform(RY, t[3:])


def _params_to_T(p: np.ndarray) -> np.ndarray:
    return make_transform(Rotation.from_rotvec(p[:3]).as_matrix(), p[3:6])


def solve_hand_eye(A: np.ndarray, B: np.ndarray, config: AlignmentConfig = AlignmentConfig()) -> HandEyeResult:
    """Solve ``A_t X = Y B_t`` for (N, 4, 4) head poses A and device poses B."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.shape != B.shape or A.shape[1:] != (4, 4):
        raise AlignmentError(f"A and B must both be (N, 4, 4), got {A.shape} and {B.shape}")
    if A.shape[0] < config.min_samples:
        raise AlignmentError(f"{A.shape[0]} pose samples, need >= {config.min_samples}")
    X0, Y0 = _closed_form(A, B, config.min_rotation_deg)

    def fun(p: np.ndarray) -> np.ndarray:
        X, Y = _params_to_T(p[:6]), _params_to_T(p[6:])
        E = (A @ X) - (Y @ B)
        return E[:, :3, :].reshape(-1)

    p0 = np.concatenate([
        Rotation.from_matrix(X0[:3, :3]).as_rotvec(), X0[:3, 3],
        Rotation.from_matrix(Y0[:3, :3]).as_rotvec(), Y0[:3, 3],
    ])
    sol = least_squares(fun, p0, loss="soft_l1", f_scale=0.05, x_scale="jac")
    X, Y = _params_to_T(sol.x[:6]), _params_to_T(sol.x[6:])
    trans, rot = residuals(A, B, X, Y)
    return HandEyeResult(
        T_head_device=X,
        T_xworld_mworld=Y,
        residual_m=float(np.sqrt(np.mean(trans**2))),
        residual_deg=float(np.rad2deg(np.sqrt(np.mean(rot**2)))),
        num_samples=int(A.shape[0]),
    )
