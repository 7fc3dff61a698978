"""Readers and writers of the curation on small hand-made files: MPS CSV, sequence layout,
Parquet shards, clip MP4s, config tables, dataset card."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.spatial.transform import Rotation

from egotwin_bench.constants import MOTION_FRAMES, NUM_JOINTS, VIDEO_FRAMES
from egotwin_bench.curation.card import card_dict, card_markdown
from egotwin_bench.curation.config import CurationConfig, config_from_dict
from egotwin_bench.curation.shards import (
    ARRAY_SHAPES,
    atomic_write_rows,
    atomic_write_table,
    clip_schema,
    column_array,
    rows_to_table,
)
from egotwin_bench.curation.video import decode_mp4, encode_mp4
from egotwin_bench.nymeria.layout import CLOSED_LOOP, XDATA, LayoutError, find_sequences, open_sequence
from egotwin_bench.nymeria.mps import TrajectoryError, load_closed_loop_trajectory
from tests.fixtures_dataset import fake_clip_row

MPS_COLUMNS = (
    "graph_uid,tracking_timestamp_us,utc_timestamp_ns,tx_world_device,ty_world_device,tz_world_device,"
    "qx_world_device,qy_world_device,qz_world_device,qw_world_device,device_linear_velocity_x_device,"
    "device_linear_velocity_y_device,device_linear_velocity_z_device,angular_velocity_x_device,"
    "angular_velocity_y_device,angular_velocity_z_device,gravity_x_world,gravity_y_world,gravity_z_world,"
    "quality_score,geo_available,tx_ecef_device,ty_ecef_device,tz_ecef_device,qx_ecef_device,qy_ecef_device,"
    "qz_ecef_device,qw_ecef_device"
)


def test_mps_trajectory_sorted_poses_and_errors(tmp_path):
    rot = Rotation.from_rotvec([[0, 0, 0.1 * i] for i in range(3)])
    lines = [MPS_COLUMNS]
    for i in (2, 0, 1, 1):  # unsorted, with a duplicate timestamp
        qx, qy, qz, qw = rot[i].as_quat()
        lines.append(",".join(map(str, ["g", 5000 + 1000 * i, 0, i, 2.0, 3.0, qx, qy, qz, qw] + [0] * 8
                                       + [-9.81, 0.5 + 0.25 * i, 0] + [0] * 6 + [1])))
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    traj = load_closed_loop_trajectory(tmp_path / "t.csv")
    np.testing.assert_array_equal(traj.timestamps_ns, [5_000_000, 6_000_000, 7_000_000])
    np.testing.assert_allclose(traj.T_world_device[:, :3, :3], rot.as_matrix(), atol=1e-7)
    np.testing.assert_allclose(traj.T_world_device[:, :3, 3], [[0, 2, 3], [1, 2, 3], [2, 2, 3]])
    np.testing.assert_allclose(traj.quality, [0.5, 0.75, 1.0])
    (tmp_path / "empty.csv").write_text(MPS_COLUMNS + "\n")
    with pytest.raises(TrajectoryError, match="0 pose"):
        load_closed_loop_trajectory(tmp_path / "empty.csv")
    (tmp_path / "garbage.csv").write_text("not,an,mps,file\n1,2,3,4\n")
    with pytest.raises(TrajectoryError, match="projectaria_tools: .*graph_uid"):  # the reader's own words
        load_closed_loop_trajectory(tmp_path / "garbage.csv")
    with pytest.raises(TrajectoryError, match="no MPS"):
        load_closed_loop_trajectory(tmp_path / "absent.csv")


def test_layout_ids_and_missing_files(tmp_path):
    seq = tmp_path / "20230607_s0_james_johnson_act1_abc123"
    seq.mkdir()
    (seq / "metadata.json").write_text(json.dumps({"location": "house 2"}))
    layout = open_sequence(seq)
    assert (layout.sequence_id, layout.subject_id, layout.location_id) == (seq.name, "james_johnson", "house 2")
    assert len(layout.missing()) == 3 and f"{XDATA} (download group, Nymeria: `body_motion`)" in layout.missing()
    (seq / XDATA).parent.mkdir(parents=True)
    (seq / XDATA).write_bytes(b"")
    (seq / CLOSED_LOOP).parent.mkdir(parents=True)
    (seq / CLOSED_LOOP).write_text("")
    assert layout.missing() == ["recording_head/data/data.vrs (download group, Nymeria: `recording_head_data_data_vrs` "
                                "(data.vrs is not in `recording_head`)) or an exported recording "
                                "(recording_head/data/rgb.mp4+rgb_timestamps.csv+rgb_calibration.json)"]
    # Nymeria+ (recognised by its own files): data.vrs is in no download group, xdata.npz in body_raw.
    (seq / "body" / "xdata_smpl_neutral.npz").write_bytes(b"")
    (seq / XDATA).unlink()
    assert layout.is_nymeria_plus
    missing = layout.missing()
    assert f"{XDATA} (download group, Nymeria+: `body_raw`)" in missing
    assert "Nymeria+: none: `recording_head/data/data.vrs` is an ungrouped file, never auto-included" in missing[1]
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.json").write_text(json.dumps({"sequence_id": "a/b c", "subject_id": 7}))
    o = open_sequence(other)
    assert (o.sequence_id, o.subject_id, o.location_id) == ("a-b-c", "7", "unknown")
    (tmp_path / "not_a_sequence").mkdir()
    assert find_sequences(tmp_path) == [seq, other]
    (other / "metadata.json").write_text("{oops")
    with pytest.raises(LayoutError, match="not valid JSON"):
        open_sequence(other)
    with pytest.raises(LayoutError, match="is not a directory"):
        find_sequences(tmp_path / "nowhere")


def test_shard_round_trip_is_plain_parquet(tmp_path):
    rng = np.random.default_rng(0)
    rows = [fake_clip_row(rng, k) for k in range(3)]
    path = tmp_path / "shards" / "clips-seq.parquet"
    atomic_write_table(rows_to_table(rows), path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    table = pq.read_table(path)
    assert table.schema.equals(clip_schema(), check_metadata=False)
    assert json.loads(table.schema.metadata[b"egotwin.shapes"])["motion_rotations"] == [MOTION_FRAMES, NUM_JOINTS, 3, 3]
    for name in ARRAY_SHAPES:
        want = np.stack([r[name] for r in rows]).astype(np.float32 if name != "hand_visible" else np.uint8)
        np.testing.assert_array_equal(column_array(table, name), want)
    assert table.column("quality_flags").to_pylist() == [[], ["a"], ["a", "a"]]
    import polars as pl

    df = pl.read_parquet(path)
    assert df.height == 3 and df["motion_positions"].dtype == pl.Array(pl.Float32, MOTION_FRAMES * NUM_JOINTS * 3)
    with pytest.raises(ValueError):
        rows_to_table([{**rows[0], "camera_poses": np.zeros((40, 4, 4))}])


def test_streamed_shard_equals_the_table_and_a_failure_keeps_the_old_file(tmp_path):
    rng = np.random.default_rng(1)
    rows = [fake_clip_row(rng, k) for k in range(5)]
    path = tmp_path / "shards" / "clips-seq.parquet"
    assert atomic_write_rows(iter(rows), path, row_group_size=2) == 5
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [2, 2, 1]
    assert pq.read_table(path).equals(rows_to_table(rows))
    before = path.read_bytes()

    def failing():
        yield from rows[:3]  # one row group is already in the temp file when this raises
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        atomic_write_rows(failing(), path, row_group_size=2)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]
    assert atomic_write_rows(iter([]), path) == 0 and pq.read_table(path).num_rows == 0


def test_mp4_round_trip_keeps_every_frame_and_is_deterministic():
    import cv2

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (720, 720, 3)).astype(np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    frames = np.stack([texture[3 * k : 3 * k + 480, 2 * k : 2 * k + 480] for k in range(VIDEO_FRAMES)])
    data = encode_mp4(frames)
    # Identical bytes on every call: resumed runs must write identical shards (x264's mbtree broke this).
    assert all(encode_mp4(frames) == data for _ in range(2))
    video = CurationConfig().video  # the curation's own preset too
    fast = encode_mp4(frames, crf=video.crf, preset=video.preset)
    assert fast != data and encode_mp4(frames, crf=video.crf, preset=video.preset) == fast
    out = decode_mp4(data)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).mean() < 5.0  # yuv420p: chroma of a random colour texture suffers
    with pytest.raises(ValueError, match="T, H, W, 3"):
        encode_mp4(frames[..., 0])


def test_config_from_toml_tables_and_fingerprint():
    cfg = config_from_dict({"windows": {"min_narration_s": 3.0}, "splits": {"seed": 5}})
    assert cfg.windows.min_narration_s == 3.0 and cfg.splits.seed == 5
    assert cfg.fingerprint() != CurationConfig().fingerprint()
    assert config_from_dict({"splits": {"seed": 5}}).fingerprint() == CurationConfig().fingerprint()
    with pytest.raises(ValueError, match="unknown curation config key 'window'"):
        config_from_dict({"window": {}})
    with pytest.raises(ValueError, match=r"\[alignment\]"):
        config_from_dict({"alignment": {"max_residual": 1.0}})


def test_config_file_holds_the_run_table_and_the_repo_config_is_valid(tmp_path):
    from pathlib import Path

    from egotwin_bench.curation.config import load_config_file

    repo_toml = Path(__file__).resolve().parents[1] / "pipelines" / "curation.toml"
    config, run = load_config_file(repo_toml)
    assert {"nymeria_root", "out", "workers"} <= set(run) and config.fingerprint() == CurationConfig().fingerprint()
    (tmp_path / "c.toml").write_text('[video]\npreset = "ultrafast"\ncrf = 21\n')
    config, run = load_config_file(tmp_path / "c.toml")
    assert run == {} and (config.video.preset, config.video.crf) == ("ultrafast", 21)
    (tmp_path / "bad.toml").write_text("[video\n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_config_file(tmp_path / "bad.toml")


def test_card_counts_reasons_and_hours():
    reports = [
        {"sequence_id": "a", "subject_id": "s1", "location_id": "l1", "split": "train", "status": "ok", "reason": None,
         "clips": 2, "drops": {"overlap": 1}, "alignment": {"residual_m": 0.01, "residual_deg": 0.2,
                                                       "clip_residual_m": [0.01, 0.012], "clip_residual_deg": [0.2, 0.3]}},
        {"sequence_id": "b", "subject_id": "s2", "location_id": "l2", "split": "test", "status": "ok", "reason": None,
         "clips": 1, "drops": {"overlap": 2, "static_clip": 1}, "alignment": {"residual_m": 0.03, "residual_deg": 0.4,
                                                                  "clip_residual_m": [0.03], "clip_residual_deg": [0.4]}},
        {"sequence_id": "c", "subject_id": "s3", "location_id": "l3", "split": "val", "status": "skipped",
         "reason": "xsens: irregular timestamps", "clips": 0, "drops": {}, "alignment": None},
    ]
    splits = {"train": ["a__1", "a__2"], "val": [], "test": ["b__1"]}
    card = card_dict(reports, splits, {}, "test")
    assert card["clips"] == {"train": 2, "val": 0, "test": 1, "total": 3}
    assert card["hours"]["train"] == pytest.approx(10 / 3600)
    assert card["skip_reasons"] == {"xsens": 1}
    assert card["drop_reasons"] == {"overlap": 3, "static_clip": 1}
    assert card["alignment_residual_m"]["max"] == pytest.approx(0.03)  # over the 3 clips
    assert card["alignment_residual_deg"]["median"] == pytest.approx(0.3)
    assert card["subjects"]["test"] == ["s2"]
    md = card_markdown(card)
    assert "| test | 1 |" in md and "`xsens`: 1" in md and "irregular timestamps" in md


def test_atomic_writes_fsync_and_keep_the_old_file_on_failure(tmp_path, monkeypatch):
    import os

    from egotwin_bench.curation import shards

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "report" / "seq.json"
    shards.atomic_write_text('{"a": 1}', path)
    assert synced == [str(path.parent / f".seq.json.tmp-{os.getpid()}"), str(path.parent)]  # the file, then its folder
    synced.clear()
    shards.atomic_write_table(rows_to_table([fake_clip_row(np.random.default_rng(0), 0)]), tmp_path / "s.parquet")
    assert len(synced) == 2

    def broken(table, where, **kwargs):
        open(where, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        shards.atomic_write_table(rows_to_table([]), tmp_path / "s.parquet")
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["report", "s.parquet"]


def test_fingerprint_covers_code_schema_and_video(monkeypatch):
    from egotwin_bench.curation import config as config_module
    from egotwin_bench.curation.video import VideoConfig

    base = CurationConfig().fingerprint()
    assert CurationConfig(video=VideoConfig(preset="ultrafast")).fingerprint() != base
    monkeypatch.setattr(config_module, "__version__", "99.0")
    assert CurationConfig().fingerprint() != base
    monkeypatch.undo()
    monkeypatch.setattr(config_module, "SCHEMA_VERSION", "egotwin-clips/99")
    assert CurationConfig().fingerprint() != base


def test_clip_reads_use_one_row_group_and_equal_whole_shard_reads(tmp_path):
    """A 40-clip shard (row groups of 16, 16, 8): every clip's arrays and bytes read through
    `CuratedDataset` equal the rows of the whole table."""
    from egotwin_bench.curation.pipeline import finalize
    from egotwin_bench.curation.sequence import shard_path
    from egotwin_bench.data import CuratedDataset

    rng = np.random.default_rng(0)
    rows = [fake_clip_row(rng, k) for k in range(40)]
    atomic_write_table(rows_to_table(rows), shard_path(tmp_path, "seq"))
    assert pq.ParquetFile(shard_path(tmp_path, "seq")).metadata.num_row_groups == 3
    report = {"sequence_id": "seq", "subject_id": "s", "location_id": "l", "split": "train", "status": "ok",
              "reason": None, "clips": 40, "drops": {}, "alignment": None}
    finalize(tmp_path, [report], {"seq": "train"}, CurationConfig())
    data = CuratedDataset(tmp_path)
    whole = pq.read_table(shard_path(tmp_path, "seq"))
    for k, cid in enumerate(data.clip_ids("train")):
        arrays = data.arrays(cid)
        for name in ARRAY_SHAPES:
            want = column_array(whole.slice(k, 1), name)[0]
            np.testing.assert_array_equal(arrays[name], want.astype(bool) if name == "hand_visible" else want)
        assert data.video_bytes(cid) == whole.column("video_mp4")[k].as_py() == rows[k]["video_mp4"]
    with pytest.raises(KeyError, match="unknown clip id"):
        data.arrays("nope")


def test_exported_frames_convert_like_swscale(tmp_path):
    """The fast BT.601 conversion of decoded frames is within a level of swscale's."""
    import av

    from egotwin_bench.nymeria.exported_recording import frame_to_rgb

    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (4, 24, 32, 3)), 4, axis=1), 4, axis=2).astype(np.uint8)
    with av.open(io.BytesIO(encode_mp4(frames))) as container:
        for frame in container.decode(video=0):
            fast, slow = frame_to_rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
            assert fast.shape == slow.shape == (96, 128, 3)
            assert np.abs(fast - slow).mean() < 1.5 and np.abs(fast - slow).max() <= 12


def test_exported_frames_of_another_size_than_the_calibration_are_refused(tmp_path):
    """64² frames under a 128² calibration (undistorting would sample outside the frames: 76 %
    black output before this check): a clear error naming both sizes."""
    from egotwin_bench.nymeria.exported_recording import (
        CALIBRATION_FILE, ExportedRecording, ExportedRecordingError, calibration_to_json, write_exported_recording)
    from egotwin_bench.synthetic.camera import aria_rgb_calibration

    small, big = aria_rgb_calibration(64, np.eye(4)), aria_rgb_calibration(128, np.eye(4))
    frames = [np.full((64, 64, 3), 100 + k, np.uint8) for k in range(3)]
    write_exported_recording(tmp_path, frames, [10, 20, 30], [1, 2, 3], small, fps=10)
    assert len(ExportedRecording.open(tmp_path)) == 3
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(calibration_to_json(big)))
    with pytest.raises(ExportedRecordingError, match="frames are 64x64, but rgb_calibration.json describes a 128x128"):
        ExportedRecording.open(tmp_path)
