"""The training pack of `pipelines/small_pack.py`: quantisation bounds and a dataset round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from egotwin_bench.evaluate.reference import load_clips, split_ids
from egotwin_bench.geometry import geodesic_distance
from egotwin_bench.skeleton import HEAD
from pipelines import small_pack
from tests.random_bodies import random_motion


def test_motion_quantisation_error_is_within_the_stated_bounds() -> None:
    rng = np.random.default_rng(0)
    motions = [random_motion(rng, n_frames=81) for _ in range(3)]
    positions = np.stack([m[0] for m in motions])
    rotations = np.stack([m[1] for m in motions])
    positions = positions + rng.uniform(-3, 3, size=(3, 1, 1, 3))  # anywhere in a room
    back_pos, back_rot = small_pack.dequantise_motion(small_pack.quantise_motion(positions, rotations))
    assert np.abs(back_pos - positions).max() <= small_pack.POSITION_STEP_M / 2 + 1e-6
    assert geodesic_distance(back_rot.astype(np.float64), rotations).max() < 1e-4
    np.testing.assert_allclose(back_pos[:, 0, HEAD], positions[:, 0, HEAD], atol=1e-6)


def test_a_full_turn_round_trips_through_the_quaternion_sign_change() -> None:
    # A 360 deg turn about Z: scipy's quaternions (w >= 0) flip sign at 180 deg; the pack makes
    # them continuous in time (a smooth signal deflates better), and the round trip stays exact.
    angles = np.linspace(0, 2 * np.pi, 81)
    rot = np.repeat(Rotation.from_euler("z", angles[:, None]).as_matrix()[:, None], 23, axis=1)
    pos = np.zeros((81, 23, 3))
    packed = small_pack.quantise_motion(pos[None], rot[None])
    q = packed["quaternions"][0, :, 0].astype(float)  # (81, 4) of one segment
    assert ((q[1:] * q[:-1]).sum(-1) > 0).all()
    _, back = small_pack.dequantise_motion(packed)
    assert geodesic_distance(back[0].astype(np.float64), rot).max() < 1e-4


def test_intrinsics_scale_with_pixel_centres_at_integers() -> None:
    K = np.array([[240.0, 0, 239.5], [0, 240.0, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(small_pack.scale_intrinsics(K, 128 / 480),
                               [[64.0, 0, 63.5], [0, 64.0, 63.5], [0, 0, 1]], atol=1e-5)


def test_pack_unpack_gives_a_readable_dataset_at_the_small_size(built_dataset, tmp_path) -> None:
    pack_dir, out = tmp_path / "pack", tmp_path / "small"
    info = small_pack.pack(built_dataset, pack_dir, size=64)
    assert small_pack.unpack(pack_dir, out) == info["clips"]
    for split in ("train", "test"):
        assert split_ids(out, split) == split_ids(built_dataset, split)
        full = {c.clip_id: c for c in load_clips(built_dataset, split)}
        for clip in load_clips(out, split):
            ref = full[clip.clip_id]
            assert clip.text == ref.text
            assert np.abs(clip.positions - ref.positions).max() <= small_pack.POSITION_STEP_M / 2 + 1e-5
            assert geodesic_distance(clip.rotations.astype(np.float64), ref.rotations.astype(np.float64)).max() < 1e-4
            np.testing.assert_array_equal(clip.hand_visible, ref.hand_visible)
            np.testing.assert_allclose(clip.camera_poses, ref.camera_poses)
            assert clip.intrinsics[0, 2] == (ref.intrinsics[0, 2] + 0.5) * 64 / 480 - 0.5
            frames = small_pack.decode_mp4(clip.video_mp4)
            assert frames.shape == (41, 64, 64, 3)


def test_finish_upsamples_drafts_and_restores_the_condition_from_the_full_size_reference(built_dataset, tmp_path) -> None:
    """A TV2M draft sampled against the pack: the reference's 480 px video comes back byte for
    byte and the generated motion is kept; a T2VM draft at 64 px is upsampled to 480 px."""
    from egotwin_bench.evaluate.reference import reference_name
    from egotwin_bench.evaluate.submission import SubmissionMeta, read_meta, read_motion, write_clip, write_meta

    clips = load_clips(built_dataset, "test", with_video=True)[:2]
    small = {c.clip_id: small_pack.resize_video(c.video_mp4, 64)[0] for c in clips}
    for task in ("t2vm", "tv2m"):
        sub = tmp_path / task
        sub.mkdir()
        for c in clips:
            write_clip(sub, c.clip_id, small[c.clip_id], positions=c.positions + 1.0, rotations=c.rotations)
        digest = reference_name(built_dataset, "test").rpartition("@")[2]
        write_meta(sub, SubmissionMeta(method=task, task=task, motion_format="world_joints", reference=f"pack@{digest}"))
        counts = small_pack.finish(sub, built_dataset)
        assert counts == ({"upsampled": 2, "restored": 0} if task == "t2vm" else {"upsampled": 0, "restored": 2})
        assert read_meta(sub).reference == reference_name(built_dataset, "test")  # evaluate checks it
        for c in clips:
            mp4 = (sub / f"{c.clip_id}.mp4").read_bytes()
            assert small_pack.decode_mp4(mp4).shape == (41, 480, 480, 3)
            if task == "tv2m":
                assert mp4 == c.video_mp4
            positions, _ = read_motion(sub / f"{c.clip_id}.npz", "world_joints")
            np.testing.assert_allclose(positions, c.positions + 1.0, atol=1e-5)
        assert small_pack.finish(sub, built_dataset) == {"upsampled": 0, "restored": 0}  # a second run changes nothing
        assert read_meta(sub).model.get("upsampled_to") == (480 if task == "t2vm" else None)
    write_meta(sub, SubmissionMeta(method="x", task="tv2m", motion_format="world_joints", reference="pack@000000000000"))
    with pytest.raises(ValueError, match="another test split"):
        small_pack.finish(sub, built_dataset)
