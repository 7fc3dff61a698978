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

from egotwin_bench import __version__
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
        "--estimator", "builtin",  # the fast option keeps this module short; COLMAP: tests/test_colmap.py
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
                             "pose_failures", "head_path_m", "TransErr", "TransErr_low", "TransErr_high", "RotErr", "RotErr_low", "RotErr_high",
                             "HandScore", "HandScore_low", "HandScore_high"]
    assert frame["estimator"].to_list() == ["builtin", "builtin"] and frame["n_clips"].to_list() == [4, 4]
    md = (out / "leaderboard.md").read_text()
    for skipped in ("**ifid**", "**fvd**", "**clip_sim**", "**motion_quality**"):
        assert skipped in md
    assert "builtin OpenCV visual odometry" in md and "not for reported numbers" in md
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

    def cache_id(self):
        return self.inner.cache_id()  # reads the poses the real builtin backend cached

    def estimate(self, frames, intrinsics):
        self.calls += 1
        raise RuntimeError("tracking lost")


def test_rerun_uses_per_clip_cache(evaluated, submissions, room_dataset, room_hand_classifier, tmp_path):
    """A second run reuses the cached poses and hand predictions: no estimator call, same numbers."""
    from egotwin_bench.evaluate.providers.hand_consistency import HandConsistencyProvider
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider
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
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

    class FailsOnFirst(ExplodingEstimator):
        """Fails on the first clip, then reports a camera sliding along x (cheap, finite errors;
        a static one would be a pose failure: no translation)."""

        def estimate(self, frames, intrinsics):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("tracking lost")
            return sliding_camera(len(frames))

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
    assert list(result.failures) == ["ground_truth/t2vm"] and "`ground_truth/t2vm`" in md


def test_allow_partial_scores_valid_clips(evaluated, submissions, room_dataset, tmp_path):
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

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
    assert reasons["view_consistency"] is None and providers["view_consistency"].estimator.name == "colmap"
    fast = EvaluateOptions(reference=room_dataset, out=tmp_path, estimator="colmap", colmap_preset="fast")
    view = next(p for p in build_providers(fast) if p.name == "view_consistency")
    assert view.estimator.label == "colmap-fast" and view.estimator.config.matching == "sequential"
    assert "inception_v3" in reasons["ifid"] and "train-hand-classifier" in reasons["hand_consistency"]
    # A quality module that cannot be imported becomes a skip with the reason.
    monkeypatch.setitem(sys.modules, "egotwin_bench.evaluate.providers.video_quality", None)
    providers = {p.name: p for p in build_providers(options)}
    assert "I-FID, FVD, CLIP-SIM" in providers["video_quality"].unavailable_reason()
    assert "cannot be imported" in providers["video_quality"].unavailable_reason()
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
        "--no-plots", "--estimator", "builtin",
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
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

    options = EvaluateOptions(reference=room_dataset, out=tmp_path, n_bootstrap=20, plots=False)
    view = ViewConsistencyProvider(ExplodingEstimator(), ClipCache(evaluated[0] / "cache"), 20)  # cached poses
    result = evaluate_submissions([submissions / "ground_truth"], options,
                                  [BrokenProvider("check"), BrokenProvider("score"), view])
    assert "TypeError: bad signature" in result.skipped["broken_check"]
    # A failure while scoring one submission is recorded for that submission, not as a skipped metric.
    assert "broken_score" not in result.skipped
    assert result.provider_failures == {"ground_truth/t2vm": {"broken_score": "RuntimeError: out of memory"}}
    assert "Broken" not in result.rows[0] and np.isfinite(result.rows[0]["TransErr"])
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Metric groups that failed on a submission" in md
    assert "`ground_truth/t2vm` **broken_score**: RuntimeError: out of memory" in md


class UnusableProvider(BrokenProvider):
    """A metric group that finds, while scoring, that it cannot score anyone (a collapsed evaluator)."""

    metric_names = ("Unusable",)
    higher_is_better = {"Unusable": True}

    def evaluate(self, generated, reference, rng):
        from egotwin_bench.evaluate.protocol import ProviderUnusable

        self.calls = getattr(self, "calls", 0) + 1
        raise ProviderUnusable("the GRU evaluators in X are collapsed")


def test_unusable_provider_is_skipped_for_the_run(evaluated, submissions, room_dataset, tmp_path):
    """ProviderUnusable: listed under 'Metrics not computed' with its reason, no column, asked once."""
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

    options = EvaluateOptions(reference=room_dataset, out=tmp_path, n_bootstrap=20, plots=False)
    view = ViewConsistencyProvider(ExplodingEstimator(), ClipCache(evaluated[0] / "cache"), 20)  # cached poses
    unusable = UnusableProvider("score")
    result = evaluate_submissions([submissions / "ground_truth", submissions / "shuffled"], options,
                                  [unusable, view])
    assert result.skipped == {"broken_score": "the GRU evaluators in X are collapsed"} and unusable.calls == 1
    assert not result.provider_failures and len(result.rows) == 2
    assert all("Unusable" not in row and np.isfinite(row["TransErr"]) for row in result.rows)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Metrics not computed" in md and "**broken_score**: the GRU evaluators in X are collapsed" in md


