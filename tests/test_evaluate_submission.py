"""Submission format: reference submissions, reading both motion formats, and a validator that
lists every problem of a malformed submission at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.curation.video import encode_mp4
from egotwin_bench.evaluate.baselines import derangement, make_reference_submission
from egotwin_bench.evaluate.reference import load_clips, reference_name, split_ids
from egotwin_bench.evaluate.submission import read_meta, read_motion, validate_submission, write_clip


@pytest.fixture(scope="module")
def ground_truth(room_dataset, tmp_path_factory) -> Path:
    return make_reference_submission(room_dataset, tmp_path_factory.mktemp("subs") / "ground_truth")


def copy_of(folder: Path, tmp_path: Path, name: str = "broken") -> Path:
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


def test_reference_submissions(room_dataset, ground_truth, tmp_path):
    ids = split_ids(room_dataset, "test")
    report = validate_submission(ground_truth, ids, reference_name(room_dataset))
    assert report.ok and report.valid_clips == ids, report.summary()
    meta = read_meta(ground_truth)
    assert (meta.method, meta.task, meta.motion_format) == ("ground_truth", "t2vm", "world_joints")
    refs = load_clips(room_dataset, "test")
    for ref in refs:
        pos, rot = read_motion(ground_truth / f"{ref.clip_id}.npz", "world_joints")
        np.testing.assert_array_equal(pos, ref.positions)
        np.testing.assert_array_equal(rot, ref.rotations)
        assert (ground_truth / f"{ref.clip_id}.mp4").read_bytes() == ref.video_mp4
    shuffled = make_reference_submission(room_dataset, tmp_path / "shuffled", shuffle_motion=True, seed=3)
    assert read_meta(shuffled).method == "shuffled_motion"
    own = [read_motion(shuffled / f"{r.clip_id}.npz", "world_joints")[0] for r in refs]
    for i, ref in enumerate(refs):  # every clip keeps its video but carries another clip's motion
        assert (shuffled / f"{ref.clip_id}.mp4").read_bytes() == ref.video_mp4
        assert not np.array_equal(own[i], ref.positions)
        assert any(np.array_equal(own[i], other.positions) for other in refs)


def test_derangement_has_no_fixed_point():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10):
        perm = derangement(n, rng)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    with pytest.raises(ValueError, match="at least two"):
        derangement(1, rng)


def test_head_centric_submission_reads_back_world_motion(room_dataset, tmp_path):
    from egotwin_bench.motion import head_centric

    ref = load_clips(room_dataset, "test", limit=1)[0]
    features = head_centric.encode(ref.positions.astype(np.float64), ref.rotations.astype(np.float64))
    first = head_centric.canonical_transform(ref.positions.astype(np.float64), ref.rotations.astype(np.float64))
    write_clip(tmp_path, ref.clip_id, ref.video_mp4, features=features, first_head_pose=first)
    pos, rot = read_motion(tmp_path / f"{ref.clip_id}.npz", "head_centric")
    np.testing.assert_allclose(pos, ref.positions, atol=1e-4)
    np.testing.assert_allclose(rot, ref.rotations, atol=1e-4)


def test_malformed_submission_lists_every_problem(room_dataset, ground_truth, tmp_path):
    ids = split_ids(room_dataset, "test")
    sub = copy_of(ground_truth, tmp_path)
    a, b, c, d = ids
    (sub / f"{a}.npz").unlink()  # missing motion
    frames = np.zeros((40, 480, 480, 3), np.uint8)
    (sub / f"{b}.mp4").write_bytes(encode_mp4(frames))  # 40 frames
    (sub / f"{c}.mp4").write_bytes(encode_mp4(np.zeros((41, 320, 320, 3), np.uint8), fps=10))  # size + fps
    with np.load(sub / f"{c}.npz") as z:
        pos, rot = z["positions"].copy(), z["rotations"].copy()
    pos[5, 3, 1] = np.nan
    np.savez(sub / f"{c}.npz", positions=pos, rotations=rot[:, :20])  # NaN + wrong shape
    (sub / f"{d}.npz").write_bytes(b"not an npz")  # unreadable
    shutil.copy(sub / f"{d}.mp4", sub / "room99__0.mp4")  # a clip that is not in the split
    (sub / "notes.txt").write_text("hello")
    (sub / f".{a}.mp4.tmp").write_bytes(b"partial")  # leftover of an interrupted write
    (sub / ".DS_Store").write_bytes(b"\0")  # written by macOS Finder: ignored
    (sub / ".cache").mkdir()
    shutil.copy(sub / f"{d}.mp4", sub / "bad name.mp4")
    meta = json.loads((sub / "submission.json").read_text())
    meta["task"] = "t2x"
    (sub / "submission.json").write_text(json.dumps(meta))

    report = validate_submission(sub, ids, reference_name(room_dataset))
    text = report.summary()
    expected = [
        "task must be one of t2vm, tm2v, tv2m, got 't2x'",
        f"{a}: missing {a}.npz",
        f"{b}: video has 40 frames, expected 41",
        f"{c}: video frames are 320x320, expected 480x480",
        f"{c}: video is 10.0 FPS, expected 8",
        "extra file 'room99__0.mp4'",
        "unexpected file 'notes.txt'",
        f"hidden file '.{a}.mp4.tmp': remove it",
        "unexpected folder '.cache'",
        "unsafe file name 'bad name.mp4'",
    ]
    for message in expected:
        assert message in text, f"{message!r} not in\n{text}"
    # Motion files are checked against the declared motion_format, so only once submission.json
    # is valid; with it fixed, the motion problems join the list.
    meta["task"] = "t2vm"
    (sub / "submission.json").write_text(json.dumps(meta))
    text = validate_submission(sub, ids, reference_name(room_dataset)).summary()
    for message in [
        f"{c}: motion rotations has shape (81, 20, 3, 3), expected (81, 23, 3, 3)",
        f"{c}: motion positions contains NaN or inf",
        f"{d}: motion unreadable",
    ] + expected[1:]:
        assert message in text, f"{message!r} not in\n{text}"
    report = validate_submission(sub, ids, reference_name(room_dataset))
    assert report.valid_clips == [] and not report.ok and report.meta is not None
    assert ".DS_Store" not in report.summary()


def test_submission_level_problems(room_dataset, ground_truth, tmp_path):
    ids = split_ids(room_dataset, "test")
    sub = copy_of(ground_truth, tmp_path, "other")
    (sub / "submission.json").write_text("{not json")
    (sub / f"{ids[0]}.mp4").write_bytes(b"\x00" * 100)
    report = validate_submission(sub, ids, reference_name(room_dataset))
    text = report.summary()
    assert "submission.json is not valid JSON" in text
    assert f"{ids[0]}: video unreadable" in text
    (sub / "submission.json").write_text(json.dumps({"method": "../x", "task": "t2vm", "motion_format": "bvh",
                                                     "reference": "elsewhere@123"}))
    text = validate_submission(sub, ids, reference_name(room_dataset)).summary()
    assert "method must be a safe name" in text and "motion_format must be one of" in text
    (sub / "submission.json").write_text(json.dumps({"method": "x", "task": "t2vm", "motion_format": "world_joints",
                                                     "reference": "elsewhere@123"}))
    text = validate_submission(sub, ids, reference_name(room_dataset)).summary()
    assert "submission was made for reference 'elsewhere@123'" in text
    (sub / "submission.json").unlink()
    assert "submission.json is missing" in validate_submission(sub, ids).summary()


def test_world_rotations_must_be_rotation_matrices(room_dataset, ground_truth, tmp_path):
    """Scaled (x3) or reflected rotations are not valid clips: RotErr and hand visibility would
    compute on garbage. The problem names the first bad frame and joint."""
    ids = split_ids(room_dataset, "test")
    sub = copy_of(ground_truth, tmp_path)
    a, b = ids[:2]
    with np.load(sub / f"{a}.npz") as z:
        pos, rot = z["positions"].copy(), z["rotations"].copy()
    np.savez(sub / f"{a}.npz", positions=pos, rotations=rot * 3)
    reflected = rot.copy()
    reflected[7, 15] = reflected[7, 15] @ np.diag([1.0, 1.0, -1.0]).astype(np.float32)  # orthonormal, det -1
    np.savez(sub / f"{b}.npz", positions=pos, rotations=reflected)
    report = validate_submission(sub, ids, reference_name(room_dataset))
    text = report.summary()
    assert (f"{a}: motion rotations are not rotation matrices at 1863 of 1863 (frame, joint) entries; first at "
            "frame 0, joint 0 (Pelvis): max |R^T R - I| = 8") in text, text
    assert f"{b}: motion rotations are not rotation matrices at 1 of 1863 (frame, joint) entries; first at frame 7, joint 15" in text
    assert "det = -1" in text
    assert report.valid_clips == ids[2:]
    # float32 round-off of real rotations passes (the ground truth above has 4 valid clips)
    from egotwin_bench.evaluate.submission import rotation_problems

    tiny = rot.astype(np.float64) + 1e-4 * np.random.default_rng(0).standard_normal(rot.shape)
    assert rotation_problems(rot) == [] and rotation_problems(tiny) == []


def test_second_folder_claiming_a_method_is_not_scored(room_dataset, ground_truth, tmp_path):
    """Rows are keyed by (method, task): a second folder under a taken name is reported, not scored."""
    from egotwin_bench.evaluate.runner import EvaluateOptions, evaluate_submissions

    first, second = copy_of(ground_truth, tmp_path, "a_first"), copy_of(ground_truth, tmp_path, "b_second")
    options = EvaluateOptions(reference=room_dataset, out=tmp_path / "out", plots=False)
    result = evaluate_submissions([first, second], options, providers=[])
    assert [r["method"] for r in result.rows] == ["ground_truth"]
    assert [r.path for r in result.rejected] == [second]
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert ("`b_second`: 1 problem(s)" in md and "method 'ground_truth' (task t2vm) is already claimed by "
            "submission folder 'a_first': not scored" in md), md
