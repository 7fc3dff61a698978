"""`egotwin-bench make-submission` + `egotwin-bench evaluate` end to end on the room dataset:
the ground truth beats the motion-shuffled baseline on TransErr, RotErr and HandScore, malformed
submissions are reported (not a crash), skipped metrics have no columns, the per-clip cache
resumes, estimator failures are per-clip skips."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from egotwin_bench.cli import app
from egotwin_bench.evaluate.runner import EvaluateOptions, build_providers, evaluate_submissions, find_submissions


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory):
    """Point the weights cache at an empty folder so the network metrics are reliably skipped."""
    empty = tmp_path_factory.mktemp("empty_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EGOTWIN_CACHE", str(empty))
        mp.setenv("EGOTWIN_WEIGHTS", str(empty / "weights"))
        yield empty


@pytest.fixture(scope="module")
def submissions(room_dataset, tmp_path_factory) -> Path:
    """ground_truth/, shuffled/ (both via the CLI) and broken/ (a clip with a 20-frame video)."""
    root = tmp_path_factory.mktemp("submissions")
    runner = CliRunner()
    for name, extra in (("ground_truth", []), ("shuffled", ["--shuffle-motion"])):
        res = runner.invoke(app, ["make-submission", "--from-reference", str(room_dataset), "--out",
                                  str(root / name), *extra])
        assert res.exit_code == 0, res.output
    shutil.copytree(root / "ground_truth", root / "broken")
    meta = json.loads((root / "broken" / "submission.json").read_text())
    (root / "broken" / "submission.json").write_text(json.dumps({**meta, "method": "broken"}))
    from egotwin_bench.curation.video import encode_mp4

    first = sorted((root / "broken").glob("*.mp4"))[0]
    first.write_bytes(encode_mp4(np.zeros((20, 480, 480, 3), np.uint8)))
    return root


@pytest.fixture(scope="module")
def evaluated(no_weights, submissions, room_dataset, room_hand_classifier, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("results")
    res = CliRunner().invoke(app, [
        "evaluate", str(submissions), "--reference", str(room_dataset), "--out", str(out),
        "--hand-classifier", str(room_hand_classifier[0]), "--workers", "0", "--bootstrap", "200",
        "--estimator", "auto",
    ])
    assert res.exit_code == 0, res.output
    return out, res.output


def leaderboard(out: Path) -> dict[str, dict]:
    return {r["method"]: r for r in pl.read_csv(out / "leaderboard.csv").to_dicts()}


def test_ground_truth_beats_shuffled(evaluated):
    out, _ = evaluated
    rows = leaderboard(out)
    assert set(rows) == {"ground_truth", "shuffled_motion"}
    gt, sh = rows["ground_truth"], rows["shuffled_motion"]
    print("room dataset leaderboard:", json.dumps(rows, indent=1))
    assert gt["TransErr"] < 0.4 * sh["TransErr"], (gt, sh)
    assert gt["RotErr"] < 0.25 * sh["RotErr"], (gt, sh)
    assert gt["HandScore"] > sh["HandScore"] + 0.15, (gt, sh)
    # Intervals bracket the values; the ground truth's whole interval beats the shuffled value.
    for row in (gt, sh):
        for m in ("TransErr", "RotErr", "HandScore"):
            assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"]
    assert gt["TransErr_high"] < sh["TransErr"] and gt["RotErr_high"] < sh["RotErr"]


def test_leaderboard_columns_and_files(evaluated):
    out, output = evaluated
    frame = pl.read_csv(out / "leaderboard.csv")
    assert frame.columns == ["method", "task", "n_clips", "estimator", "toolkit_version",
                             "TransErr", "TransErr_low", "TransErr_high", "RotErr", "RotErr_low", "RotErr_high",
                             "HandScore", "HandScore_low", "HandScore_high"]
    assert frame["estimator"].to_list() == ["builtin", "builtin"] and frame["n_clips"].to_list() == [4, 4]
    md = (out / "leaderboard.md").read_text()
    for skipped in ("**ifid**", "**fvd**", "**clip_sim**", "**motion_quality**"):
        assert skipped in md
    assert "DROID-SLAM not used: DROID-SLAM is not installed" in md
    assert "## Submissions not evaluated" in md and "`broken`" in md and "video has 20 frames, expected 41" in md
    assert "not evaluated:" in output and "broken" in output
    per_clip = pl.read_parquet(out / "per_clip.parquet")
    assert per_clip.height == 8 and {"TransErr", "RotErr", "HandScore", "clip_id"} <= set(per_clip.columns)
    gt = per_clip.filter(pl.col("method") == "ground_truth")
    assert np.allclose(gt["TransErr"].mean(), leaderboard(out)["ground_truth"]["TransErr"])
    for png in ("metric_TransErr.png", "metric_RotErr.png", "metric_HandScore.png",
                "trajectories_ground_truth_t2vm.png", "trajectories_shuffled_motion_t2vm.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"


class ExplodingEstimator:
    """A `builtin`-named estimator that raises on every clip, counting its calls."""

    name = "builtin"

    def __init__(self) -> None:
        from egotwin_bench.estimators.builtin import BuiltinEstimator

        self.inner, self.calls = BuiltinEstimator(), 0

    def unavailable_reason(self):
        return None

    def estimate(self, frames, intrinsics):
        self.calls += 1
        raise RuntimeError("tracking lost")


def test_rerun_uses_per_clip_cache(evaluated, submissions, room_dataset, room_hand_classifier, tmp_path):
    """A second run reuses the cached poses and hand predictions: no estimator call, same numbers."""
    from egotwin_bench.metrics.hand_consistency import HandConsistencyProvider
    from egotwin_bench.metrics.view_consistency import ViewConsistencyProvider
    from egotwin_bench.evaluate.clip_cache import ClipCache

    out, _ = evaluated
    options = EvaluateOptions(reference=room_dataset, out=tmp_path / "again", cache_dir=out / "cache",
                              n_bootstrap=200, plots=False)
    cache = ClipCache(out / "cache")
    estimator = ExplodingEstimator()
    providers = [ViewConsistencyProvider(estimator, cache, 200),
                 HandConsistencyProvider(room_hand_classifier[0], cache, 200)]
    result = evaluate_submissions(find_submissions(submissions), options, providers)
    assert estimator.calls == 0 and providers[1]._classifier is None  # nothing recomputed
    again, first = leaderboard(tmp_path / "again"), leaderboard(out)
    for method in first:
        for m in ("TransErr", "RotErr", "HandScore", "TransErr_low", "HandScore_high"):
            assert again[method][m] == pytest.approx(first[method][m], rel=1e-12)
    assert [r.path.name for r in result.rejected] == ["broken"]


def test_estimator_failures_are_per_clip_skips(submissions, room_dataset, tmp_path):
    from egotwin_bench.metrics.view_consistency import ViewConsistencyProvider

    class FailsOnFirst(ExplodingEstimator):
        """Fails on the first clip, then reports a static camera (cheap, finite errors)."""

        def estimate(self, frames, intrinsics):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("tracking lost")
            return np.tile(np.eye(4), (len(frames), 1, 1))

    options = EvaluateOptions(reference=room_dataset, out=tmp_path, n_bootstrap=50, plots=False)
    estimator = FailsOnFirst()
    result = evaluate_submissions([submissions / "ground_truth"], options,
                                  [ViewConsistencyProvider(estimator, None, 50)])
    assert estimator.calls == 4 and result.rows[0]["n_clips"] == 4
    values = [r["TransErr"] for r in result.per_clip]
    assert np.isnan(values[0]) and np.all(np.isfinite(values[1:]))
    assert result.rows[0]["TransErr"] == pytest.approx(np.mean(values[1:]))
    md = (tmp_path / "leaderboard.md").read_text()
    assert "could not process" in md and "RuntimeError: tracking lost" in md


def test_allow_partial_scores_valid_clips(evaluated, submissions, room_dataset, tmp_path):
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.metrics.view_consistency import ViewConsistencyProvider

    options = EvaluateOptions(reference=room_dataset, out=tmp_path, n_bootstrap=20, plots=False, allow_partial=True)
    # The 3 valid clips are byte-identical to the ground truth's: their poses come from its cache.
    estimator = ExplodingEstimator()
    provider = ViewConsistencyProvider(estimator, ClipCache(evaluated[0] / "cache"), 20)
    result = evaluate_submissions([submissions / "broken"], options, [provider])
    assert result.rows[0]["method"] == "broken" and result.rows[0]["n_clips"] == 3 and not result.rejected
    assert estimator.calls == 0 and np.isfinite(result.rows[0]["TransErr"])
    assert "Evaluated partially" in (tmp_path / "leaderboard.md").read_text()


def test_no_valid_submission_exits_1(submissions, room_dataset, tmp_path):
    res = CliRunner().invoke(app, ["evaluate", str(submissions / "broken"), "--reference", str(room_dataset),
                                   "--out", str(tmp_path), "--workers", "0", "--estimator", "builtin"])
    assert res.exit_code == 1 and "video has 20 frames" in (tmp_path / "leaderboard.md").read_text()
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope"), "--reference", str(room_dataset)])
    assert res.exit_code == 2 and "is not a folder of submissions" in res.output


def test_build_providers_skips_with_reasons(no_weights, room_dataset, tmp_path, monkeypatch):
    options = EvaluateOptions(reference=room_dataset, out=tmp_path, estimator="auto")
    providers = {p.name: p for p in build_providers(options)}
    assert {"ifid", "fvd", "clip_sim", "motion_quality", "view_consistency", "hand_consistency"} <= set(providers)
    reasons = {n: p.unavailable_reason() for n, p in providers.items()}
    assert reasons["view_consistency"] is None and providers["view_consistency"].estimator.name == "builtin"
    assert "inception_v3" in reasons["ifid"] and "train-hand-classifier" in reasons["hand_consistency"]
    # A quality module that is absent (or has another API) becomes a skip with the reason.
    monkeypatch.setitem(sys.modules, "egotwin_bench.metrics.video_quality", None)
    providers = {p.name: p for p in build_providers(options)}
    assert "I-FID, FVD, CLIP-SIM" in providers["video_quality"].unavailable_reason()
    # Explicit droid without DROID-SLAM: the view provider is skipped with the install hint.
    droid = EvaluateOptions(reference=room_dataset, out=tmp_path, estimator="droid")
    view = next(p for p in build_providers(droid) if p.name == "view_consistency")
    assert "DROID-SLAM" in view.unavailable_reason()


@pytest.mark.slow
def test_ray_workers_match_in_process(evaluated, submissions, room_dataset, room_hand_classifier, tmp_path):
    """The same numbers with per-clip work in Ray tasks (2 local CPUs, fresh cache)."""
    out, _ = evaluated
    res = CliRunner().invoke(app, [
        "evaluate", str(submissions), "--reference", str(room_dataset), "--out", str(tmp_path),
        "--hand-classifier", str(room_hand_classifier[0]), "--workers", "2", "--bootstrap", "200",
        "--no-plots",
    ])
    assert res.exit_code == 0, res.output
    ray_rows, rows = leaderboard(tmp_path), leaderboard(out)
    for method in rows:
        for m in ("TransErr", "RotErr", "HandScore"):
            assert ray_rows[method][m] == pytest.approx(rows[method][m], rel=1e-9)


class BrokenProvider:
    """A metric group that fails: in its availability check (`when` = "check") or when scoring."""

    metric_names = ("Broken",)
    higher_is_better = {"Broken": True}

    def __init__(self, when: str) -> None:
        self.name, self.when = f"broken_{when}", when

    def unavailable_reason(self):
        if self.when == "check":
            raise TypeError("bad signature")
        return None

    def evaluate(self, generated, reference, rng):
        raise RuntimeError("out of memory")


def test_failing_provider_is_skipped_not_fatal(evaluated, submissions, room_dataset, tmp_path):
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.metrics.view_consistency import ViewConsistencyProvider

    options = EvaluateOptions(reference=room_dataset, out=tmp_path, n_bootstrap=20, plots=False)
    view = ViewConsistencyProvider(ExplodingEstimator(), ClipCache(evaluated[0] / "cache"), 20)  # cached poses
    result = evaluate_submissions([submissions / "ground_truth"], options,
                                  [BrokenProvider("check"), BrokenProvider("score"), view])
    assert "TypeError: bad signature" in result.skipped["broken_check"]
    assert "RuntimeError: out of memory" in result.skipped["broken_score"]
    assert "Broken" not in result.rows[0] and np.isfinite(result.rows[0]["TransErr"])
    assert "out of memory" in (tmp_path / "leaderboard.md").read_text()
