"""Aria VRS reader for the head camera-rgb stream (projectaria_tools `create_vrs_data_provider`).

TIME_CODE <-> device time uses the provider's own conversion
(`convert_from_device_time_to_timecode_ns`) at every RGB frame, stored as a `ClockMap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from egotwin_bench.nymeria.clock import ClockMap
from egotwin_bench.nymeria.rgb import RGB_LABEL, RgbError, RgbStream


def open_vrs_rgb(path: str | Path) -> RgbStream:
    from projectaria_tools.core.data_provider import create_vrs_data_provider
    from projectaria_tools.core.sensor_data import TimeDomain

    path = Path(path)
    provider = create_vrs_data_provider(str(path))
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
    try:
        timecode_ns = np.array(
            [provider.convert_from_device_time_to_timecode_ns(int(t)) for t in device_ns], dtype=np.int64
        )
    except Exception as exc:  # the provider raises a plain RuntimeError without time-code data
        raise RgbError(f"{path}: no TIME_CODE <-> device time mapping in the VRS ({exc})") from exc

    def read(indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            image = provider.get_image_data_by_index(stream_id, int(i))[0]
            yield int(i), np.asarray(image.to_numpy_array(), dtype=np.uint8)

    return RgbStream(calibration, device_ns, ClockMap.from_pairs(timecode_ns, device_ns), read, "vrs")
