"""Head-centric motion representation (EgoTwin §3.1, DESIGN §5): 288 features per frame.

The clip is canonicalised by the first frame's head pose (zero translation, identity
rotation). Per frame t, with ``R_t, p_t`` the head's world rotation/position:

======  ====  ==========================================================================
part    dims  meaning
======  ====  ==========================================================================
h_r     6     head rotation in the canonical frame, ``6D(R_0^T R_t)``
h_rr    6     head rotation relative to the previous frame, ``6D(R_{t-1}^T R_t)``
h_p     3     head position in the canonical frame, ``R_0^T (p_t - p_0)``
h_pp    3     head displacement in the previous head frame, ``R_{t-1}^T (p_t - p_{t-1})``
j_p     66    the 22 other segments' positions in the current head frame
j_v     66    their displacement since the previous frame (metres per frame), current head frame
j_r     138   6D rotation of all 23 segments relative to their parent (pelvis: to the head)
======  ====  ==========================================================================

First-order features describe "no change" in frame 0 (paper §3.1: "set all first-order kinematic
features to zero in the initial frame"): h_pp and j_v are exactly zero, and h_rr is the 6D of the
*identity* rotation, ``6D(R_0^T R_0)`` — the zero of a rotation change. (Version 1 wrote the
zero 6D vector there: off the rotation manifold, it sat 8.9 train std below the per-frame h_rr
values after normalisation and squashed their real signal ~33x; issue #15.) Decoding needs no
integration: the head pose of frame t depends only on frame t's h_r/h_p, other segments'
positions on j_p, orientations on j_r by forward kinematics from the head.
"""

from __future__ import annotations

import torch

from egotwin_bench.constants import HEAD_CENTRIC_DIM
from egotwin_bench.geometry import Array, make_transform, matrix_to_6d, sixd_to_matrix
from egotwin_bench.motion._checks import check_features, check_pose_sequence, checked_numpy_or_torch
from egotwin_bench.motion._layout import GroupIndex, loss_groups
from egotwin_bench.skeleton import HEAD, NON_HEAD, NUM_SEGMENTS, PARENTS, PELVIS

VERSION: str = "head_centric/2"
"""2: frame-0 h_rr is the identity's 6D (1: the zero vector)."""
DIM: int = HEAD_CENTRIC_DIM

SLICES: dict[str, slice] = {
    "h_r": slice(0, 6),
    "h_rr": slice(6, 12),
    "h_p": slice(12, 15),
    "h_pp": slice(15, 18),
    "j_p": slice(18, 84),
    "j_v": slice(84, 150),
    "j_r": slice(150, 288),
}
LOSS_GROUP_PARTS: dict[str, tuple[str, ...]] = {
    "head3d": ("h_p", "h_pp"),
    "head6d": ("h_r", "h_rr"),
    "joint3d": ("j_p", "j_v"),
    "joint6d": ("j_r",),
}
"""The parts of each of the motion VAE's four loss groups (eq. 1)."""
LOSS_GROUPS: dict[str, GroupIndex] = loss_groups(SLICES, LOSS_GROUP_PARTS)
"""The four loss groups as feature slices (all contiguous here): head3d 12:18, head6d 0:12,
joint3d 18:150, joint6d 150:288. The only table; derived from `LOSS_GROUP_PARTS`."""


def _transpose(R: torch.Tensor) -> torch.Tensor:
    return R.transpose(-1, -2)


def _prev(x: torch.Tensor, time_dim: int) -> torch.Tensor:
    """The previous frame of each frame along `time_dim` (frame 0 is its own previous)."""
    idx = (torch.arange(x.shape[time_dim], device=x.device) - 1).clamp_min(0)
    return x.index_select(time_dim, idx)


