"""Root-centric motion representation: the HumanML3D layout (Guo et al. 2022) for 23 Xsens
segments, Z up — the "w/o MR" ablation and the VidMLD baseline. 275 features per frame.

The clip is canonicalised so that frame 0's pelvis stands at XY = 0 (height kept) with yaw 0
(its X axis, projected on the floor, along +X). Yaw is the heading of the pelvis X axis
projected on the XY plane. Per frame t (first-order features are zero in frame 0 and use the
backward difference, so every frame has its features and no frame is dropped):

=========  ====  =============================================================================
part       dims  meaning
=========  ====  =============================================================================
r_yaw      1     pelvis yaw change since the previous frame, radians per frame
r_vel      2     pelvis XY displacement since the previous frame, in the previous heading frame
r_height   1     pelvis height (world Z), metres
ric        66    the 22 non-pelvis segments relative to the pelvis XY, in the heading frame
                 (their Z stays absolute height)
rot        132   6D rotation of the 22 non-pelvis segments relative to their parent
vel        69    displacement of all 23 segments since the previous frame, current heading frame
contact    4     foot contacts (LeftFoot, LeftToe, RightFoot, RightToe), 0/1
=========  ====  =============================================================================

Foot contact: speed below `CONTACT_SPEED` (0.5 m/s, backward difference, frame 0 uses frame 1's)
and height less than `CONTACT_HEIGHT` (0.12 m for the Foot segment origin at the ankle, 0.05 m
for the toe) above the lowest foot/toe point of the clip.

What decoding cannot recover (`decode` returns the clip in the canonical frame):

* the pelvis's pitch and roll: only its yaw (heading of its X axis) is represented, so decoded
  world rotations are exact only for a pelvis that turns about Z alone; a tilted pelvis (lean,
  crouch, lying down) decodes upright, and every segment's world orientation is off by that
  tilt (FK from the pelvis). Tested: yaw-only pelvis -> rotations < 1e-4 rad, tilted -> not;
* the clip's absolute placement: frame 0's pelvis XY and heading (canonicalised away);
* nothing about contacts: they are derived labels, not inverted.

Joint positions round-trip exactly (to rounding) in the canonical frame, tilt or not: `ric` holds
them relative to the pelvis XY and heading, and the pelvis XY is recovered by integrating the
yaw and XY velocities (a cumulative sum over frames, so errors in generated features drift).
The heading is ill-defined when the pelvis X axis is vertical; encode and decode use the same
atan2, so positions still round-trip there.
"""

from __future__ import annotations

import torch

from egotwin_bench.constants import MOTION_FPS, ROOT_CENTRIC_DIM
from egotwin_bench.geometry import matrix_to_6d, rotation_about_z, sixd_to_matrix
from egotwin_bench.motion._checks import check_features, check_pose_sequence, checked_numpy_or_torch
from egotwin_bench.motion._layout import GroupIndex, loss_groups
from egotwin_bench.skeleton import FEET, NON_PELVIS, NUM_SEGMENTS, PARENTS, PELVIS

VERSION: str = "root_centric/1"
DIM: int = ROOT_CENTRIC_DIM
CONTACT_SPEED: float = 0.5
"""m/s: a foot/toe moving slower than this may be in contact."""
CONTACT_HEIGHT: tuple[float, float, float, float] = (0.12, 0.05, 0.12, 0.05)
"""m above the lowest foot/toe point of the clip, per contact point (ankles sit higher than toes)."""

SLICES: dict[str, slice] = {
    "r_yaw": slice(0, 1),
    "r_vel": slice(1, 3),
    "r_height": slice(3, 4),
    "ric": slice(4, 70),
    "rot": slice(70, 202),
    "vel": slice(202, 271),
    "contact": slice(271, 275),
}
LOSS_GROUP_PARTS: dict[str, tuple[str, ...]] = {
    "head3d": ("r_vel", "r_height"),
    "head6d": ("r_yaw",),
    "joint3d": ("ric", "vel", "contact"),
    "joint6d": ("rot",),
}
"""The parts of each VAE loss group. Eq. 1's names are kept so the same loss code runs; the
"head" groups become the root's: head3d = root translation (XY velocity, height), head6d = root
rotation (yaw velocity), joint3d = joint positions, velocities and the foot contacts derived from
them, joint6d = joint rotations."""
LOSS_GROUPS: dict[str, GroupIndex] = loss_groups(SLICES, LOSS_GROUP_PARTS)
"""The only loss-group table: head3d 1:4, head6d 0:1, joint3d the indices 4..69 and 202..274
(not contiguous, hence an index tuple), joint6d 70:202."""


def _heading(R: torch.Tensor) -> torch.Tensor:
    """Yaw (...,) of the X axis of rotations (..., 3, 3) projected on the XY plane."""
    return torch.atan2(R[..., 1, 0], R[..., 0, 0])


def _prev(x: torch.Tensor, tdim: int) -> torch.Tensor:
    idx = (torch.arange(x.shape[tdim], device=x.device) - 1).clamp_min(0)
    return x.index_select(tdim, idx)


