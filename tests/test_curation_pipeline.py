"""`build-dataset` end to end on `make-synthetic` output, checked against the synthetic ground truth.

Fixtures: `synthetic_root` / `synthetic_faulty_root` (tests/fixtures_synthetic.py), `built_dataset`
(the clean fixture curated in-process) and `ray_session` (tests/fixtures_dataset.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.spatial.transform import Rotation, Slerp

from egotwin_bench.constants import MOTION_FPS, MOTION_FRAMES, VIDEO_FPS, VIDEO_FRAMES, VIDEO_SIZE
from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.pipeline import build_dataset
from egotwin_bench.curation.shards import clip_schema
from egotwin_bench.data import ClipDataset, CuratedDataset
from egotwin_bench.skeleton import HANDS, HEAD

GT_FRAMES = "synthetic_gt/frames.npz"
GT_SEQUENCE = "synthetic_gt/sequence.json"


def _gt(root: Path, sequence_id: str) -> tuple[dict, dict]:
    frames = dict(np.load(root / sequence_id / GT_FRAMES))
    return frames, json.loads((root / sequence_id / GT_SEQUENCE).read_text())


def test_layout_schema_and_loader(built_dataset):
    root = built_dataset
    data = CuratedDataset(root)
    n = data.manifest.num_rows
    assert n >= 6
    assert sorted(sum(data.splits.values(), [])) == sorted(data.clip_ids())
    card = json.loads((root / "dataset_card.json").read_text())
    assert card["clips"]["total"] == n and card["sequences"]["skipped"] == 0
    for shard in sorted((root / "shards").glob("*.parquet")):
        assert pq.read_schema(shard).equals(clip_schema(), check_metadata=False)
    import polars as pl

    assert pl.read_parquet(root / "shards" / "*.parquet").height == n  # plain readers, no toolkit code
    for representation, dim in (("head_centric", 288), ("root_centric", 275)):
        ds = ClipDataset(root, "train", representation, load_video=representation == "head_centric")
        item = ds[0]
        assert item["motion"].shape == (MOTION_FRAMES, dim) and item["motion"].dtype == np.float32
        assert np.isfinite(item["motion"]).all()
    assert item["text"] and item["metadata"]["text_source"] == "atomic_action:Describe my atomic actions"
    video = ClipDataset(root, "test")[0]["video"]
    assert video.shape == (VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE, 3) and video.dtype == np.uint8
    assert 20 < video.mean() < 235


def test_camera_poses_and_head_camera_match_ground_truth(built_dataset, synthetic_root):
    data = CuratedDataset(built_dataset)
    grid_ns = np.round(np.arange(VIDEO_FRAMES) * 1e9 / VIDEO_FPS).astype(np.int64)
    for cid in data.clip_ids():
        row = data.row(cid)
        frames, seq = _gt(synthetic_root, row["sequence_id"])
        a = data.arrays(cid)
        np.testing.assert_allclose(a["intrinsics"], [[240, 0, 239.5], [0, 240, 239.5], [0, 0, 1]])
        np.testing.assert_allclose(a["T_head_camera"], seq["T_head_camera_upright"], atol=1e-4)
        period = np.median(np.diff(frames["frame_timecode_ns"]))
        for k, t in enumerate(row["t0_timecode_ns"] + grid_ns):
            # The frame shown is a nearest one (at most half a frame period away); its pose must match.
            near = np.flatnonzero(np.abs(frames["frame_timecode_ns"] - t) <= period / 2 + 1)
            gt = frames["T_world_camera_upright"][near]
            err_t = np.linalg.norm(gt[:, :3, 3] - a["camera_poses"][k, :3, 3], axis=-1)
            err_r = Rotation.from_matrix(np.swapaxes(gt[:, :3, :3], 1, 2) @ a["camera_poses"][k, :3, :3]).magnitude()
            assert near.size and (err_t.min() < 1e-3 and err_r[err_t.argmin()] < 1e-3), (cid, k, err_t, err_r)
        assert row["alignment_residual_m"] < 1e-3 and row["alignment_residual_deg"] < 0.05


def test_undistorted_frames_match_a_pinhole_render_from_the_stored_camera(built_dataset, synthetic_root):
    """Render the room directly through the stored K from the stored camera pose: the decoded clip
    frame must line up with it to a fraction of a pixel (undistortion, rotation, intrinsics, pose)."""
    import cv2
    from projectaria_tools.core.calibration import CameraCalibration, CameraModelType
    from projectaria_tools.core.sophus import SE3

    from egotwin_bench.synthetic.camera import build_ray_table
    from egotwin_bench.synthetic.render import Renderer
    from egotwin_bench.synthetic.scene import make_scene
    from egotwin_bench.synthetic.writer import SyntheticConfig, sequence_specs
    from tests.fixtures_synthetic import SYNTHETIC_CONFIG

    specs = {s.sequence_id: s for s in sequence_specs(SyntheticConfig(**SYNTHETIC_CONFIG))}
    data = CuratedDataset(built_dataset)
    cids = [data.clip_ids("train")[0], data.clip_ids("test")[-1]]
    K = data.arrays(cids[0])["intrinsics"].astype(np.float64)
    pinhole = CameraCalibration("pinhole", CameraModelType.LINEAR, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]),
                                SE3.from_matrix(np.eye(4)), VIDEO_SIZE, VIDEO_SIZE, None, np.pi / 2, "")
    rays = build_ray_table(pinhole)
    shifts = []
    for cid in cids:
        scene = make_scene(specs[data.row(cid)["sequence_id"]].location_index, SYNTHETIC_CONFIG["seed"])
        renderer = Renderer(scene, rays)
        poses, video = data.arrays(cid, ("camera_poses",))["camera_poses"], data.video(cid)
        for k in (0, 20, 40):
            image, _ = renderer.render(poses[k].astype(np.float64))  # the room only, no body
            gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (video[k], image)]
            (dx, dy), response = cv2.phaseCorrelate(gray[0], gray[1])
            assert response > 0.15, (cid, k, response)
            shifts.append(np.hypot(dx, dy))
    assert max(shifts) < 0.5, shifts


def _glove_mask(frame: np.ndarray, side: str) -> np.ndarray:
    f = frame.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    if side == "left":  # green glove
        return (g > 60) & (g > 1.5 * r) & (g > 1.5 * b)
    return (r > 60) & (b > 60) & (r > 1.5 * g) & (b > 1.5 * g)  # magenta glove


def test_hand_visibility_labels_match_ground_truth_and_pixels(built_dataset, synthetic_root):
    data = CuratedDataset(built_dataset)
    agree, seen_glove, visible_total = [], [], 0
    for cid in data.clip_ids():
        row = data.row(cid)
        frames, _ = _gt(synthetic_root, row["sequence_id"])
        a = data.arrays(cid)
        t = row["t0_timecode_ns"] + np.round(np.arange(VIDEO_FRAMES) * 1e9 / VIDEO_FPS).astype(np.int64)
        nearest = np.abs(frames["frame_timecode_ns"][None, :] - t[:, None]).argmin(axis=1)
        gt = frames["hand_visible"][nearest]  # fisheye (wider) view: visible in the pinhole => visible there
        agree.append(gt[a["hand_visible"]])
        video = data.video(cid)
        K, cams = a["intrinsics"].astype(np.float64), a["camera_poses"].astype(np.float64)
        hands = a["motion_positions"][::2][:, list(HANDS)].astype(np.float64)
        for k in range(VIDEO_FRAMES):
            for h, side in enumerate(("left", "right")):
                p = np.linalg.inv(cams[k]) @ np.append(hands[k, h], 1.0)
                u, v = (K @ p[:3])[:2] / p[2]
                if not (a["hand_visible"][k, h] and 12 <= u < VIDEO_SIZE - 12 and 12 <= v < VIDEO_SIZE - 12):
                    continue
                visible_total += 1
                ui, vi = int(round(u)), int(round(v))
                seen_glove.append(_glove_mask(video[k, vi - 10 : vi + 11, ui - 10 : ui + 11], side).any())
    agree = np.concatenate(agree)
    assert agree.size > 20 and agree.mean() > 0.95, (agree.size, agree.mean())
    assert visible_total > 20 and np.mean(seen_glove) > 0.9, (visible_total, np.mean(seen_glove))


def test_motion_features_decode_to_resampled_ground_truth(built_dataset, synthetic_root):
    from egotwin_bench.geometry import make_transform
    from egotwin_bench.motion import head_centric

    ds = ClipDataset(built_dataset, "train", "head_centric", load_video=False)
    for i in range(len(ds)):
        item = ds[i]
        meta = item["metadata"]
        with np.load(synthetic_root / meta["sequence_id"] / "body" / "xdata.npz") as x:
            ts = x["timestamps_us"].astype(np.float64) * 1000
            pos = x["segment_tXYZ"].reshape(-1, 23, 3).astype(np.float64)
            quat = x["segment_qWXYZ"].reshape(-1, 23, 4).astype(np.float64)
        t = meta["t0_timecode_ns"] + np.arange(MOTION_FRAMES) * 1e9 / MOTION_FPS
        gt_pos = np.stack([[np.interp(t, ts, pos[:, j, c]) for c in range(3)] for j in range(23)]).transpose(2, 0, 1)
        head = Slerp(ts, Rotation.from_quat(quat[:, HEAD][:, [1, 2, 3, 0]]))(t[:1]).as_matrix()[0]
        T0 = make_transform(head, gt_pos[0, HEAD])
        dec_pos, _ = head_centric.decode(item["motion"].astype(np.float64), T0)
        np.testing.assert_allclose(dec_pos, gt_pos, atol=2e-3)


def test_splits_keep_test_subjects_and_locations_out_of_train(built_dataset, synthetic_root):
    m = CuratedDataset(built_dataset).manifest.to_pylist()
    by = {s: [r for r in m if r["split"] == s] for s in ("train", "val", "test")}
    assert by["train"] and by["test"]
    for key in ("subject_id", "location_id"):
        assert not {r[key] for r in by["test"]} & {r[key] for r in by["train"]}
    splits = json.loads((built_dataset / "splits.json").read_text())
    assert all(set(splits[s]) == {r["clip_id"] for r in by[s]} for s in by)
    # The split column is the seeded assignment over the sequences.
    from egotwin_bench.curation.splits import SequenceKey, SplitConfig, assign_splits

    keys = [SequenceKey(r["sequence_id"], r["subject_id"], r["location_id"]) for r in m]
    keys = list({k.sequence_id: k for k in keys}.values())
    assert assign_splits(keys, SplitConfig(seed=0)) == {r["sequence_id"]: r["split"] for r in m}


EXPECTED_FAULT_OUTCOME = {
    "jittered_timestamps": ("ok", "patched"),
    "irregular_timestamps": ("skipped", "xsens"),
    "zero_quaternions": ("ok", "zero-norm"),
    "truncated_mp4": ("skipped", "no_clips"),  # its one clip window lacks frames (rgb_frame_missing)
    "missing_narration": ("skipped", "no_narration"),
    "missing_trajectory": ("skipped", "missing_data"),
}


def test_every_fault_is_skipped_or_repaired_with_its_reason(synthetic_faulty_root, tmp_path):
    faults = json.loads((synthetic_faulty_root / "faults.json").read_text())
    card = build_dataset(synthetic_faulty_root, tmp_path / "out", CurationConfig(), engine="local")
    assert set(sum(faults.values(), [])) == set(EXPECTED_FAULT_OUTCOME)
    for sequence_id, names in faults.items():
        report = json.loads((tmp_path / "out" / "report" / f"{sequence_id}.json").read_text())
        if not names:
            assert report["status"] == "ok" and not report["repairs"]
            continue
        (name,) = names
        status, code = EXPECTED_FAULT_OUTCOME[name]
        assert report["status"] == status, (name, report["reason"])
        if status == "skipped":
            assert report["reason"].startswith(code + ":"), (name, report["reason"])
            assert not (tmp_path / "out" / "shards" / f"clips-{sequence_id}.parquet").exists()
        else:
            assert any(code in r for r in report["repairs"]), (name, report["repairs"])
            flags = pq.read_table(tmp_path / "out" / "shards" / f"clips-{sequence_id}.parquet").column("quality_flags")
            assert all("xsens_repaired" in f for f in flags.to_pylist())
    assert card["skip_reasons"] == {"missing_data": 1, "no_clips": 1, "no_narration": 1, "xsens": 1}
    assert card["drop_reasons"].get("rgb_frame_missing") == 1  # the truncated video's clip
    assert card["sequences"] == {"total": 7, "ok": 3, "skipped": 4}
    assert "truncated" in (tmp_path / "out" / "dataset_card.md").read_text()


def _report_without_timing(path: Path) -> dict:
    d = json.loads(path.read_text())
    d.pop("seconds")
    d.pop("peak_rss_gib")
    return d


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_same_dataset(clean: Path, other: Path) -> None:
    """Same files; equal Parquet tables, reports equal but for timing, other files byte-equal."""
    assert _files(other) == _files(clean)
    for rel in _files(clean):
        a, b = clean / rel, other / rel
        if rel.endswith(".parquet"):
            assert pq.read_table(a).equals(pq.read_table(b)), rel
        elif rel.startswith("report/"):
            assert _report_without_timing(a) == _report_without_timing(b), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel


def test_killed_run_resumed_with_ray_equals_the_clean_run(built_dataset, synthetic_root, tmp_path, ray_session):
    """Kill a local-engine run after its first finished sequence, leave crash debris, resume with
    the Ray engine: the result equals the uninterrupted in-process run, file by file."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "egotwin_bench.cli", "build-dataset", "--nymeria-root", str(synthetic_root),
           "--out", str(out), "--engine", "local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "report").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.stem for p in (out / "report").glob("*.json"))
    n_sequences = len(list(synthetic_root.glob("*/metadata.json")))
    assert 1 <= len(done) < n_sequences, "the run was not interrupted mid-way"
    # Debris of a crash between two writes: a temp file, and a shard whose report is missing.
    (out / "shards" / ".clips-x.parquet.tmp-99999").write_bytes(b"partial")
    pending = sorted(p.parent.name for p in synthetic_root.glob("*/metadata.json") if p.parent.name not in done)
    (out / "shards" / f"clips-{pending[0]}.parquet").write_bytes(b"not parquet")

    processed = []

    def count(stream, total):
        for report in stream:
            processed.append(report["sequence_id"])
            yield report

    build_dataset(synthetic_root, out, CurationConfig(), workers=2, engine="ray", progress=count)
    assert sorted(processed) == pending
    _assert_same_dataset(built_dataset, out)
    assert ray_session.data.read_parquet(str(out / "shards")).count() == CuratedDataset(out).manifest.num_rows
    processed.clear()
    build_dataset(synthetic_root, out, CurationConfig(), workers=2, engine="ray", progress=count)
    assert processed == []  # a rerun of a finished dataset does nothing


