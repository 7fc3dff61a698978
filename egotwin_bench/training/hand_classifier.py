"""Training the ViT hand classifier on curated clips (frames labelled by `hand_visible`).

Frames are streamed: clips are decoded one at a time (shard by shard, see
`egotwin_bench.evaluate.reference.iter_clips`), resized to the classifier's input and kept as
uint8 (3 x 128 x 128 bytes per frame for the tiny arch) in a shuffle buffer that batches are
drawn from; nothing holds a split's frames as float tensors. Up to `memory_budget_mb` of resized
uint8 clips are also kept between epochs, so a small dataset is decoded once and a large one
streams every epoch at bounded memory.

Imbalance (hands are in view in a few percent of frames): the loss stays the paper's focal loss
(alpha 0.80 left / 0.75 right, gamma 2), and the sampler repeats frames with a visible hand so
that about `positive_fraction` of the frames drawn show each hand (`repeat_factors`). The decision
threshold is chosen on the validation split (`choose_threshold`) and stored with the classifier;
the reported F1 is on another held-out split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from egotwin_bench.curation.video import decode_mp4
from egotwin_bench.estimators.hand_classifier import (
    ARCHS,
    HandClassifier,
    HandClassifierConfig,
    create_model,
    focal_loss,
    load_backbone,
    normalize,
    resize_frames,
)
from egotwin_bench.evaluate.reference import iter_clips, load_clips, shard_paths
from egotwin_bench.metrics.hand_consistency import f1_score


@dataclass(frozen=True)
class HandTrainingConfig:
    """Optimisation and sampling settings (AdamW; one-cycle schedule: 10% warm-up, cosine decay)."""

    arch: str = "vit_base_patch16_224"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.05
    seed: int = 0
    max_clips: int | None = None
    """Use at most this many clips per split (quick runs)."""
    frame_stride: int = 1
    """Use every n-th video frame of each clip."""
    positive_fraction: float = 0.3
    """Target share of sampled frames showing each hand (class-balanced sampling); 0 disables."""
    max_repeat: int = 8
    """Upper bound on how often one frame is repeated per epoch by the balanced sampler."""
    augment: bool = True
    """Photometric jitter (brightness, contrast, noise) and shifts of up to 2% of the image."""
    shuffle_buffer: int = 4096
    """Frames held (uint8) in the training shuffle buffer."""
    memory_budget_mb: float = 2048.0
    """Resized uint8 clips kept across epochs up to this size; the rest is decoded again."""


@dataclass
class LabelledClips:
    """Clip ids of a split and their frame labels (after `frame_stride`): {clip_id: (F, 2) bool}."""

    split: str
    labels: dict[str, np.ndarray]

    @property
    def frames(self) -> np.ndarray:
        """(N, 2) bool: every frame's labels, clips in id order."""
        return np.concatenate(list(self.labels.values())) if self.labels else np.zeros((0, 2), bool)


def split_labels(dataset: str | Path, split: str, config: HandTrainingConfig) -> LabelledClips:
    """Frame labels of a split without decoding any video (raises ValueError when it is empty)."""
    clips = load_clips(dataset, split, with_video=False, limit=config.max_clips)
    if not clips:
        raise ValueError(f"split {split!r} of {dataset} has no clips")
    return LabelledClips(split, {c.clip_id: c.hand_visible[:: config.frame_stride] for c in clips})


