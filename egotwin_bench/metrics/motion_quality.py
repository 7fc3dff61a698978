"""Motion quality in the GRU evaluators' embedding space: M-FID, R-Precision, MM-Dist, Diversity.

Definitions as in Guo et al. 2022's evaluation code:

* **M-FID**: Fréchet distance between motion embeddings of generated and reference clips.
* **R-Precision** (top-1/2/3): clips are shuffled into batches of 32; in each batch every text
  ranks the 32 motions by Euclidean distance of embeddings, and counts a hit when its own motion
  is among the k nearest (31 mismatched motions per text). The last incomplete batch is dropped
  (a set smaller than 32 is scored as one batch; chance is then k/N). Chance at 32 is k/32.
* **MM-Dist**: mean Euclidean distance between each text's and its own motion's embedding.
* **Diversity**: mean distance between embeddings of two random draws of min(300, N) generated
  motions (without replacement within each draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egotwin_bench.evaluate.protocol import EvalClip, MetricValue, ProviderResult
from egotwin_bench.metrics.bootstrap import bootstrap, bootstrap_mean
from egotwin_bench.metrics.frechet import FrechetReference

EVALUATOR_FLAG: str = "--evaluator-dir"
"""The `egotwin-bench evaluate` flag naming the trained evaluators' folder."""
R_PRECISION_BATCH: int = 32
TOP_K: int = 3
DIVERSITY_PAIRS: int = 300


def r_precision_hits(text_emb: np.ndarray, motion_emb: np.ndarray, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair hits (N, top_k) bool (hit at rank <= k) and distances (N,) within one batch.

    text_emb[i] and motion_emb[i] are a matched pair; distances are Euclidean.
    """
    d = np.linalg.norm(text_emb[:, None, :] - motion_emb[None, :, :], axis=-1)
    # rank of the true motion: how many motions are strictly closer than it
    rank = (d < np.diagonal(d)[:, None]).sum(axis=1)
    hits = rank[:, None] < np.arange(1, top_k + 1)[None, :]
    return hits, np.diagonal(d).copy()


def r_precision(
    text_emb: np.ndarray, motion_emb: np.ndarray, rng: np.random.Generator,
    batch_size: int = R_PRECISION_BATCH, top_k: int = TOP_K,
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled batches of `batch_size` -> per-pair hits (M, top_k) and matched distances (M,).

    M is N rounded down to a multiple of batch_size (N itself when N < batch_size). Rows follow
    the shuffled batch order (not the clip order); clips of the dropped incomplete batch are excluded.
    """
    n = len(text_emb)
    order = rng.permutation(n)
    bs = min(batch_size, n)
    hits, dists = [], []
    for start in range(0, n - bs + 1, bs):
        idx = order[start:start + bs]
        h, d = r_precision_hits(text_emb[idx], motion_emb[idx], top_k)
        hits.append(h)
        dists.append(d)
    return np.concatenate(hits), np.concatenate(dists)


def diversity(emb: np.ndarray, rng: np.random.Generator, pairs: int = DIVERSITY_PAIRS) -> float:
    """Mean Euclidean distance between two random draws of min(pairs, N) embeddings."""
    k = min(pairs, len(emb))
    a = rng.choice(len(emb), k, replace=False)
    b = rng.choice(len(emb), k, replace=False)
    return float(np.linalg.norm(emb[a] - emb[b], axis=-1).mean())


@dataclass
class MotionQualityConfig:
    """Where the trained evaluators are and how to run them."""

    evaluator_dir: str | None = None
    device: str = "cpu"
    batch_size: int = 64
    bootstrap_resamples: int = 1000
    frechet_bootstrap_resamples: int = 100


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
        from egotwin_bench.estimators.gru_evaluators import CONFIG_FILE, WEIGHTS_FILE

        if self.config.evaluator_dir is None:
            return ("no GRU evaluator folder given; train one with `egotwin-bench train-evaluators --out DIR` "
                    f"and pass it as {EVALUATOR_FLAG} DIR")
        from pathlib import Path

        folder = Path(self.config.evaluator_dir).expanduser()
        missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if missing:
            return (f"GRU evaluators: {', '.join(missing)} missing in {folder} ({EVALUATOR_FLAG}); "
                    "run `egotwin-bench train-evaluators --out DIR`")
        return None

    @property
    def model(self):
        if self._model is None:
            from egotwin_bench.estimators.gru_evaluators import TextMotionEvaluator

            self._model = TextMotionEvaluator.load(self.config.evaluator_dir, self.config.device)
        return self._model

    def embed(self, clips: list[EvalClip]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 512) text and (N, 512) motion embeddings of the clips."""
        return embed_clips(self.model, clips, self.config.batch_size)

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        gen_text, gen_motion = self.embed(generated)
        _, ref_motion = self.embed(reference)
        hits, dists = r_precision(gen_text, gen_motion, rng)
        per_hit = hits.astype(np.float64)
        c = self.config
        target = FrechetReference.fit(ref_motion)
        metrics = {
            "M-FID": bootstrap(lambda i: target.distance(gen_motion[i]), len(gen_motion), rng,
                               c.frechet_bootstrap_resamples),
            "R-Prec": bootstrap_mean(per_hit[:, 2], rng, c.bootstrap_resamples),
            "R-Prec@1": bootstrap_mean(per_hit[:, 0], rng, c.bootstrap_resamples),
            "R-Prec@2": bootstrap_mean(per_hit[:, 1], rng, c.bootstrap_resamples),
            "MM-Dist": bootstrap_mean(dists, rng, c.bootstrap_resamples),
            "Diversity": MetricValue(diversity(gen_motion, rng)),
        }
        matched = np.linalg.norm(gen_text - gen_motion, axis=-1)
        return ProviderResult(metrics=metrics, per_clip={"MM-Dist": matched})


@torch.no_grad()
def embed_clips(model, clips: list[EvalClip], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Text and motion embeddings (N, 512) each, from the clips' prompts and world motion."""
    from egotwin_bench.motion import head_centric

    texts, motions = [], []
    dev = model.mean.device
    for start in range(0, len(clips), batch_size):
        chunk = clips[start:start + batch_size]
        pos = torch.as_tensor(np.stack([c.positions for c in chunk]), dtype=torch.float32, device=dev)
        rot = torch.as_tensor(np.stack([c.rotations for c in chunk]), dtype=torch.float32, device=dev)
        motions.append(model.embed_motion(head_centric.encode(pos, rot)).cpu().numpy())
        texts.append(model.embed_text([c.text for c in chunk]).cpu().numpy())
    return np.concatenate(texts).astype(np.float64), np.concatenate(motions).astype(np.float64)
