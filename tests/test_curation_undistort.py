"""Undistortion: the cached remap table against projectaria_tools' own projection, and a
rendered pattern warped from a fisheye image to the pinhole view."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from egotwin_bench.curation.undistort import PinholeView, build_remap_table, remap_table, undistort

RAW = 352  # a quarter of Aria's 1408 keeps the per-pixel loops short


@pytest.fixture(scope="module")
def calibration():
    from projectaria_tools.core.calibration import CameraCalibration, CameraModelType
    from projectaria_tools.core.sophus import SE3

    s = RAW / 1408
    params = np.array([610.9 * s, 715.1 * s, 716.7 * s, 0.406, -0.489, 0.202, 1.040, -1.690, 0.680,
                       0.00049, -0.00011, -0.00086, 0.00018, 0.00051, -0.00015])
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [5, -80, 3], degrees=True).as_matrix()
    T[:3, 3] = [0.05, 0.01, 0.0]
    return CameraCalibration("camera-rgb", CameraModelType.FISHEYE624, params, SE3.from_matrix(T),
                             RAW, RAW, 0.5 * RAW, 1.4, "test")


def _with_extrinsics_of(calibration, T_device_camera: np.ndarray):
    from projectaria_tools.core.calibration import CameraCalibration
    from projectaria_tools.core.sophus import SE3

    return CameraCalibration(calibration.get_label(), calibration.get_model_name(), calibration.get_projection_params(),
                             SE3.from_matrix(T_device_camera), RAW, RAW, 0.5 * RAW, 1.4, "test")


def test_table_matches_fisheye_projection(calibration):
    view = PinholeView(size=480, focal_px=240.0)
    table = remap_table(calibration, view)
    assert remap_table(calibration, view).map_x is table.map_x  # cached per camera intrinsics
    moved = _with_extrinsics_of(calibration, np.diag([1.0, -1.0, -1.0, 1.0]) @ calibration.get_transform_device_camera().to_matrix())
    other = remap_table(moved, view)
    assert other.map_x is table.map_x  # same intrinsics, other extrinsics: same maps, own pose
    np.testing.assert_allclose(other.T_device_camera, np.diag([1.0, -1.0, -1.0, 1.0]) @ table.T_device_camera, atol=1e-12)
    assert table.valid_fraction == 1.0
    np.testing.assert_allclose(table.K, [[240, 0, 239.5], [0, 240, 239.5], [0, 0, 1]])
    R_raw_up = calibration.get_transform_device_camera().to_matrix()[:3, :3].T @ table.T_device_camera[:3, :3]
    rng = np.random.default_rng(0)
    for _ in range(50):
        u, v = rng.integers(0, 480, 2)
        ray = np.array([(u - 239.5) / 240, (v - 239.5) / 240, 1.0])
        expect = calibration.project(R_raw_up @ ray)
        np.testing.assert_allclose([table.map_x[v, u], table.map_y[v, u]], expect, atol=1e-3)


def _pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth colour pattern of the normalised pinhole coordinates x = X/Z, y = Y/Z."""
    return np.stack([128 + 100 * np.sin(2 * np.pi * x / 0.25), 128 + 100 * np.sin(2 * np.pi * y / 0.25),
                     128 + 60 * np.cos(2 * np.pi * (x + y) / 0.4)], axis=-1)


def test_undistorted_pattern_lands_within_a_pixel(calibration):
    view = PinholeView(size=480, focal_px=240.0)
    table = build_remap_table(calibration, view)
    R_up_raw = (calibration.get_transform_device_camera().to_matrix()[:3, :3].T @ table.T_device_camera[:3, :3]).T
    raw = np.zeros((RAW, RAW, 3))
    for v in range(RAW):
        for u in range(RAW):
            ray = calibration.unproject_no_checks(np.array([u, v], dtype=np.float64))
            if ray is None:
                continue
            d = R_up_raw @ ray
            if d[2] > 0.2:
                raw[v, u] = _pattern(d[0] / d[2], d[1] / d[2])
    out = undistort(raw.clip(0, 255).astype(np.uint8), table).astype(np.float64)
    u, v = np.meshgrid(np.arange(480.0), np.arange(480.0))

    def err(shift: float) -> float:
        expect = _pattern((u + shift - 239.5) / 240, (v - 239.5) / 240)
        return float(np.abs(out - expect)[20:-20, 20:-20].mean())

    # The upright frame is also upright: image x goes with +X of the pattern, y with +Y.
    assert err(0.0) < 3.0
    assert err(1.0) > err(0.0) + 2.0 and err(-1.0) > err(0.0) + 2.0


