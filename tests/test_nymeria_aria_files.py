"""The Nymeria readers on real Aria device files (projectaria_tools' own test data, Apache-2.0),
not on files this project wrote: ``../shared/data/aria/`` beside the repository (its README
names the sources), or the folder in ``$EGOTWIN_ARIA_DATA``.

* ``timecode_sequence.vrs``: 4 camera-rgb frames with a TIME_CODE time-sync stream;
* ``no_timecode_recording.vrs``: no TIME_CODE stream (the clear-error path);
* ``mps_sample/slam/``: a real MPS closed-loop trajectory and online calibration (camera-rgb
  at 2880 x 2880). The VRS files and the MPS sample come from different recordings.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

ARIA_ENV = "EGOTWIN_ARIA_DATA"
ARIA = Path(os.environ.get(ARIA_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aria")
TIMECODE_VRS = ARIA / "timecode_sequence.vrs"
NO_TIMECODE_VRS = ARIA / "no_timecode_recording.vrs"
MPS = ARIA / "mps_sample" / "slam"

pytestmark = pytest.mark.skipif(not TIMECODE_VRS.is_file(), reason=f"no real Aria files in {ARIA} (set ${ARIA_ENV})")


@pytest.fixture(scope="module")
def rgb():
    from egotwin_bench.nymeria.vrs import open_vrs_rgb

    return open_vrs_rgb(TIMECODE_VRS)


def test_vrs_rgb_stream_calibration_and_time_code(rgb):
    from projectaria_tools.core.calibration import CameraModelType
    from projectaria_tools.core.data_provider import create_vrs_data_provider
    from projectaria_tools.core.sensor_data import TimeDomain

    assert rgb.source == "vrs" and rgb.calibration.get_model_name() == CameraModelType.FISHEYE624
    assert tuple(rgb.calibration.get_image_size()) == (1408, 1408)
    assert len(rgb.device_times_ns) == 4 and np.all(np.diff(rgb.device_times_ns) > 0)
    np.testing.assert_allclose(np.diff(rgb.device_times_ns), 1e9 / 30, rtol=1e-3)  # 30 Hz
    provider = create_vrs_data_provider(str(TIMECODE_VRS))
    sid = provider.get_stream_id_from_label("camera-rgb")
    assert list(provider.get_timestamps_ns(sid, TimeDomain.DEVICE_TIME)) == rgb.device_times_ns.tolist()
    tc = rgb.clock.device_to_timecode(rgb.device_times_ns)
    want = [provider.convert_from_device_time_to_timecode_ns(int(t)) for t in rgb.device_times_ns]
    np.testing.assert_array_equal(tc, want)  # the provider's own conversion, frame by frame
    np.testing.assert_array_equal(rgb.clock.timecode_to_device(tc), rgb.device_times_ns)
    assert abs(int(tc[0]) - int(rgb.device_times_ns[0])) > 10**12  # the clocks really differ
    frames = dict(rgb.iter_frames([0, 3]))
    assert sorted(frames) == [0, 3] and frames[0].shape == (1408, 1408, 3) and frames[0].dtype == np.uint8
    assert 20 < frames[0].mean() < 200


def test_undistortion_matches_projectaria_distort_by_calibration(rgb):
    from projectaria_tools.core.calibration import distort_by_calibration, get_linear_camera_calibration

    from egotwin_bench.curation.undistort import PinholeView, remap_table, undistort

    view = PinholeView()
    (_, raw), = list(rgb.iter_frames([1]))
    ours = undistort(raw, remap_table(rgb.calibration, view))
    linear = get_linear_camera_calibration(view.size, view.size, view.focal_px, "camera-rgb",
                                           rgb.calibration.get_transform_device_camera())
    reference = np.rot90(distort_by_calibration(raw, linear, rgb.calibration), k=3)  # upright, as the clips
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    assert ours.shape == reference.shape == (480, 480, 3)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 2, (diff.mean(), np.percentile(diff, 99))


def test_vrs_without_time_code_is_refused_clearly():
    from egotwin_bench.nymeria.rgb import RgbError
    from egotwin_bench.nymeria.vrs import open_vrs_rgb

    with pytest.raises(RgbError, match="has no TIME_CODE timestamps.*cannot be matched to the Xsens motion"):
        open_vrs_rgb(NO_TIMECODE_VRS)


def test_mps_closed_loop_trajectory_reads_the_real_csv():
    from egotwin_bench.nymeria.mps import load_closed_loop_trajectory

    traj = load_closed_loop_trajectory(MPS / "closed_loop_trajectory.csv")
    assert len(traj) == 11517 and np.all(np.diff(traj.timestamps_ns) > 0)
    with (MPS / "closed_loop_trajectory.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for k in (0, 5000, len(rows) - 1):  # the columns, parsed by hand: device time, t, q (x, y, z, w)
        r = rows[k]
        j = int(np.searchsorted(traj.timestamps_ns, int(r["tracking_timestamp_us"]) * 1000))
        assert traj.timestamps_ns[j] == int(r["tracking_timestamp_us"]) * 1000
        q = [float(r[f"q{a}_world_device"]) for a in "xyzw"]
        np.testing.assert_allclose(traj.T_world_device[j, :3, :3], Rotation.from_quat(q).as_matrix(), atol=1e-6)
        np.testing.assert_allclose(traj.T_world_device[j, :3, 3], [float(r[f"t{a}_world_device"]) for a in "xyz"])
        assert traj.quality[j] == float(r["quality_score"])
    step = np.linalg.norm(np.diff(traj.T_world_device[:, :3, 3], axis=0), axis=-1)
    assert step.max() < 0.05  # ~1 kHz poses of a walking head: millimetres apart


def test_mps_online_calibration_is_rescaled_to_the_frames():
    from egotwin_bench.nymeria.mps import read_online_rgb_calibration

    full = read_online_rgb_calibration(MPS / "online_calibration.jsonl", (2880, 2880))
    assert tuple(full.get_image_size()) == (2880, 2880)  # what MPS stores
    fitted = read_online_rgb_calibration(MPS / "online_calibration.jsonl", (1408, 1408))
    assert tuple(fitted.get_image_size()) == (1408, 1408)
    s = 1408 / 2880
    np.testing.assert_allclose(fitted.get_projection_params()[0], full.get_projection_params()[0] * s)
    ray = np.array([0.1, -0.2, 1.0])
    np.testing.assert_allclose((full.project(ray) + 0.5) * s - 0.5, fitted.project(ray), atol=1e-6)
