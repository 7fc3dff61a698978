"""Aria MPS closed-loop trajectory of the head glasses, and the MPS online calibration.

The trajectory CSV (current MPS columns, ``tracking_timestamp_us, tx/ty/tz_world_device,
qx/qy/qz/qw_world_device, ..., quality_score``) is read column-wise with `pyarrow.csv` (only the
9 columns used): projectaria_tools' `read_closed_loop_trajectory` builds one Python object per
pose, 4 GiB and 99 s for a 60 min trajectory at 1 kHz (3.6 M poses; measured), against ~0.3 GB
here. A file without those columns (another MPS version, or not a trajectory) goes to
projectaria_tools' reader, whose own words end up in the error. Poses are kept as quaternions
and translations (`PoseArray`), converted to matrices for the rows indexed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from projectaria_tools.core.mps import read_closed_loop_trajectory, read_online_calibration
from scipy.spatial.transform import Rotation


class TrajectoryError(ValueError):
    """The MPS trajectory is missing or unusable."""


_TIME = "tracking_timestamp_us"
_TRANSLATION = ("tx_world_device", "ty_world_device", "tz_world_device")
_QUATERNION = ("qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device")
_QUALITY = "quality_score"


class PoseArray:
    """Read-only (N, 4, 4) float64 poses held as (N, 4) x,y,z,w unit quaternions and (N, 3)
    translations; indexing the first axis converts only those rows (``np.asarray``: all)."""

    def __init__(self, quat_xyzw: np.ndarray, translation: np.ndarray):
        self.quat_xyzw, self.translation = quat_xyzw, translation
        self.shape = (quat_xyzw.shape[0], 4, 4)
        self.ndim, self.dtype = 3, np.dtype(np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        q, t = self.quat_xyzw[rows], self.translation[rows]
        single = q.ndim == 1
        q, t = np.atleast_2d(q), np.atleast_2d(t)
        out = np.zeros((q.shape[0], 4, 4))
        out[:, :3, :3] = Rotation.from_quat(q).as_matrix()
        out[:, :3, 3] = t
        out[:, 3, 3] = 1.0
        out = out[0] if single else out
        return out[(slice(None),) * (0 if single else 1) + rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class Trajectory:
    """Device poses in the MPS world (gravity aligned, metres)."""

    timestamps_ns: np.ndarray
    """(N,) int64, Aria device time, strictly increasing."""
    T_world_device: np.ndarray | PoseArray
    """(N, 4, 4) float64, device frame -> MPS world (`load_closed_loop_trajectory`: a `PoseArray`)."""
    quality: np.ndarray
    """(N,) float64, MPS `quality_score` (1 = good); NaN where the file has none."""

    def __len__(self) -> int:
        return int(self.timestamps_ns.shape[0])


def load_closed_loop_trajectory(path: str | Path) -> Trajectory:
    """Read `closed_loop_trajectory.csv`, sorted by device time (duplicates dropped)."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no MPS closed-loop trajectory")
    columnar = _read_columns(path)
    if columnar is not None:
        t, q, p, quality = columnar
        if len(t) < 2:
            raise TrajectoryError(f"{path}: {len(t)} pose(s) readable; the file is empty or malformed")
        norm = np.sqrt(np.einsum("nk,nk->n", q, q))[:, None]
        if not (np.isfinite(q).all() and np.isfinite(p).all()) or (norm < 0.5).any():
            raise TrajectoryError(f"{path}: NaN or zero quaternions in poses")
        q /= norm
        if not np.all(np.diff(t) > 0):  # MPS writes sorted rows; copies only when it did not
            order = np.argsort(t, kind="stable")
            t, q, p, quality = t[order], q[order], p[order], quality[order]
            keep = np.concatenate([[True], np.diff(t) > 0])
            t, q, p, quality = t[keep], q[keep], p[keep], quality[keep]
        return Trajectory(t, PoseArray(q, p), quality)
    return _load_with_projectaria(path)


def _read_columns(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(t_ns, quat xyzw, translation, quality) of the current MPS columns, or None when the header
    lacks them."""
    with path.open("r", newline="") as fh:
        header = fh.readline().strip().split(",")
    needed = [_TIME, *_TRANSLATION, *_QUATERNION]
    if not set(needed) <= set(header):
        return None
    columns = needed + ([_QUALITY] if _QUALITY in header else [])
    types = {c: pa.float64() for c in columns} | {_TIME: pa.int64()}
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    try:  # streamed in 16 MB blocks: the peak is the result plus one block, not the whole file
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20, use_threads=False),
                                convert_options=pacsv.ConvertOptions(include_columns=columns, column_types=types))
        for batch in reader:
            for c in columns:  # copied out, so each Arrow block is freed once converted
                parts[c].append(np.array(batch.column(c).to_numpy(zero_copy_only=False)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise TrajectoryError(f"{path}: unreadable MPS trajectory ({exc})") from exc
    finally:
        # Arrow's allocator keeps freed blocks (0.4 GB after a 60 min, 1 kHz trajectory); give them back.
        pa.default_memory_pool().release_unused()

    def col(name: str) -> np.ndarray:
        return np.concatenate(parts.pop(name)) if parts[name] else np.zeros(0)

    t = col(_TIME).astype(np.int64) * 1000
    q = np.stack([col(c) for c in _QUATERNION], axis=-1)
    p = np.stack([col(c) for c in _TRANSLATION], axis=-1)
    quality = col(_QUALITY).astype(np.float64) if _QUALITY in columns else np.full(len(t), np.nan)
    return t, q, p, quality


def _load_with_projectaria(path: Path) -> Trajectory:
    """projectaria_tools' reader (other MPS versions); its log goes into the error."""
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
