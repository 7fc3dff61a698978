"""The head camera's RGB stream of one sequence, from an Aria VRS file or an exported recording.

Both sources give the same `RgbStream`: the raw FISHEYE624 `camera-rgb` calibration (with its
``T_device_camera``), per-frame device timestamps, a TIME_CODE <-> device `ClockMap`, and raw
frames exactly as the sensor delivers them (not upright) decoded in increasing index order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from egotwin_bench.nymeria.clock import ClockMap

RGB_LABEL = "camera-rgb"


class RgbError(ValueError):
    """The RGB stream is missing or unreadable."""


@dataclass
class RgbStream:
    """Raw Aria RGB frames with their calibration and clocks."""

    calibration: object
    """projectaria_tools `CameraCalibration` (FISHEYE624) of camera-rgb."""
    device_times_ns: np.ndarray
    """(N,) int64 device time of each frame."""
    clock: ClockMap
    frame_reader: Callable[[Sequence[int]], Iterator[tuple[int, np.ndarray]]]
    """indices (sorted, unique) -> iterator of (index, (H, W, 3) uint8 raw RGB)."""
    source: str
    """"vrs" or "exported"."""

    def iter_frames(self, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the given frame indices (sorted, unique) in order."""
        idx = sorted(set(int(i) for i in indices))
        if idx and (idx[0] < 0 or idx[-1] >= len(self.device_times_ns)):
            raise RgbError(f"frame index out of range [0, {len(self.device_times_ns)})")
        return self.frame_reader(idx)
