"""Video quality providers: I-FID (Inception-v3 frames), FVD (I3D clips) and CLIP-SIM (CLIP ViT-B/32).

The networks, their weight files and preprocessing: `egotwin_bench.estimators.video_features`.

Per-clip features depend on the video only and are cached by (network, weights file, toolkit
version; the folder name) and the video bytes' hash (the file name; CLIP-SIM: video hash and
prompt) under ``$EGOTWIN_CACHE/features`` (the runner: ``<cache>/features``), so the reference
features of the test split are computed once and a new submission costs only its new videos.

Intervals: I-FID and FVD get value ± 1.96 × the grouped-jackknife standard error over clips
(`egotwin_bench.metrics.bootstrap.jackknife`; 20 groups, each dropped once, against the fixed
reference Gaussian through `FrechetReference`); `jackknife_groups` = 0 gives NaN bounds. Not the
bootstrap: resamples with repeated clips bias a Fréchet distance upwards. CLIP-SIM: bootstrap of the mean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from egotwin_bench import __version__, weights
from egotwin_bench.estimators.video_features import (
    DEFAULT_FVD_NETWORK,
    FVD_NETWORKS,
    FVDNetwork,
    load_clip,
    load_i3d,
    load_inception,
    resolve_fvd_weights,
)
from egotwin_bench.evaluate.protocol import EvalClip, ProviderResult
from egotwin_bench.metrics.bootstrap import JACKKNIFE_GROUPS, bootstrap_mean, jackknife
from egotwin_bench.metrics.frechet import FrechetReference

FVD_SHORT_FRAMES: int = 16
"""Frames of FVD16 (the first ones of each clip), StyleGAN-V's reported clip length."""


# ----------------------------------------------------------------------------- feature cache


class FeatureCache:
    """Per-clip arrays on disk keyed by (extractor id, clip key); atomic writes; None disables.

    The folder is ``<root>/<name>-<sha256(extractor id)[:16]>``; the extractor id names the
    network, its settings, its weights file and the toolkit version.
    """

    def __init__(self, root: str | Path | None, extractor_id: str, name: str = "features"):
        full_id = f"{extractor_id}|egotwin{__version__}"
        self.dir = None if root is None else Path(root) / f"{name}-{hashlib.sha256(full_id.encode()).hexdigest()[:16]}"

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of `key`, else `compute()` stored under it (no caching for an empty key)."""
        if self.dir is None or not key:
            return compute()
        path = self.dir / f"{key}.npy"
        if path.is_file():
            return np.load(path)
        value = np.asarray(compute(), dtype=np.float32)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, value)
        tmp.replace(path)
        return value


def weights_identity(path: Path) -> str:
    """Cheap identity of a weights file or folder (name, size, mtime) for cache keys."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file())


# ----------------------------------------------------------------------------- providers


@dataclass
class VideoQualityConfig:
    """Weights (None: the weights cache folder), device, batching, caching and bootstrap."""

    inception_weights: str | None = None
    i3d_weights: str | None = None
    fvd_network: str = DEFAULT_FVD_NETWORK
    """A key of `FVD_NETWORKS`: ``tfhub`` (the standard FVD network) or ``piergiaj``."""
    clip_weights: str | None = None
    verify_weights: bool = True
    """Check sha256 where the toolkit knows the published digest."""
    device: str = "cpu"
    frame_batch: int = 64
    ifid_frame_stride: int = 1
    """Use every k-th frame of each clip for I-FID (1: all 41)."""
    feature_cache: str | None = "default"
    """Folder of the per-clip feature cache; "default": `weights.features_dir()`; None: no cache."""
    bootstrap_resamples: int = 1000
    """Bootstrap resamples of the CLIP-SIM interval."""
    jackknife_groups: int = JACKKNIFE_GROUPS
    """Groups of the I-FID / FVD jackknife intervals (each costs about one Fréchet distance); 0: NaN bounds."""


