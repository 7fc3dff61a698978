"""Vectorised ray casting of a scene and the wearer's body through a fisheye ray table.

All rays of a frame share the camera centre, so ray-box (slab) and ray-capsule tests reduce to a
few dot products per ray. Tiles of rays whose cone misses an object's bounding sphere are
skipped. Shading: textured room and boxes (shared noise texture, per-face offsets and
brightness), Lambert-shaded capsules for the body, saturated gloves on the hands. The wearer's
head and neck are not rendered. Everything is float32 NumPy; output is a raw (sensor-oriented)
(H, W, 3) uint8 image and an (H, W) uint8 label image (`LABEL_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egotwin_bench.skeleton import INDEX
from egotwin_bench.synthetic.camera import RayTable
from egotwin_bench.synthetic.scene import TEXELS_PER_METRE, TEXTURE_SIZE, Scene

LABEL_BACKGROUND, LABEL_SCENE, LABEL_BODY, LABEL_LEFT_GLOVE, LABEL_RIGHT_GLOVE = 0, 1, 2, 3, 4
GLOVE_COLOURS: dict[str, tuple[float, float, float]] = {
    "left": (0.10, 0.85, 0.15),   # green
    "right": (0.90, 0.10, 0.85),  # magenta
}
"""Glove colours (RGB in [0, 1]); no scene surface uses a saturated green or magenta."""
GLOVE_LENGTH: float = 0.12
"""Length of the glove capsule's axis, metres. It is centred on the wrist (the Hand segment origin,
the joint whose visibility the ground truth reports), so the glove shows exactly when that joint
is in view, up to a few centimetres at the image border."""
GLOVE_RADIUS: float = 0.045
_LIGHT = np.array([0.3, 0.2, 0.93], dtype=np.float32) / np.linalg.norm([0.3, 0.2, 0.93])
_FACE_SHADE = np.array([0.82, 0.9, 0.86, 0.78, 0.6, 1.0], dtype=np.float32)
"""Brightness of a face by the normal of its visible side: -x, +x, -y, +y, -z, +z (lit from above)."""

# (from segment, to segment or None for the glove, radius m, colour key)
BODY_CAPSULES: tuple[tuple[str, str | None, float, str], ...] = (
    ("Pelvis", "T8", 0.14, "shirt"),
    ("T8", "Neck", 0.11, "shirt"),
    ("RightShoulder", "RightUpperArm", 0.055, "shirt"),
    ("LeftShoulder", "LeftUpperArm", 0.055, "shirt"),
    ("RightUpperArm", "RightForeArm", 0.05, "shirt"),
    ("LeftUpperArm", "LeftForeArm", 0.05, "shirt"),
    ("RightForeArm", "RightHand", 0.04, "skin"),
    ("LeftForeArm", "LeftHand", 0.04, "skin"),
    ("RightHand", None, GLOVE_RADIUS, "right_glove"),
    ("LeftHand", None, GLOVE_RADIUS, "left_glove"),
    ("RightUpperLeg", "LeftUpperLeg", 0.11, "trousers"),
    ("RightUpperLeg", "RightLowerLeg", 0.075, "trousers"),
    ("LeftUpperLeg", "LeftLowerLeg", 0.075, "trousers"),
    ("RightLowerLeg", "RightFoot", 0.055, "trousers"),
    ("LeftLowerLeg", "LeftFoot", 0.055, "trousers"),
    ("RightFoot", "RightToe", 0.045, "shoes"),
    ("LeftFoot", "LeftToe", 0.045, "shoes"),
)


@dataclass(frozen=True)
class Outfit:
    """Clothing colours of one subject (RGB in [0, 1])."""

    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    shoes: tuple[float, float, float] = (0.15, 0.12, 0.1)
    skin: tuple[float, float, float] = (0.80, 0.62, 0.50)

    def colour(self, key: str) -> np.ndarray:
        if key.endswith("_glove"):
            return np.array(GLOVE_COLOURS[key.split("_")[0]], dtype=np.float32)
        return np.array(getattr(self, key), dtype=np.float32)


def glove_segment(positions: np.ndarray, rotations: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Glove capsule end points (forearm side, fingertip side), centred on the wrist, one posed frame."""
    j = INDEX["LeftHand" if side == "left" else "RightHand"]
    half = rotations[j] @ np.array([0.0, 0.5 * GLOVE_LENGTH if side == "left" else -0.5 * GLOVE_LENGTH, 0.0])
    return positions[j] - half, positions[j] + half


