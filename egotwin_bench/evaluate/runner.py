"""`egotwin-bench evaluate`: validate submissions, run every available metric provider, write results.

Providers come from `build_providers(options)`: the video/motion quality providers (imported
lazily from ``egotwin_bench.evaluate.providers.video_quality`` / ``motion_quality`` and configured from the
weight flags) and the view / hand consistency providers. A provider
that cannot run (missing weights, missing module) is skipped with its reason recorded in
``leaderboard.md``; its columns are absent from ``leaderboard.csv``, never placeholders.

Per-clip work is cached by content hash in ``<out>/cache`` (or ``--cache-dir``), so evaluating one
more submission costs only its own clips and an interrupted run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from egotwin_bench import __version__
from egotwin_bench.curation.video import decode_mp4
from egotwin_bench.estimators import select_estimator
from egotwin_bench.evaluate.clip_cache import ClipCache
from egotwin_bench.evaluate.leaderboard import write_results
from egotwin_bench.evaluate.options import EvaluateOptions, EvaluationResult
from egotwin_bench.evaluate.protocol import EvalClip, MetricProvider, ProviderUnusable
from egotwin_bench.evaluate.providers.hand_consistency import HandConsistencyProvider
from egotwin_bench.evaluate.providers.view_consistency import ViewConsistencyProvider
from egotwin_bench.evaluate.reference import ReferenceClip, load_clips, reference_name
from egotwin_bench.evaluate.submission import (
    SUBMISSION_FILE,
    SubmissionMeta,
    clip_hashes,
    method_clash,
    read_motion,
    validate_submission,
)


class UnavailableProvider:
    """Stands in for a provider whose module could not be imported; never evaluates."""

    metric_names: tuple[str, ...] = ()
    higher_is_better: dict[str, bool] = {}

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def unavailable_reason(self) -> str | None:
        return self._reason

    def evaluate(self, generated, reference, rng):  # pragma: no cover - never called
        raise RuntimeError(self._reason)


def resolve_estimator(options: EvaluateOptions):
    """The pose estimator of `options.estimator` and the leaderboard note on `auto`'s choice
    (`egotwin_bench.estimators.select_estimator`: auto = DROID-SLAM if it can run, else colmap)."""
    return select_estimator(options.estimator, options.droid_weights, options.droid_repo, options.colmap_preset)


def _cache_root(options: EvaluateOptions) -> Path:
    return Path(options.cache_dir) if options.cache_dir is not None else Path(options.out) / "cache"


def _device(options: EvaluateOptions) -> str:
    if options.device != "auto":
        return options.device

    return "cuda" if torch.cuda.is_available() else "cpu"


def _video_quality(options: EvaluateOptions) -> list[MetricProvider]:
    # lazy: torch + transformers; an ImportError here becomes an UnavailableProvider (`_quality_providers`)
    from egotwin_bench.evaluate.providers.video_quality import VideoQualityConfig, video_quality_providers

    config = VideoQualityConfig(
        inception_weights=_str(options.inception_weights), i3d_weights=_str(options.i3d_weights),
        fvd_network=options.fvd_network, clip_weights=_str(options.clip_weights), device=_device(options),
        feature_cache=str(_cache_root(options) / "features"), bootstrap_resamples=options.n_bootstrap,
        jackknife_groups=options.jackknife_groups,
    )
    return list(video_quality_providers(config))


def _motion_quality(options: EvaluateOptions) -> list[MetricProvider]:
    # lazy: torch; an ImportError here becomes an UnavailableProvider (`_quality_providers`)
    from egotwin_bench.evaluate.providers.motion_quality import MotionQualityConfig, MotionQualityProvider

    config = MotionQualityConfig(evaluator_dir=_str(options.evaluator_dir), device=_device(options),
                                 replications=options.replications, jackknife_groups=options.jackknife_groups)
    return [MotionQualityProvider(config)]


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


QUALITY_GROUPS: tuple[tuple[str, str], ...] = (
    ("video_quality", "I-FID, FVD, CLIP-SIM"),
    ("motion_quality", "M-FID, R-Prec, MM-Dist, Diversity"),
)


def _quality_providers(options: EvaluateOptions) -> list[MetricProvider]:
    """The video and motion quality providers; a group whose module (or one of its optional
    dependencies) cannot be imported becomes an `UnavailableProvider` saying so (its metrics are
    then skipped, not faked). Any other error is a bug and propagates. Missing weights are not
    an error here: each provider reports them from `unavailable_reason()`."""
    providers: list[MetricProvider] = []
    for (group, metrics), factory in zip(QUALITY_GROUPS, (_video_quality, _motion_quality)):
        try:
            providers += factory(options)
        except ImportError as err:
            providers.append(UnavailableProvider(
                group, f"{metrics}: egotwin_bench.evaluate.providers.{group} cannot be imported here ({type(err).__name__}: {err})"))
    return providers


def build_providers(options: EvaluateOptions) -> list[MetricProvider]:
    """All metric providers for `options`, available or not (the runner checks each one)."""
    cache = ClipCache(_cache_root(options))
    return [
        *_quality_providers(options),
        ViewConsistencyProvider(resolve_estimator(options)[0], cache, options.n_bootstrap,
                                parallel=options.workers > 0 or bool(os.environ.get("RAY_ADDRESS"))),
        HandConsistencyProvider(options.hand_classifier, cache, options.n_bootstrap),
    ]


# -- clips ---------------------------------------------------------------------------------------

def _decode_file(path: Path) -> np.ndarray:
    return decode_mp4(Path(path).read_bytes())


def _decode_bytes(data: bytes) -> np.ndarray:
    return decode_mp4(data)


def reference_eval_clip(ref: ReferenceClip) -> EvalClip:
    """A reference clip as metrics see it."""
    video = hashlib.sha256(ref.video_mp4)
    h = video.copy()  # content = video bytes, then motion
    for a in (ref.positions, ref.rotations):
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return EvalClip(
        clip_id=ref.clip_id, text=ref.text, load_video=functools.partial(_decode_bytes, ref.video_mp4),
        positions=ref.positions, rotations=ref.rotations, intrinsics=ref.intrinsics,
        T_head_camera=ref.T_head_camera, content_hash=h.hexdigest(), video_hash=video.hexdigest(),
    )


def submission_eval_clip(folder: Path, meta: SubmissionMeta, ref: ReferenceClip) -> EvalClip:
    """One submitted clip (video read lazily) with the reference clip's camera model."""
    positions, rotations = read_motion(folder / f"{ref.clip_id}.npz", meta.motion_format)
    video_hash, content = clip_hashes(folder, ref.clip_id)
    return EvalClip(
        clip_id=ref.clip_id, text=ref.text, load_video=functools.partial(_decode_file, folder / f"{ref.clip_id}.mp4"),
        positions=positions, rotations=rotations, intrinsics=ref.intrinsics, T_head_camera=ref.T_head_camera,
        content_hash=content, video_hash=video_hash,
    )


