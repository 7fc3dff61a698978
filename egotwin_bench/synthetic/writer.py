"""Put synthetic sequences on disk in the Nymeria layout (docs/data_format.md, docs/synthetic.md).

One sequence = one scene (location) + one subject + one activity script. All streams sample the
same continuous motion on the master clock of `body.MASTER_HZ` (t = seconds since the Xsens
start):

* Xsens ``body/xdata.npz`` at 240 Hz, ``timestamps_us`` in TIME_CODE: ``timecode_start_ns + t``.
* Device time = TIME_CODE + ``timecode_to_device_offset_ns`` (a constant per sequence, whole µs;
  in metadata.json, synthetic_gt/sequence.json and per frame in rgb_timestamps.csv).
* MPS ``closed_loop_trajectory.csv`` at `trajectory_hz` (default 1 kHz like MPS), device time,
  ``T_mpsworld_device = T_mpsworld_xsensworld @ T_world_head @ T_head_device``; the MPS world is
  the Xsens world turned about Z and shifted (gravity aligned, its own origin and yaw).
* RGB at `fps` (frame i at t = i / fps), rendered from ``T_world_head @ T_head_camera`` (raw,
  sensor-oriented camera), written as the exported recording.

Writes are atomic per sequence (a hidden temp folder renamed when complete) and resumable (a
finished sequence folder is skipped). Deterministic for a seed.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from scipy.spatial.transform import Rotation

from egotwin_bench.constants import HAND_ORDER, XSENS_FPS
from egotwin_bench.geometry import invert_transform, make_transform, matrix_to_quat_wxyz, rotation_about_z
from egotwin_bench.nymeria import layout as L
from egotwin_bench.nymeria.exported_recording import ExportedRecordingWriter
from egotwin_bench.skeleton import HANDS, HEAD, NUM_SEGMENTS
from egotwin_bench.synthetic import faults as F
from egotwin_bench.synthetic import realism as RL
from egotwin_bench.synthetic.body import MASTER_HZ, Subject, compute_channels, make_subject, pose_at
from egotwin_bench.synthetic.camera import T_RAW_UPRIGHT, GlassesRig, aria_rgb_calibration, make_rig, ray_table_for
from egotwin_bench.synthetic.narration import (
    ACTIVITY_COLUMN,
    ATOMIC_COLUMN,
    MOTION_COLUMNS,
    activity_summary,
    atomic_text,
    group_windows,
    motion_texts,
)
from egotwin_bench.synthetic.render import GLOVE_COLOURS, LABEL_BODY, LABEL_LEFT_GLOVE, LABEL_RIGHT_GLOVE, Outfit, Renderer
from egotwin_bench.synthetic.scene import Scene, make_scene
from egotwin_bench.synthetic.script import Activity, make_script

GT_DIR = "synthetic_gt"
GT_FRAMES = f"{GT_DIR}/frames.npz"
GT_SEQUENCE = f"{GT_DIR}/sequence.json"
MPS_COLUMNS: tuple[str, ...] = (
    "graph_uid", "tracking_timestamp_us", "utc_timestamp_ns",
    "tx_world_device", "ty_world_device", "tz_world_device",
    "qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device",
    "device_linear_velocity_x_device", "device_linear_velocity_y_device", "device_linear_velocity_z_device",
    "angular_velocity_x_device", "angular_velocity_y_device", "angular_velocity_z_device",
    "gravity_x_world", "gravity_y_world", "gravity_z_world", "quality_score",
    "geo_available", "tx_ecef_device", "ty_ecef_device", "tz_ecef_device",
    "qx_ecef_device", "qy_ecef_device", "qz_ecef_device", "qw_ecef_device",
)
"""The closed-loop trajectory columns of current MPS output (projectaria_tools
`read_closed_loop_trajectory`); no geo-localisation: ``geo_available`` 0, ECEF pose identity."""
_NO_GEO = ("0", "0", "0", "0", "0", "0", "0", "1")
GRAVITY_MPS = (0.0, 0.0, -9.81)
UTC_EPOCH_NS: int = 1_700_000_000 * 10**9
"""utc_timestamp_ns = this + device time (only to fill the column)."""
_SHIRTS = ((0.30, 0.35, 0.55), (0.55, 0.20, 0.20), (0.25, 0.25, 0.28), (0.75, 0.70, 0.55), (0.20, 0.40, 0.45))
_TROUSERS = ((0.20, 0.20, 0.25), (0.35, 0.30, 0.25), (0.15, 0.20, 0.35), (0.45, 0.42, 0.38))


@dataclass(frozen=True)
class SyntheticConfig:
    """Options of `make-synthetic` (units in the names)."""

    sequences: int = 4
    seconds: float = 30.0
    seed: int = 0
    resolution: int = 704
    """RGB image width = height, pixels (Aria: 1408)."""
    fps: int = 10
    """RGB frame rate; must divide `MASTER_HZ` (6000)."""
    trajectory_hz: int = 1000
    """MPS closed-loop rate; must divide 6000 and 1e6 (MPS itself: 1000)."""
    faults: tuple[str, ...] = ()
    crf: int = 18
    realism: bool = False
    """Add the nuisances of real captures (`synthetic.realism`): Xsens drift, unusable ends, MPS
    noise, timestamp spikes, released narration schema. The clean content stays the same."""
    drift_m: float | None = None
    """With `realism`: largest horizontal Xsens drift over each sequence, metres (default: drawn)."""
    drift_deg: float | None = None
    """With `realism`: largest Xsens heading drift over each sequence, degrees (default: drawn)."""

    def __post_init__(self) -> None:
        if self.sequences < 1:
            raise ValueError("sequences must be >= 1")
        if self.seconds < 6.0:
            raise ValueError("seconds must be >= 6 (a 5 s clip plus margins)")
        if MASTER_HZ % self.fps or self.fps <= 0:
            raise ValueError(f"fps must divide {MASTER_HZ} (e.g. 5, 8, 10, 20, 30), got {self.fps}")
        if self.trajectory_hz <= 0 or MASTER_HZ % self.trajectory_hz or 1_000_000 % self.trajectory_hz:
            raise ValueError(f"trajectory_hz must divide {MASTER_HZ} and 1e6 (e.g. 100, 200, 1000), got {self.trajectory_hz}")
        if self.resolution < 64 or self.resolution % 2:
            raise ValueError(f"resolution must be even and >= 64, got {self.resolution}")
        if not self.realism and (self.drift_m is not None or self.drift_deg is not None):
            raise ValueError("drift_m / drift_deg need realism (--realism)")
        if (self.drift_m or 0) < 0 or (self.drift_deg or 0) < 0:
            raise ValueError("drift_m and drift_deg must be >= 0")
        unknown = [f for f in self.faults if f not in F.FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; choose from {', '.join(F.FAULTS)}")


@dataclass(frozen=True)
class SequenceSpec:
    """Which subject, location and faults one sequence gets."""

    index: int
    sequence_id: str
    subject_index: int
    location_index: int
    faults: tuple[str, ...] = field(default=())


def assign_ids(sequences: int) -> list[tuple[int, int]]:
    """(subject, location) per sequence: every sequence its own subject; the first N-1 share
    ceil((N-1)/2) locations in turn, the last gets a location of its own, so the last sequence's
    subject and location appear nowhere else. 4 -> (0,0),(1,1),(2,0),(3,2)."""
    if sequences == 1:
        return [(0, 0)]
    shared = max(1, (sequences - 1 + 1) // 2)
    return [(i, i % shared) for i in range(sequences - 1)] + [(sequences - 1, shared)]


def sequence_specs(config: SyntheticConfig) -> list[SequenceSpec]:
    faults = F.assign_faults(config.faults, config.sequences)
    return [
        SequenceSpec(i, f"synth_s{config.seed}_{i:03d}", s, loc, faults.get(i, ()))
        for i, (s, loc) in enumerate(assign_ids(config.sequences))
    ]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(path: Path, header: list[str], rows: Iterable[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


POSE_CHUNK: int = 1 << 16
"""Master samples posed at a time (`_pose_in_chunks`): the forward kinematics of a whole 60 min
stream at once needs tens of GB."""


def _pose_in_chunks(subject: Subject, channels, idx: np.ndarray, segment: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`pose_at` over master samples `idx`, `POSE_CHUNK` at a time (row by row the same values):
    positions (n, 23, 3) and rotations (n, 23, 3, 3), or (n, 3) and (n, 3, 3) of one `segment`."""
    parts = [pose_at(subject, channels, idx[a : a + POSE_CHUNK]) for a in range(0, idx.size, POSE_CHUNK)]
    if segment is not None:
        parts = [(p[:, segment], r[:, segment]) for p, r in parts]
    return np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts])


