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

Protocol (Guo et al.'s `final_evaluations.py`): 20 replications; each shuffles the generated
clips into batches of 32 and drops the last incomplete batch (`DataLoader(shuffle=True,
drop_last=True)`), computes R-Precision and MM-Dist on those batches and Diversity on the kept
motion embeddings. Each reports the mean over replications with mean ± 1.96·sd/√20
(`replication_interval`): the protocol's interval, which measures the shuffling (which clips
share a batch, which are dropped, which pairs Diversity draws), not the sampling error of the test set.

M-FID deviates on purpose: the original's loaders also drop a random incomplete batch of the
generated and the reference set in every replication, which on a small test set scores a
ground-truth submission far from 0 (40 clips: 2.18 instead of 0). Here M-FID is the distance
between all generated and all reference embeddings, with value ± 1.96 × its grouped-jackknife
standard error (as I-FID / FVD).
"""

from __future__ import annotations

import numpy as np

R_PRECISION_BATCH: int = 32
TOP_K: int = 3
DIVERSITY_PAIRS: int = 300
COLLAPSE_SPREAD: float = 1e-3
"""`relative_spread` of motion embeddings below which an evaluator counts as collapsed (it maps
every motion to nearly one point: M-FID ~0 and R-Prec at chance for any submission). A trained
evaluator's spread is O(0.1-1); the collapsed one of issue #15 had 3e-8."""
CHANCE_P_VALUE: float = 0.01
"""One-sided binomial p-value under which a validation R-Precision (top-3) is above chance."""


class EvaluatorCollapsedError(RuntimeError):
    """The GRU motion evaluator maps different motions to (nearly) the same embedding."""


def relative_spread(emb: np.ndarray) -> float:
    """RMS distance of (N, E) embeddings to their centroid over their RMS norm; 0 when all are
    identical (or all zero), ~1 for embeddings spread around the origin. Scale-free."""
    emb = np.asarray(emb, dtype=np.float64)
    norm = float(np.sqrt((emb ** 2).sum(axis=-1).mean()))
    if norm == 0.0:
        return 0.0
    return float(np.sqrt(((emb - emb.mean(axis=0)) ** 2).sum(axis=-1).mean()) / norm)


def collapse_problem(motion_emb: np.ndarray) -> str | None:
    """Why these (N, E) motion embeddings of N different clips show a collapsed evaluator, or None."""
    spread = relative_spread(motion_emb)
    if len(motion_emb) < 2 or spread >= COLLAPSE_SPREAD:
        return None
    std = float(np.asarray(motion_emb, dtype=np.float64).std(axis=0).mean())
    return (f"motion embeddings collapsed: {len(motion_emb)} different clips embed to one point "
            f"(relative spread {spread:.2g} < {COLLAPSE_SPREAD:g}; per-dimension std {std:.2g}), so M-FID would be ~0 "
            "and R-Prec at chance for any submission")


def chance_p_value(hits: int, pairs: int, chance: float) -> float:
    """P(at least `hits` of `pairs` are hits) when each is a hit with probability `chance`
    (one-sided binomial test of an R-Precision against chance)."""
    from scipy.stats import binom  # lazy: scipy.stats (~1 s to import) only for this test

    return float(binom.sf(hits - 1, pairs, chance))


def r_precision_hits(text_emb: np.ndarray, motion_emb: np.ndarray, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair hits (N, top_k) bool (hit at rank <= k) and distances (N,) within one batch.

    text_emb[i] and motion_emb[i] are a matched pair; distances are Euclidean.
    """
    d = np.linalg.norm(text_emb[:, None, :] - motion_emb[None, :, :], axis=-1)
    # rank of the true motion: how many *other* motions are at least as close. Ties count against
    # the pair, so identical motion embeddings (a constant submission, a collapsed evaluator)
    # score no hits instead of all of them (counting only strictly closer ones made them 1.0).
    rank = (d <= np.diagonal(d)[:, None]).sum(axis=1) - 1
    hits = rank[:, None] < np.arange(1, top_k + 1)[None, :]
    return hits, np.diagonal(d).copy()


def protocol_batches(n: int, rng: np.random.Generator, batch_size: int = R_PRECISION_BATCH) -> list[np.ndarray]:
    """One shuffle of n clips into batches of `batch_size`, the last incomplete batch dropped
    (a set smaller than `batch_size` is one batch of all)."""
    order = rng.permutation(n)
    bs = min(batch_size, n)
    return [order[start:start + bs] for start in range(0, n - bs + 1, bs)]


def r_precision(
    text_emb: np.ndarray, motion_emb: np.ndarray, rng: np.random.Generator,
    batch_size: int = R_PRECISION_BATCH, top_k: int = TOP_K,
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled batches of `batch_size` -> per-pair hits (M, top_k) and matched distances (M,).

    M is N rounded down to a multiple of batch_size (N itself when N < batch_size). Rows follow
    the shuffled batch order (not the clip order); clips of the dropped incomplete batch are excluded.
    """
    hits, dists = [], []
    for idx in protocol_batches(len(text_emb), rng, batch_size):
        h, d = r_precision_hits(text_emb[idx], motion_emb[idx], top_k)
        hits.append(h)
        dists.append(d)
    return np.concatenate(hits), np.concatenate(dists)


def protocol_replication(
    text_emb: np.ndarray, motion_emb: np.ndarray, rng: np.random.Generator, batch_size: int = R_PRECISION_BATCH,
) -> dict[str, float]:
    """One replication of the text-to-motion evaluation (module docstring) -> R-Prec (top-3),
    R-Prec@1, R-Prec@2, MM-Dist and Diversity."""
    batches = protocol_batches(len(text_emb), rng, batch_size)
    kept = np.concatenate(batches)
    hits = np.concatenate([r_precision_hits(text_emb[i], motion_emb[i])[0] for i in batches]).mean(axis=0)
    dists = np.linalg.norm(text_emb[kept] - motion_emb[kept], axis=-1)
    return {
        "R-Prec": float(hits[2]), "R-Prec@1": float(hits[0]), "R-Prec@2": float(hits[1]),
        "MM-Dist": float(dists.mean()),
        "Diversity": diversity(motion_emb[kept], rng),
    }


def diversity(emb: np.ndarray, rng: np.random.Generator, pairs: int = DIVERSITY_PAIRS) -> float:
    """Mean Euclidean distance between two random draws of min(pairs, N) embeddings."""
    k = min(pairs, len(emb))
    a = rng.choice(len(emb), k, replace=False)
    b = rng.choice(len(emb), k, replace=False)
    return float(np.linalg.norm(emb[a] - emb[b], axis=-1).mean())