class _NetworkProvider:
    """Shared plumbing: weights check, lazy network, cached per-clip features."""

    name = ""
    metric_names: tuple[str, ...] = ()
    higher_is_better: dict[str, bool] = {}

    @property
    def spec(self) -> weights.WeightSpec:
        """The weight artefact (read from `egotwin_bench.weights` at call time)."""
        raise NotImplementedError

    def __init__(self, config: VideoQualityConfig | None = None):
        self.config = config or VideoQualityConfig()
        self._net: nn.Module | None = None

    def weights_path(self) -> str | None:
        raise NotImplementedError

    def weights_file(self) -> Path:
        """The resolved weights file or folder (no checksum); raises `weights.MissingWeightsError`."""
        return weights.resolve(self.spec, self.weights_path(), verify=False)

    def unavailable_reason(self) -> str | None:
        """Missing file, or (with `verify_weights`) a checksum mismatch: skipped before any work starts."""
        return weights.availability(self.spec, self.weights_path(), self.config.verify_weights)

    def describe(self) -> str:
        """One line for leaderboard.md: network file and preprocessing of these metrics."""
        return ""

    def _load(self) -> nn.Module:
        raise NotImplementedError

    @property
    def net(self) -> nn.Module:
        if self._net is None:
            self._net = self._load().to(self.config.device)
        return self._net

    def cache(self) -> FeatureCache:
        root = self.config.feature_cache
        root = weights.features_dir() if root == "default" else root
        return FeatureCache(root, f"{self.name}|{self.cache_tag()}|{weights_identity(self.weights_file())}", self.name)

    def cache_tag(self) -> str:
        return ""


def _video_tensor(clip: EvalClip) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(clip.load_video()))


class IFIDProvider(_NetworkProvider):
    """I-FID: Fréchet distance of Inception-v3 pool features over all (strided) frames."""

    name = "ifid"
    metric_names = ("I-FID",)
    higher_is_better = {"I-FID": False}

    @property
    def spec(self) -> weights.WeightSpec:
        return weights.INCEPTION_V3

    def weights_path(self) -> str | None:
        return self.config.inception_weights

    def _load(self) -> nn.Module:
        return load_inception(self.config.inception_weights, self.config.verify_weights)

    def cache_tag(self) -> str:
        return f"stride{self.config.ifid_frame_stride}|resize-pytorch-fid"

    def describe(self) -> str:
        return (f"I-FID: torchvision Inception-v3 `{self.weights_file().name}`, 2048-d pool features of every "
                f"{'' if self.config.ifid_frame_stride == 1 else f'{self.config.ifid_frame_stride}th '}frame, "
                "resized to 299x299 as pytorch-fid (bilinear, no antialiasing), scaled to [-1, 1]; "
                "interval: value ± 1.96 grouped-jackknife se.")

    def clip_features(self, clip: EvalClip) -> np.ndarray:
        """(F, 2048) features of the clip's frames."""
        frames = _video_tensor(clip)[:: self.config.ifid_frame_stride].to(self.config.device)
        bs = self.config.frame_batch
        return torch.cat([self.net(frames[s:s + bs]) for s in range(0, len(frames), bs)]).cpu().numpy()

    def features(self, clips: list[EvalClip]) -> list[np.ndarray]:
        cache = self.cache()
        return [cache.get_or_compute(c.video_key, lambda c=c: self.clip_features(c))
                for c in tqdm(clips, desc="I-FID features", unit="clip", leave=False)]

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        gen, ref = self.features(generated), self.features(reference)
        target = FrechetReference.fit(np.concatenate(ref))
        value = jackknife(lambda idx: target.distance(np.concatenate([gen[i] for i in idx])),
                          len(gen), rng, self.config.jackknife_groups)
        return ProviderResult(metrics={"I-FID": value})


