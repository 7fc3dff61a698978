"""Motion quality metrics: known answers of R-Precision / Diversity, and the provider end to end."""

from __future__ import annotations

import numpy as np
import pytest

from egotwin_bench.evaluate.protocol import EvalClip, MetricProvider, ProviderUnusable
from egotwin_bench.evaluate.providers.motion_quality import MotionQualityConfig, MotionQualityProvider
from egotwin_bench.metrics.motion_quality import (
    COLLAPSE_SPREAD,
    chance_p_value,
    collapse_problem,
    diversity,
    r_precision,
    r_precision_hits,
    relative_spread,
)


def test_r_precision_known_ranks():
    text = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    # motion 0 sits at its text; motion 1 is nearest text 0 (text 1 ranks it 2nd); motion 2 is far
    motion = np.array([[0.0, 0.5], [3.0, 0.0], [50.0, 0.0]])
    hits, dists = r_precision_hits(text, motion)
    # text 1: distances to motions 0, 1, 2 = 10.01, 7, 40 -> own motion ranks first
    # text 2: distances 20.01, 17, 30 -> own motion ranks third
    np.testing.assert_array_equal(hits, [[1, 1, 1], [1, 1, 1], [0, 0, 1]])
    np.testing.assert_allclose(dists, [0.5, 7.0, 30.0])


def test_r_precision_batches_and_chance(rng):
    emb = rng.standard_normal((100, 16))
    hits, dists = r_precision(emb, emb, rng)
    assert hits.shape == (96, 3)  # 3 batches of 32, the incomplete batch dropped
    assert hits.all() and np.allclose(dists, 0)
    # independent texts and motions: top-k rate ~ k/32
    rates = np.mean([r_precision(rng.standard_normal((3200, 8)), rng.standard_normal((3200, 8)), rng)[0].mean(0)
                     for _ in range(3)], axis=0)
    np.testing.assert_allclose(rates, np.array([1, 2, 3]) / 32, atol=0.012)
    small, _ = r_precision(emb[:10], emb[:10], rng)  # fewer than 32 clips: one batch of all
    assert small.shape == (10, 3)


def test_diversity_known_answer(rng):
    assert diversity(np.ones((50, 4)), rng) == 0.0
    two = np.array([[0.0, 0.0], [3.0, 4.0]])
    # two draws without replacement of both points: pairs are (0,0),(1,1) or (0,1),(1,0)
    values = {round(diversity(two, np.random.default_rng(s)), 6) for s in range(20)}
    assert values == {0.0, 5.0}
    wide, narrow = rng.standard_normal((400, 8)) * 3, rng.standard_normal((400, 8))
    assert diversity(wide, rng) > 2.5 * diversity(narrow, rng)


def test_provider_skips_with_reason(tmp_path):
    p = MotionQualityProvider(MotionQualityConfig(evaluator_dir=None))
    assert isinstance(p, MetricProvider)
    assert "train-evaluators" in p.unavailable_reason()
    reason = MotionQualityProvider(MotionQualityConfig(evaluator_dir=str(tmp_path))).unavailable_reason()
    assert "evaluators.safetensors" in reason and str(tmp_path) in reason
    assert set(p.higher_is_better) == set(p.metric_names)


def test_skip_message_names_the_real_evaluate_flag(tmp_path):
    """The reasons tell users the flag `egotwin-bench evaluate` actually has."""
    import typer.main

    from egotwin_bench.cli import app
    from egotwin_bench.evaluate.providers.motion_quality import EVALUATOR_FLAG

    evaluate = typer.main.get_command(app).commands["evaluate"]
    flags = {opt for param in evaluate.params for opt in param.opts}
    assert EVALUATOR_FLAG == "--evaluator-dir" and EVALUATOR_FLAG in flags
    assert "--evaluator-dir DIR" in MotionQualityProvider(MotionQualityConfig()).unavailable_reason()
    assert "--evaluators " not in MotionQualityProvider(MotionQualityConfig()).unavailable_reason()
    assert "(--evaluator-dir)" in MotionQualityProvider(MotionQualityConfig(evaluator_dir=str(tmp_path))).unavailable_reason()


def _clips(texts, positions, rotations) -> list[EvalClip]:
    return [EvalClip(f"c{i:03d}", t, lambda: None, p, r, np.eye(3), np.eye(4), "") for i, (t, p, r) in
            enumerate(zip(texts, positions, rotations))]


