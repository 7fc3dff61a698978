"""Curated clips of a synthetic set vs its ground truth: per-clip camera and motion errors.

Both sides are brought into the sequence's MPS world (the one world without drift): the
ground truth through ``synthetic.T_mpsworld_xsensworld``, a clip through the inverse of its
sequence's ``T_world_mps`` (the curation report's alignment record). The true motion of a
``--realism`` set is the written Xsens motion with its recorded error removed
(``synthetic_gt/realism.npz``) on the nominal 240 Hz clock, resampled like the curation does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egotwin_bench.constants import MOTION_FPS, MOTION_FRAMES, VIDEO_FPS, VIDEO_FRAMES, XSENS_FPS
from egotwin_bench.data import CuratedDataset
from egotwin_bench.geometry import invert_transform, quat_wxyz_to_matrix
from egotwin_bench.motion.resampling import frame_times_ns, resample
from egotwin_bench.skeleton import NUM_SEGMENTS
from egotwin_bench.synthetic import realism as RL
from egotwin_bench.synthetic.writer import GT_FRAMES, GT_SEQUENCE


@dataclass(frozen=True)
class ClipError:
    clip_id: str
    t0_timecode_ns: int
    camera_m: float
    """Largest camera position error over the 41 frames, metres."""
    camera_deg: float
    """Largest camera rotation error, degrees."""
    motion_m: float
    """Largest segment position error over the 81 frames and 23 segments, metres."""
    motion_deg: float
    """Largest segment rotation error, degrees."""
    residual_m: float
    residual_deg: float


def _angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    c = (np.trace(np.swapaxes(Ra, -1, -2) @ Rb, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


class SequenceTruth:
    """Ground truth of one synthetic sequence folder, in its MPS world."""

    def __init__(self, seq_dir: str | Path):
        seq_dir = Path(seq_dir)
        self.gt = json.loads((seq_dir / GT_SEQUENCE).read_text())
        self.frames = dict(np.load(seq_dir / GT_FRAMES))
        self.T_mps_xsens = np.asarray(self.gt["T_mpsworld_xsensworld"])
        with np.load(seq_dir / "body" / "xdata.npz") as x:
            n = x["timestamps_us"].shape[0]
            p = x["segment_tXYZ"].reshape(n, NUM_SEGMENTS, 3).astype(np.float64)
            R = quat_wxyz_to_matrix(x["segment_qWXYZ"].reshape(n, NUM_SEGMENTS, 4).astype(np.float64))
        realism = seq_dir / RL.GT_FILE
        if realism.is_file():
            with np.load(realism) as e:
                yaw, trans = e["xsens_error_yaw"], e["xsens_error_trans"]
            c, s = np.cos(-yaw), np.sin(-yaw)
            Rz = np.zeros((n, 3, 3))
            Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
            p = (Rz[:, None] @ (p - trans[:, None])[..., None])[..., 0]
            R = Rz[:, None] @ R
        self.positions, self.rotations = p, R
        self.timestamps_ns = int(self.gt["timecode_start_ns"]) + np.round(np.arange(n) * 1e9 / XSENS_FPS).astype(np.int64)

    def motion(self, t0_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """True (81, 23, 3) positions and (81, 23, 3, 3) rotations at the clip's motion frames (MPS world)."""
        p, R = resample(self.positions, self.rotations, self.timestamps_ns, MOTION_FPS, t0_ns, MOTION_FRAMES)
        T = self.T_mps_xsens
        return p @ T[:3, :3].T + T[:3, 3], T[:3, :3] @ R

    def cameras(self, t0_ns: int) -> np.ndarray:
        """True (41, 4, 4) upright camera poses of the RGB frames nearest the clip's video grid (MPS world)."""
        tc = self.frames["frame_timecode_ns"]
        grid = frame_times_ns(t0_ns, VIDEO_FPS, VIDEO_FRAMES)
        j = np.clip(np.searchsorted(tc, grid), 1, tc.size - 1)
        idx = np.where(np.abs(tc[j - 1] - grid) <= np.abs(tc[j] - grid), j - 1, j)
        return self.T_mps_xsens @ self.frames["T_world_camera_upright"][idx]


def clip_errors(dataset: str | Path, synthetic_root: str | Path) -> list[ClipError]:
    """Errors of every clip of a curated dataset built from `synthetic_root` (see module doc)."""
    dataset, synthetic_root = Path(dataset), Path(synthetic_root)
    data = CuratedDataset(dataset)
    truths: dict[str, SequenceTruth] = {}
    worlds: dict[str, np.ndarray] = {}
    out = []
    for cid in data.clip_ids():
        row = data.row(cid)
        sid = row["sequence_id"]
        if sid not in truths:
            truths[sid] = SequenceTruth(synthetic_root / sid)
            report = json.loads((dataset / "report" / f"{sid}.json").read_text())
            worlds[sid] = invert_transform(np.asarray(report["alignment"]["T_world_mps"]))
        truth, T = truths[sid], worlds[sid]
        a = data.arrays(cid)
        t0 = int(row["t0_timecode_ns"])
        cam = T @ np.asarray(a["camera_poses"], dtype=np.float64)
        cam_gt = truth.cameras(t0)
        p = np.asarray(a["motion_positions"], dtype=np.float64) @ T[:3, :3].T + T[:3, 3]
        R = T[:3, :3] @ np.asarray(a["motion_rotations"], dtype=np.float64)
        p_gt, R_gt = truth.motion(t0)
        out.append(ClipError(
            clip_id=cid, t0_timecode_ns=t0,
            camera_m=float(np.linalg.norm(cam[:, :3, 3] - cam_gt[:, :3, 3], axis=-1).max()),
            camera_deg=float(_angle_deg(cam[:, :3, :3], cam_gt[:, :3, :3]).max()),
            motion_m=float(np.linalg.norm(p - p_gt, axis=-1).max()),
            motion_deg=float(_angle_deg(R, R_gt).max()),
            residual_m=float(row["alignment_residual_m"]), residual_deg=float(row["alignment_residual_deg"]),
        ))
    return out
