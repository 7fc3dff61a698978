"""One Nymeria sequence -> clip rows + a report (the unit of work of the pipeline).

`curate_sequence` never raises for bad data: every fault ends as ``status="skipped"`` with a
reason ``"<code>: <detail>"`` (codes in `SKIP_CODES`), and per-clip filters are counted in
``drops``. Steps: read (layout, Xsens with repairs, MPS, RGB, narration) -> common time span,
less `FilterConfig.trim_s` at each end -> head -> device offset from short relative motions and
the re-anchoring track (`curation.alignment`) -> clip windows -> per clip: motion resampled to
16 FPS and re-anchored into the output world, camera poses, the clip's alignment residual (drop
above the threshold), hand visibility, filters -> one ordered decoding
pass over the needed RGB frames, undistorted with the cached table -> H.264 -> rows. A decoder
failure part-way (a truncated MP4, a corrupt VRS record) keeps the clips whose frames all
decoded and counts the others as "rgb_frame_missing" (the error is in the report's `notes`).
A sequence that ends not ok leaves no shard: a shard of an earlier run is deleted.

World of every clip array: the sequence's output world (`curation.alignment`: the MPS world
moved by the constant ``T_world_mworld``, laid onto the Xsens world's mean position; Z up, floor
at z = 0). Camera poses: ``T_world_camera = T_world_mworld · T_mworld_device(t) ·
T_device_camera``, the MPS pose interpolated at the *capture time of the RGB frame shown* (the
nearest frame to the clip's 8 FPS grid; its offset is bounded by `max_frame_offset_s`), and
``T_device_camera`` the upright pinhole camera. Motion frame k: the Xsens pose moved by
``T_world_mworld · M_avg(t_k)`` (the re-anchoring transform averaged around t_k), so Xsens drift
does not accumulate. ``T_head_camera = X · T_device_camera``.
Hand visibility follows the paper's "visible from the head in motion": the camera is the
motion's head pose (frame 2k) times ``T_head_camera``, the hands are the motion's hand
segments.
"""

from __future__ import annotations

import resource
import sys
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from egotwin_bench.constants import MOTION_FPS, MOTION_FRAMES, VIDEO_FPS, VIDEO_FRAMES
from egotwin_bench.curation.alignment import (
    AlignmentError,
    AlignmentTrack,
    HeadDeviceOffset,
    anchor_at,
    clip_residual,
    make_track,
    reanchor_motion,
    solve_head_device,
)
from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.shards import atomic_write_rows
from egotwin_bench.curation.trajectory import (
    CLOCK_ROUNDING_NS,
    interpolate_poses,
    interpolate_rotations_translations,
    max_gap_ns,
)
from egotwin_bench.curation.undistort import RemapTable, remap_table, undistort
from egotwin_bench.curation.video import encode_mp4
from egotwin_bench.curation.visibility import hand_visibility
from egotwin_bench.curation.windows import ClipWindow, clip_windows
from egotwin_bench.geometry import invert_transform, make_transform
from egotwin_bench.motion.resampling import frame_times_ns, resample
from egotwin_bench.nymeria import layout as L
from egotwin_bench.nymeria.clock import ClockError
from egotwin_bench.nymeria.mps import Trajectory, TrajectoryError, load_closed_loop_trajectory
from egotwin_bench.nymeria.narration import NarrationError, read_narration_csv, resolve_to_timecode
from egotwin_bench.nymeria.rgb import open_rgb_stream
from egotwin_bench.nymeria.rgb_stream import RgbError, RgbStream
from egotwin_bench.nymeria.xsens import XsensError, XsensMotion, load_xsens
from egotwin_bench.skeleton import HANDS, HEAD

