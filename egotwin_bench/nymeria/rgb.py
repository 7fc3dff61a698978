"""The head camera's RGB stream of one sequence, from an Aria VRS file or an exported recording.

Both sources give the same `RgbStream`: the raw FISHEYE624 `camera-rgb` calibration (with its
``T_device_camera``), per-frame device timestamps, a TIME_CODE <-> device `ClockMap`, and raw
frames exactly as the sensor delivers them (not upright) decoded in increasing index order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from egotwin_bench.nymeria import layout as L
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


def open_rgb_stream(seq: L.SequenceLayout, prefer: str = "vrs") -> RgbStream:
    """Open the VRS file if present (and `prefer` == "vrs"), else the exported recording."""
    if seq.has_vrs and (prefer == "vrs" or not seq.has_exported_rgb):
        from egotwin_bench.nymeria.vrs import open_vrs_rgb

        return open_vrs_rgb(seq.path(L.VRS))
    if seq.has_exported_rgb:
        return open_exported_rgb(seq.root)
    raise RgbError(f"{seq.root}: no {L.VRS} and no exported recording ({L.EXPORTED_RGB})")


def open_exported_rgb(sequence_root: Path) -> RgbStream:
    """Exported recording (`rgb.mp4` + `rgb_timestamps.csv` + `rgb_calibration.json`)."""
    from egotwin_bench.nymeria import exported_recording as er

    rec = er.read_exported_recording(Path(sequence_root) / L.HEAD_DATA_DIR)
    clock = ClockMap.from_pairs(rec.timecode_ns, rec.device_time_ns)
    return RgbStream(
        calibration=rec.calibration,
        device_times_ns=np.asarray(rec.device_time_ns, dtype=np.int64),
        clock=clock,
        frame_reader=rec.iter_frames,
        source="exported",
    )
