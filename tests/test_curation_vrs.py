"""The VRS reader: its checks on a stand-in provider, and the whole path on a real Aria
recording (runs when EGOTWIN_TEST_VRS names a .vrs file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.nymeria.rgb import RgbError

VRS = os.environ.get("EGOTWIN_TEST_VRS")
needs_vrs = pytest.mark.skipif(
    not VRS, reason="set EGOTWIN_TEST_VRS=/path/to/recording_head/data/data.vrs (an Aria VRS file) to run"
)


class _Image:
    def __init__(self, array: np.ndarray | None):
        self.array = array

    def is_valid(self) -> bool:
        return self.array is not None

    def to_numpy_array(self) -> np.ndarray:
        return self.array


class _Provider:
    """The slice of projectaria_tools' VrsDataProvider that `open_vrs_rgb` uses."""

    def __init__(self, calibration, frame_shape: tuple[int, ...], time_code: bool = True, frames: int = 5):
        self.calibration, self.frame_shape, self.time_code, self.frames = calibration, frame_shape, time_code, frames

    def get_stream_id_from_label(self, label):
        return "214-1" if label == "camera-rgb" else None

    def get_device_calibration(self):
        return type("DeviceCalibration", (), {"get_camera_calib": lambda _, label: self.calibration})()

    def get_timestamps_ns(self, stream_id, domain):
        return [10**9 + 10**8 * i for i in range(self.frames)]

    def supports_time_domain(self, stream_id, domain):
        from projectaria_tools.core.sensor_data import TimeDomain

        return domain != TimeDomain.TIME_CODE or self.time_code

    def convert_from_device_time_to_timecode_ns(self, t):
        return t + 5 * 10**12

    def get_image_data_by_index(self, stream_id, i):
        return _Image(np.zeros(self.frame_shape, np.uint8) if i < self.frames else None), None


@pytest.fixture
def fake_vrs(monkeypatch, tmp_path):
    """Install a `_Provider` factory: call it with the provider's options, get a VRS path."""
    from projectaria_tools.core import data_provider
    from projectaria_tools.core.calibration import get_linear_camera_calibration
    from projectaria_tools.core.sophus import SE3

    calibration = get_linear_camera_calibration(64, 48, 30.0, "camera-rgb", SE3.from_matrix(np.eye(4)))

    def install(**options) -> Path:
        provider = _Provider(calibration, **options)
        monkeypatch.setattr(data_provider, "create_vrs_data_provider", lambda path: provider)
        return tmp_path / "data.vrs"

    return install


def test_vrs_reader_checks_time_code_and_image_size(fake_vrs):
    from egotwin_bench.nymeria.vrs import open_vrs_rgb

    rgb = open_vrs_rgb(fake_vrs(frame_shape=(48, 64, 3)))
    assert rgb.source == "vrs" and len(rgb.device_times_ns) == 5
    np.testing.assert_array_equal(rgb.clock.device_to_timecode(rgb.device_times_ns), rgb.device_times_ns + 5 * 10**12)
    assert [i for i, _ in rgb.iter_frames([0, 3])] == [0, 3]
    with pytest.raises(RgbError, match="no TIME_CODE timestamps"):
        open_vrs_rgb(fake_vrs(frame_shape=(48, 64, 3), time_code=False))
    with pytest.raises(RgbError, match=r"frame 0 is \(64, 64, 3\), but its calibration expects \(48, 64, 3\)"):
        open_vrs_rgb(fake_vrs(frame_shape=(64, 64, 3)))


@needs_vrs
def test_vrs_rgb_stream_undistorts_and_converts_clocks():
    from egotwin_bench.curation.undistort import remap_table, undistort
    from egotwin_bench.nymeria.vrs import open_vrs_rgb

    from projectaria_tools.core.data_provider import create_vrs_data_provider
    from projectaria_tools.core.sensor_data import TimeDomain

    path = Path(VRS)
    assert path.is_file(), f"EGOTWIN_TEST_VRS={VRS} is not a file"
    provider = create_vrs_data_provider(str(path))
    if not provider.supports_time_domain(provider.get_stream_id_from_label("camera-rgb"), TimeDomain.TIME_CODE):
        pytest.skip(f"EGOTWIN_TEST_VRS={VRS} has no TIME_CODE stream (a recording outside a Nymeria rig); "
                    "its clear error is tested in tests/test_nymeria_aria_files.py")
    rgb = open_vrs_rgb(path)
    assert rgb.source == "vrs"
    assert "624" in str(rgb.calibration.get_model_name()).replace(" ", "")
    assert np.all(np.diff(rgb.device_times_ns) > 0)
    tc = rgb.clock.device_to_timecode(rgb.device_times_ns[:10])
    np.testing.assert_array_equal(rgb.clock.timecode_to_device(tc), rgb.device_times_ns[:10])
    (i, raw), = list(rgb.iter_frames([len(rgb.device_times_ns) // 2]))
    w, h = rgb.calibration.get_image_size()
    assert raw.shape == (h, w, 3) and raw.dtype == np.uint8
    table = remap_table(rgb.calibration)
    out = undistort(raw, table)
    assert out.shape == (480, 480, 3) and table.valid_fraction > 0.99
    assert out.mean() > 1.0  # the view lies inside the fisheye image, not in its black border
