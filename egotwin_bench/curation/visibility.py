"""Hand visibility labels from the head camera (EgoTwin §4.1 HandScore ground truth).

A hand is *visible* in a frame when its Xsens hand segment origin lies in front of the camera
(depth > `MIN_DEPTH_M`) and projects inside the image through the pinhole intrinsics.
"""

from __future__ import annotations

import numpy as np

from egotwin_bench.geometry import invert_transform, transform_points

MIN_DEPTH_M: float = 0.05


def project(K: np.ndarray, T_world_camera: np.ndarray, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection. K (3, 3), T_world_camera (T, 4, 4), points (T, P, 3) world metres
    -> pixels (T, P, 2) (integer coordinates at pixel centres) and depths (T, P) metres."""
    p_cam = transform_points(invert_transform(T_world_camera), points_world)
    depth = p_cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (p_cam @ K.T)[..., :2] / depth[..., None]
    return uv, depth


def hand_visibility(
    hand_positions: np.ndarray, T_world_camera: np.ndarray, K: np.ndarray, size: int
) -> np.ndarray:
    """(T, 2, 3) hand positions (left, right) -> (T, 2) bool visible in a `size`² image."""
    uv, depth = project(K, T_world_camera, hand_positions)
    half = 0.5
    inside = (uv[..., 0] >= -half) & (uv[..., 0] < size - half) & (uv[..., 1] >= -half) & (uv[..., 1] < size - half)
    return (depth > MIN_DEPTH_M) & inside
