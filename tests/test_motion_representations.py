import numpy as np
import pytest
import torch

from egotwin_bench import geometry, skeleton
from egotwin_bench.motion import head_centric, root_centric
from tests.random_bodies import random_motion, random_rigid


@pytest.fixture(params=[0, 1, 2])
def motion(request):
    return random_motion(np.random.default_rng(request.param))


def _to_canonical(pos, rot):
    T = head_centric.canonical_transform(pos, rot)
    Ti = geometry.invert_transform(T)
    return geometry.transform_points(Ti, pos.reshape(-1, 3)).reshape(pos.shape), Ti[:3, :3] @ rot


def test_head_centric_round_trip(motion):
    pos, rot = motion
    feats = head_centric.encode(pos, rot)
    assert feats.shape == (81, 288)
    cpos, crot = _to_canonical(pos, rot)
    dpos, drot = head_centric.decode(feats)
    assert np.abs(dpos - cpos).max() < 1e-4
    assert geometry.geodesic_distance(drot, crot).max() < 1e-4
    # And back to the world with the first-frame head pose.
    wpos, wrot = head_centric.decode(feats, T_world_canonical=head_centric.canonical_transform(pos, rot))
    assert np.abs(wpos - pos).max() < 1e-4
    assert geometry.geodesic_distance(wrot, rot).max() < 1e-4


def test_head_centric_round_trip_float32(motion):
    pos, rot = (x.astype(np.float32) for x in motion)
    feats = head_centric.encode(pos, rot)
    assert feats.dtype == np.float32
    dpos, _ = head_centric.decode(feats, T_world_canonical=head_centric.canonical_transform(pos, rot))
    assert np.abs(dpos - pos).max() < 1e-4


def test_head_centric_invariant_to_rigid_transform(motion, rng):
    pos, rot = motion
    R, t = random_rigid(rng)
    moved = pos @ R.T + t, R @ rot
    np.testing.assert_allclose(head_centric.encode(*moved), head_centric.encode(pos, rot), atol=1e-9)


def test_first_frame_first_order_features_are_zero(motion):
    feats = head_centric.encode(*motion)
    for part in ("h_rr", "h_pp", "j_v"):
        assert np.all(feats[0, head_centric.SLICES[part]] == 0.0), part
    # Canonical first frame: identity head rotation, zero position.
    np.testing.assert_allclose(feats[0, head_centric.SLICES["h_r"]], [1, 0, 0, 1, 0, 0], atol=1e-12)
    assert np.all(np.abs(feats[0, head_centric.SLICES["h_p"]]) < 1e-12)
    rfeats = root_centric.encode(*motion)
    for part in ("r_yaw", "r_vel", "vel"):
        assert np.all(rfeats[0, root_centric.SLICES[part]] == 0.0), part


def test_head_pose_decoding_needs_no_integration(motion, rng):
    feats = head_centric.encode(*motion)
    k = 40
    corrupted = feats.copy()
    corrupted[k] += rng.normal(size=288)
    before = head_centric.head_poses(feats)
    after = head_centric.head_poses(corrupted)
    changed = np.abs(after - before).reshape(81, -1).max(axis=1) > 1e-9
    assert changed[k] and changed.sum() == 1
    dpos_a, _ = head_centric.decode(feats)
    dpos_b, _ = head_centric.decode(corrupted)
    moved = np.abs(dpos_a - dpos_b).reshape(81, -1).max(axis=1) > 1e-9
    assert moved[k] and moved.sum() == 1


def test_numpy_and_batched_torch_agree(rng):
    motions = [random_motion(np.random.default_rng(s)) for s in range(3)]
    pos = np.stack([m[0] for m in motions])
    rot = np.stack([m[1] for m in motions])
    for rep in (head_centric, root_centric):
        np_feats = np.stack([rep.encode(p, r) for p, r in zip(pos, rot)])
        t_feats = rep.encode(torch.tensor(pos), torch.tensor(rot))
        assert isinstance(t_feats, torch.Tensor) and t_feats.shape == (3, 81, rep.DIM)
        np.testing.assert_allclose(t_feats.numpy(), np_feats, atol=1e-10)
        t_pos, _ = rep.decode(t_feats)
        np.testing.assert_allclose(t_pos.numpy(), np.stack([rep.decode(f)[0] for f in np_feats]), atol=1e-10)


def test_root_centric_round_trip(motion):
    pos, rot = motion
    feats = root_centric.encode(pos, rot)
    assert feats.shape == (81, 275)
    cpos, crot = root_centric.canonicalize(pos, rot)
    dpos, drot = root_centric.decode(feats)
    assert np.abs(dpos - cpos).max() < 1e-4
    # Only the pelvis yaw is represented: segment orientations match when the pelvis is upright.
    upright_pos, upright_rot = random_motion(np.random.default_rng(7), extreme=False)
    assert np.all(np.isin(root_centric.encode(upright_pos, upright_rot)[:, root_centric.SLICES["contact"]], [0.0, 1.0]))


def test_root_centric_contacts_known_answer():
    # A body standing still on the floor: every foot point is in contact; lifted 1 m: none.
    local = np.broadcast_to(np.eye(3), (5, 23, 3, 3)).copy()
    root = np.tile([0.0, 0.0, skeleton.DEFAULT_PELVIS_HEIGHT], (5, 1))
    pos, rot = skeleton.forward_kinematics(local, skeleton.DEFAULT_OFFSETS, root)
    assert np.all(root_centric.encode(pos, rot)[:, root_centric.SLICES["contact"]] == 1.0)
    root_moving = root + np.arange(5)[:, None] * np.array([0.2, 0.0, 0.0])  # 3.2 m/s at 16 FPS
    pos, rot = skeleton.forward_kinematics(local, skeleton.DEFAULT_OFFSETS, root_moving)
    assert np.all(root_centric.encode(pos, rot)[:, root_centric.SLICES["contact"]] == 0.0)


def test_loss_groups_partition_features():
    for rep in (head_centric,):
        covered = np.zeros(rep.DIM, dtype=int)
        for sl in rep.LOSS_GROUPS.values():
            covered[sl] += 1
        assert np.all(covered == 1)
    covered = np.zeros(root_centric.DIM, dtype=int)
    for idx in root_centric.LOSS_GROUP_INDICES.values():
        covered[idx] += 1
    assert np.all(covered == 1)
    assert set(head_centric.LOSS_GROUPS) == set(root_centric.LOSS_GROUP_INDICES) == {"head3d", "head6d", "joint3d", "joint6d"}


@pytest.mark.parametrize("rep", [head_centric, root_centric])
def test_clear_errors(rep):
    pos, rot = random_motion(np.random.default_rng(0), n_frames=5)
    with pytest.raises(ValueError, match=r"positions must have shape"):
        rep.encode(pos[:, :22], rot)
    with pytest.raises(ValueError, match=r"rotations must have shape"):
        rep.encode(pos, rot[:4])
    with pytest.raises(TypeError, match=r"floating dtype"):
        rep.encode(pos.astype(np.int64), rot)
    with pytest.raises(ValueError, match=rf"\(\.\.\., T, {rep.DIM}\)"):
        rep.decode(np.zeros((5, rep.DIM - 1)))
