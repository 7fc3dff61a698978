"""The COLMAP pose backend (pycolmap) against known camera paths, pose failures, the estimator choice.

Clips are noise-free renders of the textured room (`egotwin_bench.estimators.known_scenes`) along
walks whose camera poses are known exactly; the default tests use three short clips (10 frames),
the slow ones full 41-frame clips.
"""

from __future__ import annotations

import numpy as np
import pytest

from egotwin_bench import geometry
from egotwin_bench.estimators import ESTIMATOR_CHOICES, make_estimator, select_estimator
from egotwin_bench.estimators.base import PoseEstimate, default_intrinsics
from egotwin_bench.estimators.builtin import BuiltinEstimator
from egotwin_bench.estimators.colmap import (
    COLMAP_PRESETS,
    ColmapConfig,
    ColmapEstimator,
    colmap_camera_params,
    colmap_preset,
    fill_unregistered,
)
from egotwin_bench.estimators.known_scenes import camera_path, render_room
from egotwin_bench.evaluate.protocol import EvalClip
from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider, pose_failure
from egotwin_bench.metrics.view_consistency import relative_to_first, view_errors

pycolmap = pytest.importorskip("pycolmap")

K = default_intrinsics()
SHORT_WALKS = [dict(heading=0.4, look=0.5, turn=0.2), dict(heading=2.6, look=-0.6, turn=-0.3),
               dict(heading=4.4, look=0.1, turn=0.0)]
"""Three 8-frame walks at 4 FPS (about 1.4 m each) in different directions and gaze."""
CHEAP = ColmapConfig(max_image_size=240, max_num_features=1024)
"""Cheaper settings for the repeatability test (the property does not depend on them)."""


def short_walk(i: int) -> np.ndarray:
    return camera_path("walk", n_frames=8, fps=4, **SHORT_WALKS[i])


@pytest.fixture(scope="module")
def short_estimates() -> list[tuple[np.ndarray, PoseEstimate]]:
    """(true poses, COLMAP estimate with the default settings) of the three short walks."""
    est = ColmapEstimator()
    out = []
    for i in range(len(SHORT_WALKS)):
        truth = short_walk(i)
        out.append((truth, est.estimate(render_room(truth, K, render_scale=0.5), K)))
    return out


def test_colmap_recovers_short_walks(short_estimates):
    for truth, estimate in short_estimates:
        assert estimate.registered.all() and pose_failure(estimate) is None
        err = view_errors(estimate.poses, truth)
        print(f"COLMAP short walk: TransErr {err.trans_err:.5f} m, RotErr {np.rad2deg(err.rot_err):.4f} deg")
        assert err.trans_err < 0.05 and err.rot_err < np.deg2rad(1.0), err


def test_the_fast_preset_recovers_the_short_walks_too():
    est = make_estimator("colmap", colmap_preset="fast")
    assert est.config == COLMAP_PRESETS["fast"] and est.label == "colmap-fast"
    for i in range(len(SHORT_WALKS)):
        truth = short_walk(i)
        estimate = est.estimate(render_room(truth, K, render_scale=0.5), K)
        err = view_errors(estimate.poses, truth)
        assert estimate.registered.all() and pose_failure(estimate) is None
        assert err.trans_err < 0.05 and err.rot_err < np.deg2rad(1.0), (i, err)


def test_presets_are_named_and_labelled():
    assert colmap_preset("default") == ColmapConfig() and ColmapEstimator().label == "colmap"
    fast = colmap_preset("fast")
    assert (fast.max_image_size, fast.max_num_features, fast.first_octave, fast.matching) == (240, 2048, 0, "sequential")
    assert ColmapEstimator(ColmapConfig(max_image_size=320)).label == "colmap-custom"
    assert ColmapEstimator(fast).cache_id() != ColmapEstimator().cache_id()
    with pytest.raises(ValueError, match="unknown COLMAP preset 'fastest'; choose one of default, fast"):
        make_estimator("colmap", colmap_preset="fastest")


def test_colmap_own_trajectory_beats_every_other(short_estimates):
    """Each video's estimate is closer to its own camera path than to any other clip's (per clip,
    not only on the mean): the matched vs motion-shuffled separation the benchmark relies on."""
    for i, (_, estimate) in enumerate(short_estimates):
        own = view_errors(estimate.poses, short_estimates[i][0]).trans_err
        for j, (other, _) in enumerate(short_estimates):
            if j != i:
                assert own < 0.25 * view_errors(estimate.poses, other).trans_err, (i, j)


