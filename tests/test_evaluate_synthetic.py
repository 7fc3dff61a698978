"""The benchmark on curated synthetic data (make-synthetic -> build-dataset): the ground-truth
submission beats the motion-shuffled one on TransErr and RotErr (default, on `built_dataset`, COLMAP
poses: about 1.5 min on 2 cores), and
on HandScore too with a hand classifier trained on a larger synthetic set, which must reach
F1 >= 0.9 on held-out clips (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from egotwin_bench.evaluate.baselines import make_reference_submission
from egotwin_bench.evaluate.runner import EvaluateOptions, evaluate_submissions, find_submissions


def curated(request) -> Path:
    try:
        return request.getfixturevalue("built_dataset")
    except pytest.FixtureLookupError as err:  # the curation/synthetic fixtures are not there yet
        pytest.skip(f"built_dataset fixture not available: {err}")


def score(dataset: Path, root: Path, hand_classifier: Path | None = None) -> dict[str, dict]:
    subs = root / "submissions"
    make_reference_submission(dataset, subs / "ground_truth")
    make_reference_submission(dataset, subs / "shuffled", shuffle_motion=True)
    # COLMAP: on these clips the builtin VO returns no translation (a pose failure, not a score)
    options = EvaluateOptions(reference=dataset, out=root / "results", estimator="colmap", n_bootstrap=200,
                              hand_classifier=hand_classifier, plots=False)
    result = evaluate_submissions(find_submissions(subs), options)
    assert not result.rejected, [r.summary() for r in result.rejected]
    rows = {r["method"]: r for r in pl.read_csv(root / "results" / "leaderboard.csv").to_dicts()}
    print(f"leaderboard on {dataset.name}:", json.dumps(rows, indent=1))
    return rows


def test_ground_truth_beats_shuffled_on_view_consistency(request, tmp_path):
    rows = score(curated(request), tmp_path)
    gt, sh = rows["ground_truth"], rows["shuffled_motion"]
    assert gt["pose_failures"] == 0 and sh["pose_failures"] == 0, (gt, sh)
    assert gt["TransErr"] < 0.5 * sh["TransErr"], (gt, sh)
    assert gt["RotErr"] < 0.5 * sh["RotErr"], (gt, sh)
    assert gt["RotErr"] < 0.05, gt  # radians: COLMAP follows the synthetic head camera


@pytest.mark.slow
def test_hand_classifier_and_hand_score_on_larger_synthetic_set(tmp_path):
    """8 sequences x 30 s (about 38 clips): classifier F1 >= 0.9 on the held-out test split, and
    the ground truth beats the shuffled motions on all three consistency metrics (about 4 min
    on one CPU core)."""
    from egotwin_bench.curation.config import CurationConfig
    from egotwin_bench.curation.pipeline import build_dataset
    from egotwin_bench.training.hand_classifier import HandTrainingConfig, train_hand_classifier
    from egotwin_bench.synthetic.writer import SyntheticConfig, make_synthetic

    raw, dataset = tmp_path / "raw", tmp_path / "dataset"
    make_synthetic(raw, SyntheticConfig(sequences=8, seconds=30.0, seed=1, resolution=352, fps=10,
                                        trajectory_hz=1000), workers=1)
    build_dataset(raw, dataset, CurationConfig(), engine="local")
    # Threshold chosen on the val split, F1 reported on the test split (the classifier sees neither).
    metrics = train_hand_classifier(dataset, tmp_path / "hands", None,
                                    HandTrainingConfig(arch="tiny", epochs=12, batch_size=32, lr=1e-3), "test", "val")
    print("hand classifier, held-out test split:", metrics)
    assert metrics["f1_mean"] >= 0.9, metrics
    assert metrics["positives_left"] + metrics["positives_right"] > 0, metrics  # F1 of something, not of nothing
    rows = score(dataset, tmp_path, tmp_path / "hands")
    gt, sh = rows["ground_truth"], rows["shuffled_motion"]
    assert gt["TransErr"] < 0.5 * sh["TransErr"] and gt["RotErr"] < 0.5 * sh["RotErr"], (gt, sh)
    assert gt["HandScore"] > sh["HandScore"] + 0.3, (gt, sh)