SKIP_CODES: dict[str, str] = {
    "bad_metadata": "metadata.json missing or unreadable",
    "missing_data": "a required file is missing or the streams do not overlap in time",
    "xsens": "body/xdata.npz unreadable or its timestamps beyond repair",
    "trajectory": "MPS closed-loop trajectory unreadable",
    "rgb": "RGB stream / calibration / clock unreadable",
    "no_narration": "no narration file or no usable narration rows",
    "alignment": "head -> device offset unobservable (too few samples, too little head rotation)",
    "no_clips": "every candidate clip was filtered out (see drops)",
    "error": "an unexpected exception (a bug or unforeseen bad data; the traceback is in the report), or a "
             "Ray worker that crashed on every attempt; retried by the next run",
}
DROP_CODES: dict[str, str] = {
    "empty_text": "the narration's text column is empty",
    "narration_too_short": "narration window shorter than `min_narration_s`",
    "overlap": "no 5 s placement without overlapping the previous clip",
    "outside_data": "no 5 s placement inside the span where Xsens, MPS and RGB all have data",
    "rgb_frame_missing": "a video frame is missing (dropped camera frame) or did not decode",
    "trajectory_gap": "the MPS trajectory has a gap longer than `max_trajectory_gap_s` in the clip",
    "trajectory_quality": "an MPS pose below `min_trajectory_quality` (off by default)",
    "nan": "the clip touches Xsens frames with NaN/inf values (or its poses are not finite)",
    "static_clip": "no segment moves more than `static_max_displacement_m`",
    "alignment_residual": "the clip's Xsens head and Aria device disagree beyond `max_residual_m` / "
                          "`max_residual_deg` after re-anchoring",
}


class Skip(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass
class SequenceReport:
    sequence_id: str
    subject_id: str = "unknown"
    location_id: str = "unknown"
    split: str | None = None
    status: str = "ok"
    reason: str | None = None
    clips: int = 0
    clip_ids: list[str] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Non-fatal remarks: an assumed Xsens frame rate, NaN frames kept, a decoder failure."""
    alignment: dict | None = None
    rgb_source: str | None = None
    decoded_frames: int = 0
    seconds: float = 0.0
    peak_rss_gib: float = 0.0
    """Peak resident memory of the process that ran the task, up to the task's end, GiB (Linux
    ``ru_maxrss``: a worker that ran earlier tasks reports the largest of them)."""
    config_fingerprint: str = ""
    traceback: str | None = None


@dataclass(frozen=True)
class SequenceAlignment:
    """The alignment of one sequence (see `curation.alignment`)."""

    offset: HeadDeviceOffset
    track: AlignmentTrack
    T_world_mworld: np.ndarray
    """(4, 4) MPS world -> output world (constant for the sequence)."""

    @property
    def T_head_device(self) -> np.ndarray:
        return self.offset.T_head_device

    def record(self) -> dict:
        """JSON-able summary for the sequence report (residuals of the clips are added later)."""
        tr = self.track
        v = tr.valid
        # Drift: the range of the anchor averaged over 5 s windows (robust to single samples).
        grid = np.arange(int(tr.times_ns[0]), int(tr.times_ns[-1]) + 1, 5 * 10**9, dtype=np.int64)
        yaw, trans, count = anchor_at(tr, grid, 5.0)
        ok = count > 0
        horizontal = trans[ok, :2] - trans[ok, :2].mean(axis=0)
        return {
            "T_head_device": self.T_head_device.tolist(),
            "T_world_mps": self.T_world_mworld.tolist(),
            "handeye_residual_m": self.offset.residual_m,
            "handeye_residual_deg": self.offset.residual_deg,
            "handeye_pairs": self.offset.pairs,
            "samples": int(v.sum()),
            "xsens_drift_m": float(np.linalg.norm(horizontal, axis=-1).max()) if ok.any() else 0.0,
            "xsens_drift_deg": float(np.rad2deg(np.ptp(yaw[ok]))) if ok.any() else 0.0,
            "world_tilt_deg": float(np.median(tr.tilt_deg[v])) if v.any() else 0.0,
        }


MAX_PENDING_ENCODES: int = 2
"""Clips whose 41 frames are decoded and wait for the encoder thread; decoding pauses beyond
this, so a fast decoder (small frames) never piles up frames of a whole sequence (28 MB per
480² clip)."""


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20


@dataclass
class _PlannedClip:
    """Everything of a clip but its pixels; arrays float32 (the shard's precision: a 60 min
    sequence plans ~700 clips)."""

    window: ClipWindow
    positions: np.ndarray
    rotations: np.ndarray
    camera_poses: np.ndarray
    frame_indices: np.ndarray
    hand_visible: np.ndarray
    flags: list[str]
    residual_m: float
    residual_deg: float
    frames: dict[int, np.ndarray] = field(default_factory=dict)


def shard_path(out_dir: Path, sequence_id: str) -> Path:
    return Path(out_dir) / "shards" / f"clips-{sequence_id}.parquet"


def clip_id(sequence_id: str, t0_ns: int) -> str:
    return f"{sequence_id}__{t0_ns // 1_000_000}"


def _common_span(xsens: XsensMotion, traj: Trajectory, rgb: RgbStream) -> tuple[int, int]:
    """TIME_CODE span where Xsens, MPS and RGB all have data (untrimmed)."""
    to_tc = rgb.clock.device_to_timecode
    starts = [xsens.timestamps_ns[0], to_tc(traj.timestamps_ns[:1])[0], to_tc(rgb.device_times_ns[:1])[0]]
    ends = [xsens.timestamps_ns[-1], to_tc(traj.timestamps_ns[-1:])[0], to_tc(rgb.device_times_ns[-1:])[0]]
    return int(max(starts)), int(min(ends))


def _head_poses(xsens: XsensMotion, t_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) Xsens head poses at TIME_CODE `t_ns` (inside the Xsens span) and a (N,) mask of
    the samples whose two neighbouring Xsens frames are finite (identity elsewhere)."""
    ts = xsens.timestamps_ns
    i = np.clip(np.searchsorted(ts, t_ns, side="right") - 1, 0, ts.size - 2)
    p, R = xsens.positions[:, HEAD], xsens.rotations[:, HEAD]
    finite = np.isfinite(p).all(axis=-1) & np.isfinite(R).all(axis=(-2, -1))
    ok = finite[i] & finite[i + 1]
    A = np.broadcast_to(np.eye(4), (t_ns.size, 4, 4)).copy()
    if ok.any():
        # Only the neighbouring frames are read; masked so that slerp never sees a NaN frame.
        sel = np.flatnonzero(ok)
        keep = np.unique(np.concatenate([i[sel], i[sel] + 1]))
        Rq, pq = interpolate_rotations_translations(ts[keep], R[keep], p[keep], t_ns[sel])
        A[sel, :3, :3], A[sel, :3, 3] = Rq, pq
    return A, ok


