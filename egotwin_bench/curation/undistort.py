"""Aria fisheye RGB -> upright 480x480 pinhole frames with a cached `cv2.remap` table.

The output camera is projectaria_tools' linear calibration of `size` px with focal length
`focal_px`, sharing the raw camera's ``T_device_camera``, rotated 90° clockwise with
`rotate_camera_calib_cw90deg` (the raw Aria image lies on its side; ``np.rot90(raw, k=3)``
is upright). Its pixel centres are at integer coordinates, principal point
``((size - 1) / 2, (size - 1) / 2)`` — exactly what ``intrinsics`` returns and what every clip
stores.

Default focal length: 240 px for 480 px, i.e. a 90° horizontal and vertical field of view —
inside the Aria RGB fisheye's ~110° everywhere (no black corners), and the same for every
clip so the generator sees one camera.

The table maps every output pixel to raw-sensor coordinates: rays from the pinhole (exact
``K^-1``), rotated into the raw camera frame, projected through the FISHEYE624 model with the
calibration's FISHEYE624 model. The projection is evaluated vectorised in NumPy
(`project_fisheye624`, ~20 ms for 480² pixels instead of ~0.5-2 s of per-pixel
`calibration.project` calls) and cross-checked against `calibration.project` on every
`CROSS_CHECK_STRIDE`-th pixel; any disagreement (another model, a projectaria_tools change)
falls back to the per-pixel calls. `remap_table` caches the table per camera intrinsics, so a
worker builds it once per camera (Nymeria: once per pair of glasses).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
from projectaria_tools.core.calibration import CameraModelType, get_linear_camera_calibration, rotate_camera_calib_cw90deg

from egotwin_bench.constants import VIDEO_SIZE

DEFAULT_FOCAL_PX: float = 240.0
"""Pinhole focal length of the VIDEO_SIZE x VIDEO_SIZE upright view (90° field of view)."""
CROSS_CHECK_STRIDE: int = 97
"""Every this-many-th output pixel is also projected with `calibration.project`."""
CROSS_CHECK_TOLERANCE_PX: float = 1e-6

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinholeView:
    size: int = VIDEO_SIZE
    focal_px: float = DEFAULT_FOCAL_PX


@dataclass(frozen=True)
class RemapTable:
    map_x: np.ndarray
    """(size, size) float32 raw-image x of each output pixel (cv2.remap convention)."""
    map_y: np.ndarray
    K: np.ndarray
    """(3, 3) pinhole intrinsics of the output."""
    T_device_camera: np.ndarray
    """(4, 4) the upright output camera in the Aria device frame (OpenCV axes)."""
    valid_fraction: float
    """Share of output pixels that see inside the fisheye's valid area."""


def _linear_upright(calibration, view: PinholeView):
    linear = get_linear_camera_calibration(
        view.size, view.size, view.focal_px, calibration.get_label(), calibration.get_transform_device_camera()
    )
    return rotate_camera_calib_cw90deg(linear)


def _raw_from_upright(calibration, upright) -> np.ndarray:
    """(3, 3) rotation of the upright pinhole camera in the raw camera frame."""
    T_dev_up = upright.get_transform_device_camera().to_matrix()
    T_dev_raw = calibration.get_transform_device_camera().to_matrix()
    return T_dev_raw[:3, :3].T @ T_dev_up[:3, :3]


def calibration_key(calibration, view: PinholeView) -> str:
    """Content hash of what the remap table depends on: the raw camera's intrinsics, the output
    view and the raw -> upright rotation (the same for every ``T_device_camera``), so sequences
    recorded with one camera share a table even when their extrinsics differ."""
    h = hashlib.sha256()
    h.update(str(calibration.get_model_name()).encode())
    h.update(np.asarray(calibration.get_projection_params(), dtype=np.float64).tobytes())
    h.update(np.asarray(calibration.get_image_size(), dtype=np.int64).tobytes())
    h.update(f"{calibration.get_valid_radius()}/{view.size}/{view.focal_px}".encode())
    h.update((np.round(_raw_from_upright(calibration, _linear_upright(calibration, view)), 9) + 0.0).tobytes())  # no -0.0
    return h.hexdigest()


def _with_extrinsics(table: RemapTable, calibration, view: PinholeView) -> RemapTable:
    T = _linear_upright(calibration, view).get_transform_device_camera().to_matrix()
    return RemapTable(table.map_x, table.map_y, table.K, T, table.valid_fraction)


