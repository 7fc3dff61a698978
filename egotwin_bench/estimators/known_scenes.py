"""Known-answer scenes for validating pose estimators: a textured box room rendered by ray casting.

`render_room(T_world_camera, K)` renders what a pinhole camera sees from inside an axis-aligned
room whose six faces carry random (seeded) textures; `camera_path(kind)` gives the camera
trajectories the tests and `benchmarks/evaluate_throughput.py` use (walking, pure rotation,
static). Noise-free: an estimator's error on these clips is its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from egotwin_bench import geometry
from egotwin_bench.constants import VIDEO_FRAMES, VIDEO_FPS, VIDEO_SIZE


@dataclass(frozen=True)
class Room:
    """An axis-aligned room (metres, Z up) with one texture per face."""

    low: tuple[float, float, float] = (-4.0, -4.0, 0.0)
    high: tuple[float, float, float] = (4.0, 4.0, 3.0)
    texels_per_metre: float = 96.0
    seed: int = 0
    blank: bool = False
    """Untextured (uniform grey) faces: a low-texture stress case."""


def _textures(room: Room) -> list[np.ndarray]:
    """One float32 texture per face (axis, side), blurred noise plus blobs, values 0..255."""
    rng = np.random.default_rng(room.seed)
    size = np.array(room.high) - np.array(room.low)
    out = []
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        h = int(size[v_axis] * room.texels_per_metre)
        w = int(size[u_axis] * room.texels_per_metre)
        for _ in range(2):
            if room.blank:
                out.append(np.full((h, w), 128.0, dtype=np.float32))
                continue
            tex = rng.uniform(0, 255, (h, w)).astype(np.float32)
            tex = cv2.GaussianBlur(tex, (0, 0), 1.5)
            coarse = cv2.resize(rng.uniform(0, 255, (h // 16, w // 16)).astype(np.float32), (w, h))
            out.append(cv2.normalize(tex + coarse, None, 0, 255, cv2.NORM_MINMAX))
    return out


HAND_COLOURS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((220, 40, 40), (40, 60, 230))
"""RGB of the left and right hand discs drawn by `render_room`."""
HAND_RADIUS_M: float = 0.06


def render_room(
    T_world_camera: np.ndarray,
    intrinsics: np.ndarray,
    room: Room = Room(),
    size: int = VIDEO_SIZE,
    hands_world: np.ndarray | None = None,
    render_scale: float = 1.0,
) -> np.ndarray:
    """Render (N, size, size, 3) uint8 RGB frames for (N, 4, 4) camera-to-world poses (OpenCV axes).

    `hands_world` (N, 2, 3) optionally adds the (left, right) hands as coloured discs of radius
    `HAND_RADIUS_M`, drawn when the hand is at least 5 cm in front of the camera.
    `render_scale` < 1 ray-casts fewer pixels and upsamples bilinearly (faster, slightly softer).
    """
    T_world_camera = np.asarray(T_world_camera, dtype=np.float64).reshape(-1, 4, 4)
    textures = _textures(room)
    low, high = np.array(room.low), np.array(room.high)
    n = int(round(size * render_scale))
    # Pixel centres of the coarse grid expressed in full-resolution pixel coordinates.
    centres = (np.arange(n) + 0.5) * size / n - 0.5
    u, v = np.meshgrid(centres, centres)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
    rays_cam = pix @ np.linalg.inv(intrinsics).T
    frames = []
    for T in T_world_camera:
        origin = T[:3, 3]
        d = rays_cam @ T[:3, :3].T
        best_t = np.full(len(d), np.inf)
        image = np.zeros(len(d), dtype=np.float32)
        hits = []
        for axis in range(3):
            for side, plane in enumerate((low[axis], high[axis])):
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (plane - origin[axis]) / d[:, axis]
                t = np.where(t > 1e-6, t, np.inf)
                closer = t < best_t
                best_t = np.where(closer, t, best_t)
                hits.append((axis, side, closer))
        # Assign each pixel to the nearest face (later faces override earlier, nearer ones win).
        face = np.full(len(d), -1)
        for idx, (axis, side, closer) in enumerate(hits):
            face[closer] = idx
        point = origin + best_t[:, None] * d
        for idx, (axis, side, _) in enumerate(hits):
            sel = face == idx
            if not np.any(sel):
                continue
            u_axis, v_axis = [a for a in range(3) if a != axis]
            tu = ((point[sel, u_axis] - low[u_axis]) * room.texels_per_metre).astype(np.float32)
            tv = ((point[sel, v_axis] - low[v_axis]) * room.texels_per_metre).astype(np.float32)
            image[sel] = map_coordinates(textures[idx], [tv, tu], order=1, mode="reflect")
        gray = np.clip(image.reshape(n, n), 0, 255).astype(np.uint8)
        if n != size:
            gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_LINEAR)
        frames.append(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1)))
    if hands_world is not None:
        T_camera_world = geometry.invert_transform(T_world_camera)
        hands_cam = geometry.transform_points(T_camera_world, np.asarray(hands_world, dtype=np.float64))
        for frame, hands in zip(frames, hands_cam):
            for colour, p in zip(HAND_COLOURS, hands):
                if p[2] <= 0.05:
                    continue
                u, v, w = intrinsics @ p
                radius = int(round(HAND_RADIUS_M * intrinsics[0, 0] / p[2]))
                if abs(u / w) < 4 * size and abs(v / w) < 4 * size:
                    cv2.circle(frame, (int(round(u / w)), int(round(v / w))), radius, colour, -1, cv2.LINE_AA)
    return np.stack(frames)


def look_rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """(3, 3) camera-to-world rotation of an OpenCV camera looking along ``yaw`` (about Z, radians)
    and tilted down by ``pitch`` radians, in a Z-up world."""
    forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), -np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def camera_path(
    kind: str,
    n_frames: int = VIDEO_FRAMES,
    fps: int = VIDEO_FPS,
    heading: float = 0.0,
    speed: float = 0.8,
    look: float = 0.0,
    turn: float = 0.0,
) -> np.ndarray:
    """(n_frames, 4, 4) camera-to-world poses of a head camera 1.6 m above the floor.

    kind: ``walk`` (`speed` m/s along `heading` radians, with head sway; the head looks `look`
    radians left of the walking direction and turns further at `turn` rad/s; starts 2 m behind
    the room centre), ``rotate`` (pure head turn, 60 deg over the clip) or ``static``.
    The path is a smooth function of time, so 81 frames at 16 FPS contain the 41 at 8 FPS.
    """
    t = np.arange(n_frames) / fps
    if kind == "walk":
        c, s = np.cos(heading), np.sin(heading)
        along, side = -2.0 + speed * t, 0.3 * np.sin(0.8 * t)
        pos = np.stack([c * along - s * side, s * along + c * side, 1.6 + 0.02 * np.sin(2 * np.pi * 2 * t)], axis=1)
        yaw = heading + look + turn * t + 0.25 * np.sin(0.6 * t)
        pitch = 0.15 + 0.05 * np.sin(1.3 * t)
    elif kind == "rotate":
        pos = np.tile([0.5, 0.2, 1.6], (n_frames, 1))
        yaw = np.deg2rad(60.0) * t / t[-1]
        pitch = 0.1 * np.ones_like(t)
    elif kind == "static":
        pos = np.tile([0.0, 0.0, 1.6], (n_frames, 1))
        yaw = np.zeros_like(t)
        pitch = 0.1 * np.ones_like(t)
    else:
        raise ValueError(f"unknown camera path {kind!r}; use walk, rotate or static")
    R = np.stack([look_rotation(y, p) for y, p in zip(yaw, pitch)])
    return geometry.make_transform(R, pos)
