"""Aria MPS closed-loop trajectory of the head glasses, read with projectaria_tools."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class TrajectoryError(ValueError):
    """The MPS trajectory is missing or unusable."""


@dataclass(frozen=True)
class Trajectory:
    """Device poses in the MPS world (gravity aligned, metres)."""

    timestamps_ns: np.ndarray
    """(N,) int64, Aria device time, strictly increasing."""
    T_world_device: np.ndarray
    """(N, 4, 4) float64, device frame -> MPS world."""
    quality: np.ndarray
    """(N,) float64, MPS `quality_score` (1 = good); NaN where the file has none."""

    def __len__(self) -> int:
        return int(self.timestamps_ns.shape[0])


def load_closed_loop_trajectory(path: str | Path) -> Trajectory:
    """Read `closed_loop_trajectory.csv` (projectaria_tools' reader), sorted by device time."""
    from projectaria_tools.core.mps import read_closed_loop_trajectory

    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no MPS closed-loop trajectory")
    with _captured_output() as log:
        poses = read_closed_loop_trajectory(str(path))
    if len(poses) < 2:
        said = " ".join(log.text.split())
        raise TrajectoryError(f"{path}: {len(poses)} pose(s) readable; the file is empty or malformed"
                              + (f" (projectaria_tools: {said})" if said else ""))
    t = np.array([_micros(p) for p in poses], dtype=np.int64) * 1000
    T = np.stack([p.transform_world_device.to_matrix() for p in poses]).astype(np.float64)
    quality = np.array([float(p.quality_score) for p in poses], dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, T, quality = t[order], T[order], quality[order]
    keep = np.concatenate([[True], np.diff(t) > 0])
    if not np.all(np.isfinite(T)):
        raise TrajectoryError(f"{path}: NaN in poses")
    return Trajectory(t[keep], T[keep], quality[keep])


def _micros(pose) -> int:
    """`tracking_timestamp` is a datetime.timedelta in device time; exact integer microseconds."""
    td = pose.tracking_timestamp
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


class _Log:
    text: str = ""


@contextmanager
def _captured_output() -> Iterator[_Log]:
    """Capture what C++ code prints on file descriptors 1 and 2 (projectaria_tools' readers log
    a line per file there, and their parse errors) instead of letting it break progress bars."""
    log = _Log()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield log
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            log.text = tmp.read().decode(errors="replace")


def read_online_rgb_calibration(path: str | Path, image_size: tuple[int, int], device_time_ns: int | None = None):
    """The ``camera-rgb`` calibration of MPS ``online_calibration.jsonl``, fitted to frames of
    `image_size` (width, height).

    MPS stores camera-rgb at the sensor's full resolution (2880 x 2880) whatever the recording's
    frame size (Aria: 1408 x 1408); a calibration of another size is rescaled
    (`CameraCalibration.rescale`, same aspect ratio required) before use. Takes the record nearest
    `device_time_ns` (default: the middle record). Raises `TrajectoryError` when the file has no
    camera-rgb or the aspect ratios differ.
    """
    from projectaria_tools.core.mps import read_online_calibration

    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no MPS online calibration")
    with _captured_output():
        records = read_online_calibration(str(path))
    if not records:
        raise TrajectoryError(f"{path}: no online calibration records")
    times = np.array([_micros(r) for r in records], dtype=np.int64) * 1000
    k = len(records) // 2 if device_time_ns is None else int(np.argmin(np.abs(times - int(device_time_ns))))
    calib = records[k].get_camera_calib("camera-rgb")
    if calib is None:
        raise TrajectoryError(f"{path}: record {k} has no camera-rgb calibration")
    w, h = (int(v) for v in calib.get_image_size())
    width, height = int(image_size[0]), int(image_size[1])
    if (w, h) == (width, height):
        return calib
    if abs(width / w - height / h) > 1e-9:
        raise TrajectoryError(f"{path}: camera-rgb is {w}x{h}, frames are {width}x{height}: not a uniform rescale")
    return calib.rescale(np.array([width, height], dtype=np.int32), width / w)