@checked_numpy_or_torch
def canonicalize(positions: torch.Tensor, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a clip so frame 0's pelvis is at XY = 0 with yaw 0 (height and world Z kept)."""
    check_pose_sequence(positions, rotations)
    tdim = positions.dim() - 3
    R0 = rotations.narrow(tdim, 0, 1)[..., PELVIS, :, :]  # (..., 1, 3, 3)
    p0 = positions.narrow(tdim, 0, 1)[..., PELVIS, :].clone()  # (..., 1, 3)
    p0[..., 2] = 0.0
    Rz = rotation_about_z(-_heading(R0))  # (..., 1, 3, 3)
    pos = (Rz[..., None, :, :] @ (positions - p0[..., None, :])[..., None])[..., 0]
    rot = Rz[..., None, :, :] @ rotations
    return pos, rot


@checked_numpy_or_torch
def encode(positions: torch.Tensor, rotations: torch.Tensor, fps: float = MOTION_FPS) -> torch.Tensor:
    """World motion (..., T, 23, 3) / (..., T, 23, 3, 3) -> (..., T, 275) root-centric features."""
    pos, rot = canonicalize(positions, rotations)
    tdim = pos.dim() - 3
    root = pos[..., PELVIS, :]  # (..., T, 3)
    yaw = _heading(rot[..., PELVIS, :, :])  # (..., T)
    Rz = rotation_about_z(yaw)  # (..., T, 3, 3)
    Rz_prev = _prev(Rz, tdim)

    dyaw = yaw - _prev(yaw, tdim)
    r_yaw = torch.atan2(torch.sin(dyaw), torch.cos(dyaw))[..., None]
    step = root - _prev(root, tdim)
    r_vel = (Rz_prev.transpose(-1, -2) @ step[..., None])[..., :2, 0]
    r_height = root[..., 2:3]

    origin = root.clone()
    origin[..., 2] = 0.0
    others = pos[..., list(NON_PELVIS), :]
    RzT = Rz.transpose(-1, -2)[..., None, :, :]  # (..., T, 1, 3, 3) broadcast over segments
    ric = (RzT @ (others - origin[..., None, :])[..., None])[..., 0]
    parents = [max(q, 0) for q in PARENTS]
    local = rot[..., parents, :, :].transpose(-1, -2) @ rot
    rot6 = matrix_to_6d(local[..., list(NON_PELVIS), :, :])
    vel = (RzT @ (pos - _prev(pos, tdim))[..., None])[..., 0]

    feet = pos[..., list(FEET), :]  # (..., T, 4, 3)
    disp = (feet - _prev(feet, tdim)).norm(dim=-1)  # (..., T, 4)
    if disp.shape[tdim] > 1:
        first = disp.narrow(tdim, 1, 1)
        disp = torch.cat([first, disp.narrow(tdim, 1, disp.shape[tdim] - 1)], dim=tdim)
    floor = feet[..., 2].amin(dim=(tdim, tdim + 1), keepdim=True)
    contact = ((disp * fps < CONTACT_SPEED) & (feet[..., 2] - floor < feet.new_tensor(CONTACT_HEIGHT))).to(pos.dtype)

    flat = lambda x: x.reshape(*x.shape[: tdim + 1], -1)  # noqa: E731
    return torch.cat([r_yaw, r_vel, r_height, flat(ric), flat(rot6), flat(vel), contact], dim=-1)


@checked_numpy_or_torch
def decode(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., T, 275) -> positions (..., T, 23, 3) and rotations (..., T, 23, 3, 3), canonical frame.

    Positions are exact; rotations assume a pelvis with zero pitch and roll (not represented).
    """
    check_features(features, DIM, "root-centric")
    T = features.shape[-2]
    batch = features.shape[:-2]
    tdim = features.dim() - 2
    yaw = torch.cumsum(features[..., 0], dim=-1)  # (..., T)
    Rz = rotation_about_z(yaw)
    Rz_prev = _prev(Rz, tdim)
    v = torch.cat([features[..., 1:3], torch.zeros_like(features[..., :1])], dim=-1)
    steps = (Rz_prev @ v[..., None])[..., 0]
    root = torch.cumsum(steps, dim=-2)
    root[..., 2] = features[..., 3]
    origin = root.clone()
    origin[..., 2] = 0.0

    ric = features[..., SLICES["ric"]].reshape(*batch, T, NUM_SEGMENTS - 1, 3)
    positions = features.new_zeros(*batch, T, NUM_SEGMENTS, 3)
    positions[..., PELVIS, :] = root
    positions[..., list(NON_PELVIS), :] = origin[..., None, :] + (Rz[..., None, :, :] @ ric[..., None])[..., 0]

    local = sixd_to_matrix(features[..., SLICES["rot"]].reshape(*batch, T, NUM_SEGMENTS - 1, 6))
    rots: list[torch.Tensor | None] = [None] * NUM_SEGMENTS
    rots[PELVIS] = Rz
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            rots[j] = rots[parent] @ local[..., j - 1, :, :]
    return positions, torch.stack(rots, dim=-3)
