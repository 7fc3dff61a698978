"""Video quality: I-FID (Inception-v3 frames), FVD (I3D clips) and CLIP-SIM (CLIP ViT-B/32).

Networks (architectures built in code, weights from local files, see `egotwin_bench.weights`):

* **I-FID** — torchvision's `inception_v3` with its ImageNet weights
  (``inception_v3_google-0cc3c7bd.pth``); features are the 2048-d average-pool outputs of every
  frame (stride configurable), resized to 299x299 bilinear, scaled to [-1, 1]. Note: this is
  torchvision's port, not the TF "pt_inception-2015-12-05" graph of pytorch-fid, so absolute
  values differ from TF-FID numbers; rankings and the toolkit's leaderboard are consistent.
* **FVD** — Kinetics-400 I3D (`egotwin_bench.estimators.i3d`, pytorch-i3d weights
  ``rgb_imagenet.pt``); one 400-d logit vector per 41-frame clip at 224x224, [-1, 1].
* **CLIP-SIM** — 100 x the mean over frames of cos(CLIP text embedding of the prompt, CLIP image
  embedding of the frame), with transformers' `CLIPModel` loaded from a local folder in the
  Hugging Face format (transformers is already a dependency; open_clip would add one and load
  the same OpenAI weights). Frames: shortest side to 224 bicubic, centre crop, CLIP mean/std.

Per-clip features depend on the video only and are cached by (network, weights file, toolkit
version; the folder name) and the video bytes' hash (the file name; CLIP-SIM: video hash and
prompt) under ``$EGOTWIN_CACHE/features`` (the runner: ``<cache>/features``), so the reference
features of the test split are computed once and a new submission costs only its new videos.

Intervals: I-FID and FVD are bootstrapped over clips (a resample draws clips with replacement
and pools their frames / clip vectors) against the fixed reference Gaussian, through
`FrechetReference` (the reference's covariance root computed once, one symmetric
eigendecomposition per resample); `frechet_bootstrap_resamples` = 0 gives NaN bounds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egotwin_bench import weights
from egotwin_bench.evaluate.protocol import EvalClip, ProviderResult
from egotwin_bench.metrics.bootstrap import bootstrap, bootstrap_mean
from egotwin_bench.metrics.frechet import FrechetReference

INCEPTION_SIZE: int = 299
INCEPTION_DIM: int = 2048
CLIP_SIZE: int = 224


# ----------------------------------------------------------------------------- networks


def build_inception() -> nn.Module:
    """torchvision Inception-v3 (aux head kept so its checkpoints load strictly), random weights."""
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=True)


def build_i3d() -> nn.Module:
    """Kinetics-400 I3D (RGB), random weights."""
    from egotwin_bench.estimators.i3d import InceptionI3d

    return InceptionI3d()


def load_state_dict_file(module: nn.Module, path: str | Path, what: str) -> nn.Module:
    """Load a ``.pt``/``.pth`` (or ``.safetensors``) state dict strictly into `module`.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.
    Raises `weights.WeightsMismatchError` (a ValueError) naming the file and the missing /
    unexpected / reshaped tensors when it is for another network.
    """
    return weights.load_checked(module, path, what)


def _frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    if frames.dtype != torch.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0


class InceptionFeatures(nn.Module):
    """uint8 frames (N, H, W, 3) -> (N, 2048) Inception-v3 pool features."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        inception.fc = nn.Identity()
        self.net = inception.eval()

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = _frames_to_float(frames)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                          antialias=True)
        return self.net(x * 2.0 - 1.0)


class I3DFeatures(nn.Module):
    """uint8 videos (B, T, H, W, 3) -> (B, 400) time-averaged I3D logits (FVD features)."""

    def __init__(self, i3d: nn.Module):
        super().__init__()
        self.net = i3d.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        from egotwin_bench.estimators.i3d import I3D_SIZE

        b, t = videos.shape[:2]
        x = F.interpolate(_frames_to_float(videos), size=(I3D_SIZE, I3D_SIZE), mode="bilinear",
                          align_corners=False, antialias=True)
        x = x.reshape(b, t, 3, I3D_SIZE, I3D_SIZE).transpose(1, 2)
        return self.net(x * 2.0 - 1.0)


