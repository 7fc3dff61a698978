"""Reading the precomputed cache of a run (`egotwin_model.precompute`) clip by clip, for training."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from egotwin_model.precompute import clip_path, load_manifest, load_tensors

class CachedClips:
    """The precomputed clips of one split (see `egotwin_model.precompute`), loaded lazily.

    Motion features are normalised with the train split's mean/std of the run's representation.
    """

    def __init__(self, cache: str | Path, split: str, representation: str, keys: Iterable[str]) -> None:
        self.cache = Path(cache)
        manifest = load_manifest(cache)
        self.ids: list[str] = manifest["splits"].get(split, [])
        if not self.ids:
            raise ValueError(f"the cache {cache} has no clip of split {split!r}: run `egotwin-model precompute`")
        self.split, self.representation, self.keys = split, representation, tuple(keys)
        stats = load_tensors(self.cache / "motion_stats.safetensors")
        self.mean, self.std = stats[f"{representation}_mean"], stats[f"{representation}_std"]
        self.null_text = load_tensors(self.cache / "null_text.safetensors")["text_emb"].float()

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, i: int) -> dict[str, torch.Tensor]:
        t = load_tensors(clip_path(self.cache, self.split, self.ids[i]))
        out = {k: t[k].float() for k in self.keys if k != "motion"}
        if "motion" in self.keys:
            out["motion"] = (t[self.representation].float() - self.mean) / self.std
        return out

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        items = [self.item(i) for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