class FrameSource:
    """Resized uint8 frames of the clips of one split, decoded lazily, clip by clip.

    Keeps decoded clips in memory up to `budget_mb` (the first ones seen), so repeated epochs
    over a small split decode once.
    """

    def __init__(self, dataset: str | Path, clips: LabelledClips, img_size: int, frame_stride: int,
                 budget_mb: float) -> None:
        self.dataset, self.clips, self.img_size = dataset, clips, img_size
        self.frame_stride, self.budget = frame_stride, int(budget_mb * 2**20)
        self._kept: dict[str, torch.Tensor] = {}
        self._kept_bytes = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        return self.iterate()

    def iterate(self, rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(uint8 (F, 3, s, s), labels (F, 2)) per clip; `rng` shuffles the order (kept clips
        first in random order, then the others shard by shard in random shard order)."""
        kept = list(self._kept)
        if rng is not None:
            rng.shuffle(kept)
        for clip_id in kept:
            yield self._kept[clip_id], self.clips.labels[clip_id]
        rest = [c for c in self.clips.labels if c not in self._kept]
        if not rest:
            return
        order = None if rng is None else rng.permutation(len(shard_paths(self.dataset)))
        for clip in iter_clips(self.dataset, self.clips.split, clip_ids=rest, shard_order=order):
            frames = resize_frames(decode_mp4(clip.video_mp4)[:: self.frame_stride], self.img_size)
            labels = self.clips.labels[clip.clip_id]
            if len(frames) != len(labels):
                raise ValueError(f"clip {clip.clip_id}: {len(frames)} decoded frames but {len(labels)} labels")
            size = frames.numel()
            if self._kept_bytes + size <= self.budget:
                self._kept[clip.clip_id] = frames
                self._kept_bytes += size
            yield frames, labels


def repeat_factors(labels: np.ndarray, positive_fraction: float, max_repeat: int) -> np.ndarray:
    """Per-hand repeat count of frames where that hand is visible: (2,) int >= 1.

    Repeating the P positive frames of a hand r times (N frames in all) makes its share
    r P / (N + (r - 1) P); r solves that share = `positive_fraction`, rounded, clipped to
    [1, `max_repeat`]. A hand with no positives, or one already common enough, gets 1.
    """
    labels = np.asarray(labels, dtype=bool)
    out = np.ones(labels.shape[1], dtype=np.int64)
    if positive_fraction <= 0:
        return out
    n = len(labels)
    for h in range(labels.shape[1]):
        p = int(labels[:, h].sum())
        if 0 < p < n and p / n < positive_fraction:
            r = positive_fraction * (n - p) / (p * (1.0 - positive_fraction))
            out[h] = int(np.clip(np.round(r), 1, max_repeat))
    return out


def frame_repeats(labels: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(N,) repeats per frame: the largest factor among the hands visible in it (1 for none)."""
    labels = np.asarray(labels, dtype=bool)
    return np.max(np.where(labels, factors[None, :], 1), axis=1)


def training_batches(
    source: FrameSource, factors: np.ndarray, batch_size: int, buffer: int, rng: np.random.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (uint8 (B, 3, s, s), float (B, 2)) batches from a shuffle buffer.

    Every frame enters the buffer `frame_repeats` times; a batch is drawn at random (without
    replacement) from the buffer whenever it holds more than `buffer` frames, the rest at the end.
    """
    images: list[torch.Tensor] = []
    labels: list[np.ndarray] = []

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = set(rng.choice(len(images), n, replace=False).tolist())
        x = torch.stack([images[i] for i in pick])
        y = torch.as_tensor(np.stack([labels[i] for i in pick]), dtype=torch.float32)
        rest = [i for i in range(len(images)) if i not in pick]
        images[:], labels[:] = [images[i] for i in rest], [labels[i] for i in rest]
        return x, y

    for frames, y in source.iterate(rng):
        for frame, label, r in zip(frames, y, frame_repeats(y, factors)):
            images.extend([frame] * int(r))
            labels.extend([label] * int(r))
        while len(images) >= max(buffer, batch_size):
            yield draw(batch_size)
    while images:
        yield draw(min(batch_size, len(images)))


IMAGENET_STD: float = 0.226
"""Mean ImageNet std: one unit of [0, 1] brightness is 1 / 0.226 units after `normalize`."""


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Jitter normalised (B, 3, s, s) images: contrast x[0.8, 1.2] about the image mean,
    brightness +-0.15 and Gaussian noise of sigma 0.03 (both in [0, 1] pixel units), and integer
    shifts of up to 2% of the side (replicated border). Hue is left alone (the gloves' colours
    identify the hands) and nothing is mirrored (that would swap left and right)."""
    b, _, s, _ = images.shape
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)
    brightness = 0.15 * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1) / IMAGENET_STD
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    x = (images - mean) * contrast + mean + brightness
    x = x + (0.03 / IMAGENET_STD) * torch.randn(x.shape, generator=generator)
    m = max(1, int(0.02 * s))
    pad = torch.nn.functional.pad(x, (m, m, m, m), mode="replicate")
    shifts = torch.randint(0, 2 * m + 1, (b, 2), generator=generator).tolist()
    return torch.stack([pad[i, :, dy:dy + s, dx:dx + s] for i, (dy, dx) in enumerate(shifts)])


