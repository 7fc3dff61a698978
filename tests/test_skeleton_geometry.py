import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from egotwin_bench import geometry, skeleton


def test_skeleton_tables():
    assert len(skeleton.SEGMENT_NAMES) == len(skeleton.PARENTS) == 23
    assert skeleton.SEGMENT_NAMES[skeleton.HEAD] == "Head"
    assert skeleton.PARENTS[skeleton.INDEX["RightShoulder"]] == skeleton.INDEX["T8"]
    assert skeleton.PARENTS[skeleton.INDEX["LeftUpperLeg"]] == skeleton.PELVIS
    assert [skeleton.SEGMENT_NAMES[i] for i in skeleton.HANDS] == ["LeftHand", "RightHand"]


def test_fk_numpy_torch_agree_and_inverse(rng):
    local = Rotation.random(2 * 23, random_state=1).as_matrix().reshape(2, 23, 3, 3)
    offsets = skeleton.DEFAULT_OFFSETS
    root = rng.normal(size=(2, 3))
    pos, rot = skeleton.forward_kinematics(local, offsets, root)
    tpos, trot = skeleton.forward_kinematics(torch.tensor(local), torch.tensor(offsets), torch.tensor(root))
    np.testing.assert_allclose(tpos.numpy(), pos, atol=1e-12)
    np.testing.assert_allclose(trot.numpy(), rot, atol=1e-12)
    np.testing.assert_allclose(skeleton.local_rotations_from_world(rot), local, atol=1e-12)
    np.testing.assert_allclose(skeleton.bone_offsets_from_pose(pos, rot)[:, 1:], np.broadcast_to(offsets, (2, 23, 3))[:, 1:], atol=1e-12)


def test_fk_known_answer_calibration_pose():
    local = np.broadcast_to(np.eye(3), (23, 3, 3))
    pos, _ = skeleton.forward_kinematics(local, skeleton.DEFAULT_OFFSETS, np.array([0.0, 0.0, 0.95]))
    # Head straight above the pelvis; left hand on +Y, right hand on -Y; toes ahead (+X).
    assert pos[skeleton.HEAD, 0] == pytest.approx(0) and pos[skeleton.HEAD, 2] > 1.5
    assert pos[skeleton.LEFT_HAND, 1] > 0.5 and pos[skeleton.RIGHT_HAND, 1] < -0.5
    assert pos[skeleton.LEFT_TOE, 0] > 0.1 and pos[skeleton.LEFT_TOE, 2] == pytest.approx(0.02, abs=1e-9)


def test_fk_is_differentiable():
    local = torch.tensor(Rotation.random(23, random_state=2).as_matrix(), requires_grad=True)
    off = torch.tensor(skeleton.DEFAULT_OFFSETS, requires_grad=True)
    pos, _ = skeleton.forward_kinematics(local, off, torch.zeros(3, dtype=torch.float64))
    pos[skeleton.HEAD].sum().backward()
    assert local.grad is not None and off.grad.abs().sum() > 0


def test_fk_shape_errors():
    with pytest.raises(ValueError, match=r"local_rotations must have shape"):
        skeleton.forward_kinematics(np.zeros((22, 3, 3)), skeleton.DEFAULT_OFFSETS, np.zeros(3))


def test_rotation_conversions_round_trip(rng):
    R = Rotation.random(100, random_state=3).as_matrix()
    np.testing.assert_allclose(geometry.sixd_to_matrix(geometry.matrix_to_6d(R)), R, atol=1e-12)
    q = geometry.matrix_to_quat_wxyz(R)
    np.testing.assert_allclose(geometry.quat_wxyz_to_matrix(q), R, atol=1e-12)
    # wxyz order agrees with scipy's xyzw.
    xyzw = Rotation.from_matrix(R).as_quat()
    ref = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    ref *= np.sign(ref[:, :1])
    np.testing.assert_allclose(q, ref, atol=1e-12)
    assert geometry.matrix_to_6d(R.astype(np.float32)).dtype == np.float32


def test_transforms(rng):
    R = Rotation.random(5, random_state=4).as_matrix()
    t = rng.normal(size=(5, 3))
    T = geometry.make_transform(R, t)
    np.testing.assert_allclose(T @ geometry.invert_transform(T), np.broadcast_to(np.eye(4), (5, 4, 4)), atol=1e-12)
    p = rng.normal(size=(5, 7, 3))
    np.testing.assert_allclose(geometry.transform_points(T, p), np.einsum("bij,bnj->bni", R, p) + t[:, None], atol=1e-12)
    assert geometry.rotation_angle(geometry.rotation_about_z(np.array(0.3))) == pytest.approx(0.3)
    assert geometry.geodesic_distance(R, R) == pytest.approx(np.zeros(5), abs=1e-6)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_fk_broadcasts_an_unbatched_root(rng, lib):
    """One root (3,) with a batch of poses (B, 23, 3, 3): every pose stands on that root."""
    local = Rotation.random(4 * 23, random_state=4).as_matrix().reshape(4, 23, 3, 3)
    root = rng.normal(size=3)
    ref = [skeleton.forward_kinematics(local[b], skeleton.DEFAULT_OFFSETS, root) for b in range(4)]
    as_lib = torch.tensor if lib == "torch" else np.asarray
    pos, rot = skeleton.forward_kinematics(as_lib(local), as_lib(skeleton.DEFAULT_OFFSETS), as_lib(root))
    assert isinstance(pos, torch.Tensor if lib == "torch" else np.ndarray)
    assert tuple(pos.shape) == (4, 23, 3) and tuple(rot.shape) == (4, 23, 3, 3)
    np.testing.assert_allclose(np.asarray(pos), np.stack([p for p, _ in ref]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(rot), np.stack([r for _, r in ref]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(pos)[:, skeleton.PELVIS], np.broadcast_to(root, (4, 3)), atol=0)


def test_fk_torch_broadcasts_offsets_and_accepts_numpy_inputs(rng):
    """A batch of bodies (B, 23, 3) in one pose; NumPy offsets/root with torch rotations."""
    local = Rotation.random(23, random_state=5).as_matrix()
    offsets = skeleton.DEFAULT_OFFSETS * rng.uniform(0.8, 1.2, size=(3, 1, 1))
    root = rng.normal(size=3)
    pos, rot = skeleton.forward_kinematics(torch.tensor(local, dtype=torch.float32), offsets, root)
    assert pos.dtype == torch.float32 and tuple(pos.shape) == (3, 23, 3) and tuple(rot.shape) == (3, 23, 3, 3)
    for b in range(3):
        ref_pos, ref_rot = skeleton.forward_kinematics(local, offsets[b], root)
        np.testing.assert_allclose(pos[b].numpy(), ref_pos, atol=1e-5)
        np.testing.assert_allclose(rot[b].numpy(), ref_rot, atol=1e-6)
    with pytest.raises(ValueError, match="do not broadcast"):
        skeleton.forward_kinematics(torch.tensor(np.stack([local] * 2)), offsets, root)
