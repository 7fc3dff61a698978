"""Training the ViT hand classifier on curated clips (frames labelled by `hand_visible`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from egotwin_bench.estimators.hand_classifier import (
    ARCHS,
    HandClassifier,
    HandClassifierConfig,
    create_model,
    focal_loss,
    load_backbone,
    preprocess,
)
from egotwin_bench.metrics.hand_consistency import f1_score


@dataclass(frozen=True)
class HandTrainingConfig:
    """Optimisation settings (AdamW; one-cycle schedule: 10% warm-up, cosine decay)."""

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


def load_frames(dataset: str | Path, split: str, img_size: int, config: HandTrainingConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Frames of a split, resized and normalised: (N, 3, s, s) float and (N, 2) bool labels."""
    from egotwin_bench.curation.video import decode_mp4
    from egotwin_bench.evaluate.reference import load_clips

    xs, ys = [], []
    for clip in tqdm(load_clips(dataset, split, limit=config.max_clips), desc=f"decode {split}", leave=False):
        frames = decode_mp4(clip.video_mp4)[:: config.frame_stride]
        xs.append(preprocess(frames, img_size))
        ys.append(clip.hand_visible[:: config.frame_stride])
    if not xs:
        raise ValueError(f"split {split!r} of {dataset} has no clips")
    return torch.cat(xs), np.concatenate(ys)


def evaluate_f1(classifier: HandClassifier, x: torch.Tensor, y: np.ndarray, batch_size: int = 128) -> dict[str, float]:
    """Per-hand and mean F1 of `classifier` on preprocessed frames `x` with labels `y` (N, 2)."""
    with torch.no_grad():
        probs = torch.cat([torch.sigmoid(classifier.model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
    pred = probs.numpy() >= classifier.config.threshold
    left, right = (f1_score(pred[:, h], y[:, h]) for h in range(2))
    return {"f1_left": left, "f1_right": right, "f1_mean": (left + right) / 2, "n_frames": int(len(y))}


def train_hand_classifier(
    dataset: str | Path,
    out: str | Path,
    init_weights: str | Path | None,
    config: HandTrainingConfig = HandTrainingConfig(),
    val_split: str = "val",
) -> dict[str, float]:
    """Train on the train split, report F1 on `val_split`, save the classifier folder to `out`.

    `init_weights` is a local timm checkpoint of `config.arch` (None: random init, only sensible
    for the tiny arch in tests). Returns the held-out metrics (also stored in ``config.json``).
    """
    torch.manual_seed(config.seed)
    model = create_model(config.arch)
    if init_weights is not None:
        load_backbone(model, init_weights)
    img_size = ARCHS[config.arch]["img_size"]
    x, y = load_frames(dataset, "train", img_size, config)
    x_val, y_val = load_frames(dataset, val_split, img_size, config)
    targets = torch.as_tensor(y, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(x) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(config.seed)
    hc_config = HandClassifierConfig(arch=config.arch)
    bar = tqdm(total=steps, desc="train hand classifier")
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = focal_loss(model(x[idx]), targets[idx], hc_config.alpha, hc_config.gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    classifier = HandClassifier(model, hc_config)
    metrics = evaluate_f1(classifier, x_val, y_val)
    metrics["split"] = val_split
    classifier.config.metrics = metrics
    classifier.save(out)
    return metrics