@torch.no_grad()
def predict_source(model: torch.nn.Module, source: FrameSource, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 2) and labels (N, 2) of every frame of `source` (model in eval mode)."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for frames, y in source:
        probs += [torch.sigmoid(model(normalize(frames[i:i + batch_size]))) for i in range(0, len(frames), batch_size)]
        labels.append(y)
    model.train(was_training)
    return torch.cat(probs).numpy(), np.concatenate(labels)


THRESHOLD_GRID: np.ndarray = np.round(np.arange(0.05, 0.951, 0.05), 2)
"""Candidate decision thresholds searched on the validation split."""


def f1_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Per-hand and mean F1 of ``probs >= threshold`` against `labels` ((N, 2) each)."""
    pred = np.asarray(probs) >= threshold
    left, right = (f1_score(pred[:, h], labels[:, h]) for h in range(2))
    return {"f1_left": left, "f1_right": right, "f1_mean": (left + right) / 2, "n_frames": int(len(labels)),
            "positives_left": int(labels[:, 0].sum()), "positives_right": int(labels[:, 1].sum()),
            "threshold": float(threshold)}


def choose_threshold(probs: np.ndarray, labels: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> float:
    """The threshold of `grid` with the best F1 pooled over both hands (TP, FP, FN summed) on
    (probs, labels), ties going to the one closest to 0.5; 0.5 when there is no positive at all.

    Pooled rather than the mean of per-hand F1: a validation split where one hand never shows
    gives that hand F1 1 or 0 (one false positive), which would dominate the choice.
    """
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=bool)
    if not labels.any():
        return 0.5
    scores = np.array([f1_score(probs >= t, labels) for t in grid])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def train_hand_classifier(
    dataset: str | Path,
    out: str | Path,
    init_weights: str | Path | None,
    config: HandTrainingConfig = HandTrainingConfig(),
    eval_split: str = "test",
    threshold_split: str | None = "val",
) -> dict[str, float]:
    """Train on the train split, pick the threshold on `threshold_split`, report F1 on `eval_split`.

    `init_weights` is a local timm checkpoint of `config.arch` (None: random init, only sensible
    for the tiny arch). `threshold_split` None keeps 0.5. The classifier folder (weights,
    threshold, both splits' metrics) is written to `out`. Returns the `eval_split` metrics.
    """
    if threshold_split is not None and threshold_split == eval_split:
        raise ValueError(f"the threshold is chosen on {threshold_split!r}; report F1 on another split "
                         "(choosing and scoring on one split overstates F1)")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = create_model(config.arch)
    if init_weights is not None:
        load_backbone(model, init_weights)
    img_size = ARCHS[config.arch]["img_size"]

    def source(split: str, budget_mb: float = 0.0) -> FrameSource:
        return FrameSource(dataset, split_labels(dataset, split, config), img_size, config.frame_stride, budget_mb)

    train = source("train", config.memory_budget_mb)
    factors = repeat_factors(train.clips.frames, config.positive_fraction, config.max_repeat)
    per_epoch = int(frame_repeats(train.clips.frames, factors).sum())
    steps = config.epochs * -(-per_epoch // config.batch_size)  # every batch is full but an epoch's last
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    hc_config = HandClassifierConfig(arch=config.arch)
    model.train()
    with tqdm(total=config.epochs * per_epoch, desc="train hand classifier", unit="frame") as bar:
        for _ in range(config.epochs):
            for x, y in training_batches(train, factors, config.batch_size, config.shuffle_buffer, rng):
                x = normalize(x)
                if config.augment:
                    x = augment(x, gen)
                loss = focal_loss(model(x), y, hc_config.alpha, hc_config.gamma)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(len(y))
                bar.set_postfix(loss=f"{loss.item():.4f}")
    metrics: dict = {"repeat_factors": factors.tolist(), "training": asdict(config)}
    if threshold_split is not None:
        probs, labels = predict_source(model, source(threshold_split))
        hc_config.threshold = choose_threshold(probs, labels)
        metrics["threshold_split"] = {"split": threshold_split, **f1_metrics(probs, labels, hc_config.threshold)}
    probs, labels = predict_source(model, source(eval_split))
    held_out = {**f1_metrics(probs, labels, hc_config.threshold), "split": eval_split}
    hc_config.metrics = {**metrics, **held_out}
    HandClassifier(model, hc_config).save(out)
    return held_out
