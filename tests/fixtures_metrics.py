"""Fixtures of the metric tests: a tiny GloVe file and text-motion pairs of the synthetic world.

`synthetic_text_motion` drives the synthetic generator's own pieces (scene, activity script,
body, narration; `egotwin_bench.synthetic`) without rendering video: every narration window of a
script gives one 5 s clip (81 frames at 16 FPS, centred on the window) with the window's atomic
narration as its prompt, the same templated sentences `make-synthetic` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.constants import CLIP_SECONDS, MOTION_FPS, MOTION_FRAMES


def synthetic_text_motion(sequences: int, seconds: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts (N,), world positions (N, 81, 23, 3) and rotations (N, 81, 23, 3, 3), float32."""
    from egotwin_bench.synthetic.body import MASTER_HZ, compute_channels, make_subject, pose_at
    from egotwin_bench.synthetic.narration import atomic_text, group_windows
    from egotwin_bench.synthetic.scene import make_scene
    from egotwin_bench.synthetic.script import make_script

    texts, positions, rotations = [], [], []
    for i in range(sequences):
        rng = np.random.default_rng([seed, i])
        scene, subject = make_scene(i % 3, seed), make_subject(i, seed)
        script = make_script(scene, seconds, rng)
        channels = compute_channels(script, seconds)
        for window in group_windows(script, seconds, rng):
            start = float(np.clip(0.5 * (window.t0 + window.t1) - CLIP_SECONDS / 2, 0.0, seconds - CLIP_SECONDS))
            idx = np.round((start + np.arange(MOTION_FRAMES) / MOTION_FPS) * MASTER_HZ).astype(np.int64)
            pos, rot = pose_at(subject, channels, idx)
            texts.append(atomic_text(window, rng))
            positions.append(pos)
            rotations.append(rot)
    return texts, np.stack(positions).astype(np.float32), np.stack(rotations).astype(np.float32)


def write_glove(path: Path, words: set[str], seed: int = 0) -> Path:
    """A GloVe-format text file of random 300-d vectors for `words` (+ sos/eos/unk)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf8") as fh:
        for w in sorted(set(words) | {"sos", "eos", "unk"}):
            fh.write(w + " " + " ".join(f"{x:.5f}" for x in rng.standard_normal(300)) + "\n")
    return path


@pytest.fixture(scope="session")
def text_motion_pairs() -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Synthetic text-motion clips: 'train' (12 sequences x 60 s) and 'val' (4 other sequences)."""
    return {"train": synthetic_text_motion(12, 60.0, seed=0), "val": synthetic_text_motion(4, 60.0, seed=1)}


SMALL_EVALUATOR = dict(movement_hidden=128, movement_latent=128, motion_hidden=128, text_hidden=128, embedding=128)
"""Evaluator widths of the training test (the real layout at 1/4-1/8 width: ~0.1 s per step on
one CPU core instead of ~1.5 s); the real widths are covered by the shape tests."""
SMALL_TRAINING = dict(steps=240, lr=1e-3, validate_every=80, seed=0)


@pytest.fixture(scope="session")
def trained_evaluator(text_motion_pairs, tmp_path_factory):
    """(folder, model, train data, val data, history) of a small evaluator trained on `text_motion_pairs`."""
    import torch

    from egotwin_bench.training.gru_evaluators import TextMotionData, TrainConfig, train_evaluators
    from egotwin_bench.estimators.gru_evaluators import EvaluatorConfig
    from egotwin_bench.estimators.text_features import load_glove, vocabulary
    from egotwin_bench.motion import head_centric

    def data(split: str) -> TextMotionData:
        texts, pos, rot = text_motion_pairs[split]
        return TextMotionData(texts, np.asarray(head_centric.encode(pos.astype(np.float64), rot.astype(np.float64)),
                                                dtype=np.float32))

    train, val = data("train"), data("val")
    root = tmp_path_factory.mktemp("evaluators")
    glove = write_glove(root / "glove.txt", vocabulary(train.texts + val.texts))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, history = train_evaluators(train, val, load_glove(glove), root / "out", TrainConfig(**SMALL_TRAINING),
                                          EvaluatorConfig(**SMALL_EVALUATOR), progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "out", model, train, val, history