def find_submissions(path: str | Path) -> list[Path]:
    """`path` itself when it holds ``submission.json``, else its sub-folders (sorted)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder of submissions")
    if (path / SUBMISSION_FILE).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"{path} holds no submission folders (each with a {SUBMISSION_FILE})")
    return found


# -- the run -------------------------------------------------------------------------------------


def _init_ray(workers: int) -> bool:
    """Start (or join) Ray when asked; returns whether this call started it."""
    if workers <= 0 and not os.environ.get("RAY_ADDRESS"):
        return False
    import ray  # lazy: ray (~3 s to import) only for --workers > 0 or a $RAY_ADDRESS cluster

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True


def _drop_provider(result: EvaluationResult, available: list[MetricProvider], provider: MetricProvider,
                   reason: str) -> None:
    """Skip `provider` for the rest of the run (and remove values it gave earlier submissions)."""
    available.remove(provider)
    result.skipped[provider.name] = reason
    names = set(provider.metric_names)
    for row in result.rows:
        for name in names:
            for key in (name, f"{name}_low", f"{name}_high"):
                row.pop(key, None)
    for record in result.per_clip:
        for name in names:
            record.pop(name, None)
    for name in names:
        result.higher_is_better.pop(name, None)


def evaluate_submissions(
    submissions: list[Path], options: EvaluateOptions, providers: list[MetricProvider] | None = None
) -> EvaluationResult:
    """Validate and score each submission folder against the reference split; write the results."""
    refs = load_clips(options.reference, options.split)
    by_id = {r.clip_id: r for r in refs}
    ids = [r.clip_id for r in refs]
    ref_name = reference_name(options.reference, options.split)
    providers = providers if providers is not None else build_providers(options)
    available, skipped = [], {}
    for p in providers:
        try:
            reason = p.unavailable_reason()
        except Exception as err:  # noqa: BLE001 - a broken provider is skipped, with why
            reason = f"availability check failed ({type(err).__name__}: {err})"
        if reason is None:
            available.append(p)
        else:
            skipped[p.name] = reason
    pose = next((p.estimator for p in available if hasattr(p, "estimator")), None)
    estimator = pose.name if pose is not None else ""
    label = getattr(pose, "label", estimator)  # the leaderboard's column: backend and its preset
    result = EvaluationResult([], [], skipped, [], [], higher_is_better={
        m: hb for p in available for m, hb in p.higher_is_better.items()
    })
    if options.estimator == "auto" and estimator == "colmap":
        note = resolve_estimator(options)[1]  # why DROID-SLAM was not used
        result.notes += [note] if note else []
    if estimator == "builtin":
        result.notes.append("Camera poses from the builtin OpenCV visual odometry (--estimator builtin): a fast "
                            "option, less accurate than colmap/droid (docs/benchmark.md); not for reported numbers.")
    result.notes += [d for p in available if (d := getattr(p, "describe", lambda: "")())]
    started_ray = _init_ray(options.workers)
    claimed: dict[tuple[str, str], Path] = {}
    try:
        for folder in submissions:
            report = validate_submission(folder, ids, ref_name)
            result.reports.append(report)
            usable = report.meta is not None and report.valid_clips and (report.ok or options.allow_partial)
            if usable and (clash := method_clash(report, claimed)) is not None:
                report.problems.append(clash)
                usable = False
            if not usable:
                result.rejected.append(report)
                continue
            meta = report.meta
            claimed[(meta.method, meta.task)] = Path(folder)
            generated = [submission_eval_clip(Path(folder), meta, by_id[c]) for c in report.valid_clips]
            reference = [reference_eval_clip(by_id[c]) for c in report.valid_clips]
            key = f"{meta.method}/{meta.task}"
            row: dict = {"method": meta.method, "task": meta.task, "n_clips": len(generated),
                         "estimator": label, "toolkit_version": __version__}
            per_clip = {"clip_id": [c.clip_id for c in generated]}
            for provider in list(available):
                rng = np.random.default_rng(options.seed)
                try:
                    res = provider.evaluate(generated, reference, rng)
                except ProviderUnusable as err:  # it cannot score anyone: skipped for the whole run
                    _drop_provider(result, available, provider, str(err))
                    continue
                except Exception as err:  # noqa: BLE001 - one failing metric group must not lose the rest
                    result.provider_failures.setdefault(key, {})[provider.name] = f"{type(err).__name__}: {err}"
                    continue
                for name, value in res.metrics.items():
                    row[name], row[f"{name}_low"], row[f"{name}_high"] = value.value, value.low, value.high
                row.update(getattr(provider, "row_columns", {}))  # pose_failures, head_path_m
                per_clip.update({k: np.asarray(v) for k, v in res.per_clip.items()})
                result.notes += [f"`{key}` {note}" for note in res.notes]
                if hasattr(provider, "trajectories"):
                    result.trajectories[key] = dict(provider.trajectories)
                    provider.trajectories.clear()
                if getattr(provider, "failures", None):
                    result.failures[key] = dict(provider.failures)
                    provider.failures.clear()
            result.rows.append(row)
            for i, clip_id in enumerate(per_clip["clip_id"]):
                result.per_clip.append({"method": meta.method, "task": meta.task, "clip_id": clip_id,
                                        **{k: float(v[i]) for k, v in per_clip.items() if k != "clip_id"}})
    finally:
        if started_ray:
            import ray  # lazy: as in `_init_ray` (already loaded when it started Ray)

            ray.shutdown()
    result.rows.sort(key=lambda r: (r["task"], r["method"]))
    write_results(result, options)
    return result
