"""The VRS path on a real Aria recording: runs when EGOTWIN_TEST_VRS names a .vrs file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

VRS = os.environ.get("EGOTWIN_TEST_VRS")
pytestmark = pytest.mark.skipif(
    not VRS, reason="set EGOTWIN_TEST_VRS=/path/to/recording_head/data/data.vrs (an Aria VRS file) to run"
)


def test_vrs_rgb_stream_undistorts_and_converts_clocks():
    from egotwin_bench.curation.undistort import remap_table, undistort
    from egotwin_bench.nymeria.vrs import open_vrs_rgb

    path = Path(VRS)
    assert path.is_file(), f"EGOTWIN_TEST_VRS={VRS} is not a file"
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
