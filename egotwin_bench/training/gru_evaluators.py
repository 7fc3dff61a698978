"""Training the GRU text/motion evaluators with the contrastive hinge loss of Guo et al. 2022.

Loss (the original `ContrastiveLoss`, negative margin 10): for matched pairs d(text_i, motion_i)²;
for mismatched pairs (each text against the motion of another clip in the batch, chosen by a
random cyclic shift) max(0, 10 - d)². Two deviations from the original, both written down in
docs/metrics.md: (1) the movement encoder is trained jointly with the GRUs (the original first
pre-trains it as a movement auto-encoder and freezes it); (2) a "negative" pair whose two prompts
are the same string is left out of the negative term (templated or repeated narrations would
otherwise push identical texts apart). Adam, lr 1e-4, batch 32, gradient norm clipped to 0.5 per
network, as in the original. Motion features are normalised by the training split's mean and, as
the original's ``cal_mean_variance``, one standard deviation per feature part (the mean of the
part's per-dimension stds): per-dimension stds would blow near-constant dimensions (numerical
noise of rigid segments, std ~1e-6) up to unit variance, with spikes of 200 std.

Collapse (issue #15): with a learning rate far above the original's (2e-3), Adam grows the jointly
trained movement encoder's units ~400x within a few hundred steps; the motion GRU then saturates and
returns one state for every clip, and the loss sits at 50 — the minimum of d² + (10 - d)², every
text and motion embedding at distance 5. Every validation therefore also measures the spread of
the motion embeddings (`motion_quality.relative_spread`) and whether top-3 R-Precision is above
chance (one-sided binomial test): collapsed validations are never kept; if every validation
collapsed, nothing is saved (`EvaluatorCollapsedError`); a kept evaluator that does not rank above
chance is saved marked ``training["usable"] = False`` and `evaluate` refuses it.

Training is resumable: ``checkpoint.pt`` (weights + optimiser + step) is written atomically at
every validation; the best evaluator by validation R-Precision top-3 is saved with
`TextMotionEvaluator.save`. Picking the best of many validations on the validation split
flatters that split's score, so `train_from_dataset` also scores the kept evaluator once on a
split it never saw (``test`` by default) and stores that as ``training["held_out"]``: the number
to quote.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from egotwin_bench.data import ClipDataset, CuratedDataset
from egotwin_bench.estimators.gru_evaluators import EvaluatorConfig, TextMotionEvaluator
from egotwin_bench.estimators.text_features import WordVectors, load_glove, make_tagger, random_word_vectors, vocabulary
from egotwin_bench.metrics.motion_quality import (
    CHANCE_P_VALUE,
    COLLAPSE_SPREAD,
    R_PRECISION_BATCH,
    TOP_K,
    EvaluatorCollapsedError,
    chance_p_value,
    r_precision,
    relative_spread,
)
from egotwin_bench.motion import head_centric

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Hyper-parameters (defaults: the original evaluator's)."""

    steps: int = 20_000
    batch_size: int = 32
    lr: float = 1e-4
    negative_margin: float = 10.0
    clip_grad_norm: float = 0.5
    """Gradient norm limit of each network (the original's ``clip_grad_norm_(..., 0.5)``); 0: none."""
    validate_every: int = 500
    seed: int = 0
    device: str = "cpu"


@dataclass
class TextMotionData:
    """Matched prompts (N,) and raw head-centric motion features (N, T, D), float32."""

    texts: list[str]
    motion: np.ndarray

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.motion):
            raise ValueError(f"{len(self.texts)} texts but {len(self.motion)} motions")


def load_split(dataset_dir: str | Path, split: str) -> TextMotionData:
    """Prompts and head-centric features (81, 288) of one split of a built dataset (no video decoding)."""
    ds = ClipDataset(dataset_dir, split, "head_centric", load_video=False)
    texts, motion = [], []
    for i in tqdm(range(len(ds)), desc=f"reading {split}", unit="clip", leave=False):
        item = ds[i]
        texts.append(item["text"])
        motion.append(item["motion"])
    if not motion:
        raise ValueError(f"split {split!r} of {dataset_dir} has no clips")
    return TextMotionData(texts, np.stack(motion))


