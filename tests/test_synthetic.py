"""The synthetic Nymeria-format world (issue #4): files load with the real readers, the streams
agree with the ground truth, and each requested fault appears."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from egotwin_bench.constants import XSENS_FPS
from egotwin_bench.geometry import make_transform, rotation_angle
from egotwin_bench.nymeria import layout as L
from egotwin_bench.nymeria.exported_recording import (
    ExportedRecording,
    ExportedRecordingError,
    write_exported_recording,
)
from egotwin_bench.nymeria.mps import load_closed_loop_trajectory
from egotwin_bench.nymeria.narration import read_narration_csv
from egotwin_bench.nymeria.xsens import XsensError, load_xsens
from egotwin_bench.skeleton import HANDS, HEAD, NUM_SEGMENTS
from egotwin_bench.synthetic.camera import T_RAW_UPRIGHT, aria_rgb_calibration, make_rig
from egotwin_bench.synthetic.narration import ATOMIC_COLUMN, MAX_WINDOW_S, MOTION_COLUMNS
from egotwin_bench.synthetic.writer import (
    GT_FRAMES,
    GT_SEQUENCE,
    SyntheticConfig,
    assign_ids,
    frames_per_sequence,
    hand_visibility,
    pending_specs,
    plan_sequence,
    sequence_specs,
    write_sequence,
)


def _sequences(root):
    return sorted(p for p in root.iterdir() if (p / L.METADATA).is_file())


def _gt(seq):
    return json.loads((seq / GT_SEQUENCE).read_text()), np.load(seq / GT_FRAMES)


def _glove_masks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Green (left) and magenta (right) glove pixels of a decoded RGB frame."""
    r, g, b = (frame[..., k].astype(np.int32) for k in range(3))
    left = (g > 90) & (g > 2 * r) & (g > 2 * b)
    right = (r > 90) & (b > 90) & (5 * g < 2 * np.minimum(r, b))
    return left, right


def test_assign_ids_last_sequence_unseen():
    assert assign_ids(4) == [(0, 0), (1, 1), (2, 0), (3, 2)]
    for n in range(2, 12):
        ids = assign_ids(n)
        subject, location = ids[-1]
        assert all(s != subject and loc != location for s, loc in ids[:-1]), n
        assert len({loc for _, loc in ids[:-1]}) < n - 1 or n <= 2, "locations are shared"


def test_files_load_with_real_readers(synthetic_root):
    from projectaria_tools.core.calibration import CameraModelType
    from projectaria_tools.core.mps import read_closed_loop_trajectory

    seqs = _sequences(synthetic_root)
    assert [s.name for s in seqs] == [s.sequence_id for s in sequence_specs(SyntheticConfig(**_fixture_config()))]
    for seq in seqs:
        layout = L.open_sequence(seq)
        assert layout.missing() == [] and layout.has_exported_rgb
        gt, frames = _gt(seq)
        assert (layout.subject_id, layout.location_id) == (gt["subject"]["subject_id"], gt["scene"]["location_id"])
        with np.load(seq / L.XDATA) as x:
            f = x["timestamps_us"].shape[0]
            assert x["segment_tXYZ"].shape == (f, NUM_SEGMENTS * 3) and x["segment_qWXYZ"].shape == (f, NUM_SEGMENTS * 4)
            assert x["timestamps_us"].dtype == np.int64
            # Nymeria's keys and shapes (nymeria_dataset XSensConstants): scalars as (1,) arrays.
            for key, value in (("segmentCount", NUM_SEGMENTS), ("frameCount", f), ("frameRate", XSENS_FPS)):
                assert x[key].shape == (1,) and x[key].dtype.kind == "i" and x[key][0] == value, key
            assert x["framerate"].shape == () and x["framerate"] == XSENS_FPS  # the alias of issue #4
            assert x["timestamps_us"][0] * 1000 == pytest.approx(gt["timecode_start_ns"], abs=1000)
        xs = load_xsens(seq / L.XDATA)
        assert xs.repairs == []
        assert np.all(xs.positions[:, :, 2] > -0.05), "Z up, nothing below the floor"
        poses = read_closed_loop_trajectory(str(seq / L.CLOSED_LOOP))
        assert len(poses) == int(gt["config"]["seconds"] * gt["trajectory_hz"]) + 1
        rec = ExportedRecording.open(seq / L.HEAD_DATA_DIR)
        assert rec.calibration.get_model_name() == CameraModelType.FISHEYE624
        assert tuple(rec.calibration.get_image_size()) == (352, 352)
        np.testing.assert_allclose(rec.calibration.get_transform_device_camera().to_matrix(),
                                   gt["T_device_camera_raw"], atol=1e-9)
        np.testing.assert_array_equal(rec.device_time_ns - rec.timecode_ns, gt["timecode_to_device_offset_ns"])
        np.testing.assert_array_equal(rec.timecode_ns, frames["frame_timecode_ns"])
        assert rec.count_decodable_frames() == len(rec) == frames["hand_visible"].shape[0]
        with (seq / L.HEAD_DATA_DIR / "rgb_timestamps.csv").open() as fh:
            assert next(csv.reader(fh)) == ["frame_index", "device_time_ns", "timecode_ns"]


