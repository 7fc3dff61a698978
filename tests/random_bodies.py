"""Random but plausible bodies for tests: random bone lengths, joint rotations within limits,
and global trajectories that include upside-down heads and 180° turns."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from egotwin_bench import skeleton


def random_motion(rng: np.random.Generator, n_frames: int = 81, extreme: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(T, 23, 3) world positions (m) and (T, 23, 3, 3) world rotations of a moving body."""
    offsets = skeleton.DEFAULT_OFFSETS * rng.uniform(0.8, 1.25, size=(skeleton.NUM_SEGMENTS, 1))
    t = np.linspace(0.0, 1.0, n_frames)[:, None]
    # Smooth local joint rotations: rotation vectors within +-0.8 rad, varying over time.
    a = rng.uniform(-0.8, 0.8, size=(skeleton.NUM_SEGMENTS, 3))
    b = rng.uniform(-0.8, 0.8, size=(skeleton.NUM_SEGMENTS, 3))
    rotvec = (1 - t)[:, :, None] * a[None] + t[:, :, None] * b[None]
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(n_frames, skeleton.NUM_SEGMENTS, 3, 3)
    # Global pelvis: a 180° yaw turn, and (extreme) a full roll that turns the body upside down.
    yaw = np.pi * t[:, 0] + rng.uniform(-np.pi, np.pi)
    roll = (2 * np.pi * t[:, 0]) if extreme else 0.1 * np.sin(3 * t[:, 0])
    pelvis = Rotation.from_euler("zx", np.stack([yaw, np.broadcast_to(roll, yaw.shape)], axis=-1)).as_matrix()
    local[:, skeleton.PELVIS] = pelvis @ local[:, skeleton.PELVIS]
    root = np.stack([3 * np.cos(2 * t[:, 0]), 2 * np.sin(3 * t[:, 0]), 0.95 + 0.1 * t[:, 0]], axis=-1)
    root = root + rng.normal(size=3)
    return skeleton.forward_kinematics(local, offsets, root)


def random_rigid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation (3, 3) and translation (3,)."""
    return Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix(), rng.normal(scale=5.0, size=3)