def _angular_velocity_body(R: np.ndarray, hz: float) -> np.ndarray:
    """(N, 3) body-frame angular velocity (rad/s) of (N, 3, 3) rotations sampled at `hz`."""
    rel = np.swapaxes(R[:-1], -1, -2) @ R[1:]
    w = Rotation.from_matrix(rel).as_rotvec() * hz
    return np.concatenate([w, w[-1:]], axis=0)


def xdata_scalars(frame_count: int) -> dict[str, np.ndarray]:
    """The scalar entries of ``body/xdata.npz`` for `frame_count` frames at 240 Hz.

    Nymeria's own tools (nymeria_dataset ``XSensConstants``: ``k_frame_count = "frameCount"``,
    ``k_framerate = "frameRate"``; their loaders read ``data["segmentCount"][0]`` and users index
    ``frameRate[0]``) store them as int arrays of shape (1,). ``framerate`` (0-d, the name of
    DESIGN §3 and issue #4) is kept as an alias for readers that look it up first."""
    scalars = {"segmentCount": NUM_SEGMENTS, "frameCount": frame_count, "frameRate": XSENS_FPS}
    return {**{key: np.array([value], dtype=np.int64) for key, value in scalars.items()},
            "framerate": np.int64(XSENS_FPS)}


def hand_visibility(calibration, T_world_camera: np.ndarray, hand_positions: np.ndarray) -> np.ndarray:
    """(N, 2) bool: hand joint (left, right) in front of the raw camera and projecting inside
    the image's valid circle. `T_world_camera` (N, 4, 4); `hand_positions` (N, 2, 3) world."""
    T_cw = invert_transform(T_world_camera)
    p = np.einsum("nij,nkj->nki", T_cw[:, :3, :3], hand_positions) + T_cw[:, None, :3, 3]
    w, h = (int(v) for v in calibration.get_image_size())
    out = np.zeros(p.shape[:2], dtype=bool)
    for n in range(p.shape[0]):
        for k in range(p.shape[1]):
            if p[n, k, 2] <= 1e-3:
                continue
            uv = calibration.project(p[n, k])
            out[n, k] = uv is not None and 0 <= uv[0] < w and 0 <= uv[1] < h
    return out