@checked_numpy_or_torch
def canonical_transform(positions: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """First-frame head pose ``T_world_canonical`` (..., 4, 4) of (..., T, 23, 3) / (..., T, 23, 3, 3)."""
    check_pose_sequence(positions, rotations)
    return make_transform(rotations[..., 0, HEAD, :, :], positions[..., 0, HEAD, :])


@checked_numpy_or_torch
def encode(positions: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """World motion -> head-centric features.

    Args:
        positions: (..., T, 23, 3) world segment positions, metres (Z up).
        rotations: (..., T, 23, 3, 3) world segment rotations.

    Returns:
        (..., T, 288) features, invariant to a rigid transform of the whole clip.
    """
    check_pose_sequence(positions, rotations)
    tdim = positions.dim() - 3  # time axis of positions (..., T, 23, 3)
    R = rotations[..., HEAD, :, :]  # (..., T, 3, 3)
    p = positions[..., HEAD, :]  # (..., T, 3)
    R0 = R.narrow(tdim, 0, 1)
    p0 = p.narrow(tdim, 0, 1)
    R_prev, p_prev = _prev(R, tdim), _prev(p, tdim)

    h_r = matrix_to_6d(_transpose(R0) @ R)
    h_rr = matrix_to_6d(_transpose(R_prev) @ R)  # frame 0: R_0^T R_0 = I, the identity's 6D
    h_p = (_transpose(R0) @ (p - p0)[..., None])[..., 0]
    h_pp = (_transpose(R_prev) @ (p - p_prev)[..., None])[..., 0]  # zero at frame 0 by construction

    others = positions[..., list(NON_HEAD), :]  # (..., T, 22, 3)
    Rt = _transpose(R)[..., None, :, :]  # (..., T, 1, 3, 3) broadcast over segments
    j_p = (Rt @ (others - p[..., None, :])[..., None])[..., 0]
    j_v = (Rt @ (others - _prev(others, tdim))[..., None])[..., 0]

    parents = [max(q, 0) for q in PARENTS]
    parent_R = rotations[..., parents, :, :].clone()
    parent_R[..., PELVIS, :, :] = R
    local = _transpose(parent_R) @ rotations  # (..., T, 23, 3, 3)
    j_r = matrix_to_6d(local)

    flat = lambda x: x.reshape(*x.shape[: tdim + 1], -1)  # noqa: E731
    return torch.cat([h_r, h_rr, h_p, h_pp, flat(j_p), flat(j_v), flat(j_r)], dim=-1)


@checked_numpy_or_torch
def decode(features: torch.Tensor, T_world_canonical: Array | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-centric features -> world motion, with no integration over time.

    Args:
        features: (..., T, 288).
        T_world_canonical: optional (..., 4, 4) first-frame head pose to map the result back
            into a world frame (see `canonical_transform`); default: the canonical frame. A NumPy
            array or a tensor, converted to the dtype and device of `features` (with NumPy
            features and a tensor here, the features are converted to the tensor's instead).

    Returns:
        positions (..., T, 23, 3) and rotations (..., T, 23, 3, 3). The head's rotation is
        decoded from h_r; the other segments' rotations by forward kinematics from it (j_r).
        Generated (slightly inconsistent) features decode the head pose from h_r/h_p only.
    """
    check_features(features, DIM, "head-centric")
    if T_world_canonical is not None:
        if not isinstance(features, torch.Tensor):  # NumPy features with a tensor pose: run in torch
            features = torch.as_tensor(features, dtype=T_world_canonical.dtype, device=T_world_canonical.device)
        T_world_canonical = torch.as_tensor(T_world_canonical, dtype=features.dtype, device=features.device)
        if tuple(T_world_canonical.shape[-2:]) != (4, 4):
            raise ValueError(f"T_world_canonical must have shape (..., 4, 4), got {tuple(T_world_canonical.shape)}")
    T = features.shape[-2]
    batch = features.shape[:-2]
    R = sixd_to_matrix(features[..., SLICES["h_r"]])  # (..., T, 3, 3)
    p = features[..., SLICES["h_p"]]
    j_p = features[..., SLICES["j_p"]].reshape(*batch, T, NUM_SEGMENTS - 1, 3)
    local = sixd_to_matrix(features[..., SLICES["j_r"]].reshape(*batch, T, NUM_SEGMENTS, 6))

    positions = features.new_zeros(*batch, T, NUM_SEGMENTS, 3)
    positions[..., HEAD, :] = p
    positions[..., list(NON_HEAD), :] = p[..., None, :] + (R[..., None, :, :] @ j_p[..., None])[..., 0]

    rots: list[torch.Tensor | None] = [None] * NUM_SEGMENTS
    rots[PELVIS] = R @ local[..., PELVIS, :, :]
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            rots[j] = rots[parent] @ local[..., j, :, :]
    rots[HEAD] = R
    rotations = torch.stack(rots, dim=-3)

    if T_world_canonical is not None:
        Rw = T_world_canonical[..., None, None, :3, :3]
        tw = T_world_canonical[..., None, None, :3, 3]
        positions = (Rw @ positions[..., None])[..., 0] + tw
        rotations = Rw @ rotations
    return positions, rotations


@checked_numpy_or_torch
def head_poses(features: torch.Tensor) -> torch.Tensor:
    """Head poses ``T_canonical_head`` (..., T, 4, 4), straight from h_r and h_p of each frame."""
    check_features(features, DIM, "head-centric")
    return make_transform(sixd_to_matrix(features[..., SLICES["h_r"]]), features[..., SLICES["h_p"]])