def test_bugs_in_a_quality_provider_are_not_hidden(no_weights, room_dataset, tmp_path, monkeypatch):
    """Only an import failure turns a quality group into a skip; a TypeError or AttributeError
    while building it is a bug and surfaces."""
    import egotwin_bench.evaluate.providers.motion_quality as motion_quality

    def broken(config):
        raise TypeError("MotionQualityProvider() got an unexpected keyword argument")

    monkeypatch.setattr(motion_quality, "MotionQualityProvider", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        build_providers(EvaluateOptions(reference=room_dataset, out=tmp_path, estimator="builtin"))


def sliding_camera(n: int) -> np.ndarray:
    """(n, 4, 4) poses of a camera sliding 1 unit per frame along x (a static one is a pose failure)."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = np.arange(n)
    return poses


class CountingEstimator:
    """A sliding camera (cheap, finite errors), counting the clips it is asked to estimate."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def unavailable_reason(self):
        return None

    def cache_id(self):
        return "counting-v1"

    def estimate(self, frames, intrinsics):
        self.calls += 1
        return sliding_camera(len(frames))


def test_identical_videos_reuse_poses_and_hand_presence(submissions, room_dataset, room_hand_classifier, tmp_path,
                                                        monkeypatch):
    """The shuffled baseline has the ground truth's videos: with a shared cache, scoring it
    estimates no pose and runs no classifier, yet its errors use its own (shuffled) motions."""
    from egotwin_bench.estimators.hand_classifier import HandClassifier
    from egotwin_bench.evaluate.clip_cache import ClipCache
    from egotwin_bench.evaluate.providers.hand_consistency import HandConsistencyProvider
    from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider

    predicted: list[int] = []
    real_predict = HandClassifier.predict
    monkeypatch.setattr(HandClassifier, "predict", lambda self, frames: predicted.append(len(frames)) or
                        real_predict(self, frames))
    cache, estimator = ClipCache(tmp_path / "cache"), CountingEstimator()
    providers = [ViewConsistencyProvider(estimator, cache, 20), HandConsistencyProvider(room_hand_classifier[0], cache, 20)]
    options = EvaluateOptions(reference=room_dataset, out=tmp_path / "out", n_bootstrap=20, plots=False)
    evaluate_submissions([submissions / "ground_truth"], options, providers)
    assert estimator.calls == 4 and len(predicted) == 4
    result = evaluate_submissions([submissions / "shuffled"], options, providers)
    assert estimator.calls == 4 and len(predicted) == 4  # nothing recomputed
    assert np.isfinite(result.rows[0]["TransErr"]) and result.rows[0]["method"] == "shuffled_motion"
    # The cache names say what made them and with which toolkit version.
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names[0].startswith("hands-") and names[1] == f"poses-counting-v1-egotwin{__version__}"
    assert all(n.endswith(f"-egotwin{__version__}") for n in names)
    # Another estimator configuration does not read these poses.
    other = CountingEstimator()
    other.cache_id = lambda: "counting-v2"
    evaluate_submissions([submissions / "shuffled"], options, [ViewConsistencyProvider(other, cache, 20)])
    assert other.calls == 4


@pytest.mark.slow
def test_quality_metrics_join_the_leaderboard(no_weights, submissions, room_dataset, room_hand_classifier,
                                              inception_file, i3d_file, clip_folder, trained_evaluator, tmp_path,
                                              monkeypatch, torch_one_thread):
    """All nine paper metrics: the video/motion quality providers, built by `evaluate` from the
    weight flags (random weights of the real architectures; the Inception file's digest is
    declared as the published one so the sha256 check stays on), write their columns next to the
    consistency metrics, every value inside its interval. (About 40 s
    on one CPU core, most of it I3D, hence slow.)"""
    import dataclasses

    from egotwin_bench import weights

    monkeypatch.setattr(weights, "INCEPTION_V3", dataclasses.replace(
        weights.INCEPTION_V3, sha256=weights.sha256_of(inception_file[0])))
    out = tmp_path / "results"
    res = CliRunner().invoke(app, [
        "evaluate", str(submissions / "ground_truth"), "--reference", str(room_dataset), "--out", str(out),
        "--estimator", "builtin", "--workers", "0", "--bootstrap", "50", "--jackknife-groups", "5", "--replications", "5", "--no-plots",
        "--hand-classifier", str(room_hand_classifier[0]), "--inception-weights", str(inception_file[0]),
        "--i3d-weights", str(i3d_file[0]), "--clip-weights", str(clip_folder[0]),
        "--evaluator-dir", str(trained_evaluator[0]), "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    row = leaderboard(out)["ground_truth"]
    md = (out / "leaderboard.md").read_text()
    paper = ("I-FID", "FVD", "CLIP-SIM", "M-FID", "R-Prec", "MM-Dist", "TransErr", "RotErr", "HandScore")
    for metric in (*paper, "Diversity"):
        assert metric in row and np.isfinite(row[metric]), (metric, md)
    for metric in (*paper, "Diversity", "FVD16"):  # bootstrap, jackknife or replications: each holds its value
        assert row[f"{metric}_low"] <= row[metric] <= row[f"{metric}_high"], (metric, row)
    assert "FVD / FVD16: I3D Kinetics-400 `tfhub` from `i3d_pretrained_400.pt`" in md and "eps 1e-05" in md
    # The ground truth's videos are the reference's: I-FID and FVD ~ 0 (the reference features
    # are computed once, from the same cache entries).
    assert row["I-FID"] < 1e-6 * max(1.0, row["I-FID_high"]) + 1e-6 and row["FVD"] < 1e-6
    assert "## Metrics not computed" not in md, md
    features = out / "cache" / "features"
    assert {p.name.split("-")[0] for p in features.iterdir()} == {"ifid", "fvd", "clip_sim"}
    assert len(list(features.glob("fvd-*/*.npy"))) == 4  # 4 videos, shared by submission and reference