KILL_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path

import pyarrow.parquet as pq

import egotwin_bench.curation.shards as shards

kind, nth = sys.argv[1], int(sys.argv[2])
seen = []


def die_half_way(tmp: Path, data: bytes) -> None:
    tmp.write_bytes(data[: len(data) // 2])  # half a file on disk, then SIGKILL: no cleanup runs
    os.kill(os.getpid(), signal.SIGKILL)


real_write_group, real_write_text = pq.ParquetWriter.write_table, Path.write_text


def write_group(self, table, *args, **kwargs):
    # Shards stream in row groups (shards.atomic_write_rows): die once the nth shard's temp
    # file holds its first row group and no footer.
    real_write_group(self, table, *args, **kwargs)
    where = Path(str(self.where))
    if kind == "shard" and where.name.startswith(".clips-") and where not in seen:
        seen.append(where)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)


def write_text(self, text, *args, **kwargs):
    if kind == "report" and self.parent.name == "report" and self.name.startswith("."):
        seen.append(self)
        if len(seen) == nth:
            die_half_way(self, text.encode())
    return real_write_text(self, text, *args, **kwargs)


pq.ParquetWriter.write_table, Path.write_text = write_group, write_text
sys.argv = ["egotwin-bench", *sys.argv[3:]]
from egotwin_bench.cli import app

app()
"""


@pytest.mark.parametrize("kind, nth", [("shard", 2), ("report", 3)])
def test_run_killed_while_writing_resumes_to_the_clean_run(built_dataset, synthetic_root, tmp_path, kind, nth):
    """SIGKILL in the middle of writing the nth shard (or report): a half-written temp file is
    left; the rerun removes it, redoes the unfinished sequences and equals the clean run."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", KILL_WHILE_WRITING, kind, str(nth), "build-dataset",
           "--nymeria-root", str(synthetic_root), "--out", str(out), "--engine", "local"]
    proc = subprocess.run(cmd, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    sub = "shards" if kind == "shard" else "report"
    assert len(list((out / sub).glob(".*.tmp-*"))) == 1, "the run was not killed mid-write"
    assert len(list((out / "report").glob("*.json"))) == nth - 1
    if kind == "report":  # the shard of the killed sequence is complete, its commit marker is not
        assert len(list((out / "shards").glob("*.parquet"))) == nth
    build_dataset(synthetic_root, out, CurationConfig(), engine="local")
    _assert_same_dataset(built_dataset, out)


def test_clip_dataset_reads_one_row_group_and_equals_whole_shard_reads(built_dataset):
    """`ClipDataset` items equal the arrays and video of the whole-shard read (the old path)."""
    from egotwin_bench.curation.shards import column_array
    from egotwin_bench.curation.video import decode_mp4

    ds = ClipDataset(built_dataset, "train")
    data = ds.data
    for i in range(len(ds)):
        item = ds[i]
        row = data.row(ds.ids[i])
        whole = pq.read_table(built_dataset / row["shard"]).slice(row["row"], 1)
        assert whole.column("clip_id")[0].as_py() == ds.ids[i]
        for name in ("camera_poses", "intrinsics", "T_head_camera"):
            np.testing.assert_array_equal(item["metadata"][name], column_array(whole, name)[0])
        np.testing.assert_array_equal(item["metadata"]["hand_visible"], column_array(whole, "hand_visible")[0].astype(bool))
        np.testing.assert_array_equal(item["video"], decode_mp4(whole.column("video_mp4")[0].as_py()))
        raw = data.arrays(ds.ids[i], ("motion_positions", "motion_rotations"))
        for name, value in raw.items():
            np.testing.assert_array_equal(value, column_array(whole, name)[0])
