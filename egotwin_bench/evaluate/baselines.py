"""Reference submissions: the ground-truth test split (upper bound) and a motion-shuffled baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from egotwin_bench.evaluate.reference import load_clips, reference_name
from egotwin_bench.evaluate.submission import SubmissionMeta, write_clip, write_meta


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise ValueError("shuffling motions needs at least two clips")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def make_reference_submission(
    dataset: str | Path,
    out: str | Path,
    shuffle_motion: bool = False,
    split: str = "test",
    seed: int = 0,
    method: str | None = None,
) -> Path:
    """Write the reference split as a submission folder and return it.

    With `shuffle_motion`, clip i keeps its own video but gets the motion of clip perm[i] (a
    derangement): a sanity baseline that consistency metrics must rank below the ground truth.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clips = load_clips(dataset, split)
    perm = derangement(len(clips), np.random.default_rng(seed)) if shuffle_motion else np.arange(len(clips))
    meta = SubmissionMeta(
        method=method or ("shuffled_motion" if shuffle_motion else "ground_truth"),
        task="t2vm",
        motion_format="world_joints",
        reference=reference_name(dataset, split),
        model={"kind": "reference", "shuffle_motion": shuffle_motion, "seed": seed},
    )
    for clip, j in zip(tqdm(clips, desc=f"write {meta.method}"), perm):
        write_clip(out, clip.clip_id, clip.video_mp4, clips[j].positions, clips[j].rotations)
    write_meta(out, meta)
    return out
