"""Procedural indoor places: an axis-aligned room with furniture boxes, doors and coloured objects.

Xsens world frame: Z up, metres, the floor at z = 0. Every surface is textured by one shared
multi-octave noise image indexed by world coordinates (1 cm per texel, 20 m period) plus a random
offset per face, so no two faces show the same pattern and no face repeats within a room.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

TEXTURE_SIZE: int = 2048
"""Texels per side of the shared noise texture (power of two)."""
TEXELS_PER_METRE: float = 100.0
WALKWAY_MARGIN: float = 0.85
"""Waypoints between stations keep at least this distance (metres) from the walls."""
PATH_CLEARANCE: float = 0.55
"""The pelvis never comes closer than this to a wall (stations included)."""
FURNITURE_DEPTH_MAX: float = 0.45
CROUCH_STANDOFF: float = 0.68
"""Pelvis distance (metres) from the furniture's front face for a crouching pick: the forward lean
brings the head ~0.3 m closer, and the glasses' camera sits ~0.1 m in front of the head."""

# Surface colours avoid saturated green and magenta: those are the gloves (see body.py).
OBJECT_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.92, 0.82, 0.15),
    "blue": (0.12, 0.25, 0.85),
    "white": (0.92, 0.92, 0.90),
    "black": (0.10, 0.10, 0.11),
    "brown": (0.45, 0.28, 0.15),
    "teal": (0.10, 0.55, 0.60),
}
_WALL_COLOURS = ((0.86, 0.82, 0.74), (0.78, 0.80, 0.84), (0.88, 0.84, 0.80), (0.70, 0.72, 0.70))
_FLOOR_COLOURS = ((0.55, 0.42, 0.30), (0.50, 0.50, 0.52), (0.62, 0.55, 0.45))
_FURNITURE_COLOURS = ((0.55, 0.38, 0.22), (0.85, 0.85, 0.82), (0.35, 0.30, 0.28), (0.60, 0.55, 0.48))


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: furniture, a door leaf or a small object."""

    lo: np.ndarray
    """(3,) minimum corner, metres."""
    hi: np.ndarray
    """(3,) maximum corner, metres."""
    colour: tuple[float, float, float]
    kind: str
    """"table", "shelf", "cabinet", "door" or "object"."""
    name: str
    """What narrations call it, e.g. "the red box"."""


@dataclass(frozen=True)
class Station:
    """A place to stand and act: in front of a box, facing it."""

    position: np.ndarray
    """(2,) pelvis x, y in metres."""
    yaw: float
    """Facing direction (radians about +Z, 0 = +X)."""
    target: int
    """Index of the box acted on (the object, the door or the furniture)."""
    action: str
    """"reach", "pick", "crouch_pick" or "open_door"."""
    height: float
    """Height of the target above the floor, metres."""


@dataclass(frozen=True)
class Scene:
    """One location: a room, its boxes, the stations to act at and the shared texture."""

    location_id: str
    room_lo: np.ndarray
    room_hi: np.ndarray
    room_colours: np.ndarray
    """(6, 3) colours of the faces -x, +x, -y, +y, floor, ceiling."""
    boxes: tuple[Box, ...]
    stations: tuple[Station, ...]
    texture: np.ndarray = field(repr=False)
    """(TEXTURE_SIZE, TEXTURE_SIZE, 3) uint8 noise."""
    face_offsets: np.ndarray = field(repr=False)
    """(6 * (1 + len(boxes)), 2) int64 texel offsets of every face (room first)."""

    @property
    def walk_lo(self) -> np.ndarray:
        return self.room_lo[:2] + WALKWAY_MARGIN

    @property
    def walk_hi(self) -> np.ndarray:
        return self.room_hi[:2] - WALKWAY_MARGIN


def noise_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 multi-octave value noise (cubic-upsampled random grids) with blobs."""
    acc = np.zeros((size, size, 3), dtype=np.float32)
    amp_total = 0.0
    for cells, amp in ((8, 1.0), (32, 0.7), (128, 0.5), (512, 0.35), (size, 0.2)):
        grid = rng.random((cells, cells, 3), dtype=np.float32)
        grid[..., 1:] = 0.6 * grid[..., :1] + 0.4 * grid[..., 1:]  # mostly luminance, some chroma
        up = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) if cells != size else grid
        acc += amp * up
        amp_total += amp
    acc /= amp_total
    # Dark and light blobs (stains, posters, marks) break up the noise statistics.
    n_blobs = 2500
    centres = rng.integers(0, size, (n_blobs, 2))
    radii = rng.integers(1, 9, n_blobs)
    values = rng.uniform(0.0, 1.0, (n_blobs, 3)) * 0.3 + rng.choice([0.1, 0.75], (n_blobs, 1))
    for c, r, val in zip(centres.tolist(), radii.tolist(), values.tolist()):
        cv2.circle(acc, (c[0], c[1]), r, val, -1)
    lo, hi = np.percentile(acc[::4, ::4], [1, 99])
    return np.clip((acc - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


@lru_cache(maxsize=8)
def make_scene(location_index: int, seed: int) -> Scene:
    """A deterministic room for `location_index` (different layout per index and seed).

    Cached per process (sequences sharing a location reuse it); treat the result as read-only."""
    rng = np.random.default_rng([seed, 7919, location_index])
    size = np.array([rng.uniform(6.0, 8.5), rng.uniform(5.0, 7.0), rng.uniform(2.6, 3.0)])
    room_lo = np.array([-size[0] / 2, -size[1] / 2, 0.0])
    room_hi = np.array([size[0] / 2, size[1] / 2, size[2]])
    wall = np.array(_pick(rng, _WALL_COLOURS))
    room_colours = np.stack(
        [wall * rng.uniform(0.85, 1.05) for _ in range(4)] + [np.array(_pick(rng, _FLOOR_COLOURS)), wall * 1.05]
    ).clip(0, 1)

    boxes: list[Box] = []
    stations: list[Station] = []
    colour_names = list(OBJECT_COLOURS)
    rng.shuffle(colour_names)
    colour_iter = iter(colour_names * 4)

    # Walls in order -x, +x, -y, +y: (axis, side, inward normal sign).
    walls = [(0, 0), (0, 1), (1, 0), (1, 1)]
    door_wall = int(rng.integers(4))
    for w, (axis, side) in enumerate(walls):
        other = 1 - axis
        span_lo, span_hi = room_lo[other] + 0.6, room_hi[other] - 0.6
        inward = 1.0 if side == 0 else -1.0
        wall_pos = room_lo[axis] if side == 0 else room_hi[axis]
        # Slots along this wall, each 1.0-1.6 m wide.
        cursor = span_lo + rng.uniform(0.0, 0.4)
        slot = 0
        while cursor + 1.0 < span_hi:
            width = rng.uniform(0.9, 1.5)
            centre = cursor + width / 2
            if w == door_wall and slot == 0:
                kind = "door"
            else:
                kind = _pick(rng, ("table", "shelf", "cabinet", "table", "shelf", "empty"))
            cursor += width + rng.uniform(0.3, 0.9)
            slot += 1
            if kind == "empty":
                continue
            depth = {"door": 0.05, "table": FURNITURE_DEPTH_MAX, "shelf": 0.35, "cabinet": 0.45}[kind]
            height = {"door": 2.05, "table": 0.75, "shelf": rng.uniform(1.6, 1.9), "cabinet": 0.9}[kind]
            lo = np.zeros(3)
            hi = np.zeros(3)
            near, far = wall_pos, wall_pos + inward * depth
            lo[axis], hi[axis] = min(near, far), max(near, far)
            half = (0.45 if kind == "door" else width / 2)
            lo[other], hi[other] = centre - half, centre + half
            lo[2], hi[2] = 0.0, height
            colour = (0.40, 0.25, 0.12) if kind == "door" else _pick(rng, _FURNITURE_COLOURS)
            boxes.append(Box(lo, hi, tuple(colour), kind, f"the {kind}"))
            furniture = len(boxes) - 1
            yaw = float(np.arctan2(0.0, -inward) if axis == 0 else np.arctan2(-inward, 0.0))
            stand = np.zeros(2)
            stand[axis] = far + inward * (0.55 if kind == "door" else 0.42)
            stand[other] = centre
            if kind == "door":
                stations.append(Station(stand, yaw, furniture, "open_door", 1.0))
                continue
            # Objects on top of tables/cabinets, on a shelf board at 1.1-1.4 m, or on the floor.
            for _ in range(int(rng.integers(1, 3))):
                cname = next(colour_iter)
                obj_size = rng.uniform(0.08, 0.18, 3)
                along = centre + rng.uniform(-width / 2 + 0.15, width / 2 - 0.15)
                if kind == "shelf":
                    z0 = float(rng.choice([0.35, rng.uniform(1.05, 1.35)]))
                else:
                    z0 = height
                olo, ohi = np.zeros(3), np.zeros(3)
                depth_mid = wall_pos + inward * (depth * 0.5 if kind != "shelf" else depth + 0.06)
                olo[axis], ohi[axis] = depth_mid - obj_size[0] / 2, depth_mid + obj_size[0] / 2
                olo[other], ohi[other] = along - obj_size[1] / 2, along + obj_size[1] / 2
                olo[2], ohi[2] = z0, z0 + obj_size[2]
                shape = _pick(rng, ("box", "book", "cup", "bottle", "bag"))
                boxes.append(Box(olo, ohi, OBJECT_COLOURS[cname], "object", f"the {cname} {shape}"))
                action = "crouch_pick" if z0 < 0.6 else ("reach" if z0 > 1.0 else "pick")
                pos = stand.copy()
                pos[other] = along
                if action == "crouch_pick":  # the crouch leans the head forward: stand back from the furniture
                    pos[axis] = far + inward * CROUCH_STANDOFF
                stations.append(Station(pos, yaw, len(boxes) - 1, action, float(z0)))
    # A floor object in the open for crouching.
    cname = next(colour_iter)
    c = rng.uniform(room_lo[:2] + 1.6, room_hi[:2] - 1.6)
    boxes.append(Box(np.array([c[0] - 0.12, c[1] - 0.12, 0.0]), np.array([c[0] + 0.12, c[1] + 0.12, 0.25]),
                     OBJECT_COLOURS[cname], "object", f"the {cname} basket"))
    yaw = float(rng.uniform(-np.pi, np.pi))
    stations.append(Station(c - 0.45 * np.array([np.cos(yaw), np.sin(yaw)]), yaw, len(boxes) - 1, "crouch_pick", 0.0))

    texture = noise_texture(np.random.default_rng([seed, 104729, location_index]))
    face_offsets = rng.integers(0, TEXTURE_SIZE, (6 * (1 + len(boxes)), 2))
    return Scene(
        location_id=f"loc{location_index:02d}",
        room_lo=room_lo,
        room_hi=room_hi,
        room_colours=room_colours,
        boxes=tuple(boxes),
        stations=tuple(stations),
        texture=texture,
        face_offsets=face_offsets,
    )