def test_colmap_is_repeatable():
    """Same video, same settings: the same poses to the last bit (seeded RANSAC and mappers, one
    thread per clip; with two threads runs differ by ~1e-4 relative, hence the default)."""
    frames = render_room(short_walk(1), K, render_scale=0.5)
    first, again = (ColmapEstimator(CHEAP).estimate(frames, K) for _ in range(2))
    assert first.registered.all()
    np.testing.assert_array_equal(again.poses, first.poses)


def test_textureless_clip_is_a_reported_pose_failure(tmp_path):
    """One colour, no features: a pose failure with its reason (no model / no translation), never a
    zero-translation TransErr; the other clip still scores and the count is in the row columns."""
    from egotwin_bench.evaluate.clip_cache import ClipCache

    size, n = 96, 41
    Ks = default_intrinsics(size)
    blank = np.full((n, size, size, 3), 128, np.uint8)
    positions = np.zeros((81, 23, 3))
    rotations = np.tile(np.eye(3), (81, 23, 1, 1))
    walk = camera_path("walk", n_frames=81, fps=16)
    positions[:, 6], rotations[:, 6] = walk[:, :3, 3], walk[:, :3, :3]  # head segment = camera
    clip = EvalClip("blank", "", lambda: blank, positions, rotations, Ks, np.eye(4), "h-blank", "v-blank")
    for estimator in (ColmapEstimator(), BuiltinEstimator()):
        provider = ViewConsistencyProvider(estimator, ClipCache(tmp_path), n_bootstrap=10)
        res = provider.evaluate([clip], [clip], np.random.default_rng(0))
        assert np.isnan(res.per_clip["TransErr"][0]) and np.isnan(res.metrics["TransErr"].value)
        assert provider.row_columns["pose_failures"] == 1
        assert provider.row_columns["head_path_m"] == pytest.approx(res.per_clip["head_path_m"][0])
        assert provider.row_columns["head_path_m"] > 1.0
        reason = provider.failures["blank"]
        print(f"{estimator.name} on a blank clip: {reason}")
        if estimator.name == "colmap":
            assert "COLMAP reconstructed no model" in reason and "median 0 SIFT keypoints" in reason
        else:
            assert "frames registered" in reason or "no estimated camera translation" in reason
    # COLMAP's failure is cached with its reason: a rerun does not estimate again.
    class Refuses(ColmapEstimator):
        def estimate(self, frames, intrinsics):
            raise AssertionError("estimated again")

    again = ViewConsistencyProvider(Refuses(), ClipCache(tmp_path), n_bootstrap=10)
    again.evaluate([clip], [clip], np.random.default_rng(0))
    assert "COLMAP reconstructed no model" in again.failures["blank"]


def test_pose_failure_rules():
    n = 41
    walk = camera_path("walk", n_frames=n)
    assert pose_failure(PoseEstimate.of(walk)) is None
    rotation_only = walk.copy()
    rotation_only[:, :3, 3] = 0.0
    assert "no estimated camera translation" in pose_failure(PoseEstimate.of(rotation_only))
    few = np.zeros(n, dtype=bool)
    few[:20] = True
    assert "only 20/41 frames registered (< 50%)" == pose_failure(PoseEstimate(walk, few))
    few[20] = True
    assert pose_failure(PoseEstimate(walk, few)) is None
    broken = walk.copy()
    broken[3, 0, 3] = np.nan
    assert "non-finite" in pose_failure(PoseEstimate.of(broken))


def test_principal_point_moves_to_colmap_pixel_centres():
    Kx = np.array([[250.0, 0.0, 239.5], [0.0, 251.0, 240.0], [0.0, 0.0, 1.0]])
    assert colmap_camera_params(Kx) == [250.0, 251.0, 240.0, 240.5]


def test_unregistered_frames_are_interpolated():
    """Gaps between registered frames are interpolated, the ends held; camera-to-world out."""
    truth = geometry.make_transform(np.tile(np.eye(3), (5, 1, 1)), np.array([[x, 0.0, 0.0] for x in range(5)], float))
    R = geometry.quat_wxyz_to_matrix(np.array([np.cos(0.2), 0.0, 0.0, np.sin(0.2)]))
    truth[4, :3, :3] = R
    cam_from_world = [pycolmap.Rigid3d(np.linalg.inv(T)[:3]) for T in truth]
    poses = fill_unregistered([None, cam_from_world[1], None, cam_from_world[3], None])
    np.testing.assert_allclose(poses[0], truth[1], atol=1e-12)  # held before the first
    np.testing.assert_allclose(poses[2], truth[2], atol=1e-12)  # halfway between 1 and 3
    np.testing.assert_allclose(poses[4], truth[3], atol=1e-12)  # held after the last
    full = fill_unregistered(cam_from_world)
    np.testing.assert_allclose(full, truth, atol=1e-12)
    with pytest.raises(ValueError, match="no registered frame"):
        fill_unregistered([None, None])


