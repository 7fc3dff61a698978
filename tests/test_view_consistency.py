"""TransErr / RotErr known answers, the builtin VO on noise-free renders, the DROID-SLAM adapter."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench import geometry, skeleton
from egotwin_bench.estimators.base import default_intrinsics
from egotwin_bench.estimators.builtin import BuiltinEstimator, kabsch_rotation
from egotwin_bench.estimators.known_scenes import Room, camera_path, render_room
from egotwin_bench.evaluate.providers.view_consistency import pose_failure
from egotwin_bench.metrics.view_consistency import (
    head_camera_trajectory,
    least_squares_scale,
    relative_to_first,
    view_errors,
)


def random_trajectory(rng: np.random.Generator, n: int = 41) -> np.ndarray:
    rotvec = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0)
    t = np.cumsum(rng.normal(0, 0.1, (n, 3)), axis=0)
    R = geometry.quat_wxyz_to_matrix(np.concatenate([np.ones((n, 1)), rotvec / 2], axis=1))
    return geometry.make_transform(R, t)


def test_identical_trajectories_give_zero(rng):
    T = random_trajectory(rng)
    err = view_errors(T, T)
    assert err.trans_err == pytest.approx(0.0, abs=1e-9)
    assert err.rot_err == pytest.approx(0.0, abs=1e-6)
    assert err.scale == pytest.approx(1.0)


def test_known_rotation_offset_gives_its_angle(rng):
    head = random_trajectory(rng)
    angle = 0.3
    offset = geometry.make_transform(geometry.rotation_about_z(np.array(angle)), np.zeros(3))
    cam = head.copy()
    # Frames 1..40 rotated about their own camera axis: relative rotations differ by `angle`,
    # relative translations are unchanged.
    cam[1:] = head[1:] @ offset
    err = view_errors(cam, head)
    assert err.rot_err == pytest.approx(angle, abs=1e-9)
    assert err.trans_err == pytest.approx(0.0, abs=1e-9)


def test_scale_and_world_frame_invariance(rng):
    head = random_trajectory(rng)
    noisy = head.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.05, (41, 3))
    base = view_errors(noisy, head)
    world = geometry.make_transform(geometry.rotation_about_z(np.array(1.1)), np.array([3.0, -2.0, 0.5]))
    moved = world @ noisy
    moved[:, :3, 3] *= 7.5
    other = view_errors(moved, head)
    assert other.trans_err == pytest.approx(base.trans_err, rel=1e-9)
    assert other.rot_err == pytest.approx(base.rot_err, rel=1e-9)
    assert other.scale == pytest.approx(base.scale / 7.5, rel=1e-9)
    assert base.trans_err > 0.01


def test_rotation_only_estimate_and_least_squares_scale(rng):
    head = random_trajectory(rng)
    cam = head.copy()
    cam[:, :3, 3] = 0.0
    err = view_errors(cam, head)
    rel = relative_to_first(head)
    assert err.scale == 0.0
    assert err.trans_err == pytest.approx(np.linalg.norm(rel[1:, :3, 3], axis=1).mean())
    a = rng.normal(size=(40, 3))
    assert least_squares_scale(a, 2.5 * a) == pytest.approx(2.5)
    assert least_squares_scale(a, -2.5 * a) == 0.0  # a mirrored trajectory is not a scale


def test_backwards_camera_gets_large_trans_err():
    """A camera walking backwards (the forward head path mirrored through frame 0) must not be
    fitted with scale -1: its TransErr is the whole head displacement, not 0."""
    n = 41
    head = np.tile(np.eye(4), (n, 1, 1))
    head[:, 0, 3] = np.linspace(0.0, 2.0, n)  # 2 m forward along x, no rotation
    cam = head.copy()
    cam[:, 0, 3] *= -1.0
    err = view_errors(cam, head)
    travelled = np.linalg.norm(relative_to_first(head)[1:, :3, 3], axis=1).mean()
    assert err.scale == 0.0
    assert err.trans_err == pytest.approx(travelled) and err.trans_err > 0.9
    assert err.rot_err == pytest.approx(0.0, abs=1e-9)
    assert view_errors(head, head).trans_err == pytest.approx(0.0, abs=1e-12)


def test_head_camera_trajectory_takes_every_other_frame():
    positions = np.zeros((81, 23, 3))
    positions[:, skeleton.HEAD, 0] = np.arange(81)
    rotations = np.tile(np.eye(3), (81, 23, 1, 1))
    T_hc = geometry.make_transform(np.eye(3), np.array([0.0, 0.0, 0.1]))
    cams = head_camera_trajectory(positions, rotations, T_hc)
    assert cams.shape == (41, 4, 4)
    np.testing.assert_allclose(cams[:, 0, 3], np.arange(0, 81, 2))
    np.testing.assert_allclose(cams[:, 2, 3], 0.1)
    with pytest.raises(ValueError, match="81 motion frames"):
        head_camera_trajectory(positions[:80], rotations[:80], T_hc)


def test_kabsch_recovers_rotation(rng):
    R = geometry.quat_wxyz_to_matrix(np.array([0.9, 0.1, -0.3, 0.2]))
    a = rng.normal(size=(50, 3))
    np.testing.assert_allclose(kabsch_rotation(a, a @ R.T), R, atol=1e-12)


# -- builtin visual odometry on noise-free renders ---------------------------------------------

@pytest.fixture(scope="module")
def intrinsics() -> np.ndarray:
    return default_intrinsics()


def test_builtin_walk_small_error(intrinsics):
    truth = camera_path("walk")
    frames = render_room(truth, intrinsics, render_scale=0.5)
    err = view_errors(BuiltinEstimator().estimate(frames, intrinsics).poses, truth)
    travelled = np.linalg.norm(relative_to_first(truth)[1:, :3, 3], axis=1).mean()
    assert err.trans_err < 0.1 * travelled, (err, travelled)
    assert err.rot_err < np.deg2rad(2.0), err


def test_builtin_pure_rotation(intrinsics):
    truth = camera_path("rotate")
    frames = render_room(truth, intrinsics, render_scale=0.5)
    poses = BuiltinEstimator().estimate(frames, intrinsics).poses
    err = view_errors(poses, truth)
    assert err.rot_err < np.deg2rad(0.5), err
    # 60 degrees of turning must come out as rotation, not as translation.
    assert geometry.geodesic_distance(relative_to_first(poses)[-1, :3, :3], relative_to_first(truth)[-1, :3, :3]) < 0.02


def test_builtin_low_texture_does_not_fail(intrinsics):
    truth = camera_path("walk", n_frames=6)
    frames = render_room(truth, intrinsics, room=Room(blank=True), render_scale=0.25)
    est = BuiltinEstimator()
    estimate = est.estimate(frames, intrinsics)
    assert estimate.poses.shape == (6, 4, 4) and np.all(np.isfinite(estimate.poses))
    assert est.fallback_frames == 5 and estimate.registered.tolist() == [True] + [False] * 5
    # Nothing registered, no translation: a pose failure with its reason, never a TransErr.
    assert "1/6 frames registered" in pose_failure(estimate)


def test_builtin_rejects_bad_input(intrinsics):
    with pytest.raises(ValueError, match="uint8"):
        BuiltinEstimator().estimate(np.zeros((4, 8, 8, 3), np.float32), intrinsics)
    with pytest.raises(ValueError, match="pinhole"):
        BuiltinEstimator().estimate(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((3, 3)))


# -- DROID-SLAM adapter (a fake checkout of the real layout; the real one needs CUDA extensions) -

def test_droid_resize_crop_and_intrinsics():
    from egotwin_bench.estimators.droid import droid_input_size, prepare_frame

    h1, w1, hc, wc = droid_input_size(480, 480)
    assert (h1, w1, hc, wc) == (443, 443, 440, 440)
    assert hc * wc <= 384 * 512 and hc % 8 == 0 and wc % 8 == 0
    frame = np.zeros((480, 480, 3), np.uint8)
    frame[300, 100] = (255, 0, 0)  # a red dot (RGB)
    K = np.array([[240.0, 0, 240], [0, 250.0, 230], [0, 0, 1]])
    image, calib = prepare_frame(frame, K)
    assert image.shape == (3, 440, 440) and image.dtype == np.uint8
    s = 443 / 480
    np.testing.assert_allclose(calib, [240 * s, 250 * s, 240 * s, 230 * s])
    # The dot lands where the scaled intrinsics put it, in the BGR channel order.
    y, x = np.unravel_index(np.argmax(image[2]), image[2].shape)
    assert abs(x - 100 * s) <= 1.0 and abs(y - 300 * s) <= 1.0
    assert image[0].max() < image[2].max()


def test_droid_pose_conversion_round_trip(rng):
    from egotwin_bench.estimators.droid import poses_from_droid

    T = random_trajectory(rng, 5)
    q = geometry.matrix_to_quat_wxyz(T[:, :3, :3])
    traj = np.concatenate([T[:, :3, 3], q[:, 1:], q[:, :1]], axis=1)  # tx ty tz qx qy qz qw
    np.testing.assert_allclose(poses_from_droid(traj), T, atol=1e-12)


FAKE_DEMO = """
import argparse
if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument("--imagedir", type=str, help="path to image directory")
    parser.add_argument("--weights", default="droid.pth")
    parser.add_argument("--buffer", type=int, default=512)
    parser.add_argument("--image_size", default=[240, 320])
    parser.add_argument("--disable_vis", action="store_true")
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--filter_thresh", type=float, default=2.4)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--keyframe_thresh", type=float, default=4.0)
    parser.add_argument("--frontend_thresh", type=float, default=16.0)
    parser.add_argument("--frontend_window", type=int, default=25)
    parser.add_argument("--frontend_radius", type=int, default=2)
    parser.add_argument("--frontend_nms", type=int, default=1)
    parser.add_argument("--backend_thresh", type=float, default=22.0)
    parser.add_argument("--backend_radius", type=int, default=2)
    parser.add_argument("--backend_nms", type=int, default=3)
    parser.add_argument("--upsample", action="store_true")
    parser.add_argument("--asynchronous", action="store_true")
    parser.add_argument("--frontend_device", type=str, default="cuda")
    parser.add_argument("--motion_damping", type=float, default=0.5)
    parser.add_argument("--reconstruction_path", help="path to saved reconstruction")
    args = parser.parse_args()
    args.stereo = False