def project_fisheye624(calibration, rays: np.ndarray) -> np.ndarray | None:
    """Vectorised FISHEYE624 projection of camera-frame rays (N, 3) -> raw pixels (N, 2), NaN
    where `calibration.project` returns None (outside the image, the valid radius around the
    principal point, or the maximum angle); None if the calibration is not FISHEYE624.

    Model (projectaria_tools' FisheyeRadTanThinPrism, params ``f, cx, cy, k0..k5, p0, p1,
    s0..s3``): ``th = atan2(r, z)``, ``th_d = th (1 + k0 th² + ... + k5 th¹²)``,
    ``(a, b) = th_d / r (x, y)``, then tangential and thin-prism terms, then ``f * . + c``.
    """
    params = np.asarray(calibration.get_projection_params(), dtype=np.float64)
    if calibration.get_model_name() != CameraModelType.FISHEYE624 or params.shape != (15,):
        return None
    f, cx, cy = params[:3]
    k, (p0, p1), s = params[3:9], params[9:11], params[11:15]
    x, y, z = np.asarray(rays, dtype=np.float64).T
    r = np.hypot(x, y)
    th = np.arctan2(r, z)
    th2 = th * th
    correction = 1.0 + th2 * (k[0] + th2 * (k[1] + th2 * (k[2] + th2 * (k[3] + th2 * (k[4] + th2 * k[5])))))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r > 0, th * correction / r, 1.0 / z)  # r -> 0: th / r -> 1 / z
    a, b = scale * x, scale * y
    r2 = a * a + b * b
    r4 = r2 * r2
    radial = 2.0 * (a * p0 + b * p1) + 1.0
    u = f * (a * radial + r2 * p0 + s[0] * r2 + s[1] * r4) + cx
    v = f * (b * radial + r2 * p1 + s[2] * r2 + s[3] * r4) + cy
    w, h = calibration.get_image_size()
    visible = (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5) & (th <= calibration.get_max_solid_angle())
    radius = calibration.get_valid_radius()
    if radius is not None:
        visible &= np.hypot(u - cx, v - cy) <= radius
    out = np.stack([u, v], axis=-1)
    out[~visible] = np.nan
    return out


def _project_each(calibration, rays: np.ndarray) -> np.ndarray:
    """`calibration.project` per ray -> (N, 2), NaN where it returns None (~2 µs per ray)."""
    out = np.full((rays.shape[0], 2), np.nan)
    for k, ray in enumerate(rays):
        p = calibration.project(ray)
        if p is not None:
            out[k] = p
    return out


def project_rays(calibration, rays: np.ndarray) -> np.ndarray:
    """Raw pixels (N, 2) of camera-frame rays (N, 3), NaN where not visible: vectorised when
    `project_fisheye624` agrees with `calibration.project` on a sample, else ray by ray."""
    fast = project_fisheye624(calibration, rays)
    if fast is not None:
        sample = np.arange(0, rays.shape[0], CROSS_CHECK_STRIDE)
        exact = _project_each(calibration, rays[sample])
        same_visibility = np.array_equal(np.isnan(exact[:, 0]), np.isnan(fast[sample, 0]))
        if same_visibility and np.nan_to_num(np.abs(exact - fast[sample])).max(initial=0.0) <= CROSS_CHECK_TOLERANCE_PX:
            return fast
        _log.warning("vectorised FISHEYE624 projection disagrees with projectaria_tools; projecting per pixel")
    return _project_each(calibration, rays)


def build_remap_table(calibration, view: PinholeView = PinholeView()) -> RemapTable:
    """Per-pixel table from the upright pinhole view to the raw fisheye image (`project_rays`:
    ~20 ms vectorised, 0.5-2 s per pixel)."""
    upright = _linear_upright(calibration, view)
    fx, fy = upright.get_focal_lengths()
    cx, cy = upright.get_principal_point()
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    R_raw_up = _raw_from_upright(calibration, upright)
    u, v = np.meshgrid(np.arange(view.size, dtype=np.float64), np.arange(view.size, dtype=np.float64))
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1).reshape(-1, 3) @ R_raw_up.T
    w, h = calibration.get_image_size()
    out = np.nan_to_num(project_rays(calibration, rays), nan=-1.0)
    inside = (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 0] <= w - 1) & (out[:, 1] <= h - 1)
    out[~inside] = -1.0
    grid = out.reshape(view.size, view.size, 2).astype(np.float32)
    T_dev_up = upright.get_transform_device_camera().to_matrix()
    return RemapTable(grid[..., 0].copy(), grid[..., 1].copy(), K, T_dev_up, float(inside.mean()))


_CACHE: "OrderedDict[str, RemapTable]" = OrderedDict()
_CACHE_SIZE = 8


def remap_table(calibration, view: PinholeView = PinholeView()) -> RemapTable:
    """`build_remap_table`, with the maps memoised per `calibration_key` (a small per-process LRU);
    ``T_device_camera`` always comes from `calibration` itself."""
    key = calibration_key(calibration, view)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _with_extrinsics(_CACHE[key], calibration, view)
    table = build_remap_table(calibration, view)
    _CACHE[key] = table
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return table


def undistort(raw: np.ndarray, table: RemapTable) -> np.ndarray:
    """(H, W, 3) uint8 raw fisheye frame -> (size, size, 3) uint8 upright pinhole frame."""
    return cv2.remap(raw, table.map_x, table.map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