class Renderer:
    """Renders one scene through one ray table; reuse it for every frame of a sequence."""

    def __init__(self, scene: Scene, rays: RayTable):
        self.scene = scene
        self.rays = rays
        boxes = scene.boxes
        self.box_lo = np.array([b.lo for b in boxes], dtype=np.float32).reshape(-1, 3)
        self.box_hi = np.array([b.hi for b in boxes], dtype=np.float32).reshape(-1, 3)
        colours = [scene.room_colours] + [np.tile(np.asarray(b.colour), (6, 1)) for b in boxes]
        self.face_colour = (np.concatenate(colours) * np.tile(_FACE_SHADE, 1 + len(boxes))[:, None]).astype(np.float32)
        # Box faces whose outward normal is -x, +x, ...: a box face seen from outside has the
        # outward normal; a room face is seen from inside, so its visible side is the inward one.
        shade_room = _FACE_SHADE[[1, 0, 3, 2, 5, 4]]
        self.face_colour[:6] = (scene.room_colours * shade_room[:, None]).astype(np.float32)
        self.face_offsets = scene.face_offsets.astype(np.int32)
        self.texture = scene.texture.reshape(-1, 3)

    def _cull(self, centre_cam: np.ndarray, radius: float) -> np.ndarray | None:
        """Ray indices whose tile may hit a sphere (camera frame); None when none can."""
        dist = float(np.linalg.norm(centre_cam))
        if dist <= radius * 1.001:
            return np.arange(self.rays.dirs.shape[0])
        half = np.arcsin(min(1.0, radius / dist))
        cos_c = _dot3(self.rays.tile_dirs, centre_cam / dist)
        tile_angle = np.arccos(np.clip(self.rays.tile_cos, -1, 1))
        hit = np.arccos(np.clip(cos_c, -1, 1)) <= half + tile_angle
        if not hit.any():
            return None
        sel = np.flatnonzero(hit)
        return np.concatenate([self.rays.tile_rays[k] for k in sel])

    def render(self, T_world_camera: np.ndarray, positions: np.ndarray | None = None,
               rotations: np.ndarray | None = None, outfit: Outfit | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw image (H, W, 3) uint8 and label image (H, W) uint8 seen from `T_world_camera`.

        Args:
            T_world_camera: (4, 4) raw RGB camera -> Xsens world.
            positions, rotations: (23, 3) / (23, 3, 3) the wearer's posed skeleton (or None).
            outfit: the wearer's clothing colours.
        """
        R = T_world_camera[:3, :3].astype(np.float32)
        o = T_world_camera[:3, 3].astype(np.float32)
        # (3, N) world directions, one contiguous row per axis; elementwise, not BLAS, so every
        # process and thread count gives the same bits (texture lookups are sensitive to them).
        X, Y, Z = self.rays.dirs_t
        dx, dy, dz = (R[k, 0] * X + R[k, 1] * Y + R[k, 2] * Z for k in range(3))
        n = dx.shape[0]
        # Room (seen from inside): exit distance of the AABB, axis by axis (struct of arrays).
        lo, hi = self.scene.room_lo.astype(np.float32), self.scene.room_hi.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = [dk > 0 for dk in (dx, dy, dz)]
            # Arithmetic selects instead of np.where (several times faster on large arrays).
            t_ax = [(lo[k] + (hi[k] - lo[k]) * pos[k] - o[k]) / dk for k, dk in enumerate((dx, dy, dz))]
            t_ax = [np.nan_to_num(t, nan=np.inf, posinf=np.inf, neginf=np.inf, copy=False) for t in t_ax]
        depth = np.minimum(np.minimum(t_ax[0], t_ax[1]), t_ax[2])
        is_y = t_ax[1] == depth
        is_z = (t_ax[2] == depth) & ~is_y
        is_x = ~(is_y | is_z)
        face = (2 * is_y + 4 * is_z + (is_x & pos[0]) + (is_y & pos[1]) + (is_z & pos[2])).astype(np.int32)
        label = np.full(n, LABEL_SCENE, dtype=np.uint8)
        body_hits: list[tuple[np.ndarray, np.ndarray]] = []
        R64 = T_world_camera[:3, :3]
        o64 = T_world_camera[:3, 3]

        # Boxes: slab test on the rays of the tiles their bounding sphere covers.
        for b in range(self.box_lo.shape[0]):
            blo, bhi = self.box_lo[b], self.box_hi[b]
            centre = 0.5 * (blo + bhi)
            sel = self._cull(R64.T @ (centre - o64), float(np.linalg.norm(bhi - blo)) * 0.5)
            if sel is None:
                continue
            tnear = np.full(sel.size, -np.inf, dtype=np.float32)
            tfar = depth[sel]
            enter = np.zeros(sel.size, dtype=np.int32)
            with np.errstate(divide="ignore", invalid="ignore"):
                for k, dk in enumerate((dx, dy, dz)):
                    dks = dk[sel]
                    t1 = (blo[k] - o[k]) / dks
                    t2 = (bhi[k] - o[k]) / dks
                    tmin = np.fmin(t1, t2)  # fmin/fmax ignore the NaN of a ray parallel to a slab
                    tmax = np.fmax(t1, t2)
                    later = tmin > tnear
                    tnear = np.where(later, tmin, tnear)
                    enter = np.where(later, 2 * k + (dks < 0), enter)
                    tfar = np.fmin(tfar, tmax)
            hit = (tnear <= tfar) & (tnear > 0)
            if not hit.any():
                continue
            s_ = sel[hit]
            depth[s_] = tnear[hit]
            face[s_] = 6 * (1 + b) + enter[hit]

        # Body capsules (shared ray origin o): Inigo Quilez's ray-capsule intersection.
        if positions is not None:
            outfit = outfit or Outfit((0.3, 0.35, 0.55), (0.2, 0.2, 0.25))
            for a_name, b_name, r, key in BODY_CAPSULES:
                if b_name is None:
                    pa, pb = glove_segment(positions, rotations, "left" if key.startswith("left") else "right")
                else:
                    pa, pb = positions[INDEX[a_name]], positions[INDEX[b_name]]
                centre = 0.5 * (pa + pb)
                sel = self._cull(R64.T @ (centre - o64), 0.5 * float(np.linalg.norm(pb - pa)) + r)
                if sel is None:
                    continue
                ds = np.stack([dx[sel], dy[sel], dz[sel]], axis=1)
                t_hit = _capsule_hits(ds, o, pa.astype(np.float32), pb.astype(np.float32), np.float32(r))
                hit = t_hit < depth[sel]
                if not hit.any():
                    continue
                s = sel[hit]
                th = t_hit[hit]
                depth[s] = th
                p = o + th[:, None] * ds[hit]
                ba = (pb - pa).astype(np.float32)
                h = np.clip(_dot3(p - pa, ba) / max(float(ba @ ba), 1e-12), 0.0, 1.0)
                normal = (p - pa - h[:, None] * ba) / np.float32(r)
                lambert = np.float32(0.55) + np.float32(0.45) * np.clip(_dot3(normal, _LIGHT), 0.0, 1.0)
                body_hits.append((s, outfit.colour(key) * lambert[:, None]))
                label[s] = {"left_glove": LABEL_LEFT_GLOVE, "right_glove": LABEL_RIGHT_GLOVE}.get(key, LABEL_BODY)

        # Texture every ray as room/box (body pixels are painted over after): the two world
        # coordinates across the hit face's axis index the shared texture.
        f = face
        px, py, pz = (o[k] + depth * dk for k, dk in enumerate((dx, dy, dz)))
        ax = (f % 6) // 2
        on_x, on_z = ax == 0, ax == 2
        u = px + (py - px) * on_x
        v = pz + (py - pz) * on_z
        mask = TEXTURE_SIZE - 1
        iu = ((u * TEXELS_PER_METRE).astype(np.int32) + self.face_offsets[f, 0]) & mask
        iv = ((v * TEXELS_PER_METRE).astype(np.int32) + self.face_offsets[f, 1]) & mask
        texel = self.texture[iu * TEXTURE_SIZE + iv]
        colour = self.face_colour[f] * (np.float32(0.35 * 255.0) + np.float32(0.75) * texel)
        for s_, c_ in body_hits:
            colour[s_] = c_ * np.float32(255.0)

        h, w = self.rays.height, self.rays.width
        image = np.zeros((h * w, 3), dtype=np.uint8)
        image[self.rays.pixels] = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
        labels = np.zeros(h * w, dtype=np.uint8)
        labels[self.rays.pixels] = label
        return image.reshape(h, w, 3), labels.reshape(h, w)


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, 3) . (3,) -> (M,) elementwise (bitwise reproducible, unlike a threaded BLAS gemv)."""
    b = np.asarray(b, dtype=a.dtype)
    return a[:, 0] * b[0] + a[:, 1] * b[1] + a[:, 2] * b[2]


def _capsule_hits(d: np.ndarray, o: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.float32) -> np.ndarray:
    """(M,) nearest positive hit distance of rays o + t d with the capsule [a, b] radius r (inf: miss)."""
    ba = b - a
    oa = o - a
    baba = float(ba @ ba)
    baoa = float(ba @ oa)
    oaoa = float(oa @ oa)
    bard = _dot3(d, ba)
    rdoa = _dot3(d, oa)
    k2 = baba - bard * bard
    k1 = baba * rdoa - baoa * bard
    k0 = baba * oaoa - baoa * baoa - r * r * baba
    disc = k1 * k1 - k2 * k0
    out = np.full(d.shape[0], np.inf, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-k1 - np.sqrt(disc)) / k2
        y = baoa + t * bard
        body = (disc >= 0) & (y > 0) & (y < baba) & (t > 0)
        out[body] = t[body]
        # Caps: spheres at a (y <= 0) or b (y >= baba).
        for centre_oc in (oa, o - b):
            bb = _dot3(d, centre_oc)
            cc = float(centre_oc @ centre_oc) - r * r
            h = bb * bb - cc
            tc = -bb - np.sqrt(h)
            ok = (h >= 0) & (tc > 0) & (tc < out)
            out[ok] = tc[ok]
    return out