"""

# DROID-SLAM's real layout: flat modules in droid_slam/ (no __init__.py) importing each other
# by bare name, and lietorch imported at the top; a package-style import would not find them.
FAKE_DROID_PY = """
import numpy as np
import torch
import lietorch

from droid_net import DroidNet

CALLS = {"track": []}


class Droid:
    def __init__(self, args):
        self.net = DroidNet()
        CALLS["args"] = args

    def track(self, tstamp, image, depth=None, intrinsics=None):
        CALLS["track"].append((tstamp, tuple(image.shape), intrinsics.clone()))

    def terminate(self, stream=None):
        n = sum(1 for _ in stream)
        traj = np.zeros((n, 7))
        traj[:, 0] = np.arange(n) * 0.1
        traj[:, 6] = 1.0
        return traj  # numpy, as camera_trajectory.inv().data.cpu().numpy()
"""


@pytest.fixture
def fake_droid_repo(monkeypatch, tmp_path) -> Path:
    """A DROID-SLAM checkout with the real layout (demo.py, droid_slam/droid.py + droid_net.py, no
    __init__.py) and stand-in `lietorch` / `droid_backends` extension modules; `sys.path` and the
    imported `droid`/`droid_net` modules are restored afterwards."""
    repo = tmp_path / "DROID-SLAM"
    (repo / "droid_slam").mkdir(parents=True)
    (repo / "demo.py").write_text(FAKE_DEMO)
    (repo / "droid_slam" / "droid.py").write_text(FAKE_DROID_PY)
    (repo / "droid_slam" / "droid_net.py").write_text("class DroidNet:\n    pass\n")
    for name in ("lietorch", "droid_backends"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("droid", "droid_net"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield repo
    for name in ("droid", "droid_net"):
        sys.modules.pop(name, None)


def test_droid_unavailable_reasons(monkeypatch, tmp_path, fake_droid_repo):
    import torch

    from egotwin_bench.estimators.droid import DROID_REPO_ENV, DroidEstimator

    weights = tmp_path / "droid.pth"
    monkeypatch.delenv(DROID_REPO_ENV, raising=False)
    reason = DroidEstimator(weights).unavailable_reason()
    assert "not installed" in reason and "--droid-repo" in reason and "git clone --recursive" in reason
    # A package-style folder (droid_slam/__init__.py) is not DROID-SLAM's layout.
    wrong = tmp_path / "wrong"
    (wrong / "droid_slam").mkdir(parents=True)
    (wrong / "droid_slam" / "__init__.py").write_text("")
    assert "no droid_slam/droid.py" in DroidEstimator(weights, wrong).unavailable_reason()
    # The CUDA extensions are checked by import, each with what to install.
    monkeypatch.setitem(sys.modules, "droid_backends", None)
    reason = DroidEstimator(weights, fake_droid_repo).unavailable_reason()
    assert "'droid_backends'" in reason and "pip install --no-build-isolation ." in reason
    monkeypatch.setitem(sys.modules, "lietorch", None)
    reason = DroidEstimator(weights, fake_droid_repo).unavailable_reason()
    assert "'lietorch'" in reason and "thirdparty/lietorch" in reason
    monkeypatch.setitem(sys.modules, "lietorch", types.ModuleType("lietorch"))
    monkeypatch.setitem(sys.modules, "droid_backends", types.ModuleType("droid_backends"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA" in DroidEstimator(weights, fake_droid_repo).unavailable_reason()
    # The checkout may come from the environment.
    monkeypatch.setenv(DROID_REPO_ENV, str(fake_droid_repo))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "not found" in DroidEstimator(weights).unavailable_reason()


def test_droid_args_come_from_the_installed_demo(fake_droid_repo, tmp_path):
    from egotwin_bench.estimators.droid import DroidConfig, DroidEstimator, demo_defaults

    defaults = demo_defaults(fake_droid_repo / "demo.py")
    assert defaults["motion_damping"] == 0.5 and defaults["asynchronous"] is False
    assert defaults["disable_vis"] is False and defaults["frontend_device"] == "cuda"
    assert "imagedir" not in defaults and "reconstruction_path" not in defaults
    est = DroidEstimator(tmp_path / "droid.pth", fake_droid_repo)
    args = est.namespace((440, 440))
    assert est.args_source == str(fake_droid_repo / "demo.py")
    assert args.motion_damping == 0.5 and args.backend_nms == 3  # a newer option, the demo's value
    assert args.disable_vis is True and args.stereo is False and args.asynchronous is False
    assert args.image_size == [440, 440] and args.weights == str(tmp_path / "droid.pth")
    (fake_droid_repo / "demo.py").unlink()  # no demo: the documented fallback
    args = est.namespace((440, 440))
    assert "DroidConfig" in est.args_source and vars(args).keys() >= DroidConfig().__dict__.keys()
    assert not hasattr(args, "motion_damping")


def test_droid_estimate_with_fake_checkout(fake_droid_repo, monkeypatch, tmp_path, intrinsics):
    import torch

    from egotwin_bench.estimators import make_estimator

    weights = tmp_path / "droid.pth"
    est = make_estimator("droid", weights, fake_droid_repo)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "not found" in est.unavailable_reason() and "droid.pth" in est.unavailable_reason()
    weights.write_bytes(b"x")
    assert est.unavailable_reason() is None
    frames = np.zeros((5, 480, 480, 3), np.uint8)
    poses = est.estimate(frames, intrinsics)
    assert poses.shape == (5, 4, 4)
    np.testing.assert_allclose(poses[:, 0, 3], np.arange(5) * 0.1)
    droid = sys.modules["droid"]
    assert Path(droid.__file__).parent == (fake_droid_repo / "droid_slam").resolve()
    calls = droid.CALLS
    args = calls["args"]
    assert args.weights == str(weights) and args.image_size == [440, 440] and args.disable_vis
    assert [c[0] for c in calls["track"]] == list(range(5))
    assert calls["track"][0][1] == (1, 3, 440, 440)
    np.testing.assert_allclose(calls["track"][0][2].numpy(), intrinsics[[0, 1, 0, 1], [0, 1, 2, 2]] * 443 / 480,
                               rtol=1e-6)


# -- what the metric rewards: a motionless head -----------------------------------------------

def test_motionless_head_scores_zero_trans_err_and_is_shown(room_dataset, tmp_path):
    """The paper's scale-fitted TransErr gives a motionless head 0 (s = 0) whatever the video.
    Scored next to the ground truth: `gt_video_static_motion` (the true videos, every motion
    frozen at its first frame) gets TransErr exactly 0 on every clip, beating the ground truth;
    the `head_path_m` column (0 m vs the ground truth's walks) is what exposes it. A fully static
    submission (first frame repeated + frozen motion) has no camera motion to estimate: every clip
    is a pose failure with its reason, never a TransErr of 0."""
    from dataclasses import replace

    from egotwin_bench.curation.video import decode_mp4, encode_mp4
    from egotwin_bench.estimators.builtin import BuiltinEstimator
    from egotwin_bench.evaluate.baselines import make_reference_submission
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.evaluate.reference import load_clips, reference_name
    from egotwin_bench.evaluate.runner import EvaluateOptions, evaluate_submissions, find_submissions
    from egotwin_bench.evaluate.submission import SubmissionMeta, write_clip, write_meta
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

    subs = tmp_path / "submissions"
    make_reference_submission(room_dataset, subs / "ground_truth")
    meta = SubmissionMeta(method="", task="t2vm", motion_format="world_joints",
                          reference=reference_name(room_dataset, "test"), model={})
    for method, static_video in (("gt_video_static_motion", False), ("static", True)):
        folder = subs / method
        folder.mkdir(parents=True)
        for clip in load_clips(room_dataset, "test"):
            video = clip.video_mp4
            if static_video:
                video = encode_mp4(np.repeat(decode_mp4(video)[:1], 41, axis=0))
            frozen = (np.repeat(clip.positions[:1], 81, axis=0), np.repeat(clip.rotations[:1], 81, axis=0))
            write_clip(folder, clip.clip_id, video, *frozen)
        write_meta(folder, replace(meta, method=method))
    options = EvaluateOptions(reference=room_dataset, out=tmp_path / "out", n_bootstrap=20, plots=False)
    cache = ClipCache(tmp_path / "cache")  # the frozen-motion submission reuses the true videos' poses
    result = evaluate_submissions(find_submissions(subs), options,
                                  [ViewConsistencyProvider(BuiltinEstimator(), cache, 20)])
    rows = {r["method"]: r for r in result.rows}
    per_clip = {m: [r for r in result.per_clip if r["method"] == m] for m in rows}
    gt, frozen, static = rows["ground_truth"], rows["gt_video_static_motion"], rows["static"]
    print({m: (r["TransErr"], r["RotErr"], r["head_path_m"], r["pose_failures"]) for m, r in rows.items()})
    assert gt["pose_failures"] == 0 and gt["head_path_m"] > 1.0 and gt["TransErr"] > 0.0
    assert frozen["pose_failures"] == 0 and frozen["head_path_m"] == 0.0
    print([(r["TransErr"], r["pose_scale"]) for r in per_clip["gt_video_static_motion"]])
    # T_0^-1 T_0 leaves ~1e-16 m of round-off in the frozen head's relative positions
    assert all(r["TransErr"] < 1e-12 and r["pose_scale"] < 1e-9 for r in per_clip["gt_video_static_motion"])
    assert frozen["TransErr"] < 1e-12 < gt["TransErr"]  # the formula rewards the motionless head ...
    assert frozen["RotErr"] > 5 * gt["RotErr"]  # ... RotErr does not: the video turns, the head does not
    assert static["pose_failures"] == 4 and np.isnan(static["TransErr"]) and static["head_path_m"] == 0.0
    assert all(np.isnan(r["TransErr"]) for r in per_clip["static"])
    assert len(result.failures["static/t2vm"]) == 4
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "head path (m)" in md and "pose failures" in md and "`static/t2vm`" in md