def test_undistorted_render_matches_a_pinhole_render_of_the_same_scene():
    """A synthetic room rendered through the Aria fisheye and undistorted equals the same room
    rendered directly through the stored pinhole camera, to a small fraction of a pixel."""
    import cv2

    from egotwin_bench.curation.undistort import _linear_upright
    from egotwin_bench.geometry import make_transform
    from egotwin_bench.synthetic.camera import aria_rgb_calibration, build_ray_table
    from egotwin_bench.synthetic.render import Renderer
    from egotwin_bench.synthetic.scene import make_scene

    scene = make_scene(0, 0)
    fisheye = aria_rgb_calibration(704, np.eye(4))
    view = PinholeView()
    table = build_remap_table(fisheye, view)
    # Upright camera (x right, y down, z forward) 1.6 m above the walkway centre, looking along yaw 40°.
    R_world_up = Rotation.from_euler("z", 40, degrees=True).as_matrix() @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]])
    centre = (scene.walk_lo + scene.walk_hi) / 2
    T_world_up = make_transform(R_world_up, np.array([centre[0], centre[1], 1.6]))
    raw, _ = Renderer(scene, build_ray_table(fisheye)).render(T_world_up @ np.linalg.inv(table.T_device_camera))
    direct, _ = Renderer(scene, build_ray_table(_linear_upright(fisheye, view))).render(T_world_up)
    out = undistort(raw, table)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[20:-20, 20:-20].astype(np.float64) for im in (out, direct)]
    (dx, dy), response = cv2.phaseCorrelate(gray[0], gray[1])
    assert response > 0.5 and abs(dx) < 0.1 and abs(dy) < 0.1, (dx, dy, response)
    assert np.abs(out.astype(float) - direct)[20:-20, 20:-20].mean() < 3.0


def test_vectorised_projection_equals_projectaria_and_falls_back(calibration, monkeypatch):
    """`project_fisheye624` agrees with `calibration.project` (pixels and visibility), so the
    table is the per-pixel one; a disagreeing fast path is detected and not used."""
    from egotwin_bench.curation import undistort as U

    rng = np.random.default_rng(0)
    rays = rng.normal(size=(4000, 3))
    rays[:1000, 2] = np.abs(rays[:1000, 2])
    fast, exact = U.project_fisheye624(calibration, rays), U._project_each(calibration, rays)
    np.testing.assert_array_equal(np.isnan(fast[:, 0]), np.isnan(exact[:, 0]))
    assert 0.2 < np.isfinite(fast[:, 0]).mean() < 0.8  # both visible and invisible rays were tried
    np.testing.assert_allclose(fast, exact, atol=1e-7)
    view = PinholeView(size=64, focal_px=32.0)
    vectorised = U.build_remap_table(calibration, view)
    monkeypatch.setattr(U, "project_fisheye624", lambda calib, r: None)
    per_pixel = U.build_remap_table(calibration, view)
    np.testing.assert_array_equal(vectorised.map_x, per_pixel.map_x)
    np.testing.assert_array_equal(vectorised.map_y, per_pixel.map_y)
    monkeypatch.setattr(U, "project_fisheye624", lambda calib, r: U._project_each(calib, r) + 0.01)
    np.testing.assert_array_equal(U.build_remap_table(calibration, view).map_x, per_pixel.map_x)
