"""The Aria-like glasses: head -> device -> RGB camera transforms, FISHEYE624 calibration, ray table.

Frames (all rigid transforms ``T_a_b`` map frame-b points to frame a, (4, 4) float64):

* **Head**: the Xsens ``Head`` segment frame (X forward, Y left, Z up in the calibration pose).
* **Device**: the glasses' frame (as on Aria, the frame MPS poses refer to). Here it is a
  CPF-like frame (X left, Y up, Z forward) sitting on the nose bridge, tilted by a few degrees
  per sequence.
* **Raw camera** (``camera-rgb``): OpenCV axes of the sensor as mounted on Aria, i.e. rotated so
  that ``np.rot90(raw, k=3)`` (90 degrees clockwise) is upright. Its calibration is FISHEYE624.
* **Upright camera**: the raw camera rotated like the image, ``T_raw_upright = R_RAW_UPRIGHT``; the
  same convention as projectaria_tools ``rotate_camera_calib_cw90deg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from projectaria_tools.core.calibration import CameraCalibration, CameraModelType
from projectaria_tools.core.sophus import SE3
from scipy.spatial.transform import Rotation

from egotwin_bench.geometry import make_transform

RGB_LABEL: str = "camera-rgb"
ARIA_RGB_FULL_RESOLUTION: int = 1408
"""Aria's RGB sensor is 1408 x 1408; calibrations for other sizes are scaled from it."""

# FISHEYE624 parameters of an Aria-like RGB camera at 1408 px:
# f, cx, cy, k0..k5 (radial), p0, p1 (tangential), s0..s3 (thin prism).
ARIA_RGB_PARAMS_1408: tuple[float, ...] = (
    610.9, 715.1, 716.7,
    0.406, -0.489, 0.202, 1.040, -1.690, 0.680,
    0.00049, -0.00011,
    -0.00086, 0.00018, 0.00051, -0.00015,
)
ARIA_RGB_VALID_RADIUS_FRACTION: float = 0.5
"""Valid image circle radius as a fraction of the image width (pixels outside render black)."""
ARIA_RGB_MAX_ANGLE: float = 1.4
"""Largest angle (radians) from the optical axis a ray may have to be projected."""

R_RAW_UPRIGHT: np.ndarray = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
"""Rotation of the upright camera in the raw camera frame (x_up = -y_raw, y_up = x_raw)."""
T_RAW_UPRIGHT: np.ndarray = make_transform(R_RAW_UPRIGHT, np.zeros(3))

# Device (CPF-like: X left, Y up, Z forward) in the Xsens head frame (X forward, Y left, Z up).
_R_HEAD_DEVICE_NOMINAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_T_HEAD_DEVICE_NOMINAL = np.array([0.095, 0.0, 0.085])
"""Glasses bridge: 9.5 cm in front of and 8.5 cm above the head segment origin (top of neck)."""
_RGB_PITCH_DOWN_RAD = np.deg2rad(12.0)
"""The RGB camera looks 12 degrees below the device's forward axis."""
_T_DEVICE_RGB = np.array([0.055, 0.012, 0.004])
"""RGB camera position in the device frame: 5.5 cm to the wearer's left, 1.2 cm up."""


def aria_rgb_calibration(resolution: int, T_device_camera: np.ndarray):
    """FISHEYE624 projectaria_tools ``CameraCalibration`` of the raw RGB camera.

    Args:
        resolution: image width = height in pixels (Aria: 1408; default synthetic 704).
        T_device_camera: (4, 4) raw camera -> device.
    """
    params = np.array(ARIA_RGB_PARAMS_1408, dtype=np.float64)
    scale = resolution / ARIA_RGB_FULL_RESOLUTION
    params[:3] *= scale  # f, cx, cy scale with the image; distortion is in normalised coordinates
    return CameraCalibration(
        RGB_LABEL,
        CameraModelType.FISHEYE624,
        params,
        SE3.from_matrix(np.asarray(T_device_camera, dtype=np.float64)),
        int(resolution),
        int(resolution),
        ARIA_RGB_VALID_RADIUS_FRACTION * resolution,
        ARIA_RGB_MAX_ANGLE,
        "synthetic-rgb",
    )


@dataclass(frozen=True)
class GlassesRig:
    """Fixed transforms of one sequence's glasses (float64, (4, 4))."""

    T_head_device: np.ndarray
    T_device_camera: np.ndarray
    """Raw (sensor-oriented) RGB camera -> device."""

    @property
    def T_head_camera(self) -> np.ndarray:
        """Raw RGB camera -> Xsens head segment."""
        return self.T_head_device @ self.T_device_camera

    @property
    def T_head_camera_upright(self) -> np.ndarray:
        """Upright RGB camera -> Xsens head segment."""
        return self.T_head_camera @ T_RAW_UPRIGHT


