"""The contract between the evaluation runner and the metric providers.

The runner (`egotwin_bench.evaluate.runner`) turns each validated submission and the reference
test split into lists of `EvalClip` (same order, matched by `clip_id`) and hands them to every
`MetricProvider`. A provider that cannot run (missing weights, missing optional package) says
why through `unavailable_reason()`; the runner then leaves its columns out of the leaderboard
and records the reason, never a placeholder number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from egotwin_bench.metrics.bootstrap import MetricValue

__all__ = ["EvalClip", "MetricProvider", "MetricValue", "ProviderResult"]


@dataclass(frozen=True)
class EvalClip:
    """One clip as a metric sees it (generated or reference).

    Attributes:
        clip_id: the reference clip id.
        text: the prompt.
        load_video: returns uint8 (41, 480, 480, 3) RGB frames at 8 FPS (decoded lazily).
        positions: (81, 23, 3) float32 world segment positions, metres, Z up, 16 FPS.
        rotations: (81, 23, 3, 3) float32 world segment rotations.
        intrinsics: (3, 3) pinhole K of the 480x480 frames (from the reference clip).
        T_head_camera: (4, 4) camera pose in the Head segment frame (from the reference clip).
        content_hash: hash of the clip's video + motion bytes (results that use the motion).
        video_hash: hash of the video bytes alone; empty when unknown (`video_key` then falls
            back to `content_hash`, which is safe but shares nothing between submissions).
    """

    clip_id: str
    text: str
    load_video: Callable[[], np.ndarray]
    positions: np.ndarray
    rotations: np.ndarray
    intrinsics: np.ndarray
    T_head_camera: np.ndarray
    content_hash: str
    video_hash: str = ""

    @property
    def video_key(self) -> str:
        """Cache key of results that depend on the video only (poses, hand presence, video features)."""
        return self.video_hash or self.content_hash


@dataclass
class ProviderResult:
    """What a provider returns: set-level metrics and optional per-clip values (len N each)."""

    metrics: dict[str, MetricValue]
    per_clip: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Remarks on this submission's values (e.g. an undefined part left out), shown in leaderboard.md."""


class ProviderUnusable(RuntimeError):
    """Raised by `MetricProvider.evaluate` when the provider turns out unable to score any
    submission (e.g. a collapsed evaluator, seen on the reference clips): the runner then skips
    it for the whole run, with this message as the reason, instead of recording a number."""


@runtime_checkable
class MetricProvider(Protocol):
    """A group of metrics (e.g. I-FID/FVD/CLIP-SIM, or M-FID/R-Prec/MM-Dist/Diversity)."""

    name: str
    metric_names: tuple[str, ...]
    higher_is_better: dict[str, bool]

    def unavailable_reason(self) -> str | None:
        """None when the provider can run, else a one-line reason (e.g. the missing weight file)."""

    def evaluate(
        self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator
    ) -> ProviderResult:
        """Score `generated` against `reference` (matched lists)."""