def _fixture_config() -> dict:
    from tests.fixtures_synthetic import SYNTHETIC_CONFIG

    return SYNTHETIC_CONFIG


def test_trajectory_equals_head_pose_times_offset(synthetic_root):
    """MPS pose at device time d == T_mps_xsens . T_world_head(d - offset) . T_head_device."""
    for seq in _sequences(synthetic_root):
        gt, _ = _gt(seq)
        xs = load_xsens(seq / L.XDATA)
        traj = load_closed_loop_trajectory(seq / L.CLOSED_LOOP)
        # Xsens frame k (t = k/240 s) and MPS sample j (t = j/1000 s) coincide when k = 6m, j = 25m.
        k = np.arange(0, xs.num_frames, 6)
        j = k // 6 * 25
        assert np.all(j < len(traj))
        tc_from_device = traj.timestamps_ns[j] - gt["timecode_to_device_offset_ns"]
        np.testing.assert_allclose(tc_from_device, xs.timestamps_ns[k], atol=1000)  # xdata holds whole µs
        T_head = make_transform(xs.rotations[k, HEAD], xs.positions[k, HEAD])
        expected = np.asarray(gt["T_mpsworld_xsensworld"]) @ T_head @ np.asarray(gt["T_head_device"])
        got = traj.T_world_device[j]
        np.testing.assert_allclose(got[:, :3, 3], expected[:, :3, 3], atol=2e-5)  # float32 xdata
        assert rotation_angle(np.swapaxes(got[:, :3, :3], -1, -2) @ expected[:, :3, :3]).max() < 2e-5
        # The MPS world is a non-trivial rigid transform of the Xsens world.
        T = np.asarray(gt["T_mpsworld_xsensworld"])
        assert np.linalg.norm(T[:3, 3]) > 0.5 and rotation_angle(T[:3, :3]) > 1e-3


