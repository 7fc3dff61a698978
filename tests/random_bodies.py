"""Random but plausible bodies for tests: random bone lengths, local joint rotations within rough
joint limits, and global trajectories that include upside-down heads and 180° turns."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from egotwin_bench import skeleton

# Rough joint limits as (lo, hi) rotation-vector components (x, y, z), radians, in the parent
# frame. Segment axes in the calibration pose: X forward, Y left, Z up. Spine, neck, head: +y
# flexes forward, z twists. Right arm (bone along -Y): +x lowers it, +z swings it forward, the
# elbow flexes about +z only. Right leg (bone along -Z): -y flexes the hip, the knee flexes about
# +y only. Left-side limits mirror the right ones (x and z change sign).
_RIGHT_LIMITS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "Pelvis": ((-0.2, -0.3, -0.3), (0.2, 0.3, 0.3)),
    "L5": ((-0.15, -0.15, -0.2), (0.15, 0.35, 0.2)),
    "L3": ((-0.15, -0.15, -0.2), (0.15, 0.35, 0.2)),
    "T12": ((-0.15, -0.15, -0.2), (0.15, 0.35, 0.2)),
    "T8": ((-0.15, -0.15, -0.2), (0.15, 0.35, 0.2)),
    "Neck": ((-0.3, -0.4, -0.5), (0.3, 0.6, 0.5)),
    "Head": ((-0.3, -0.5, -0.7), (0.3, 0.6, 0.7)),
    "RightShoulder": ((-0.2, -0.2, -0.3), (0.2, 0.2, 0.3)),
    "RightUpperArm": ((-1.0, -0.8, -0.6), (1.5, 0.8, 1.6)),
    "RightForeArm": ((-0.1, -0.8, 0.0), (0.1, 0.8, 2.4)),
    "RightHand": ((-0.9, -0.2, -0.4), (0.9, 0.2, 0.4)),
    "RightUpperLeg": ((-0.6, -1.8, -0.5), (0.3, 0.4, 0.5)),
    "RightLowerLeg": ((-0.05, 0.0, -0.1), (0.05, 2.3, 0.1)),
    "RightFoot": ((-0.3, -0.5, -0.2), (0.3, 0.7, 0.2)),
    "RightToe": ((-0.05, -0.5, -0.05), (0.05, 0.5, 0.05)),
}


def _joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """(23, 3) lower and upper rotation-vector bounds of every segment, in `SEGMENT_NAMES` order."""
    lo = np.zeros((skeleton.NUM_SEGMENTS, 3))
    hi = np.zeros((skeleton.NUM_SEGMENTS, 3))
    mirror = np.array([-1.0, 1.0, -1.0])
    for name, (a, b) in _RIGHT_LIMITS.items():
        i = skeleton.INDEX[name]
        lo[i], hi[i] = a, b
        if name.startswith("Right"):
            j = skeleton.INDEX["Left" + name[len("Right"):]]
            ma, mb = np.array(a) * mirror, np.array(b) * mirror
            lo[j], hi[j] = np.minimum(ma, mb), np.maximum(ma, mb)
    return lo, hi


JOINT_LIMITS_LO, JOINT_LIMITS_HI = _joint_limits()
"""(23, 3) rotation-vector bounds (radians) of the local rotation of every segment."""


def random_motion(rng: np.random.Generator, n_frames: int = 81, extreme: bool = True,
                  yaw_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(T, 23, 3) world positions (m) and (T, 23, 3, 3) world rotations of a moving body.

    Local rotations move linearly (as rotation vectors) between two random poses within the
    joint limits. The pelvis turns 180° about Z over the clip; `extreme` adds a full roll (the
    body goes upside down), else a slight sway; `yaw_only` makes the pelvis turn about Z alone
    (no pitch or roll at all), the case the root-centric representation decodes exactly.
    """
    offsets = skeleton.DEFAULT_OFFSETS * rng.uniform(0.8, 1.25, size=(skeleton.NUM_SEGMENTS, 1))
    t = np.linspace(0.0, 1.0, n_frames)[:, None]
    a = rng.uniform(JOINT_LIMITS_LO, JOINT_LIMITS_HI)
    b = rng.uniform(JOINT_LIMITS_LO, JOINT_LIMITS_HI)
    rotvec = (1 - t)[:, :, None] * a[None] + t[:, :, None] * b[None]
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(n_frames, skeleton.NUM_SEGMENTS, 3, 3)
    yaw = np.pi * t[:, 0] + rng.uniform(-np.pi, np.pi)
    if yaw_only:
        local[:, skeleton.PELVIS] = Rotation.from_euler("z", yaw[:, None]).as_matrix()
    else:
        roll = (2 * np.pi * t[:, 0]) if extreme else 0.1 * np.sin(3 * t[:, 0])
        pelvis = Rotation.from_euler("zx", np.stack([yaw, np.broadcast_to(roll, yaw.shape)], axis=-1)).as_matrix()
        local[:, skeleton.PELVIS] = pelvis @ local[:, skeleton.PELVIS]
    root = np.stack([3 * np.cos(2 * t[:, 0]), 2 * np.sin(3 * t[:, 0]), 0.95 + 0.1 * t[:, 0]], axis=-1)
    root = root + rng.normal(size=3)
    return skeleton.forward_kinematics(local, offsets, root)


def random_rigid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation (3, 3) and translation (3,)."""
    return Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix(), rng.normal(scale=5.0, size=3)