@dataclass
class SequencePlan:
    """What one sequence shows, before any stream is sampled or rendered."""

    scene: Scene
    subject: Subject
    outfit: Outfit
    script: list[Activity]
    rig: GlassesRig
    rng: np.random.Generator
    """The sequence's generator, past the draws above (the writer continues with it)."""


def plan_sequence(spec: SequenceSpec, config: SyntheticConfig) -> SequencePlan:
    """Scene, subject, outfit, activity script and glasses of one sequence (deterministic for the seed)."""
    rng = np.random.default_rng([config.seed, 31337, spec.index])
    scene = make_scene(spec.location_index, config.seed)
    subject = make_subject(spec.subject_index, config.seed)
    outfit = Outfit(_SHIRTS[int(rng.integers(len(_SHIRTS)))], _TROUSERS[int(rng.integers(len(_TROUSERS)))])
    script = make_script(scene, float(config.seconds), rng)
    return SequencePlan(scene, subject, outfit, script, make_rig(rng), rng)


def write_sequence(out_root: Path, spec: SequenceSpec, config: SyntheticConfig,
                   on_frame: Callable[[], None] | None = None, rgb_from: Path | None = None) -> Path:
    """Generate and write one sequence folder (atomically); returns its path."""
    final = Path(out_root) / spec.sequence_id
    if final.is_dir():
        return final
    tmp = Path(out_root) / f".{spec.sequence_id}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _generate(tmp, spec, config, on_frame, rgb_from)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, final)
    return final