def align(xsens: XsensMotion, traj: Trajectory, rgb: RgbStream, span: tuple[int, int], config: CurationConfig) -> SequenceAlignment:
    """Head -> device offset and re-anchoring track from samples at `alignment.sample_hz` over `span`."""
    a = config.alignment
    n = int((span[1] - span[0]) * a.sample_hz // 1e9) + 1
    if n < a.min_samples:
        raise Skip("missing_data", f"only {(span[1] - span[0]) / 1e9:.1f} s where Xsens, MPS and RGB overlap")
    t = frame_times_ns(span[0], a.sample_hz, n)
    dev = rgb.clock.timecode_to_device(t)
    i = np.clip(np.searchsorted(traj.timestamps_ns, dev), 1, len(traj) - 1)
    ok = traj.timestamps_ns[i] - traj.timestamps_ns[i - 1] <= config.filters.max_trajectory_gap_s * 1e9
    if ok.sum() < a.min_samples:
        raise Skip("trajectory", "the MPS trajectory has gaps over nearly the whole sequence")
    A, finite = _head_poses(xsens, t)
    ok &= finite  # NaN Xsens frames
    if ok.sum() < a.min_samples:
        raise Skip("xsens", "the head segment is NaN over nearly the whole sequence")
    B = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    B[ok] = interpolate_poses(traj.timestamps_ns, traj.T_world_device, dev[ok], CLOCK_ROUNDING_NS)
    lag = max(1, int(round(a.lag_s * a.sample_hz)))
    try:
        offset = solve_head_device(A, B, ok, lag, a.min_rotation_deg, a.min_samples)
    except AlignmentError as exc:
        raise Skip("alignment", str(exc)) from exc
    track = make_track(t, A, B, ok, offset.T_head_device)
    return SequenceAlignment(offset, track, invert_transform(track.mean_anchor))


def video_frame_indices(rgb: RgbStream, t0_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB frame nearest to each of the clip's 41 video times -> (indices (41,), target device times (41,))."""
    dev = rgb.clock.timecode_to_device(frame_times_ns(t0_ns, VIDEO_FPS, VIDEO_FRAMES))
    times = rgb.device_times_ns
    j = np.clip(np.searchsorted(times, dev), 1, len(times) - 1)
    return np.where(np.abs(times[j - 1] - dev) <= np.abs(times[j] - dev), j - 1, j), dev


def _plan_clip(
    w: ClipWindow, xsens: XsensMotion, traj: Trajectory, rgb: RgbStream, al: SequenceAlignment,
    table: RemapTable, T_head_camera: np.ndarray, frame_tol_ns: int, config: CurationConfig,
    base_flags: list[str],
) -> _PlannedClip | str:
    """Everything of a clip but its pixels, or the drop code."""
    f = config.filters
    idx, dev = video_frame_indices(rgb, w.t0_ns)
    cap = rgb.device_times_ns[idx]
    offset = np.abs(cap - dev)
    if offset.max() > frame_tol_ns or np.unique(idx).size < VIDEO_FRAMES:
        return "rgb_frame_missing"
    gap = max_gap_ns(traj.timestamps_ns, int(min(cap[0], dev[0])), int(max(cap[-1], dev[-1])), CLOCK_ROUNDING_NS)
    if gap > f.max_trajectory_gap_s * 1e9:
        return "trajectory_gap"
    if f.min_trajectory_quality > 0:
        lo, hi = np.searchsorted(traj.timestamps_ns, [cap[0], cap[-1]])
        if np.nanmin(traj.quality[max(lo - 1, 0) : hi + 1]) < f.min_trajectory_quality:
            return "trajectory_quality"
    motion_t = frame_times_ns(w.t0_ns, MOTION_FPS, MOTION_FRAMES)
    if xsens.nonfinite_between(int(motion_t[0]), int(motion_t[-1])):
        return "nan"
    positions, rotations = resample(*xsens.window(int(motion_t[0]), int(motion_t[-1])), MOTION_FPS, w.t0_ns, MOTION_FRAMES)
    T_mworld_device = interpolate_poses(traj.timestamps_ns, traj.T_world_device, cap, CLOCK_ROUNDING_NS)
    camera_poses = al.T_world_mworld @ T_mworld_device @ table.T_device_camera
    if not (np.isfinite(positions).all() and np.isfinite(rotations).all() and np.isfinite(camera_poses).all()):
        return "nan"
    if np.linalg.norm(positions - positions[:1], axis=-1).max() < f.static_max_displacement_m:
        return "static_clip"
    a = config.alignment
    residual_m, residual_deg, _ = clip_residual(al.track, int(motion_t[0]), int(motion_t[-1]), a.anchor_window_s)
    if not (residual_m <= a.max_residual_m and residual_deg <= a.max_residual_deg):
        return "alignment_residual"
    yaw, trans, count = anchor_at(al.track, motion_t, a.anchor_window_s)
    if count.min() == 0:
        return "alignment_residual"
    positions, rotations = reanchor_motion(positions, rotations, yaw, trans, al.T_world_mworld)
    head = make_transform(rotations[::2, HEAD], positions[::2, HEAD])
    visible = hand_visibility(positions[::2, list(HANDS)], head @ T_head_camera, table.K, config.view.size)
    f32 = np.float32
    return _PlannedClip(w, positions.astype(f32), rotations.astype(f32), camera_poses.astype(f32), idx, visible,
                        list(base_flags), residual_m, residual_deg)


def curate_sequence(seq_dir: str | Path, out_dir: str | Path, config: CurationConfig, split: str | None) -> SequenceReport:
    """Curate one sequence; writes `shards/clips-<id>.parquet` atomically and returns its report."""
    t_start = time.perf_counter()
    seq_dir, out_dir = Path(seq_dir), Path(out_dir)
    report = SequenceReport(sequence_id=seq_dir.name, split=split, config_fingerprint=config.fingerprint())
    try:
        _curate(seq_dir, out_dir, config, report)
    except Skip as skip:
        report.status, report.reason, report.clips, report.clip_ids = "skipped", str(skip), 0, []
    except Exception as exc:  # noqa: BLE001 — one bad sequence must never stop the run
        report.status, report.clips, report.clip_ids = "skipped", 0, []
        report.reason = f"error: {type(exc).__name__}: {exc}"
        report.traceback = traceback.format_exc()
    if report.status != "ok":  # a shard of an earlier run (other config, other code) must not linger
        shard_path(out_dir, report.sequence_id).unlink(missing_ok=True)
    report.seconds = round(time.perf_counter() - t_start, 3)
    report.peak_rss_gib = round(peak_rss_gib(), 3)
    return report


def _curate(seq_dir: Path, out_dir: Path, config: CurationConfig, report: SequenceReport) -> None:
    try:
        seq = L.open_sequence(seq_dir)
    except L.LayoutError as exc:
        raise Skip("bad_metadata", str(exc)) from exc
    report.sequence_id, report.subject_id, report.location_id = seq.sequence_id, seq.subject_id, seq.location_id
    missing = seq.missing()
    if missing:
        raise Skip("missing_data", "missing " + ", ".join(missing))
    narration_path = seq.narration_csv(config.windows.narration_file)
    if not narration_path.is_file():
        raise Skip("no_narration", "no " + L.download_hint(str(narration_path.relative_to(seq_dir)), seq.is_nymeria_plus))
    try:
        xsens = load_xsens(seq.path(L.XDATA))
    except XsensError as exc:
        raise Skip("xsens", str(exc)) from exc
    report.repairs = list(xsens.repairs)
    report.notes = list(xsens.notes)
    try:
        traj = load_closed_loop_trajectory(seq.path(L.CLOSED_LOOP))
    except (TrajectoryError, RuntimeError) as exc:
        raise Skip("trajectory", str(exc)) from exc
    try:
        rgb = open_rgb_stream(seq, config.rgb_source)
    except (RgbError, ClockError, OSError, ValueError, RuntimeError) as exc:
        raise Skip("rgb", f"{type(exc).__name__}: {exc}") from exc
    report.rgb_source = rgb.source
    full_span = _common_span(xsens, traj, rgb)
    trim = int(round(config.filters.trim_s * 1e9))
    span = (full_span[0] + trim, full_span[1] - trim)
    if span[1] <= span[0]:
        raise Skip("missing_data", "Xsens, MPS trajectory and RGB frames do not overlap in time"
                   + (f" for more than 2 x {config.filters.trim_s} s (trimmed at both ends)" if trim else ""))
    try:
        narration = resolve_to_timecode(read_narration_csv(narration_path), full_span, rgb.clock.device_to_timecode)
    except NarrationError as exc:
        raise Skip("no_narration", str(exc)) from exc
    if narration.note:
        report.notes.append(narration.note)
    if len(narration) == 0:
        raise Skip("no_narration", f"{narration_path.name} has no usable rows")
    if config.windows.text_column not in narration.columns:
        raise Skip("no_narration", f"{narration_path.name} lacks column '{config.windows.text_column}'")

    al = align(xsens, traj, rgb, span, config)
    report.alignment = al.record()

    try:
        table = remap_table(rgb.calibration, config.view)
    except (RuntimeError, ValueError) as exc:
        raise Skip("rgb", f"calibration unusable for undistortion: {exc}") from exc
    T_head_camera = al.T_head_device @ table.T_device_camera
    windows, drops = clip_windows(narration, span, config.windows)
    frame_tol = config.filters.max_frame_offset_s
    frame_tol_ns = int(frame_tol * 1e9) if frame_tol is not None else int(np.median(np.diff(rgb.device_times_ns)) / 2 + 2e6)
    base_flags = ["xsens_repaired"] if xsens.repairs else []
    planned: list[_PlannedClip] = []
    for w in windows:
        plan = _plan_clip(w, xsens, traj, rgb, al, table, T_head_camera, frame_tol_ns, config, base_flags)
        if isinstance(plan, str):
            drops[plan] += 1
        else:
            planned.append(plan)
    report.drops = dict(sorted(drops.items()))
    kept_m = [c.residual_m for c in planned]
    kept_deg = [c.residual_deg for c in planned]
    report.alignment |= {
        "residual_m": float(np.median(kept_m)) if planned else None,
        "residual_deg": float(np.median(kept_deg)) if planned else None,
        "clip_residual_m": [round(v, 6) for v in kept_m],
        "clip_residual_deg": [round(v, 5) for v in kept_deg],
    }
    if not planned:
        raise Skip("no_clips", f"{len(windows)} windows, all dropped: {report.drops}")

    # Rows stream into the shard one row group at a time (the temp file is renamed at the end).
    errors: list[str] = []
    written = atomic_write_rows(_render(seq, planned, rgb, table, T_head_camera, config, report, errors),
                                shard_path(out_dir, seq.sequence_id))
    lost = len(planned) - written
    if lost:  # the decoder stopped early or never delivered some frames
        report.drops["rgb_frame_missing"] = report.drops.get("rgb_frame_missing", 0) + lost
        report.drops = dict(sorted(report.drops.items()))
        why = f"RGB decoding stopped early ({errors[0]})" if errors else "the RGB decoder delivered too few frames"
        report.notes.append(f"{why}; {lost} clip(s) lacking frames counted as rgb_frame_missing")
        if not written:  # curate_sequence deletes the empty shard
            raise Skip("no_clips", f"{len(windows)} windows, all dropped: {report.drops}; {why}")
    report.clips = written


def _render(
    seq: L.SequenceLayout, planned: list[_PlannedClip], rgb: RgbStream, table: RemapTable,
    T_head_camera: np.ndarray, config: CurationConfig, report: SequenceReport, errors: list[str],
) -> Iterator[dict]:
    """Decode each needed frame once, in order; undistort; encode clips as they complete.

    Yields the rows of the clips whose 41 frames all decoded, in the order their last frame
    decodes (clip time order); the decoder's error, if decoding stopped early, is appended to
    `errors`. At most `MAX_PENDING_ENCODES` finished clips wait for the encoder and each clip
    leaves memory once yielded, so memory does not grow with the sequence's length.
    """
    text_source = f"{config.windows.narration_file}:{config.windows.text_column}"
    users: dict[int, list[tuple[_PlannedClip, int]]] = {}
    for clip in planned:
        for slot, i in enumerate(clip.frame_indices):
            users.setdefault(int(i), []).append((clip, slot))
    pending: deque[Future] = deque()
    try:
        # Encoding (x264, releases the GIL) runs in a helper thread while the next frames decode.
        with ThreadPoolExecutor(max_workers=1) as encoder:
            for i, raw in _decode_until_error(rgb, sorted(users), errors):
                frame = undistort(raw, table)
                report.decoded_frames += 1
                for clip, slot in users.pop(i):
                    clip.frames[slot] = frame
                    if len(clip.frames) == VIDEO_FRAMES:
                        pending.append(encoder.submit(_row, seq, clip, table, T_head_camera, report.split,
                                                      text_source, config))
                while len(pending) > MAX_PENDING_ENCODES:
                    yield _done(pending.popleft(), report)
            while pending:
                yield _done(pending.popleft(), report)
    finally:
        for clip in planned:
            clip.frames = {}


def _done(future: Future, report: SequenceReport) -> dict:
    row = future.result()
    report.clip_ids.append(row["clip_id"])
    return row


def _decode_until_error(rgb: RgbStream, indices: Sequence[int], errors: list[str]) -> Iterator[tuple[int, np.ndarray]]:
    """`rgb.iter_frames`, stopping quietly at a decoder failure (truncated or corrupt video) and
    appending its description to `errors`; the frames decoded before it are kept."""
    try:
        yield from rgb.iter_frames(indices)
    except Exception as exc:  # noqa: BLE001 — PyAV / VRS / our readers raise their own error types
        errors.append(f"{type(exc).__name__}: {exc}")


def _row(
    seq: L.SequenceLayout, clip: _PlannedClip, table: RemapTable, T_head_camera: np.ndarray,
    split: str | None, text_source: str, config: CurationConfig,
) -> dict:
    """One shard row (`shards.clip_schema`) of a clip whose 41 undistorted frames are in `clip.frames`."""
    video = np.stack([clip.frames[k] for k in range(VIDEO_FRAMES)])
    clip.frames = {}
    return {
        "clip_id": clip_id(seq.sequence_id, clip.window.t0_ns),
        "sequence_id": seq.sequence_id,
        "subject_id": seq.subject_id,
        "location_id": seq.location_id,
        "split": split or "",
        "t0_timecode_ns": int(clip.window.t0_ns),
        "text": clip.window.text,
        "text_source": text_source,
        "video_mp4": encode_mp4(video, crf=config.video.crf, preset=config.video.preset),
        "motion_positions": clip.positions,
        "motion_rotations": clip.rotations,
        "camera_poses": clip.camera_poses,
        "intrinsics": table.K,
        "T_head_camera": T_head_camera,
        "hand_visible": clip.hand_visible.astype(np.uint8),
        "alignment_residual_m": clip.residual_m,
        "alignment_residual_deg": clip.residual_deg,
        "quality_flags": clip.flags,
    }