def motion_statistics(motion: np.ndarray, parts: dict[str, slice] = head_centric.SLICES) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation of (N, T, D) motion features: per-dimension mean (D,) and one std per part
    (D,), each the mean of its dimensions' stds (Guo et al.'s ``cal_mean_variance``); a part that
    is constant everywhere gets std 1 (it passes through). float64."""
    dim = motion.shape[-1]
    covered = sorted(i for sl in parts.values() for i in range(sl.start, sl.stop))
    if covered != list(range(dim)):
        raise ValueError(f"motion features have {dim} dims; the parts {', '.join(parts)} cover {len(covered)}")
    feats = motion.reshape(-1, dim).astype(np.float64)
    mean, dim_std = feats.mean(0), feats.std(0)
    std = np.ones_like(dim_std)
    for sl in parts.values():
        part = dim_std[sl].mean()
        std[sl] = part if part > 1e-12 else 1.0
    return mean, std


def contrastive_loss(text_emb: torch.Tensor, motion_emb: torch.Tensor, negative_text_equal: torch.Tensor,
                     shift: int, margin: float) -> torch.Tensor:
    """Matched d² + mismatched max(0, margin - d)², the mismatch being motion (i + shift) mod B."""
    pos = F.pairwise_distance(text_emb, motion_emb).pow(2).mean()
    neg_motion = torch.roll(motion_emb, -shift, dims=0)
    d_neg = F.pairwise_distance(text_emb, neg_motion)
    keep = (~negative_text_equal).float()
    neg = (keep * torch.clamp(margin - d_neg, min=0).pow(2)).sum() / keep.sum().clamp(min=1)
    return pos + neg


@torch.no_grad()
def validation_r_precision(model: TextMotionEvaluator, data: TextMotionData, seed: int = 0,
                           batch: int = 256) -> dict[str, float]:
    """R-Precision top-1/2/3 and MM-Dist of matched pairs (batches of 32), eval mode; with the
    health of the motion embeddings: ``spread`` (`relative_spread` over all clips), ``pairs``
    (pairs scored), ``chance_top3`` and ``p_top3`` (binomial p-value of top-3 against chance)."""
    was_training = model.training
    model.eval()
    dev = model.mean.device
    t, m = [], []
    for s in range(0, len(data.texts), batch):
        t.append(model.embed_text(data.texts[s:s + batch]).cpu().numpy())
        m.append(model.embed_motion(torch.as_tensor(data.motion[s:s + batch], device=dev)).cpu().numpy())
    model.train(was_training)
    motion = np.concatenate(m)
    hits, dists = r_precision(np.concatenate(t), motion, np.random.default_rng(seed))
    out = {f"top{k + 1}": float(hits[:, k].mean()) for k in range(hits.shape[1])}
    out["mm_dist"] = float(dists.mean())
    batch_clips = min(R_PRECISION_BATCH, len(data.texts))
    chance = min(TOP_K, batch_clips) / batch_clips  # fewer than 3 clips: every text's top 3 holds its motion
    out.update(spread=relative_spread(motion), pairs=len(hits), chance_top3=chance,
               p_top3=chance_p_value(int(hits[:, TOP_K - 1].sum()), len(hits), chance))
    return out


def health_problem(record: dict) -> str | None:
    """Why a validation record shows an unusable evaluator (collapsed, or top-3 R-Precision not
    above chance at p < `CHANCE_P_VALUE`), or None."""
    if record.get("spread", 1.0) < COLLAPSE_SPREAD:
        return (f"motion embeddings collapsed at step {record.get('step')}: relative spread {record['spread']:.2g} "
                f"< {COLLAPSE_SPREAD:g} over the validation clips")
    if not record.get("p_top3", 0.0) < CHANCE_P_VALUE:  # NaN too
        return (f"validation R-Precision top-3 {record['top3']:.3f} over {record['pairs']} pairs is not above chance "
                f"{record['chance_top3']:.3f} (binomial p = {record['p_top3']:.2g} >= {CHANCE_P_VALUE:g})")
    return None


def _atomic_torch_save(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train_evaluators(
    train: TextMotionData,
    val: TextMotionData,
    word_vectors: WordVectors,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    model_config: EvaluatorConfig | None = None,
    progress: bool = True,
    tagger=None,
) -> tuple[TextMotionEvaluator, list[dict]]:
    """Train, validate every `validate_every` steps, keep the best; returns it and the history.

    Resumes from ``out_dir/checkpoint.pt`` when present (same data and config assumed).
    """
    if len(train.texts) < 2:
        raise ValueError(f"need at least 2 training clips, got {len(train.texts)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    mean, std = motion_statistics(train.motion)
    mc = dataclasses.replace(model_config or EvaluatorConfig(), motion_dim=train.motion.shape[-1])
    model = TextMotionEvaluator(mc, word_vectors, mean, std).to(config.device).train()
    model.tagger = tagger  # an already-loaded tagger of `model_config.tagger` (None: made on first use)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    networks = (model.movement_encoder, model.motion_encoder, model.text_encoder)
    step, history, best = 0, [], -1.0
    ckpt = out / CHECKPOINT_FILE
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=config.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history, best = state["step"], state["history"], state["best"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    n = len(train.texts)
    bs = min(config.batch_size, n)
    texts = np.array(train.texts, dtype=object)
    motion = torch.as_tensor(train.motion, dtype=torch.float32)
    bar = tqdm(total=config.steps, initial=step, desc="train evaluators", disable=not progress)
    while step < config.steps:
        idx = rng.choice(n, bs, replace=False)
        batch_texts = list(texts[idx])
        t_emb = model.embed_text(batch_texts)
        m_emb = model.embed_motion(motion[idx].to(config.device))
        shift = int(rng.integers(1, bs))
        same = torch.as_tensor([batch_texts[i] == batch_texts[(i + shift) % bs] for i in range(bs)],
                               device=t_emb.device)
        loss = contrastive_loss(t_emb, m_emb, same, shift, config.negative_margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm > 0:
            for net in networks:
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % config.validate_every == 0 or step == config.steps:
            scores = validation_r_precision(model, val if len(val.texts) >= 2 else train, config.seed)
            history.append({"step": step, "loss": float(loss.item()), **scores})
            collapsed = scores["spread"] < COLLAPSE_SPREAD
            if not collapsed and scores["top3"] > best:  # a collapsed evaluator is never kept
                best = scores["top3"]
                problem = health_problem(history[-1])
                model.config.training = {"train_clips": n, "val_clips": len(val.texts), "best": history[-1],
                                         "word_vectors": word_vectors.source,
                                         "train_config": dataclasses.asdict(config),
                                         "r_precision_batch": R_PRECISION_BATCH,
                                         "usable": problem is None, "unusable_reason": problem or ""}
                model.save(out)
            _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                "history": history, "best": best, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, ckpt)
            (out / "history.json").write_text(json.dumps(history, indent=1))
    bar.close()
    if best < 0:
        last = history[-1] if history else {}
        raise EvaluatorCollapsedError(
            f"the GRU evaluators collapsed at every validation ({health_problem(last) or 'no validation'}); "
            f"nothing was saved to {out}. Lower --lr (the original's is 1e-4; {config.lr:g} was used) and retrain "
            f"in a fresh --out folder (its {CHECKPOINT_FILE} resumes the collapsed run)")
    return TextMotionEvaluator.load(out, config.device), history


def train_from_dataset(
    dataset_dir: str | Path,
    glove: str | Path | None,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    val_split: str = "val",
    progress: bool = True,
    report_split: str | None = "test",
    tagger: str = "auto",
) -> tuple[TextMotionEvaluator, list[dict]]:
    """Train the evaluators on the train split of a built dataset, keeping the best by
    R-Precision on `val_split`, then score the kept one on `report_split` (unbiased; stored as
    ``config.training["held_out"]``, skipped when that split has fewer than 2 clips or is None).

    The word vectors kept with the evaluator are the GloVe rows of every word (and lemma) used by
    any split's prompts, so test prompts embed with the same vectors (the full GloVe table would
    be ~480 MB per evaluator). `glove=None` uses `random_word_vectors` instead (synthetic data only).
    `tagger`: `text_features.make_tagger` (``auto``: spaCy's en_core_web_sm when installed, else
    the built-in lexicon tagger); recorded in the evaluator.
    """
    if report_split is not None and report_split == val_split:
        raise ValueError(f"the evaluator is selected on {val_split!r}; report on another split")
    data = CuratedDataset(dataset_dir)
    all_texts = data.manifest.column("text").to_pylist()
    train = load_split(dataset_dir, "train")
    val = load_split(dataset_dir, val_split) if data.clip_ids(val_split) else TextMotionData([], train.motion[:0])
    text_tagger = make_tagger(tagger)
    words = vocabulary(all_texts, text_tagger)
    vectors = load_glove(glove, words) if glove is not None else random_word_vectors(words, config.seed)
    model_config = EvaluatorConfig(tagger=text_tagger.name, tagger_pipeline=getattr(text_tagger, "pipeline", ""))
    model, history = train_evaluators(train, val, vectors, out_dir, config, model_config, progress=progress,
                                      tagger=text_tagger)
    if report_split is not None and report_split in data.splits and len(data.clip_ids(report_split)) >= 2:
        held_out = validation_r_precision(model, load_split(dataset_dir, report_split), config.seed)
        model.config.training["held_out"] = {"split": report_split, "clips": len(data.clip_ids(report_split)),
                                             **held_out}
        model.save(out_dir)
    return model, history
