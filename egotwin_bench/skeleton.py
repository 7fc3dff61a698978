"""The Xsens MVN 23-segment skeleton as used by Nymeria.

Conventions
-----------
* Segment order and names are Nymeria's (`xdata.npz` columns), see `SEGMENT_NAMES`.
* World frame is Xsens's: Z up, metres. In the Xsens calibration pose (N-pose/T-pose) every
  segment frame is aligned with the world: X forward, Y left, Z up.
* A segment's *world rotation* `R_j` maps vectors from the segment frame to the world, its
  *local rotation* is `R_parent^T R_j` (pelvis: its world rotation).
* A *bone offset* `offset_j` is the position of segment j's origin in its parent's frame.

Forward kinematics: ``R_j = R_parent(j) @ L_j`` and ``p_j = p_parent(j) + R_parent(j) @ offset_j``.
"""

from __future__ import annotations

import numpy as np
import torch

from egotwin_bench.geometry import Array

SEGMENT_NAMES: tuple[str, ...] = (
    "Pelvis", "L5", "L3", "T12", "T8", "Neck", "Head",
    "RightShoulder", "RightUpperArm", "RightForeArm", "RightHand",
    "LeftShoulder", "LeftUpperArm", "LeftForeArm", "LeftHand",
    "RightUpperLeg", "RightLowerLeg", "RightFoot", "RightToe",
    "LeftUpperLeg", "LeftLowerLeg", "LeftFoot", "LeftToe",
)
NUM_SEGMENTS: int = len(SEGMENT_NAMES)

PARENTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 5,
    4, 7, 8, 9,
    4, 11, 12, 13,
    0, 15, 16, 17,
    0, 19, 20, 21,
)
"""Parent index of each segment (-1 for the pelvis). Shoulders hang from T8, legs from the pelvis."""

INDEX: dict[str, int] = {name: i for i, name in enumerate(SEGMENT_NAMES)}
PELVIS: int = INDEX["Pelvis"]
HEAD: int = INDEX["Head"]
LEFT_HAND: int = INDEX["LeftHand"]
RIGHT_HAND: int = INDEX["RightHand"]
HANDS: tuple[int, int] = (LEFT_HAND, RIGHT_HAND)
"""Hand segments in `constants.HAND_ORDER` (left, right)."""
LEFT_FOOT: int = INDEX["LeftFoot"]
LEFT_TOE: int = INDEX["LeftToe"]
RIGHT_FOOT: int = INDEX["RightFoot"]
RIGHT_TOE: int = INDEX["RightToe"]
FEET: tuple[int, int, int, int] = (LEFT_FOOT, LEFT_TOE, RIGHT_FOOT, RIGHT_TOE)
NON_HEAD: tuple[int, ...] = tuple(i for i in range(NUM_SEGMENTS) if i != HEAD)
"""The 22 segments other than the head, in order."""
NON_PELVIS: tuple[int, ...] = tuple(range(1, NUM_SEGMENTS))
"""The 22 segments other than the pelvis, in order."""

assert NUM_SEGMENTS == 23 and all(p < i for i, p in enumerate(PARENTS))

# A plausible adult (1.75 m) in the calibration pose: offset of each segment's origin in its
# parent's frame, metres (X forward, Y left, Z up). Used as a template by the synthetic bodies.
DEFAULT_OFFSETS: np.ndarray = np.array(
    [
        [0.0, 0.0, 0.0],        # Pelvis (root: offset unused)
        [0.0, 0.0, 0.10],       # L5
        [0.0, 0.0, 0.10],       # L3
        [0.0, 0.0, 0.10],       # T12
        [0.0, 0.0, 0.10],       # T8
        [0.0, 0.0, 0.18],       # Neck
        [0.0, 0.0, 0.10],       # Head
        [0.0, -0.03, 0.12],     # RightShoulder
        [0.0, -0.16, 0.0],      # RightUpperArm
        [0.0, -0.29, 0.0],      # RightForeArm
        [0.0, -0.26, 0.0],      # RightHand
        [0.0, 0.03, 0.12],      # LeftShoulder
        [0.0, 0.16, 0.0],       # LeftUpperArm
        [0.0, 0.29, 0.0],       # LeftForeArm
        [0.0, 0.26, 0.0],       # LeftHand
        [0.0, -0.09, 0.0],      # RightUpperLeg
        [0.0, 0.0, -0.44],      # RightLowerLeg
        [0.0, 0.0, -0.42],      # RightFoot
        [0.14, 0.0, -0.07],     # RightToe
        [0.0, 0.09, 0.0],       # LeftUpperLeg
        [0.0, 0.0, -0.44],      # LeftLowerLeg
        [0.0, 0.0, -0.42],      # LeftFoot
        [0.14, 0.0, -0.07],     # LeftToe
    ],
    dtype=np.float64,
)
"""(23, 3) bone offsets in metres of a template body; the pelvis stands 0.95 m above the floor."""
DEFAULT_PELVIS_HEIGHT: float = 0.95