def make_rig(rng: np.random.Generator) -> GlassesRig:
    """Glasses as worn by one subject: nominal mounting plus a per-sequence jitter (~3 deg, ~5 mm)."""
    jitter = Rotation.from_rotvec(rng.normal(0.0, np.deg2rad(2.0), 3)).as_matrix()
    R_hd = jitter @ _R_HEAD_DEVICE_NOMINAL
    t_hd = _T_HEAD_DEVICE_NOMINAL + rng.normal(0.0, 0.004, 3)
    # Upright camera in the device frame: x right = -X_dev, y down = -Y_dev, z = Z_dev pitched down.
    R_dev_upright = Rotation.from_rotvec([_RGB_PITCH_DOWN_RAD, 0.0, 0.0]).as_matrix() @ np.diag([-1.0, -1.0, 1.0])
    R_dev_raw = R_dev_upright @ R_RAW_UPRIGHT.T
    return GlassesRig(make_transform(R_hd, t_hd), make_transform(R_dev_raw, _T_DEVICE_RGB.copy()))


@dataclass(frozen=True)
class RayTable:
    """Unit rays of every pixel of a calibration, in the raw camera frame, grouped in square tiles.

    ``dirs`` is (N, 3) float32 for the N valid pixels whose flat indices (row-major, into an
    (H, W) image) are ``pixels``. Tiles of ``tile`` x ``tile`` pixels carry a mean direction and
    an angular radius so a ray caster can skip tiles a bounding sphere cannot touch.
    """

    height: int
    width: int
    pixels: np.ndarray
    """(N,) int64 flat pixel index of each valid ray."""
    dirs: np.ndarray
    """(N, 3) float32 unit directions, raw camera frame."""
    dirs_t: np.ndarray
    """(3, N) float32 contiguous transpose of ``dirs``."""
    tile_dirs: np.ndarray
    """(K, 3) float32 unit mean direction of each tile."""
    tile_cos: np.ndarray
    """(K,) float32 cosine of each tile's angular radius."""
    tile_rays: tuple[np.ndarray, ...]
    """K arrays of ray indices (into ``dirs``)."""


def build_ray_table(calibration, tile: int = 16) -> RayTable:
    """Unproject every pixel centre once (projectaria_tools, ~2 us/pixel) and tile the rays."""
    w, h = (int(v) for v in calibration.get_image_size())
    radius = calibration.get_valid_radius()
    cx, cy = (float(v) for v in calibration.get_principal_point())
    vv, uu = np.mgrid[0:h, 0:w]
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float64)
    if radius is not None:
        uv = uv[(uv[:, 0] - cx) ** 2 + (uv[:, 1] - cy) ** 2 <= radius**2]
    rays = [calibration.unproject(p) for p in uv]  # rows of an array: ~1 us per pixel
    ok = np.array([r is not None for r in rays], dtype=bool)
    uv = uv[ok].astype(np.int64)
    pix = uv[:, 1] * w + uv[:, 0]
    dirs = [r for r in rays if r is not None]
    pixels = np.asarray(pix, dtype=np.int64)
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    tiles_x = (w + tile - 1) // tile
    tile_id = (pixels // w // tile) * tiles_x + (pixels % w) // tile
    order = np.argsort(tile_id, kind="stable")
    uniq, starts = np.unique(tile_id[order], return_index=True)
    groups = np.split(order, starts[1:])
    tile_dirs, tile_cos = [], []
    for g in groups:
        m = d[g].mean(axis=0)
        m /= np.linalg.norm(m)
        tile_dirs.append(m)
        tile_cos.append(np.clip(d[g] @ m, -1.0, 1.0).min())
    return RayTable(
        height=h,
        width=w,
        pixels=pixels,
        dirs=d.astype(np.float32),
        dirs_t=np.ascontiguousarray(d.T.astype(np.float32)),
        tile_dirs=np.asarray(tile_dirs, dtype=np.float32),
        tile_cos=np.asarray(tile_cos, dtype=np.float32),
        tile_rays=tuple(groups),
    )


@lru_cache(maxsize=4)
def ray_table_for(resolution: int) -> RayTable:
    """The ray table of `aria_rgb_calibration(resolution)` (rays do not depend on the extrinsics)."""
    return build_ray_table(aria_rgb_calibration(resolution, np.eye(4)))