def test_provider_ranks_ground_truth_above_shuffled_and_noisy(trained_evaluator, text_motion_pairs):
    folder = trained_evaluator[0]
    texts, pos, rot = text_motion_pairs["val"]
    provider = MotionQualityProvider(MotionQualityConfig(evaluator_dir=str(folder)))
    assert provider.unavailable_reason() is None
    reference = _clips(texts, pos, rot)
    perm = np.random.default_rng(3).permutation(len(texts))
    shuffled = _clips(texts, pos[perm], rot[perm])
    noisy_pos = pos + np.random.default_rng(4).normal(0, 0.05, pos.shape).astype(np.float32)
    noisy = _clips(texts, noisy_pos, rot)
    res = {name: provider.evaluate(gen, reference, np.random.default_rng(0)) for name, gen in
           (("gt", reference), ("shuffled", shuffled), ("noisy", noisy))}
    m = {k: {n: v.value for n, v in r.metrics.items()} for k, r in res.items()}
    print(m)
    assert set(m["gt"]) == set(provider.metric_names)
    assert m["gt"]["M-FID"] == pytest.approx(0.0, abs=1e-6)
    assert m["noisy"]["M-FID"] > 1e-3
    # a shuffle keeps the set of motions: same M-FID and Diversity, but texts no longer match
    assert m["shuffled"]["M-FID"] == pytest.approx(0.0, abs=1e-6)
    assert m["gt"]["R-Prec"] > m["shuffled"]["R-Prec"] + 0.2
    assert m["gt"]["MM-Dist"] < m["shuffled"]["MM-Dist"]
    assert m["gt"]["R-Prec@1"] <= m["gt"]["R-Prec@2"] <= m["gt"]["R-Prec"]
    for r in res.values():  # every value lies in its interval (replications or jackknife)
        for name, v in r.metrics.items():
            assert v.low <= v.value <= v.high, (name, v)
    assert res["gt"].metrics["R-Prec"].high > res["gt"].metrics["R-Prec"].low  # shuffles vary the batches
    assert res["gt"].per_clip["MM-Dist"].shape == (len(texts),)


def test_identical_motion_embeddings_win_no_r_precision(rng):
    # A constant submission (or a collapsed evaluator) gives every clip the same motion
    # embedding: all distances of a text tie. Ties count against the pair, so no hit at any k.
    text = rng.normal(size=(32, 8))
    motion = np.repeat(rng.normal(size=(1, 8)), 32, axis=0)
    hits, _ = r_precision_hits(text, motion, top_k=3)
    assert not hits.any()


def test_relative_spread_and_chance_known_answers(rng):
    assert relative_spread(np.tile([3.0, 4.0], (10, 1))) == 0.0 and relative_spread(np.zeros((4, 3))) == 0.0
    # two points at +-1 on an axis: centroid 0, RMS distance 1, RMS norm 1
    assert relative_spread(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)
    # the collapsed evaluator of issue #15: norm ~28, per-dimension std ~4e-8
    collapsed = 27.7 / np.sqrt(512) + rng.normal(0, 4e-8, (32, 512))
    assert relative_spread(collapsed) < 1e-7 and "collapsed" in collapse_problem(collapsed)
    assert collapse_problem(rng.normal(size=(32, 512))) is None
    assert COLLAPSE_SPREAD < relative_spread(rng.normal(5.0, 0.05, (32, 512)))  # a tight but real cloud
    assert chance_p_value(0, 32, 3 / 32) == pytest.approx(1.0)
    assert chance_p_value(32, 32, 0.5) == pytest.approx(0.5 ** 32)
    assert chance_p_value(2, 2, 0.5) + 1e-12 >= 0.25  # P(X >= 2) of Bin(2, 0.5)


def test_provider_refuses_a_collapsed_evaluator(tmp_path, text_motion_pairs, torch_one_thread):
    """An evaluator whose motion embedding ignores the motion (here: the last layer zeroed, as the
    saturated GRU of issue #15) is reported unusable on the reference clips instead of scoring
    M-FID 0 for every submission."""
    import torch

    from egotwin_bench.estimators.gru_evaluators import EvaluatorConfig, TextMotionEvaluator
    from egotwin_bench.estimators.text_features import random_word_vectors, vocabulary
    from tests.fixtures_metrics import SMALL_EVALUATOR

    texts, pos, rot = text_motion_pairs["val"]
    torch.manual_seed(0)
    model = TextMotionEvaluator(EvaluatorConfig(**SMALL_EVALUATOR), random_word_vectors(vocabulary(texts), 0))
    with torch.no_grad():
        model.motion_encoder.output_net[-1].weight.zero_()
    model.save(tmp_path)
    provider = MotionQualityProvider(MotionQualityConfig(evaluator_dir=str(tmp_path)))
    assert provider.unavailable_reason() is None  # nothing recorded says so: found on the clips
    clips = _clips(texts, pos, rot)
    with pytest.raises(ProviderUnusable, match=r"collapsed.*relative spread 0 < 0.001.*retrain"):
        provider.evaluate(clips, clips, np.random.default_rng(0))
