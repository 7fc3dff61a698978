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


def test_first_frame_first_order_features_are_no_change(motion):
    feats = head_centric.encode(*motion)
    for part in ("h_pp", "j_v"):
        assert np.all(feats[0, head_centric.SLICES[part]] == 0.0), part
    # The rotation change of frame 0 is the identity (on the rotation manifold), not the zero
    # vector; canonical first frame: identity head rotation, zero position.
    identity_6d = [1, 0, 0, 1, 0, 0]
    np.testing.assert_allclose(feats[0, head_centric.SLICES["h_rr"]], identity_6d, atol=1e-12)
    np.testing.assert_allclose(feats[0, head_centric.SLICES["h_r"]], identity_6d, atol=1e-12)
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
    cpos, _ = root_centric.canonicalize(pos, rot)
    dpos, _ = root_centric.decode(feats)
    assert np.abs(dpos - cpos).max() < 1e-4


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_root_centric_rotations_exact_for_a_yaw_only_pelvis(seed):
    pos, rot = random_motion(np.random.default_rng(seed), yaw_only=True)
    cpos, crot = root_centric.canonicalize(pos, rot)
    dpos, drot = root_centric.decode(root_centric.encode(pos, rot))
    assert np.abs(dpos - cpos).max() < 1e-4
    assert geometry.geodesic_distance(drot, crot).max() < 1e-4


def test_root_centric_loses_exactly_the_pelvis_tilt():
    """A pitched/rolled pelvis decodes upright: positions stay exact, and the pelvis's rotation
    error is its tilt (its rotation after removing its heading), carried by FK to every segment."""
    pos, rot = random_motion(np.random.default_rng(7), extreme=False)
    cpos, crot = root_centric.canonicalize(pos, rot)
    dpos, drot = root_centric.decode(root_centric.encode(pos, rot))
    assert np.abs(dpos - cpos).max() < 1e-4
    pelvis = crot[:, skeleton.PELVIS]
    heading = np.arctan2(pelvis[:, 1, 0], pelvis[:, 0, 0])
    tilt = geometry.rotation_angle(np.swapaxes(geometry.rotation_about_z(heading), -1, -2) @ pelvis)
    assert tilt.max() > 0.05
    err = geometry.geodesic_distance(drot, crot)
    np.testing.assert_allclose(err[:, skeleton.PELVIS], tilt, atol=1e-6)
    np.testing.assert_allclose(err, np.broadcast_to(tilt[:, None], err.shape), atol=1e-6)


def test_root_centric_contacts_known_answer():
    # A body standing still on the floor: every foot point is in contact; lifted 1 m: none.
    local = np.broadcast_to(np.eye(3), (5, 23, 3, 3)).copy()
    root = np.tile([0.0, 0.0, skeleton.DEFAULT_PELVIS_HEIGHT], (5, 1))
    pos, rot = skeleton.forward_kinematics(local, skeleton.DEFAULT_OFFSETS, root)
    assert np.all(root_centric.encode(pos, rot)[:, root_centric.SLICES["contact"]] == 1.0)
    root_moving = root + np.arange(5)[:, None] * np.array([0.2, 0.0, 0.0])  # 3.2 m/s at 16 FPS
    pos, rot = skeleton.forward_kinematics(local, skeleton.DEFAULT_OFFSETS, root_moving)
    assert np.all(root_centric.encode(pos, rot)[:, root_centric.SLICES["contact"]] == 0.0)


@pytest.mark.parametrize("rep", [head_centric, root_centric])
def test_loss_groups_partition_features(rep):
    """The four eq. 1 groups cover every feature exactly once, each the union of its parts."""
    assert rep.DIM == {head_centric: 288, root_centric: 275}[rep]
    assert set(rep.LOSS_GROUPS) == set(rep.LOSS_GROUP_PARTS) == {"head3d", "head6d", "joint3d", "joint6d"}
    features = np.arange(rep.DIM)
    covered = np.zeros(rep.DIM, dtype=int)
    for group, index in rep.LOSS_GROUPS.items():
        members = features[..., index]
        covered[members] += 1
        parts = np.concatenate([features[rep.SLICES[p]] for p in rep.LOSS_GROUP_PARTS[group]])
        np.testing.assert_array_equal(np.sort(members), np.sort(parts))
    np.testing.assert_array_equal(covered, 1)
    layout = np.zeros(rep.DIM, dtype=int)
    for sl in rep.SLICES.values():
        layout[sl] += 1
    np.testing.assert_array_equal(layout, 1)


def test_root_centric_loss_groups_content():
    groups = {g: set(np.arange(root_centric.DIM)[..., i].tolist()) for g, i in root_centric.LOSS_GROUPS.items()}
    vel = set(range(root_centric.SLICES["vel"].start, root_centric.SLICES["vel"].stop))
    contact = set(range(271, 275))
    assert vel <= groups["joint3d"] and contact <= groups["joint3d"]
    assert groups["head6d"] == {0} and groups["head3d"] == {1, 2, 3}


def test_head_centric_decode_takes_a_numpy_transform_with_torch_features(motion):
    pos, rot = motion
    T = head_centric.canonical_transform(pos, rot)  # NumPy float64
    feats = torch.tensor(head_centric.encode(pos, rot), dtype=torch.float32)
    wpos, wrot = head_centric.decode(feats, T_world_canonical=T)
    assert isinstance(wpos, torch.Tensor) and wpos.dtype == wrot.dtype == torch.float32
    np.testing.assert_allclose(wpos.numpy(), pos, atol=1e-4)
    ppos, _ = head_centric.decode(feats, T)  # positional: the same
    assert torch.equal(ppos, wpos)
    # NumPy features with a tensor transform run in torch too.
    mpos, _ = head_centric.decode(head_centric.encode(pos, rot), torch.tensor(T))
    assert isinstance(mpos, torch.Tensor)
    np.testing.assert_allclose(mpos.numpy(), pos, atol=1e-9)
    with pytest.raises(ValueError, match=r"T_world_canonical must have shape \(\.\.\., 4, 4\)"):
        head_centric.decode(feats, T_world_canonical=T[:3])


def test_random_bodies_respect_joint_limits():
    from scipy.spatial.transform import Rotation

    from tests.random_bodies import JOINT_LIMITS_HI, JOINT_LIMITS_LO

    pos, rot = random_motion(np.random.default_rng(3), extreme=False)
    local = skeleton.local_rotations_from_world(rot)[:, 1:]  # the pelvis also carries the trajectory
    rotvec = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(local.shape[:2] + (3,))
    assert np.all(rotvec >= JOINT_LIMITS_LO[1:] - 1e-9) and np.all(rotvec <= JOINT_LIMITS_HI[1:] + 1e-9)
    for side, flex in (("Right", 1.0), ("Left", -1.0)):  # elbows flex one way, knees too
        assert np.all(flex * rotvec[:, skeleton.INDEX[side + "ForeArm"] - 1, 2] >= -1e-9)
        assert np.all(rotvec[:, skeleton.INDEX[side + "LowerLeg"] - 1, 1] >= -1e-9)


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
