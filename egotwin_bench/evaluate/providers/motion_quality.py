"""The motion-quality provider: M-FID, R-Precision, MM-Dist and Diversity of generated motions in
the trained GRU evaluators' embedding space (the definitions and the protocol:
`egotwin_bench.metrics.motion_quality`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egotwin_bench.estimators.gru_evaluators import CONFIG_FILE, WEIGHTS_FILE, TextMotionEvaluator
from egotwin_bench.evaluate.protocol import EvalClip, ProviderResult, ProviderUnusable
from egotwin_bench.metrics.bootstrap import JACKKNIFE_GROUPS, REPLICATIONS, MetricValue, jackknife, replication_interval
from egotwin_bench.metrics.frechet import FrechetReference
from egotwin_bench.metrics.motion_quality import collapse_problem, protocol_replication
from egotwin_bench.motion import head_centric

EVALUATOR_FLAG: str = "--evaluator-dir"
"""The `egotwin-bench evaluate` flag naming the trained evaluators' folder."""


@dataclass
class MotionQualityConfig:
    """Where the trained evaluators are and how to run them."""

    evaluator_dir: str | None = None
    device: str = "cpu"
    batch_size: int = 64
    """Clips per embedding forward pass (not the protocol's R-Precision batch of 32)."""
    replications: int = REPLICATIONS
    """Replications of the shuffled protocol (the original's 20)."""
    jackknife_groups: int = JACKKNIFE_GROUPS
    """Groups of the M-FID jackknife interval; 0: NaN bounds."""


class MotionQualityProvider:
    """M-FID, R-Prec (top-3; top-1/2 as extra columns), MM-Dist and Diversity (a `MetricProvider`)."""

    name = "motion_quality"
    metric_names = ("M-FID", "R-Prec", "R-Prec@1", "R-Prec@2", "MM-Dist", "Diversity")
    higher_is_better = {"M-FID": False, "R-Prec": True, "R-Prec@1": True, "R-Prec@2": True, "MM-Dist": False,
                        "Diversity": True}

    def __init__(self, config: MotionQualityConfig):
        self.config = config
        self._model = None

    def unavailable_reason(self) -> str | None:
        if self.config.evaluator_dir is None:
            return ("no GRU evaluator folder given; train one with `egotwin-bench train-evaluators --out DIR` "
                    f"and pass it as {EVALUATOR_FLAG} DIR")
        folder = Path(self.config.evaluator_dir).expanduser()
        missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if missing:
            return (f"GRU evaluators: {', '.join(missing)} missing in {folder} ({EVALUATOR_FLAG}); "
                    "run `egotwin-bench train-evaluators --out DIR`")
        training = json.loads((folder / CONFIG_FILE).read_text()).get("training", {})
        if training.get("usable") is False:
            return (f"GRU evaluators in {folder} were marked unusable by train-evaluators: "
                    f"{training.get('unusable_reason', 'no reason recorded')}; retrain them")
        return None

    @property
    def model(self):
        if self._model is None:
            self._model = TextMotionEvaluator.load(self.config.evaluator_dir, self.config.device)
        return self._model

    def embed(self, clips: list[EvalClip]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 512) text and (N, 512) motion embeddings of the clips."""
        return embed_clips(self.model, clips, self.config.batch_size)

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        _, ref_motion = self.embed(reference)
        if (problem := collapse_problem(ref_motion)) is not None:
            raise ProviderUnusable(f"the GRU evaluators in {self.config.evaluator_dir} are unusable, {problem} "
                                   "(checked on the reference clips); retrain them with `egotwin-bench "
                                   "train-evaluators` (docs/metrics.md, 'Collapse')")
        gen_text, gen_motion = self.embed(generated)
        runs = [protocol_replication(gen_text, gen_motion, rng) for _ in range(max(1, self.config.replications))]
        metrics = {m: replication_interval(np.array([r[m] for r in runs])) for m in runs[0]}
        if self.config.replications <= 1:
            metrics = {m: MetricValue(v.value) for m, v in metrics.items()}
        target = FrechetReference.fit(ref_motion)
        metrics["M-FID"] = jackknife(lambda i: target.distance(gen_motion[i]), len(gen_motion), rng,
                                     self.config.jackknife_groups)
        metrics = {m: metrics[m] for m in self.metric_names}
        matched = np.linalg.norm(gen_text - gen_motion, axis=-1)
        return ProviderResult(metrics=metrics, per_clip={"MM-Dist": matched})


@torch.no_grad()
def embed_clips(model, clips: list[EvalClip], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Text and motion embeddings (N, 512) each, from the clips' prompts and world motion."""
    texts, motions = [], []
    dev = model.mean.device
    for start in range(0, len(clips), batch_size):
        chunk = clips[start:start + batch_size]
        pos = torch.as_tensor(np.stack([c.positions for c in chunk]), dtype=torch.float32, device=dev)
        rot = torch.as_tensor(np.stack([c.rotations for c in chunk]), dtype=torch.float32, device=dev)
        motions.append(model.embed_motion(head_centric.encode(pos, rot)).cpu().numpy())
        texts.append(model.embed_text([c.text for c in chunk]).cpu().numpy())
    return np.concatenate(texts).astype(np.float64), np.concatenate(motions).astype(np.float64)
