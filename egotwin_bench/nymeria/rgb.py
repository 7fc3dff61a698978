"""Opening the head camera's `RgbStream` of a sequence: the Aria VRS file (`nymeria.vrs`) when
present, else the exported recording (`nymeria.exported_recording`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egotwin_bench.nymeria import exported_recording as er
from egotwin_bench.nymeria import layout as L
from egotwin_bench.nymeria.clock import ClockMap
from egotwin_bench.nymeria.rgb_stream import RGB_LABEL, RgbError, RgbStream
from egotwin_bench.nymeria.vrs import open_vrs_rgb

__all__ = ["RGB_LABEL", "RgbError", "RgbStream", "open_exported_rgb", "open_rgb_stream"]


def open_rgb_stream(seq: L.SequenceLayout, prefer: str = "vrs") -> RgbStream:
    """Open the VRS file if present (and `prefer` == "vrs"), else the exported recording."""
    if seq.has_vrs and (prefer == "vrs" or not seq.has_exported_rgb):
        return open_vrs_rgb(seq.path(L.VRS))
    if seq.has_exported_rgb:
        return open_exported_rgb(seq.root)
    raise RgbError(f"{seq.root}: no {L.VRS} and no exported recording ({L.EXPORTED_RGB})")


def open_exported_rgb(sequence_root: Path) -> RgbStream:
    """Exported recording (`rgb.mp4` + `rgb_timestamps.csv` + `rgb_calibration.json`)."""
    rec = er.read_exported_recording(Path(sequence_root) / L.HEAD_DATA_DIR)
    clock = ClockMap.from_pairs(rec.timecode_ns, rec.device_time_ns)
    return RgbStream(
        calibration=rec.calibration,
        device_times_ns=np.asarray(rec.device_time_ns, dtype=np.int64),
        clock=clock,
        frame_reader=rec.iter_frames,
        source="exported",
    )
