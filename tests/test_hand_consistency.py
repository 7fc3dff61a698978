"""HandScore: hand visibility from the motion (known answers), F1 / HandScore, the provider."""

from __future__ import annotations

import numpy as np
import pytest

from egotwin_bench import geometry, skeleton
from egotwin_bench.constants import MOTION_FRAMES, VIDEO_FRAMES
from egotwin_bench.estimators.base import default_intrinsics
from egotwin_bench.evaluate.reference import load_clips
from egotwin_bench.metrics.hand_consistency import f1_score, hand_score, hand_visibility
from tests.fixtures_evaluate import T_HEAD_CAMERA


def still_body(hand_offsets_head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A motion whose head sits at (1, 2, 1.6) with identity rotation and whose hands are at the
    given (81, 2, 3) offsets in the head frame (X forward, Y left, Z up)."""
    positions = np.zeros((MOTION_FRAMES, skeleton.NUM_SEGMENTS, 3))
    positions[:, :] = [1.0, 2.0, 1.6]
    positions[:, list(skeleton.HANDS)] += hand_offsets_head
    rotations = np.tile(np.eye(3), (MOTION_FRAMES, skeleton.NUM_SEGMENTS, 1, 1))
    return positions, rotations


def test_visibility_known_answers():
    K = default_intrinsics()  # 90 degree field of view
    offsets = np.zeros((MOTION_FRAMES, 2, 3))
    offsets[:, 0] = [0.5, 0.0, 0.0]  # left hand straight ahead of the head
    offsets[:, 1] = [-0.5, 0.0, 0.0]  # right hand behind the head
    # From frame 40 on (video frame 20): left hand 60 deg to the left (outside the 45 deg
    # half-field), right hand ahead and slightly up.
    offsets[40:, 0] = [0.5 * np.cos(np.pi / 3), 0.5 * np.sin(np.pi / 3), 0.0]
    offsets[40:, 1] = [0.5, -0.1, 0.1]
    # Odd motion frames are never sampled: garbage there must not matter.
    offsets[1::2, :] = [-1.0, 0.0, 0.0]
    positions, rotations = still_body(offsets)
    vis = hand_visibility(positions, rotations, T_HEAD_CAMERA, K)
    assert vis.shape == (VIDEO_FRAMES, 2) and vis.dtype == bool
    np.testing.assert_array_equal(vis[:20], [[True, False]] * 20)
    np.testing.assert_array_equal(vis[20:], [[False, True]] * 21)


def test_visibility_uses_head_rotation_and_camera_offset():
    K = default_intrinsics()
    offsets = np.zeros((MOTION_FRAMES, 2, 3))
    offsets[:, :] = [0.0, 0.6, 0.0]  # both hands to the head's left
    positions, rotations = still_body(offsets)
    assert not hand_visibility(positions, rotations, T_HEAD_CAMERA, K).any()
    # Turn the head 90 deg left (about world Z): the hands are now straight ahead.
    rotations[:, skeleton.HEAD] = geometry.rotation_about_z(np.array(np.pi / 2))
    assert hand_visibility(positions, rotations, T_HEAD_CAMERA, K).all()


def test_visibility_matches_curated_labels(room_dataset):
    """The metric's visibility rule is the one that labelled the curated clips."""
    for clip in load_clips(room_dataset, "test", with_video=False):
        vis = hand_visibility(clip.positions, clip.rotations, clip.T_head_camera, clip.intrinsics)
        np.testing.assert_array_equal(vis, clip.hand_visible)


def test_f1_known_answers():
    pred = np.array([1, 1, 0, 0, 1], bool)
    true = np.array([1, 0, 1, 0, 1], bool)  # tp 2, fp 1, fn 1
    assert f1_score(pred, true) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert f1_score(np.ones(4, bool), np.zeros(4, bool)) == 0.0


def test_hand_score_is_mean_of_hands_pooled_over_frames():
    rng = np.random.default_rng(0)
    vis = rng.random((3, 41, 2)) < 0.4
    assert hand_score(vis, vis) == 1.0
    assert hand_score(~vis, vis) == 0.0
    pres = vis.copy()
    pres[..., 1] = ~pres[..., 1]
    assert hand_score(pres, vis) == pytest.approx(0.5)
    noisy = vis ^ (rng.random(vis.shape) < 0.2)
    expected = np.mean([f1_score(noisy[..., h].ravel(), vis[..., h].ravel()) for h in range(2)])
    assert hand_score(noisy, vis) == pytest.approx(expected)
    with pytest.raises(ValueError, match="must match"):
        hand_score(vis[..., :1], vis[..., :1])


def test_provider_unavailable_reasons(tmp_path):
    from egotwin_bench.evaluate.providers.hand_consistency import HandConsistencyProvider

    assert "train-hand-classifier" in HandConsistencyProvider(None).unavailable_reason()
    reason = HandConsistencyProvider(tmp_path).unavailable_reason()
    assert "config.json" in reason and "model.safetensors" in reason


def test_f1_undefined_and_sklearn_agreement():
    """Pooled per-hand F1 equals sklearn's f1_score of the flattened labels; a hand with no
    positive anywhere is undefined (NaN), left out of HandScore and named, never 1.0."""
    from sklearn.metrics import f1_score as sk_f1

    from egotwin_bench.metrics.hand_consistency import hand_f1, undefined_hands

    assert np.isnan(f1_score(np.zeros(4, bool), np.zeros(4, bool)))
    assert f1_score(np.zeros(4, bool), np.zeros(4, bool), zero_division=1.0) == 1.0
    rng = np.random.default_rng(1)
    for trial in range(20):
        p = rng.uniform(0.05, 0.6)
        pres, vis = rng.random((5, 41, 2)) < p, rng.random((5, 41, 2)) < rng.uniform(0.05, 0.6)
        expected = [sk_f1(vis[..., h].ravel(), pres[..., h].ravel()) for h in range(2)]
        np.testing.assert_allclose(hand_f1(pres, vis), expected, rtol=1e-12)
        assert hand_score(pres, vis) == pytest.approx(np.mean(expected), rel=1e-12)
        for c in range(5):  # per clip: the same definition over the clip's 41 frames
            clip_f1 = [sk_f1(vis[c, :, h], pres[c, :, h], zero_division=np.nan) for h in range(2)]
            assert hand_score(pres[c], vis[c]) == pytest.approx(np.nanmean(clip_f1), rel=1e-12)
    # the case: the right hand is absent from both sources in every frame
    vis = rng.random((4, 41, 2)) < 0.3
    pres = vis ^ (rng.random(vis.shape) < 0.3)
    vis[..., 1] = pres[..., 1] = False
    left = sk_f1(vis[..., 0].ravel(), pres[..., 0].ravel())
    assert hand_score(pres, vis) == pytest.approx(left)  # was (left + 1) / 2
    assert undefined_hands(pres, vis) == ["right"]
    vis[..., 0] = pres[..., 0] = False
    assert np.isnan(hand_score(pres, vis)) and undefined_hands(pres, vis) == ["left", "right"]


def test_provider_names_an_undefined_hand(monkeypatch):
    """The provider leaves an undefined hand out, says so in its notes, and per-clip NaN where a
    clip has no positive; the interval brackets the value."""
    from egotwin_bench.evaluate.providers import hand_consistency as hc

    rng = np.random.default_rng(2)
    vis = rng.random((12, 41, 2)) < 0.3
    pres = vis ^ (rng.random(vis.shape) < 0.2)
    vis[..., 1] = pres[..., 1] = False
    vis[3] = pres[3] = False  # a clip with no positive at all
    provider = hc.HandConsistencyProvider("unused", n_bootstrap=200)
    monkeypatch.setattr(provider, "presence", lambda clips: pres)
    visible = iter(vis)
    monkeypatch.setattr(hc, "hand_visibility", lambda *a: next(visible))

    class Clip:
        positions = rotations = T_head_camera = intrinsics = None

    res = provider.evaluate([Clip()] * 12, [], np.random.default_rng(0))
    value = res.metrics["HandScore"]
    assert value.value == pytest.approx(f1_score(pres[..., 0], vis[..., 0]))
    assert value.low <= value.value <= value.high
    assert np.isnan(res.per_clip["HandScore"][3]) and np.isfinite(np.delete(res.per_clip["HandScore"], 3)).all()
    assert any("right hand F1 undefined" in n for n in res.notes)
    assert any("1/12 clips have no defined per-clip F1" in n for n in res.notes)
