"""Aria VRS reader for the head camera-rgb stream (projectaria_tools `create_vrs_data_provider`).

TIME_CODE <-> device time uses the provider's own conversion
(`convert_from_device_time_to_timecode_ns`) at every RGB frame, stored as a `ClockMap`; a
recording without TIME_CODE for the stream (no time-sync stream in TIME_CODE mode) is refused,
as are frames whose size differs from the calibration's `get_image_size()` (checked on the
first frame when the stream is opened, and on every frame read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from projectaria_tools.core import data_provider
from projectaria_tools.core.sensor_data import TimeDomain

from egotwin_bench.nymeria.clock import ClockMap
from egotwin_bench.nymeria.rgb_stream import RGB_LABEL, RgbError, RgbStream


def open_vrs_rgb(path: str | Path) -> RgbStream:
    """Open ``recording_head/data/data.vrs``: calibration, device times, clock map, lazy frames
    ((H, W, 3) uint8 RGB, raw sensor orientation). Raises `RgbError` with the reason."""
    path = Path(path)
    provider = data_provider.create_vrs_data_provider(str(path))
    if provider is None:
        raise RgbError(f"{path}: projectaria_tools could not open the VRS file")
    stream_id = provider.get_stream_id_from_label(RGB_LABEL)
    if stream_id is None:
        raise RgbError(f"{path}: no '{RGB_LABEL}' stream")
    calibration = provider.get_device_calibration().get_camera_calib(RGB_LABEL)
    if calibration is None:
        raise RgbError(f"{path}: no calibration for '{RGB_LABEL}'")
    device_ns = np.asarray(provider.get_timestamps_ns(stream_id, TimeDomain.DEVICE_TIME), dtype=np.int64)
    if device_ns.size == 0:
        raise RgbError(f"{path}: '{RGB_LABEL}' has no frames")
    if not provider.supports_time_domain(stream_id, TimeDomain.TIME_CODE):
        raise RgbError(f"{path}: '{RGB_LABEL}' has no TIME_CODE timestamps (the VRS lacks a time-sync stream in "
                       "TIME_CODE mode), so its frames cannot be matched to the Xsens motion and narrations")
    try:
        timecode_ns = np.array(
            [provider.convert_from_device_time_to_timecode_ns(int(t)) for t in device_ns], dtype=np.int64
        )
    except Exception as exc:  # the provider raises a plain RuntimeError without time-code data
        raise RgbError(f"{path}: no TIME_CODE <-> device time mapping in the VRS ({exc})") from exc
    width, height = (int(v) for v in calibration.get_image_size())

    def frame(i: int) -> np.ndarray:
        image = provider.get_image_data_by_index(stream_id, i)[0]
        if not image.is_valid():
            raise RgbError(f"{path}: '{RGB_LABEL}' frame {i} holds no valid image")
        array = np.asarray(image.to_numpy_array(), dtype=np.uint8)
        if array.shape != (height, width, 3):
            raise RgbError(f"{path}: '{RGB_LABEL}' frame {i} is {array.shape}, but its calibration expects "
                           f"({height}, {width}, 3) RGB (get_image_size() = {width}x{height}); a calibration of "
                           "another resolution must be rescaled first")
        return array

    frame(0)  # a stream that disagrees with its calibration fails here, not mid-sequence

    def read(indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            yield int(i), frame(int(i))

    return RgbStream(calibration, device_ns, ClockMap.from_pairs(timecode_ns, device_ns), read, "vrs")