class FVDProvider(_NetworkProvider):
    """FVD of whole 41-frame clips and FVD16 of their first 16 frames (I3D features)."""

    name = "fvd"
    metric_names = ("FVD", "FVD16")
    higher_is_better = {"FVD": False, "FVD16": False}

    @property
    def network(self) -> FVDNetwork:
        return FVD_NETWORKS[self.config.fvd_network]

    @property
    def spec(self) -> weights.WeightSpec:
        return self.network.specs[0]

    def weights_path(self) -> str | None:
        return self.config.i3d_weights

    def weights_file(self) -> Path:
        return resolve_fvd_weights(self.config.fvd_network, self.config.i3d_weights)

    def unavailable_reason(self) -> str | None:
        if self.config.fvd_network not in FVD_NETWORKS:
            return f"unknown FVD network {self.config.fvd_network!r} (choose {', '.join(FVD_NETWORKS)})"
        try:
            self.weights_file()
        except weights.MissingWeightsError as err:
            return str(err)
        return None

    def _load(self) -> nn.Module:
        return load_i3d(self.config.i3d_weights, self.config.fvd_network)

    def cache_tag(self) -> str:
        return f"{self.config.fvd_network}|frames41+{FVD_SHORT_FRAMES}|resize-reference"

    def describe(self) -> str:
        file = self.weights_file()
        if weights.is_torchscript(file):
            how = ("TorchScript called as StyleGAN-V (uint8 input, rescale=True, resize=True, return_features=True: "
                   "its own [-1, 1] scaling and resize to 224)")
        else:
            how = (f"state dict in our I3D (BatchNorm eps {self.network.bn_eps:g}); shorter side to 224 by bilinear "
                   "resize without antialiasing, centre crop, scaled to [-1, 1] (VideoGPT's preprocessing)")
        note = "" if self.network.comparable else " Not the TF-Hub FVD network: not comparable with published FVDs."
        return (f"FVD / FVD16: I3D Kinetics-400 `{self.config.fvd_network}` from `{file.name}`, {how}; 400-d logits "
                f"averaged over time of all 41 frames (FVD) and the first {FVD_SHORT_FRAMES} (FVD16); "
                f"interval: value ± 1.96 grouped-jackknife se.{note}")

    def clip_features(self, clip: EvalClip) -> np.ndarray:
        """(2, 400): features of all frames and of the first `FVD_SHORT_FRAMES`."""
        video = _video_tensor(clip)[None].to(self.config.device)
        return torch.cat([self.net(video), self.net(video[:, :FVD_SHORT_FRAMES])]).cpu().numpy()

    def features(self, clips: list[EvalClip]) -> np.ndarray:
        """(N, 2, 400) cached per-clip features."""
        cache = self.cache()
        return np.stack([cache.get_or_compute(c.video_key, lambda c=c: self.clip_features(c))
                         for c in tqdm(clips, desc="FVD features", unit="clip", leave=False)])

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        gen, ref = self.features(generated), self.features(reference)
        metrics = {}
        for k, name in enumerate(self.metric_names):
            target = FrechetReference.fit(ref[:, k])
            metrics[name] = jackknife(lambda idx, k=k: target.distance(gen[idx, k]), len(gen), rng,
                                      self.config.jackknife_groups)
        return ProviderResult(metrics=metrics)


class ClipSimProvider(_NetworkProvider):
    """CLIP-SIM: 100 x mean over frames of cos(prompt, frame), averaged over generated clips."""

    name = "clip_sim"
    metric_names = ("CLIP-SIM",)
    higher_is_better = {"CLIP-SIM": True}

    @property
    def spec(self) -> weights.WeightSpec:
        return weights.CLIP_VIT_B32

    def weights_path(self) -> str | None:
        return self.config.clip_weights

    def _load(self) -> nn.Module:
        return load_clip(self.config.clip_weights)

    def clip_score(self, clip: EvalClip) -> float:
        """100 x mean frame cosine of one clip."""
        frames = _video_tensor(clip).to(self.config.device)
        bs = self.config.frame_batch
        cos = torch.cat([self.net(frames[s:s + bs], clip.text) for s in range(0, len(frames), bs)])
        return 100.0 * float(cos.mean())

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        cache = self.cache()
        scores = np.array([
            float(cache.get_or_compute(_text_key(c), lambda c=c: np.array([self.clip_score(c)]))[0])
            for c in tqdm(generated, desc="CLIP-SIM", unit="clip", leave=False)
        ])
        return ProviderResult(metrics={"CLIP-SIM": bootstrap_mean(scores, rng, self.config.bootstrap_resamples)},
                              per_clip={"CLIP-SIM": scores})


def _text_key(clip: EvalClip) -> str:
    """Cache key of a (video, prompt) pair; empty when the clip has no hash."""
    if not clip.video_key:
        return ""
    return hashlib.sha256(f"{clip.video_key}|{clip.text}".encode()).hexdigest()


def video_quality_providers(config: VideoQualityConfig | None = None) -> list[_NetworkProvider]:
    """The three video-quality providers (each skips on its own when its weights are missing)."""
    return [IFIDProvider(config), FVDProvider(config), ClipSimProvider(config)]
