"""Xsens body motion (`body/xdata.npz`) with Nymeria's two known repairs.

The file holds ``segment_tXYZ`` (F, 69) metres, ``segment_qWXYZ`` (F, 92) world rotations as
w,x,y,z quaternions, ``timestamps_us`` (F,) in the Aria TIME_CODE domain, and scalars (0-d or
(1,) arrays) ``frameRate`` (240; older exports and our first synthetic writer: ``framerate``)
and ``frameCount`` (F). Without a frame rate 240 Hz is assumed and the assumption is recorded
in `XsensMotion.notes` (and logged); a ``frameCount`` that disagrees with F is noted too.

Repairs (as the public Nymeria tools do in `BodyDataProvider`):

* **Irregular timestamps**: every frame step that differs from the nominal 1 / frame rate by
  more than 1 ms is replaced by the nominal step; if the repaired clock then ends more than
  10 ms from the recorded one *at the last sample*, the sequence is rejected (`XsensError`) —
  the official rule (`BodyDataProvider.__correct_timestamps` judges ``t_diff[-1]``): a
  single-sample spike (both its steps patched) leaves the end unchanged and is repaired however
  large it is, while a clock that jumps and stays shifted is not.
* **Zero-norm quaternions** (norm < 0.1): the segment carries its previous frame's rotation
  (identity on frame 0).

Non-finite values (NaN / inf positions or quaternions) are *kept* (after the quaternion repair,
which leaves them alone): the sequence stays usable and the curation drops only the clips whose
motion window reads such frames (`XsensMotion.nonfinite_between`, drop reason "nan"). Their
count is in `notes`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from egotwin_bench.constants import XSENS_FPS
from egotwin_bench.geometry import quat_wxyz_to_matrix
from egotwin_bench.skeleton import NUM_SEGMENTS

DT_TOLERANCE_US: float = 1000.0
"""A frame step further than this from the nominal 1 / frame rate is replaced by the nominal step."""
MAX_CLOCK_CORRECTION_US: float = 10_000.0
"""Reject the sequence when the repaired clock ends more than this from the recorded one."""
MIN_QUATERNION_NORM: float = 0.1
FRAME_RATE_KEYS: tuple[str, ...] = ("frameRate", "framerate")
"""Keys of the frame rate in `xdata.npz`, in the order tried (public Nymeria first)."""
FRAME_COUNT_KEY: str = "frameCount"

_log = logging.getLogger(__name__)


class XsensError(ValueError):
    """The Xsens file is unusable (missing keys, bad shapes, timestamps beyond repair)."""


class QuaternionRotations:
    """Read-only (F, 23, 3, 3) float32 rotation matrices held as (F, 23, 4) w,x,y,z quaternions:
    indexing converts only the frames asked for (a 60 min sequence keeps 0.31 GB of quaternions
    instead of 0.71 GB of float32 or 1.4 GB of float64 matrices). ``np.asarray`` converts all."""

    def __init__(self, quaternions: np.ndarray):
        self.quaternions = quaternions
        self.shape = (*quaternions.shape[:-1], 3, 3)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        q = self.quaternions[key if isinstance(key, tuple) else (key,)]
        return np.asarray(quat_wxyz_to_matrix(q), dtype=np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = _rotations(self.quaternions)
        return out if dtype is None else out.astype(dtype)


@dataclass(frozen=True)
class XsensMotion:
    """Xsens motion of one sequence in the Xsens world (Z up, metres)."""

    positions: np.ndarray
    """(F, 23, 3) segment origins, metres, float32 (the file's precision; 0.24 GB for 60 min)."""
    rotations: np.ndarray | QuaternionRotations
    """(F, 23, 3, 3) segment-to-world rotations (`load_xsens`: a `QuaternionRotations` of the
    file's float32 quaternions; index it, e.g. ``rotations[a:b]``, to get matrices)."""
    timestamps_ns: np.ndarray
    """(F,) int64, TIME_CODE nanoseconds (repaired)."""
    repairs: list[str] = field(default_factory=list)
    """Human-readable notes of what was repaired (empty if nothing)."""
    notes: list[str] = field(default_factory=list)
    """Remarks that are not repairs: an assumed frame rate, a disagreeing frameCount, frames
    with non-finite values (kept; see the module docstring)."""

    @property
    def num_frames(self) -> int:
        return int(self.timestamps_ns.shape[0])

    @cached_property
    def _nonfinite_before(self) -> np.ndarray:
        """(F + 1,) int64: number of frames with a NaN/inf value among frames [0, i)."""
        bad = np.zeros(self.num_frames, dtype=bool)
        # A repaired quaternion (norm >= MIN_QUATERNION_NORM, or non-finite) gives a finite matrix
        # exactly when it is finite itself: checked on the quaternions, nothing is converted.
        rot = self.rotations.quaternions if isinstance(self.rotations, QuaternionRotations) else self.rotations
        for a in range(0, self.num_frames, CHUNK_FRAMES):  # chunks: no frame-sized boolean temporaries
            b = slice(a, a + CHUNK_FRAMES)
            bad[b] = ~(np.isfinite(self.positions[b]).all(axis=(1, 2)) & np.isfinite(rot[b]).reshape(len(rot[b]), -1).all(axis=1))
        return np.concatenate([[0], np.cumsum(bad)])

    def window(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, rotation matrices and timestamps of the frames an interpolation over
        [t0, t1] (TIME_CODE ns) reads (one frame beyond each end): small arrays for `resample`."""
        lo = max(int(np.searchsorted(self.timestamps_ns, t0_ns, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(self.timestamps_ns, t1_ns, side="left")), self.num_frames - 1) + 1
        return (np.asarray(self.positions[lo:hi], dtype=np.float64), np.asarray(self.rotations[lo:hi], dtype=np.float64),
                self.timestamps_ns[lo:hi])

    def nonfinite_between(self, t0_ns: int, t1_ns: int) -> int:
        """Number of NaN/inf frames among those an interpolation over [t0, t1] (TIME_CODE ns)
        reads: every frame inside, plus the frames just before t0 and just after t1."""
        lo = max(int(np.searchsorted(self.timestamps_ns, t0_ns, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(self.timestamps_ns, t1_ns, side="left")), self.num_frames - 1)
        return int(self._nonfinite_before[hi + 1] - self._nonfinite_before[lo]) if hi >= lo else 0


def repair_timestamps(timestamps_us: np.ndarray, fps: float = XSENS_FPS) -> tuple[np.ndarray, int, float]:
    """Patch irregular steps to the nominal cadence (rule in the module docstring).

    Returns (repaired timestamps in µs as float64, number of patched steps, largest |correction|
    of any sample in µs, e.g. a spike's size). Raises `XsensError` when the correction at the last
    sample exceeds `MAX_CLOCK_CORRECTION_US`.
    """
    t = np.asarray(timestamps_us, dtype=np.float64)
    nominal = 1e6 / fps
    dt = np.diff(t)
    bad = np.abs(dt - nominal) > DT_TOLERANCE_US
    if not bad.any():
        return t, 0, 0.0
    dt = np.where(bad, nominal, dt)
    fixed = t[0] + np.concatenate([[0.0], np.cumsum(dt)])
    end = float(abs(fixed[-1] - t[-1]))
    if end > MAX_CLOCK_CORRECTION_US:
        raise XsensError(
            f"irregular Xsens timestamps: {int(bad.sum())} bad steps; the repaired clock ends "
            f"{end / 1000:.1f} ms from the recorded one (> {MAX_CLOCK_CORRECTION_US / 1000:.0f} ms: the clock "
            "jumped and stayed shifted, not a spike)"
        )
    return fixed, int(bad.sum()), float(np.max(np.abs(fixed - t)))


def repair_quaternions(q: np.ndarray, copy: bool = True) -> tuple[np.ndarray, int]:
    """(F, 23, 4) w,x,y,z -> float32 array (a copy unless `copy` is False and q is float32) where
    near-zero quaternions carry the previous frame's value."""
    q = np.array(q, dtype=np.float32, copy=copy or None)
    invalid = np.einsum("...k,...k->...", q, q) < MIN_QUATERNION_NORM**2  # no (F, 23, 4) temporary
    count = int(invalid.sum())
    if count:
        q[0][invalid[0]] = (1.0, 0.0, 0.0, 0.0)
        for f in np.flatnonzero(invalid[1:].any(axis=1)) + 1:
            q[f][invalid[f]] = q[f - 1][invalid[f]]
    return q, count


CHUNK_FRAMES: int = 1 << 16
"""Frames converted at a time (bounds the temporaries of a long sequence)."""


def _rotations(q: np.ndarray) -> np.ndarray:
    """(F, 23, 4) w,x,y,z -> (F, 23, 3, 3) float32 rotation matrices, in chunks of `CHUNK_FRAMES`."""
    out = np.empty((*q.shape[:2], 3, 3), dtype=np.float32)
    for a in range(0, q.shape[0], CHUNK_FRAMES):
        out[a : a + CHUNK_FRAMES] = quat_wxyz_to_matrix(q[a : a + CHUNK_FRAMES])
    return out


def _scalar(data, key: str, path: Path) -> float:
    """A 0-d or (1,) numeric array of the npz as a float."""
    value = np.asarray(data[key])
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise XsensError(f"{path}: '{key}' must be one number (0-d or (1,)), got {value.dtype} {value.shape}")
    return float(value.reshape(()))


def _frame_rate(data, path: Path, notes: list[str]) -> float:
    """Frame rate in Hz from `FRAME_RATE_KEYS`, else `XSENS_FPS` with a note and a log warning."""
    for key in FRAME_RATE_KEYS:
        if key in data.files:
            fps = _scalar(data, key, path)
            if not (np.isfinite(fps) and fps > 0):
                raise XsensError(f"{path}: '{key}' = {fps} is not a positive frame rate")
            return fps
    note = f"no {' / '.join(FRAME_RATE_KEYS)} in xdata.npz: assumed {XSENS_FPS} Hz"
    notes.append(note)
    _log.warning("%s: %s", path, note)
    return float(XSENS_FPS)


def load_xsens(path: str | Path) -> XsensMotion:
    """Read and repair `xdata.npz`; positions (F, 23, 3) m and rotations (F, 23, 3, 3), Z up
    (float32, the file's precision; rotations kept as quaternions, see `QuaternionRotations`)."""
    path = Path(path)
    notes: list[str] = []
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise XsensError(f"{path}: unreadable npz ({exc})") from exc
    with data:
        missing = [k for k in ("segment_tXYZ", "segment_qWXYZ", "timestamps_us") if k not in data.files]
        if missing:
            raise XsensError(f"{path}: missing arrays {missing}")
        t_xyz, q_wxyz, t_us = data["segment_tXYZ"], data["segment_qWXYZ"], data["timestamps_us"]
        fps = _frame_rate(data, path, notes)
        frame_count = _scalar(data, FRAME_COUNT_KEY, path) if FRAME_COUNT_KEY in data.files else None
    frames = t_us.shape[0]
    if t_xyz.shape != (frames, NUM_SEGMENTS * 3) or q_wxyz.shape != (frames, NUM_SEGMENTS * 4):
        raise XsensError(
            f"{path}: expected segment_tXYZ ({frames}, 69) and segment_qWXYZ ({frames}, 92), "
            f"got {t_xyz.shape} and {q_wxyz.shape}"
        )
    if frames < 2:
        raise XsensError(f"{path}: only {frames} frame(s)")
    if frame_count is not None and frame_count != frames:
        notes.append(f"frameCount {frame_count:g} disagrees with the {frames} frames stored; used the {frames}")
    if not np.all(np.isfinite(t_us)):
        raise XsensError(f"{path}: non-finite timestamps_us")
    repairs: list[str] = []
    t_fixed, n_steps, drift = repair_timestamps(t_us, fps)
    if n_steps:
        repairs.append(f"patched {n_steps} irregular Xsens timestamp steps (max correction {drift / 1000:.2f} ms)")
    q, n_quat = repair_quaternions(q_wxyz.reshape(frames, NUM_SEGMENTS, 4), copy=False)  # our own array
    if n_quat:
        repairs.append(f"replaced {n_quat} zero-norm Xsens quaternions by the previous frame's")
    motion = XsensMotion(
        positions=t_xyz.reshape(frames, NUM_SEGMENTS, 3).astype(np.float32, copy=False),
        rotations=QuaternionRotations(q),
        timestamps_ns=np.round(t_fixed * 1000.0).astype(np.int64),
        repairs=repairs,
        notes=notes,
    )
    bad = motion.nonfinite_between(int(motion.timestamps_ns[0]), int(motion.timestamps_ns[-1]))
    if bad:
        notes.append(f"{bad} of {frames} Xsens frames hold NaN/inf values (kept; clips touching them are dropped as 'nan')")
    return motion