class ClipScorer(nn.Module):
    """Cosine between a prompt and each frame in CLIP space."""

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

        self.model, self.tokenizer = model.eval(), tokenizer
        self.register_buffer("pixel_mean", torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1))

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, 3, 224, 224): shortest side to 224 (bicubic), centre crop, normalise."""
        size = self.model.config.vision_config.image_size
        x = _frames_to_float(frames)
        h, w = x.shape[-2:]
        scale = size / min(h, w)
        x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                          align_corners=False, antialias=True).clamp(0, 1)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size]
        return (x - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, text: str) -> torch.Tensor:
        """uint8 (T, H, W, 3) frames + prompt -> (T,) cosines."""
        tok = self.tokenizer([text], padding=True, truncation=True, return_tensors="pt").to(self.pixel_mean.device)
        t = self.model.get_text_features(**tok)
        v = self.model.get_image_features(pixel_values=self.preprocess(frames))
        t = t.pooler_output if hasattr(t, "pooler_output") else t
        v = v.pooler_output if hasattr(v, "pooler_output") else v
        return F.cosine_similarity(v, t, dim=-1)


def load_inception(path: str | Path | None = None, verify: bool = True) -> InceptionFeatures:
    """Inception-v3 feature extractor with weights from `path` or the weights cache (sha256-checked)."""
    file = weights.resolve(weights.INCEPTION_V3, path, verify)
    return InceptionFeatures(load_state_dict_file(build_inception(), file, "torchvision Inception-v3"))


def load_i3d(path: str | Path | None = None, verify: bool = True) -> I3DFeatures:
    """I3D feature extractor with weights from `path` or the weights cache."""
    file = weights.resolve(weights.I3D_KINETICS400, path, verify)
    return I3DFeatures(load_state_dict_file(build_i3d(), file, "I3D Kinetics-400 RGB"))


def load_clip(folder: str | Path | None = None) -> ClipScorer:
    """CLIP scorer from a local transformers folder (config, weights, tokenizer files)."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = weights.resolve(weights.CLIP_VIT_B32, folder)
    has_weights = any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))
    has_tokenizer = (folder / "tokenizer.json").is_file() or all(
        (folder / f).is_file() for f in ("vocab.json", "merges.txt"))
    if not (has_weights and has_tokenizer):
        raise weights.MissingWeightsError(
            f"{weights.CLIP_VIT_B32.name}: {folder} lacks "
            f"{'model.safetensors (or pytorch_model.bin)' if not has_weights else 'tokenizer.json (or vocab.json + merges.txt)'}."
            f" Get the whole folder from {weights.CLIP_VIT_B32.source}."
        )
    try:
        model, info = CLIPModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as err:  # e.g. a size mismatch against config.json
        raise weights.WeightsMismatchError(f"{folder} does not load as {weights.CLIP_VIT_B32.name}: {err}") from None
    # Older checkpoints carry the non-persistent `position_ids` buffers: harmless extras.
    unexpected = [k for k in info["unexpected_keys"] if not k.endswith("position_ids")]
    problems = [f"{len(v)} tensors {label} (e.g. {', '.join(map(str, v[:3]))})" for label, v in (
        ("missing", info["missing_keys"]), ("unexpected", unexpected), ("of another shape", info["mismatched_keys"]))
        if v]
    if problems:
        raise weights.WeightsMismatchError(
            f"{folder} does not hold {weights.CLIP_VIT_B32.name} weights matching its config.json: {'; '.join(problems)}")
    return ClipScorer(model, CLIPTokenizer.from_pretrained(folder, local_files_only=True))


# ----------------------------------------------------------------------------- feature cache


class FeatureCache:
    """Per-clip arrays on disk keyed by (extractor id, clip key); atomic writes; None disables.

    The folder is ``<root>/<name>-<sha256(extractor id)[:16]>``; the extractor id names the
    network, its settings, its weights file and the toolkit version.
    """

    def __init__(self, root: str | Path | None, extractor_id: str, name: str = "features"):
        from egotwin_bench import __version__

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
    frechet_bootstrap_resamples: int = 100
    """Resamples of the I-FID / FVD intervals (each costs about one Fréchet distance); 0: NaN bounds."""


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

    def unavailable_reason(self) -> str | None:
        """Missing file, or (with `verify_weights`) a checksum mismatch: skipped before any work starts."""
        return weights.availability(self.spec, self.weights_path(), self.config.verify_weights)

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
        path = weights.resolve(self.spec, self.weights_path(), verify=False)
        return FeatureCache(root, f"{self.name}|{self.cache_tag()}|{weights_identity(path)}", self.name)

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
        return f"stride{self.config.ifid_frame_stride}"

    def clip_features(self, clip: EvalClip) -> np.ndarray:
        """(F, 2048) features of the clip's frames."""
        frames = _video_tensor(clip)[:: self.config.ifid_frame_stride].to(self.config.device)
        bs = self.config.frame_batch
        return torch.cat([self.net(frames[s:s + bs]) for s in range(0, len(frames), bs)]).cpu().numpy()

    def features(self, clips: list[EvalClip]) -> list[np.ndarray]:
        from tqdm.auto import tqdm

        cache = self.cache()
        return [cache.get_or_compute(c.video_key, lambda c=c: self.clip_features(c))
                for c in tqdm(clips, desc="I-FID features", unit="clip", leave=False)]

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        gen, ref = self.features(generated), self.features(reference)
        target = FrechetReference.fit(np.concatenate(ref))
        value = bootstrap(lambda idx: target.distance(np.concatenate([gen[i] for i in idx])),
                          len(gen), rng, self.config.frechet_bootstrap_resamples)
        return ProviderResult(metrics={"I-FID": value})


class FVDProvider(_NetworkProvider):
    """FVD: Fréchet distance of I3D features of whole 41-frame clips."""

    name = "fvd"
    metric_names = ("FVD",)
    higher_is_better = {"FVD": False}

    @property
    def spec(self) -> weights.WeightSpec:
        return weights.I3D_KINETICS400

    def weights_path(self) -> str | None:
        return self.config.i3d_weights

    def _load(self) -> nn.Module:
        return load_i3d(self.config.i3d_weights, self.config.verify_weights)

    def features(self, clips: list[EvalClip]) -> np.ndarray:
        from tqdm.auto import tqdm

        cache = self.cache()

        def one(c: EvalClip) -> np.ndarray:
            return self.net(_video_tensor(c)[None].to(self.config.device))[0].cpu().numpy()

        return np.stack([cache.get_or_compute(c.video_key, lambda c=c: one(c))
                         for c in tqdm(clips, desc="FVD features", unit="clip", leave=False)])

    def evaluate(self, generated: list[EvalClip], reference: list[EvalClip], rng: np.random.Generator) -> ProviderResult:
        gen, ref = self.features(generated), self.features(reference)
        target = FrechetReference.fit(ref)
        value = bootstrap(lambda idx: target.distance(gen[idx]), len(gen), rng,
                          self.config.frechet_bootstrap_resamples)
        return ProviderResult(metrics={"FVD": value})


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
        from tqdm.auto import tqdm

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