def test_camera_ground_truth_follows_the_head(synthetic_root):
    from projectaria_tools.core.calibration import rotate_camera_calib_cw90deg

    seq = _sequences(synthetic_root)[0]
    gt, frames = _gt(seq)
    xs = load_xsens(seq / L.XDATA)
    k = np.arange(frames["T_world_camera_raw"].shape[0]) * (XSENS_FPS // 10)
    T_head = make_transform(xs.rotations[k, HEAD], xs.positions[k, HEAD])
    T_head_cam = np.asarray(gt["T_head_device"]) @ np.asarray(gt["T_device_camera_raw"])
    np.testing.assert_allclose(gt["T_head_camera_raw"], T_head_cam, atol=1e-12)
    np.testing.assert_allclose(frames["T_world_camera_raw"], T_head @ T_head_cam, atol=2e-5)
    np.testing.assert_allclose(frames["T_world_camera_upright"], frames["T_world_camera_raw"] @ T_RAW_UPRIGHT, atol=1e-12)
    # The upright camera is what projectaria_tools' 90° clockwise rotation gives, and np.rot90(k=3)
    # moves a projected point exactly as that calibration predicts.
    rec = ExportedRecording.open(seq / L.HEAD_DATA_DIR)
    upright = rotate_camera_calib_cw90deg(rec.calibration)
    np.testing.assert_allclose(upright.get_transform_device_camera().to_matrix(),
                               np.asarray(gt["T_device_camera_raw"]) @ T_RAW_UPRIGHT, atol=1e-9)
    p_raw = np.array([0.2, -0.1, 1.0])
    uv_raw = rec.calibration.project(p_raw)
    uv_up = upright.project(T_RAW_UPRIGHT[:3, :3].T @ p_raw)
    w = rec.calibration.get_image_size()[0]
    # np.rot90(raw, k=3)[r, c] == raw[w - 1 - c, r]: raw pixel (u, v) lands at column w - 1 - v, row u.
    np.testing.assert_allclose(uv_up, [w - 1 - uv_raw[1], uv_raw[0]], atol=1e-6)
    image = np.zeros((w, w), dtype=np.uint8)
    image[int(round(uv_raw[1])), int(round(uv_raw[0]))] = 1
    row, col = np.argwhere(np.rot90(image, k=3))[0]
    assert (col, row) == (round(uv_up[0]), round(uv_up[1]))


def _clearly_invisible(calibration, T_world_camera: np.ndarray, wrists: np.ndarray) -> np.ndarray:
    """(N, 2) bool: the whole glove (a sphere of radius half-length + radius about the wrist) lies
    behind the raw camera or more than 2 degrees outside the valid image circle's cone of rays.
    `T_world_camera` (N, 4, 4); `wrists` (N, 2, 3) world, metres."""
    from egotwin_bench.synthetic.render import GLOVE_LENGTH, GLOVE_RADIUS

    cx, cy = (float(v) for v in calibration.get_principal_point())
    r = calibration.get_valid_radius()
    edge = [calibration.unproject(np.array([cx + r * np.cos(a), cy + r * np.sin(a)])) for a in np.linspace(0, 2 * np.pi, 72)]
    edge_angle = max(np.arccos(e[2] / np.linalg.norm(e)) for e in edge if e is not None)
    T_cw = np.linalg.inv(T_world_camera)
    p = np.einsum("nij,nkj->nki", T_cw[:, :3, :3], wrists) + T_cw[:, None, :3, 3]
    dist = np.linalg.norm(p, axis=-1)
    reach = 0.5 * GLOVE_LENGTH + GLOVE_RADIUS
    angle = np.arccos(np.clip(p[..., 2] / dist, -1.0, 1.0))
    return (dist > reach) & (angle - np.arcsin(np.clip(reach / dist, 0.0, 1.0)) > edge_angle + np.deg2rad(2.0))


def test_hand_visibility_matches_glove_pixels(synthetic_root):
    """A hand visible in GT shows its glove colour in the decoded frame. A hand clearly out of view
    (behind the camera or well outside the image circle) shows no glove pixel, frame by frame;
    near the border a glove around an out-of-view wrist may peek in, so there only the agreement
    rate is checked."""
    agree, visible_frames, total, checked = 0, np.zeros(2, dtype=int), 0, 0
    for seq in _sequences(synthetic_root):
        _, frames = _gt(seq)
        vis = frames["hand_visible"]
        rec = ExportedRecording.open(seq / L.HEAD_DATA_DIR)
        xs = load_xsens(seq / L.XDATA)
        step = XSENS_FPS // int(round(1e9 / np.median(np.diff(frames["frame_timecode_ns"]))))
        wrists = xs.positions[np.arange(vis.shape[0]) * step][:, list(HANDS)]
        out_of_view = _clearly_invisible(rec.calibration, frames["T_world_camera_raw"], wrists)
        assert not (out_of_view & vis).any(), "a hand out of view is labelled visible"
        for i, frame in rec.iter_frames():
            counts = np.array([m.sum() for m in _glove_masks(frame)])
            seen = counts >= 10
            assert not (vis[i] & ~seen).any(), f"{seq.name} frame {i}: visible hand without glove pixels"
            assert not (out_of_view[i] & (counts > 0)).any(), f"{seq.name} frame {i}: out-of-view hand has glove pixels {counts}"
            checked += int(out_of_view[i].sum())
            agree += int((seen == vis[i]).sum())
            # The renderer's own label counts agree with the colours in the video.
            labelled = frames["glove_pixels"][i]
            assert not (seen & (labelled == 0)).any() and not (~seen & (labelled >= 40)).any(), (seq.name, i)
        visible_frames += vis.sum(0)
        total += vis.shape[0]
    assert checked > 0.4 * 2 * total, f"only {checked} of {2 * total} (frame, hand) pairs clearly out of view"
    assert agree / (2 * total) > 0.93
    assert (visible_frames > 0.1 * total).all(), f"hands rarely visible: {visible_frames} of {total}"


def test_default_set_covers_hand_interactions_and_looking_down():
    """The default demo set (4 x 30 s, seed 0): every sequence looks down and acts with a hand; together
    they hold every kind of hand interaction with both hands, and hands are in view in > 18 % of
    (frame, hand) pairs (the positives of a hand-presence classifier)."""
    from egotwin_bench.synthetic.body import MASTER_HZ, compute_channels, pose_at
    from egotwin_bench.synthetic.script import HAND_ACTIONS

    config = SyntheticConfig()
    assert (config.sequences, config.seconds, config.seed) == (4, 30.0, 0)
    kinds, hands, visible = set(), set(), []
    for spec in sequence_specs(config):
        plan = plan_sequence(spec, config)
        acts = [a for a in plan.script if a.kind in HAND_ACTIONS and a.t1 <= config.seconds]
        assert acts and any(a.kind == "look_down" and a.t1 <= config.seconds for a in plan.script), spec.sequence_id
        assert len({a.kind for a in acts}) == len(acts), "a kind repeats before the others are done"
        kinds |= {a.kind for a in acts}
        hands |= {a.hand for a in acts}
        channels = compute_channels(plan.script, config.seconds)
        pos, rot = pose_at(plan.subject, channels, np.arange(frames_per_sequence(config)) * (MASTER_HZ // config.fps))
        T_world_cam = make_transform(rot[:, HEAD], pos[:, HEAD]) @ plan.rig.T_head_camera
        calibration = aria_rgb_calibration(config.resolution, plan.rig.T_device_camera)
        visible.append(hand_visibility(calibration, T_world_cam, pos[:, list(HANDS)]))
    assert kinds == set(HAND_ACTIONS) and hands == {"left", "right"}
    assert np.concatenate(visible).mean() > 0.18


@pytest.mark.parametrize("seed", range(8))
def test_every_long_enough_sequence_looks_down_and_acts(seed):
    from egotwin_bench.synthetic.script import COVERAGE_SECONDS, HAND_ACTIONS

    config = SyntheticConfig(sequences=5, seconds=COVERAGE_SECONDS, seed=seed)
    for spec in sequence_specs(config):
        script = plan_sequence(spec, config).script
        done = [a.kind for a in script if a.t1 <= COVERAGE_SECONDS]
        assert "look_down" in done and set(done) & set(HAND_ACTIONS), (seed, spec.sequence_id, done)
        assert [a.to_json() for a in script] == [a.to_json() for a in plan_sequence(spec, config).script]  # deterministic


def test_narrations_inside_the_recording(synthetic_root):
    for seq in _sequences(synthetic_root):
        xs = load_xsens(seq / L.XDATA)
        rec = ExportedRecording.open(seq / L.HEAD_DATA_DIR)
        lo = max(xs.timestamps_ns[0], rec.timecode_ns[0])
        hi = min(xs.timestamps_ns[-1], rec.timecode_ns[-1])
        atomic = read_narration_csv(seq / L.NARRATION_DIR / "atomic_action.csv")
        motion = read_narration_csv(seq / L.NARRATION_DIR / "motion_narration.csv")
        assert atomic.unit == "ns" and list(atomic.columns) == [ATOMIC_COLUMN]
        assert list(motion.columns) == list(MOTION_COLUMNS)
        for table in (atomic, motion):
            assert len(table) >= 2
            assert np.all(table.start_ns >= lo - 1000) and np.all(table.end_ns <= hi + 1000)
            assert np.all(table.end_ns - table.start_ns <= MAX_WINDOW_S * 1e9 + 1)
            assert np.all(table.start_ns[1:] >= table.end_ns[:-1])
            assert all(text for col in table.columns.values() for text in col)
        # Windows tile the recording: together they cover it.
        assert atomic.end_ns[-1] - atomic.start_ns[0] == pytest.approx(hi - lo, abs=2e6)


def test_same_seed_same_pixels(tmp_path, monkeypatch):
    from egotwin_bench.synthetic import writer

    config = SyntheticConfig(sequences=2, seconds=6.0, seed=5, resolution=96, trajectory_hz=100)
    spec = sequence_specs(config)[1]
    a = write_sequence(tmp_path / "a", spec, config)
    monkeypatch.setattr(writer, "POSE_CHUNK", 97)  # long sequences are posed in chunks: same bytes
    b = write_sequence(tmp_path / "b", spec, config)
    monkeypatch.undo()
    for rel in (L.EXPORTED_RGB, L.CLOSED_LOOP, L.EXPORTED_TIMESTAMPS, "narration/atomic_action.csv", L.METADATA):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    with np.load(a / L.XDATA) as xa, np.load(b / L.XDATA) as xb:
        for key in xa.files:
            np.testing.assert_array_equal(xa[key], xb[key])
    other = SyntheticConfig(sequences=2, seconds=6.0, seed=6, resolution=96, trajectory_hz=100)
    c = write_sequence(tmp_path / "c", sequence_specs(other)[1], other)
    fa = ExportedRecording.open(a / L.HEAD_DATA_DIR).frame(3)
    fc = ExportedRecording.open(c / L.HEAD_DATA_DIR).frame(3)
    assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 5
    # Resuming: finished folders are kept; a folder written with other options is refused.
    assert [s.index for s in pending_specs(tmp_path / "a", config)] == [0]
    with pytest.raises(ValueError, match="other options"):
        pending_specs(tmp_path / "a", replace(config, resolution=128))


def test_each_fault_appears(synthetic_faulty_root):
    from tests.fixtures_synthetic import SYNTHETIC_FAULTS

    assigned = json.loads((synthetic_faulty_root / "faults.json").read_text())
    by_fault = {faults[0]: synthetic_faulty_root / seq for seq, faults in assigned.items() if faults}
    assert sorted(by_fault) == sorted(SYNTHETIC_FAULTS)
    assert list(assigned.values())[-1] == [], "the last sequence (unseen subject/location) stays clean"
    for fault, seq in by_fault.items():
        assert json.loads((seq / L.METADATA).read_text())["synthetic"]["faults"] == [fault]

    with np.load(by_fault["jittered_timestamps"] / L.XDATA) as x:
        steps = np.diff(x["timestamps_us"])
    assert np.abs(steps - 1e6 / XSENS_FPS).max() > 1000
    xs = load_xsens(by_fault["jittered_timestamps"] / L.XDATA)
    assert "patched" in xs.repairs[0]
    np.testing.assert_allclose(np.diff(xs.timestamps_ns), 1e9 / XSENS_FPS, atol=1000)

    with pytest.raises(XsensError, match="clock ends"):
        load_xsens(by_fault["irregular_timestamps"] / L.XDATA)

    with np.load(by_fault["zero_quaternions"] / L.XDATA) as x:
        q = x["segment_qWXYZ"].reshape(-1, NUM_SEGMENTS, 4)
    assert (np.linalg.norm(q, axis=-1) < 0.1).sum() > 0
    xs = load_xsens(by_fault["zero_quaternions"] / L.XDATA)
    assert any("zero-norm" in r for r in xs.repairs) and np.isfinite(xs.rotations).all()

    rec = ExportedRecording.open(by_fault["truncated_mp4"] / L.HEAD_DATA_DIR)
    decodable = rec.count_decodable_frames()
    assert 0 < decodable < len(rec)
    with pytest.raises(ExportedRecordingError, match="truncated"):
        list(rec.iter_frames())

    assert not (by_fault["missing_narration"] / L.NARRATION_DIR / "atomic_action.csv").exists()
    assert (by_fault["missing_narration"] / L.NARRATION_DIR / "motion_narration.csv").exists()
    assert any(m.startswith(L.CLOSED_LOOP) for m in L.open_sequence(by_fault["missing_trajectory"]).missing())
    clean = _sequences(synthetic_faulty_root)[-1]
    assert L.open_sequence(clean).missing() == [] and load_xsens(clean / L.XDATA).repairs == []


def test_exported_recording_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    calib = aria_rgb_calibration(64, make_rig(rng).T_device_camera)
    # Smooth frames (H.264 is lossy): a moving gradient.
    yy, xx = np.mgrid[0:64, 0:64]
    frames = [np.stack([(xx * 4 + 9 * i) % 256, (yy * 4) % 256, np.full_like(xx, 40 * i)], -1).astype(np.uint8)
              for i in range(6)]
    write_exported_recording(tmp_path, frames, [100 + 10 * i for i in range(6)], [i for i in range(6)], calib, fps=10)
    rec = ExportedRecording.open(tmp_path)
    assert len(rec) == 6 and rec.count_decodable_frames() == 6
    np.testing.assert_array_equal(rec.device_time_ns, [100, 110, 120, 130, 140, 150])
    np.testing.assert_allclose(rec.calibration.get_projection_params(), calib.get_projection_params())
    got = dict(rec.iter_frames([4, 1, 4]))
    assert sorted(got) == [1, 4]
    assert np.abs(got[4].astype(int) - frames[4].astype(int)).mean() < 6
    with pytest.raises(ExportedRecordingError, match="out of range"):
        list(rec.iter_frames([6]))
    with pytest.raises(ExportedRecordingError, match="increase"):
        write_exported_recording(tmp_path / "bad", frames[:2], [5, 5], [0, 1], calib, fps=10)
    assert not (tmp_path / "bad" / "rgb.mp4").exists()
    (tmp_path / "rgb_calibration.json").unlink()
    with pytest.raises(ExportedRecordingError, match="lacks"):
        ExportedRecording.open(tmp_path)


def test_cli_rejects_unknown_fault(tmp_path):
    from typer.testing import CliRunner

    from egotwin_bench.cli import app

    result = CliRunner().invoke(app, ["make-synthetic", "--out", str(tmp_path), "--faults", "melted_lens"])
    assert result.exit_code != 0 and "melted_lens" in result.output
    result = CliRunner().invoke(app, ["make-synthetic", "--out", str(tmp_path), "--fps", "7"])
    assert result.exit_code != 0 and "6000" in result.output


@pytest.mark.slow
def test_cli_with_worker_processes_matches_in_process(tmp_path):
    """`make-synthetic --workers 2` (spawned processes) writes the same bytes as the in-process writer."""
    from typer.testing import CliRunner

    from egotwin_bench.cli import app

    args = ["--sequences", "2", "--seconds", "6", "--seed", "3", "--resolution", "96", "--trajectory-hz", "100"]
    result = CliRunner().invoke(app, ["make-synthetic", "--out", str(tmp_path / "cli"), "--workers", "2", *args])
    assert result.exit_code == 0, result.output
    config = SyntheticConfig(sequences=2, seconds=6.0, seed=3, resolution=96, trajectory_hz=100)
    for spec in sequence_specs(config):
        ref = write_sequence(tmp_path / "ref", spec, config)
        for rel in (L.EXPORTED_RGB, L.CLOSED_LOOP, L.XDATA, L.METADATA):
            assert (tmp_path / "cli" / spec.sequence_id / rel).read_bytes() == (ref / rel).read_bytes(), rel
    result = CliRunner().invoke(app, ["make-synthetic", "--out", str(tmp_path / "cli"), *args])
    assert result.exit_code == 0 and "2 of 2 sequences already complete" in result.output


def _box_distance(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N, 3) points -> (N,) signed distance to an axis-aligned box (negative inside), metres."""
    q = np.maximum(lo - points, points - hi)
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


def test_the_head_never_enters_furniture() -> None:
    """The glasses' camera sits ~0.1 m in front of the head: a head closer than 0.25 m to a box
    would put the camera at or inside its surface (frames of flat texture that no estimator can
    track). Checked at 20 Hz over 8 sequences of 40 s, every activity, both crouching picks."""
    from egotwin_bench.synthetic.body import MASTER_HZ, compute_channels, pose_at

    config = SyntheticConfig(sequences=8, seconds=40.0, seed=3, resolution=64)
    kinds = set()
    for spec in sequence_specs(config):
        plan = plan_sequence(spec, config)
        t = np.arange(0.0, config.seconds, 0.05)
        positions, _ = pose_at(plan.subject, compute_channels(plan.script, config.seconds),
                               np.round(t * MASTER_HZ).astype(np.int64))
        head = positions[:, HEAD]
        nearest = np.min([_box_distance(head, b.lo, b.hi) for b in plan.scene.boxes if b.kind != "door"], axis=0)
        assert nearest.min() > 0.25, (spec.sequence_id, float(nearest.min()), float(t[nearest.argmin()]))
        kinds |= {a.kind for a in plan.script}
    assert {"crouch_pick", "reach", "pick", "walk"} <= kinds


def test_drift_options_need_realism():
    with pytest.raises(ValueError, match="need realism"):
        SyntheticConfig(drift_m=0.3)
    assert SyntheticConfig(realism=True, drift_m=0.3).drift_m == 0.3