def test_auto_is_droid_else_colmap_never_builtin(tmp_path, monkeypatch):
    from egotwin_bench.estimators.droid import DROID_REPO_ENV

    monkeypatch.delenv(DROID_REPO_ENV, raising=False)
    est, note = select_estimator("auto", tmp_path / "droid.pth", None)
    assert est.name == "colmap" and "DROID-SLAM not used" in note and "not installed" in note
    assert select_estimator("builtin")[0].name == "builtin" and select_estimator("builtin")[1] is None
    assert ESTIMATOR_CHOICES == ("auto", "colmap", "droid", "builtin")
    with pytest.raises(ValueError, match="unknown pose estimator"):
        make_estimator("orb")


def test_cache_id_names_version_and_settings():
    a, b = ColmapEstimator(), ColmapEstimator(ColmapConfig(max_image_size=240))
    assert a.cache_id().startswith("colmap-") and a.cache_id() == ColmapEstimator().cache_id()
    assert a.cache_id() != b.cache_id()
    assert a.unavailable_reason() is None and a.num_cpus == 1


@pytest.mark.slow
def test_colmap_full_clips_recover_ground_truth():
    """Three 41-frame walks (the benchmark's clip length), the default settings (a few minutes on
    two shared cores): TransErr < 1 cm and RotErr < 0.2 deg each, every frame registered."""
    est = ColmapEstimator()
    rng = np.random.default_rng(3)
    for _ in range(3):
        truth = camera_path("walk", heading=float(rng.uniform(0, 2 * np.pi)), look=float(rng.uniform(-0.8, 0.8)),
                            turn=float(rng.uniform(-0.3, 0.3)))
        estimate = est.estimate(render_room(truth, K, render_scale=0.5), K)
        err = view_errors(estimate.poses, truth)
        travelled = np.linalg.norm(relative_to_first(truth)[1:, :3, 3], axis=1).mean()
        print(f"COLMAP 41-frame walk: TransErr {err.trans_err:.5f} m ({travelled:.2f} m mean displacement), "
              f"RotErr {np.rad2deg(err.rot_err):.4f} deg")
        assert estimate.registered.all()
        assert err.trans_err < 0.01 and err.rot_err < np.deg2rad(0.2), err



@pytest.mark.slow
def test_evaluate_auto_uses_colmap_in_ray_tasks(room_dataset, tmp_path, monkeypatch):
    """`evaluate` with the default `--estimator auto` (no DROID-SLAM here -> colmap) and two Ray
    workers on the room dataset's 4 test clips (a few minutes): the leaderboard names colmap and
    why DROID was not used, no pose failures, all 41 frames registered, and the ground truth beats
    the motion-shuffled submission on TransErr for every clip, not only on the mean."""
    import polars as pl

    from egotwin_bench.estimators.droid import DROID_REPO_ENV
    from egotwin_bench.evaluate.baselines import make_reference_submission
    from egotwin_bench.evaluate.runner import EvaluateOptions, evaluate_submissions, find_submissions

    monkeypatch.delenv(DROID_REPO_ENV, raising=False)
    subs = tmp_path / "submissions"
    make_reference_submission(room_dataset, subs / "ground_truth")
    make_reference_submission(room_dataset, subs / "shuffled", shuffle_motion=True)
    options = EvaluateOptions(reference=room_dataset, out=tmp_path / "out", workers=2, n_bootstrap=50, plots=False)
    from egotwin_bench.evaluate.runner import build_providers

    providers = [p for p in build_providers(options) if p.name == "view_consistency"]
    result = evaluate_submissions(find_submissions(subs), options, providers)
    rows = {r["method"]: r for r in result.rows}
    assert {r["estimator"] for r in rows.values()} == {"colmap"}
    assert all(r["pose_failures"] == 0 for r in rows.values()) and not result.failures
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Camera poses from COLMAP (--estimator auto; DROID-SLAM not used" in md and "pose failures" in md
    per_clip = pl.read_parquet(tmp_path / "out" / "per_clip.parquet")
    gt = per_clip.filter(pl.col("method") == "ground_truth").sort("clip_id")
    sh = per_clip.filter(pl.col("method") == "shuffled_motion").sort("clip_id")
    assert (gt["registered_frames"] == 41).all()
    print("COLMAP room test split TransErr gt", gt["TransErr"].to_list(), "shuffled", sh["TransErr"].to_list())
    assert (gt["TransErr"] < sh["TransErr"]).all() and (gt["RotErr"] < sh["RotErr"]).all()
    assert rows["ground_truth"]["TransErr"] < 0.01