def _check_fk_shapes(local_rotations: Array, offsets: Array, root_position: Array) -> None:
    if local_rotations.shape[-3:] != (NUM_SEGMENTS, 3, 3):
        raise ValueError(
            f"local_rotations must have shape (..., {NUM_SEGMENTS}, 3, 3), got {tuple(local_rotations.shape)}"
        )
    if offsets.shape[-2:] != (NUM_SEGMENTS, 3):
        raise ValueError(f"offsets must have shape (..., {NUM_SEGMENTS}, 3), got {tuple(offsets.shape)}")
    if root_position.shape[-1:] != (3,):
        raise ValueError(f"root_position must have shape (..., 3), got {tuple(root_position.shape)}")


def forward_kinematics(local_rotations: Array, offsets: Array, root_position: Array) -> tuple[Array, Array]:
    """Local rotations + bone offsets -> world positions and rotations.

    Args:
        local_rotations: (..., 23, 3, 3) rotation of each segment relative to its parent
            (the pelvis: its world rotation). NumPy array or torch tensor.
        offsets: (..., 23, 3) or (23, 3) bone offsets in metres, in the parent's frame.
        root_position: (..., 3) or (3,) world position of the pelvis in metres.

    The batch shapes ``...`` of the three inputs broadcast against each other (e.g. one root
    (3,) for a batch of poses). With torch `local_rotations`, NumPy offsets/root are converted
    to its dtype and device.

    Returns:
        positions (..., 23, 3) metres and rotations (..., 23, 3, 3), world frame (Z up), both with
        the broadcast batch shape, same library and dtype as `local_rotations`. The torch
        version is differentiable.
    """
    _check_fk_shapes(local_rotations, offsets, root_position)
    is_torch = isinstance(local_rotations, torch.Tensor)
    if is_torch:
        like = dict(dtype=local_rotations.dtype, device=local_rotations.device)
        offsets, root_position = torch.as_tensor(offsets, **like), torch.as_tensor(root_position, **like)
    try:
        batch = np.broadcast_shapes(tuple(local_rotations.shape[:-3]), tuple(offsets.shape[:-2]),
                                    tuple(root_position.shape[:-1]))
    except ValueError:
        raise ValueError(
            f"batch shapes do not broadcast: local_rotations {tuple(local_rotations.shape)}, "
            f"offsets {tuple(offsets.shape)}, root_position {tuple(root_position.shape)}"
        ) from None
    if is_torch:
        local_rotations = local_rotations.expand(*batch, NUM_SEGMENTS, 3, 3)
        root_position = root_position.expand(*batch, 3)
    else:
        local_rotations = np.broadcast_to(local_rotations, (*batch, NUM_SEGMENTS, 3, 3))
        root_position = np.broadcast_to(root_position, (*batch, 3))
    rots: list = [None] * NUM_SEGMENTS
    pos: list = [None] * NUM_SEGMENTS
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            rots[j] = local_rotations[..., j, :, :]
            pos[j] = root_position
            continue
        rots[j] = rots[parent] @ local_rotations[..., j, :, :]
        pos[j] = pos[parent] + (rots[parent] @ offsets[..., j, :, None])[..., 0]
    if is_torch:
        return torch.stack(pos, dim=-2), torch.stack(rots, dim=-3)
    return np.stack(pos, axis=-2), np.stack(rots, axis=-3)


def _transpose(R: Array) -> Array:
    return R.transpose(-1, -2) if isinstance(R, torch.Tensor) else np.swapaxes(R, -1, -2)


def local_rotations_from_world(rotations: Array) -> Array:
    """World rotations (..., 23, 3, 3) -> local rotations relative to the parent (pelvis: world)."""
    if rotations.shape[-3:] != (NUM_SEGMENTS, 3, 3):
        raise ValueError(f"rotations must have shape (..., {NUM_SEGMENTS}, 3, 3), got {tuple(rotations.shape)}")
    parents = rotations[..., [max(p, 0) for p in PARENTS], :, :]
    local = _transpose(parents) @ rotations
    local[..., PELVIS, :, :] = rotations[..., PELVIS, :, :]
    return local


def bone_offsets_from_pose(positions: Array, rotations: Array) -> Array:
    """Bone offsets (..., 23, 3) implied by a posed skeleton (world positions and rotations)."""
    parent_idx = [max(p, 0) for p in PARENTS]
    delta = positions - positions[..., parent_idx, :]
    offsets = (_transpose(rotations[..., parent_idx, :, :]) @ delta[..., None])[..., 0]
    offsets[..., PELVIS, :] = 0.0
    return offsets
