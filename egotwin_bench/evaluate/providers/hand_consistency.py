"""The hand-consistency provider: HandScore of generated videos (the ViT hand classifier's presence,
cached by video hash) against the hands' visibility in the generated motions (the formulas:
`egotwin_bench.metrics.hand_consistency`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from egotwin_bench import weights
from egotwin_bench.estimators.hand_classifier import CONFIG_FILE, WEIGHTS_FILE, HandClassifier
from egotwin_bench.evaluate.clip_cache import ClipCache, namespace
from egotwin_bench.evaluate.protocol import ProviderResult
from egotwin_bench.hashing import digest
from egotwin_bench.metrics.bootstrap import bootstrap
from egotwin_bench.metrics.hand_consistency import hand_score, hand_visibility, undefined_hands


class HandConsistencyProvider:
    """HandScore of generated videos (ViT hand classifier) against generated motions.

    Per-clip classifier outputs (41, 2) depend on the video only: they are cached by the video
    bytes' hash under ``hands-<digest of the classifier weights, arch and threshold>-egotwin<version>``.
    """

    name = "hand_consistency"
    metric_names = ("HandScore",)
    higher_is_better = {"HandScore": True}

    def __init__(self, classifier_dir, cache=None, n_bootstrap: int = 1000) -> None:
        self.classifier_dir = classifier_dir
        self.cache = cache if cache is not None else ClipCache(None)
        self.n_bootstrap = n_bootstrap
        self._classifier = None

    def unavailable_reason(self) -> str | None:
        if self.classifier_dir is None:
            return ("no --hand-classifier given: train one with `egotwin-bench train-hand-classifier` "
                    "and pass its --out folder")
        folder = Path(self.classifier_dir)
        absent = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / n).is_file()]
        if absent:
            return f"hand classifier folder {folder} lacks {', '.join(absent)} (train-hand-classifier writes them)"
        return None

    def cache_id(self) -> str:
        """Digest of the classifier's weights (sha256), arch and threshold: names the presence cache."""
        folder = Path(self.classifier_dir)
        config = json.loads((folder / CONFIG_FILE).read_text())
        return digest(weights.sha256_of(folder / WEIGHTS_FILE), config.get("arch"), config.get("threshold"))

    def presence(self, clips: list) -> np.ndarray:
        """(N, 41, 2) bool classifier output per clip (cached by video hash)."""
        space = namespace("hands", self.cache_id())
        out = []
        for clip in tqdm(clips, desc="hand presence", leave=False):
            hit = self.cache.get(space, clip.video_key)
            if hit is None:
                if self._classifier is None:
                    self._classifier = HandClassifier.load(self.classifier_dir)
                hit = {"presence": self._classifier.predict(clip.load_video())}
                self.cache.put(space, clip.video_key, **hit)
            out.append(hit["presence"].astype(bool))
        return np.stack(out)

    def evaluate(self, generated: list, reference: list, rng: np.random.Generator):
        presence = self.presence(generated)
        visible = np.stack([
            hand_visibility(c.positions, c.rotations, c.T_head_camera, c.intrinsics) for c in generated
        ])
        score = bootstrap(lambda idx: hand_score(presence[idx], visible[idx]), len(generated), rng,
                          self.n_bootstrap)
        per_clip = np.array([hand_score(p, v) for p, v in zip(presence, visible)])
        notes = []
        undefined = undefined_hands(presence, visible)
        if undefined:
            notes.append(f"HandScore: {' and '.join(undefined)} hand F1 undefined (no frame where the hand is "
                         f"detected or visible in the motion); {'left out of the mean' if len(undefined) == 1 else 'no value'}.")
        n_nan = int(np.sum(~np.isfinite(per_clip)))
        if n_nan:
            notes.append(f"HandScore: {n_nan}/{len(per_clip)} clips have no defined per-clip F1 (NaN in per_clip).")
        return ProviderResult(metrics={"HandScore": score}, per_clip={"HandScore": per_clip}, notes=notes)