def _generate(root: Path, spec: SequenceSpec, config: SyntheticConfig, on_frame: Callable[[], None] | None,
              rgb_from: Path | None = None) -> None:
    plan = plan_sequence(spec, config)
    rng, scene, subject, outfit, script, rig = plan.rng, plan.scene, plan.subject, plan.outfit, plan.script, plan.rig
    seconds = float(config.seconds)
    channels = compute_channels(script, seconds)
    # Clocks: TIME_CODE of the Xsens start, and device = TIME_CODE + offset (whole microseconds).
    timecode_start_ns = int(rng.integers(3_600, 80_000)) * 10**9 + int(rng.integers(0, 10**6)) * 1000
    device_start_ns = int(rng.integers(20, 300)) * 10**9 + int(rng.integers(0, 10**6)) * 1000
    offset_ns = device_start_ns - timecode_start_ns
    yaw_m = float(rng.uniform(-np.pi, np.pi))
    T_mps_xsens = make_transform(rotation_about_z(np.array(yaw_m)), np.array([*rng.uniform(-4, 4, 2), rng.uniform(-1.8, -1.2)]))
    fault_log: dict[str, dict] = {}
    rr = RL.realism_rng(config.seed, spec.index) if config.realism else None
    rspec = RL.draw_spec(seconds, rr, config.drift_m, config.drift_deg) if rr is not None else None

    # --- Xsens at 240 Hz ---
    n_x = int(np.floor(seconds * XSENS_FPS + 1e-9)) + 1
    pos_x, rot_x = _pose_in_chunks(subject, channels, np.arange(n_x) * (MASTER_HZ // XSENS_FPS))
    t_us = np.round((timecode_start_ns + np.arange(n_x) * 1e9 / XSENS_FPS) / 1000).astype(np.int64)
    if rr is not None:
        x_yaw, x_trans = RL.xsens_error(np.arange(n_x) / XSENS_FPS, seconds, rspec, rr)
        pos_x, rot_x = RL.apply_xsens_error(pos_x, rot_x, x_yaw, x_trans)
        t_us, spike_frames = RL.spike_timestamps(t_us, rspec, rr)
    q = matrix_to_quat_wxyz(rot_x)
    for fault in spec.faults:
        if fault in ("jittered_timestamps", "irregular_timestamps"):
            t_us, fault_log[fault] = F.apply_timestamp_fault(t_us, fault, rng)
        elif fault == "zero_quaternions":
            q, fault_log[fault] = F.apply_zero_quaternions(q, rng)
    (root / "body").mkdir()
    np.savez(root / L.XDATA,
             segment_tXYZ=pos_x.reshape(n_x, NUM_SEGMENTS * 3).astype(np.float32),
             segment_qWXYZ=q.reshape(n_x, NUM_SEGMENTS * 4).astype(np.float32),
             timestamps_us=t_us, **xdata_scalars(n_x))
    del pos_x, rot_x, q

    # --- MPS closed-loop trajectory ---
    hz = config.trajectory_hz
    n_m = int(np.floor(seconds * hz + 1e-9)) + 1
    head_p, head_R = _pose_in_chunks(subject, channels, np.arange(n_m) * (MASTER_HZ // hz), HEAD)
    T_md = T_mps_xsens @ (make_transform(head_R, head_p) @ rig.T_head_device)
    del head_p, head_R
    if rr is not None:
        m_rot, m_trans = RL.mps_error(np.arange(n_m) / hz, seconds, rr)
        T_md = RL.apply_mps_error(T_md, m_rot, m_trans)
    R_md = T_md[:, :3, :3]
    vel_world = np.gradient(T_md[:, :3, 3], 1.0 / hz, axis=0)
    vel_dev = np.einsum("nji,nj->ni", R_md, vel_world)
    ang_dev = _angular_velocity_body(R_md, hz)
    quat = matrix_to_quat_wxyz(R_md)  # w, x, y, z
    dev_us = device_start_ns // 1000 + np.arange(n_m) * (1_000_000 // hz)
    rows = (["synthetic-graph", int(dev_us[j]), UTC_EPOCH_NS + int(dev_us[j]) * 1000,
             *(f"{v:.9f}" for v in T_md[j, :3, 3]), *(f"{v:.9f}" for v in (*quat[j, 1:], quat[j, 0])),
             *(f"{v:.6f}" for v in vel_dev[j]), *(f"{v:.6f}" for v in ang_dev[j]), *GRAVITY_MPS, "1.0", *_NO_GEO]
            for j in range(n_m))  # streamed: 3.6 M rows of strings (60 min at 1 kHz) took ~7 GB as a list
    _write_csv(root / L.CLOSED_LOOP, list(MPS_COLUMNS), rows)

    # --- RGB: render, encode, ground truth ---
    calibration = aria_rgb_calibration(config.resolution, rig.T_device_camera)
    renderer = Renderer(scene, ray_table_for(config.resolution))
    n_f = int(np.floor(seconds * config.fps + 1e-9)) + 1
    pos_f, rot_f = pose_at(subject, channels, np.arange(n_f) * (MASTER_HZ // config.fps))
    T_world_head = make_transform(rot_f[:, HEAD], pos_f[:, HEAD])
    T_world_cam = T_world_head @ rig.T_head_camera
    frame_tc = timecode_start_ns + np.round(np.arange(n_f) * 1e9 / config.fps).astype(np.int64)
    frame_dev = frame_tc + offset_ns
    glove_pixels = np.zeros((n_f, 2), dtype=np.int64)
    body_pixels = np.zeros(n_f, dtype=np.int64)
    if rgb_from is not None:  # the same content rendered before (see `make_synthetic`): copy, do not render
        source = Path(rgb_from) / spec.sequence_id
        shutil.copytree(source / L.HEAD_DATA_DIR, root / L.HEAD_DATA_DIR, dirs_exist_ok=True)
        with np.load(source / GT_FRAMES) as f:
            if not np.array_equal(f["T_world_camera_raw"], T_world_cam):
                raise ValueError(f"{source}: its frames show other content; rgb_from needs the same seed and options")
            glove_pixels, body_pixels = f["glove_pixels"], f["body_pixels"]
    with (ExportedRecordingWriter(root / L.HEAD_DATA_DIR, calibration, config.fps, config.crf)
          if rgb_from is None else _NoWriter()) as rec:
        for i in range(n_f if rgb_from is None else 0):
            image, labels = renderer.render(T_world_cam[i], pos_f[i], rot_f[i], outfit)
            counts = np.bincount(labels.ravel(), minlength=5)
            glove_pixels[i] = counts[LABEL_LEFT_GLOVE], counts[LABEL_RIGHT_GLOVE]
            body_pixels[i] = counts[LABEL_BODY]
            rec.write(image, int(frame_dev[i]), int(frame_tc[i]))
            if on_frame is not None:
                on_frame()
    visible = hand_visibility(calibration, T_world_cam, pos_f[:, list(HANDS)])
    (root / GT_DIR).mkdir()
    np.savez_compressed(
        root / GT_FRAMES,
        frame_timecode_ns=frame_tc, frame_device_time_ns=frame_dev,
        T_world_head=T_world_head, T_world_device=T_world_head @ rig.T_head_device,
        T_world_camera_raw=T_world_cam, T_world_camera_upright=T_world_cam @ T_RAW_UPRIGHT,
        hand_visible=visible, glove_pixels=glove_pixels, body_pixels=body_pixels,
    )

    # --- narrations (clean: TIME_CODE integer ns; realism: the released schema, device seconds) ---
    def tc(s: float) -> int:
        return int(timecode_start_ns + round(s * 1e9))

    def narration(name: str, columns: list[str], spans: list[tuple[float, float]], texts: list[list[str]]) -> None:
        path = root / L.NARRATION_DIR / f"{name}.csv"
        if rr is None:
            _write_csv(path, ["start_time", "end_time", *columns], [[tc(a), tc(b), *t] for (a, b), t in zip(spans, texts)])
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        device = [(tc(a) + offset_ns, tc(b) + offset_ns) for a, b in spans]
        path.write_text(RL.narration_csv(columns, texts, device, rr), encoding="utf-8")

    windows = group_windows(script, seconds, rng)
    narration("atomic_action", [ATOMIC_COLUMN], [(w.t0, w.t1) for w in windows], [[atomic_text(w, rng)] for w in windows])
    motion_windows = group_windows(script, seconds, rng)
    narration("motion_narration", list(MOTION_COLUMNS), [(w.t0, w.t1) for w in motion_windows],
              [list(motion_texts(w, rng).values()) for w in motion_windows])
    narration("activity_summarization", [ACTIVITY_COLUMN], [(0.0, seconds)], [[activity_summary(script)]])
    if rr is not None:
        RL.write_gt(root, x_yaw, x_trans, m_rot, m_trans, spike_frames)

    # --- metadata and sequence-level ground truth ---
    for fault in spec.faults:
        if fault in F.FILE_FAULTS:
            fault_log[fault] = F.apply_file_fault(root, fault)
    synthetic = {
        "seed": config.seed, "index": spec.index, "generator": "egotwin-bench make-synthetic",
        "timecode_to_device_offset_ns": int(offset_ns), "timecode_start_ns": int(timecode_start_ns),
        "T_mpsworld_xsensworld": T_mps_xsens.tolist(), "rgb_fps": config.fps, "resolution": config.resolution,
        "trajectory_hz": hz, "faults": list(spec.faults),
        "realism": rspec.to_json() if rspec is not None else None,
    }
    metadata = {"sequence_id": spec.sequence_id, "subject_id": subject.subject_id, "location_id": scene.location_id,
                "synthetic": synthetic}
    gt = {
        "sequence_id": spec.sequence_id, "config": _config_json(config),
        **synthetic,
        "T_head_device": rig.T_head_device.tolist(),
        "T_device_camera_raw": rig.T_device_camera.tolist(),
        "T_head_camera_raw": rig.T_head_camera.tolist(),
        "T_head_camera_upright": rig.T_head_camera_upright.tolist(),
        "T_raw_upright": T_RAW_UPRIGHT.tolist(),
        "hand_order": list(HAND_ORDER), "glove_colours": GLOVE_COLOURS,
        "subject": {"subject_id": subject.subject_id, "height_m": subject.height_m,
                    "pelvis_height_m": subject.pelvis_height, "offsets": subject.offsets.tolist()},
        "scene": {"location_id": scene.location_id, "room_lo": scene.room_lo.tolist(), "room_hi": scene.room_hi.tolist(),
                  "boxes": [{"name": b.name, "kind": b.kind, "lo": b.lo.tolist(), "hi": b.hi.tolist(),
                             "colour": list(b.colour)} for b in scene.boxes]},
        "script": [{**a.to_json(), "t0_timecode_ns": tc(a.t0), "t1_timecode_ns": tc(min(a.t1, seconds))} for a in script],
        "fault_details": fault_log,
        "frames": {"file": GT_FRAMES, "count": n_f},
    }
    _atomic_text(root / GT_SEQUENCE, json.dumps(gt, indent=1, default=_json_default))
    _atomic_text(root / L.METADATA, json.dumps(metadata, indent=1))


class _NoWriter:
    def __enter__(self) -> "_NoWriter":
        return self

    def __exit__(self, *exc) -> None:
        return None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _worker(args) -> str:
    out_root, spec, config, queue, rgb_from = args
    on_frame = (lambda: queue.put(1)) if queue is not None else None
    return str(write_sequence(Path(out_root), spec, config, on_frame, rgb_from))


def make_synthetic(out: str | Path, config: SyntheticConfig, workers: int = 1,
                   progress: Callable[[int], None] | None = None, rgb_from: str | Path | None = None) -> list[Path]:
    """Write `config.sequences` sequences under `out` (existing complete ones are kept).

    Args:
        workers: processes rendering sequences in parallel (one sequence each, "spawn" start
            method: a script calling this with workers > 1 needs the ``if __name__ == "__main__":``
            guard).
        progress: called with a number of frames rendered (for a progress bar).
        rgb_from: a folder written with the same seed and options but `realism` off: its RGB
            recordings and frame ground truth are copied instead of rendered (``--realism``
            changes neither; checked on the camera poses). Saves the rendering when one content
            is written clean and with several nuisance settings (benchmarks/curation_realism.py).
    Returns the sequence folders in order.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = sequence_specs(config)
    todo = pending_specs(out, config)
    if workers <= 1 or len(todo) <= 1:
        for spec in todo:
            write_sequence(out, spec, config, (lambda: progress(1)) if progress else None, rgb_from)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager:
            q = manager.Queue()
            with ctx.Pool(min(workers, len(todo))) as pool:
                result = pool.map_async(_worker, [(str(out), s, config, q, rgb_from) for s in todo])
                while not result.ready() or not q.empty():
                    try:
                        q.get(timeout=0.2)
                        if progress:
                            progress(1)
                    except queue_mod.Empty:
                        pass
                result.get()
    return [out / s.sequence_id for s in specs]


def _config_json(config: SyntheticConfig) -> dict:
    return {**asdict(config), "faults": list(config.faults)}


def pending_specs(out: str | Path, config: SyntheticConfig) -> list[SequenceSpec]:
    """The sequences of `config` not yet complete under `out`.

    Raises ValueError when a complete sequence folder was written with other options (resuming
    would mix two datasets)."""
    todo = []
    for spec in sequence_specs(config):
        gt = Path(out) / spec.sequence_id / GT_SEQUENCE
        if not gt.parent.parent.is_dir():
            todo.append(spec)
            continue
        try:
            written = json.loads(gt.read_text()).get("config")
        except (OSError, json.JSONDecodeError):
            written = None
        if written != _config_json(config):
            raise ValueError(f"{gt.parent.parent} exists but was written with other options ({written}); "
                             "use another --out or delete it")
    return todo


def frames_per_sequence(config: SyntheticConfig) -> int:
    """RGB frames of one sequence (frame i at i / fps for i / fps <= seconds)."""
    return int(np.floor(config.seconds * config.fps + 1e-9)) + 1
