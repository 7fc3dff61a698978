"""ViT hand-presence classifier (paper appendix B): two logits (left, right hand in the frame).

A timm Vision Transformer with a 2-way head, trained with the focal loss of Lin et al. 2017
(per hand: alpha 0.80 left / 0.75 right, gamma 2) on frames of curated clips labelled by
`hand_visible` (visibility of the hand from the head camera). Initial backbone weights come from a
local file (`--init-weights`, e.g. timm's ``vit_base_patch16_224`` ``model.safetensors``); the
trained classifier is a folder with ``model.safetensors`` + ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from egotwin_bench import weights as weights_lib
from egotwin_bench.constants import HAND_ORDER
from egotwin_bench.curation.shards import atomic_write_text

ARCHS: dict[str, dict] = {
    "vit_base_patch16_224": {"model": "vit_base_patch16_224", "img_size": 224, "kwargs": {}},
    "vit_small_patch16_224": {"model": "vit_small_patch16_224", "img_size": 224, "kwargs": {}},
    # A small ViT trained from scratch in minutes on CPU, for tests and the demo (same code path,
    # random or local init). 128 px input: a glove (~40 px of a 480 px frame) covers ~10 px, most
    # of one 16 px patch; at 64 px it was ~5 px and the classifier missed most of them.
    "tiny": {
        "model": "vit_tiny_patch16_224",
        "img_size": 128,
        "kwargs": {"patch_size": 16, "embed_dim": 128, "depth": 4, "num_heads": 4, "global_pool": "max"},
    },
}
"""`--arch` choices: timm model name, input size and constructor overrides."""

VIT_INIT_SOURCE = (
    "the timm checkpoint of the same architecture, e.g. model.safetensors of "
    "https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k "
    "(download it on a machine with network and pass its path)"
)
FOCAL_ALPHA: tuple[float, float] = (0.80, 0.75)
"""Focal-loss alpha of the positive class per hand, ordered as `HAND_ORDER` (left, right)."""
FOCAL_GAMMA: float = 2.0
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class HandClassifierConfig:
    """Architecture and inference settings stored next to the trained weights.

    `threshold` is the probability at or above which a hand counts as present; training picks it
    on the validation split (`egotwin_bench.training.hand_classifier.choose_threshold`).
    """

    arch: str = "vit_base_patch16_224"
    threshold: float = 0.5
    alpha: tuple[float, float] = FOCAL_ALPHA
    gamma: float = FOCAL_GAMMA
    metrics: dict = field(default_factory=dict)


def create_model(arch: str) -> torch.nn.Module:
    """A randomly initialised timm ViT of `arch` with a 2-logit head."""
    import timm  # lazy: timm (~1-3 s to import, with torchvision) only when a network is built

    if arch not in ARCHS:
        raise ValueError(f"unknown hand-classifier arch {arch!r}; choose one of {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    return timm.create_model(
        spec["model"], pretrained=False, num_classes=len(HAND_ORDER), img_size=spec["img_size"], **spec["kwargs"]
    )


def load_backbone(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Load pretrained backbone weights from a local file into `model` (the 2-logit head stays new).

    Returns the keys left at their initialisation (the head). Raises `MissingWeightsError` when
    the file is absent and `WeightsMismatchError` (a ValueError) when it does not fit the architecture.
    """
    spec = weights_lib.WeightSpec(name="ViT backbone for the hand classifier", filename=Path(path).name,
                                  source=VIT_INIT_SOURCE)
    path = weights_lib.resolve(spec, path)
    state = weights_lib.read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    backbone_missing = [k for k in missing if not k.startswith("head.")]
    if backbone_missing:
        raise weights_lib.WeightsMismatchError(
            f"{path} does not fit this ViT: {len(backbone_missing)} backbone tensors missing or of another "
            f"shape (first: {backbone_missing[:3]}). Use the checkpoint of the --arch you train."
        )
    model.load_state_dict(usable, strict=False)
    return missing


def resize_frames(frames: np.ndarray | torch.Tensor, img_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> uint8 (N, 3, img_size, img_size), antialiased bilinear.

    The classifier's stored input: training streams these (1/14 of a 480 px frame at 128 px).
    """
    x = torch.as_tensor(np.asarray(frames))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, s, s) -> float (N, 3, s, s), ImageNet mean/std."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def preprocess(frames: np.ndarray | torch.Tensor, img_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float (N, 3, img_size, img_size): `resize_frames` then `normalize`."""
    return normalize(resize_frames(frames, img_size))


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: tuple[float, float] = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA
) -> torch.Tensor:
    """Sum over hands of the mean binary focal loss; logits and targets (B, 2) (left, right)."""
    from torchvision.ops import sigmoid_focal_loss  # lazy: torchvision (~2 s to import) only for training

    return sum(
        sigmoid_focal_loss(logits[:, h], targets[:, h].float(), alpha=alpha[h], gamma=gamma, reduction="mean")
        for h in range(len(HAND_ORDER))
    )


class HandClassifier:
    """A trained hand-presence classifier: `predict(frames) -> (N, 2) bool`."""

    def __init__(self, model: torch.nn.Module, config: HandClassifierConfig) -> None:
        self.model = model.eval()
        self.config = config
        self.img_size = ARCHS[config.arch]["img_size"]

    @classmethod
    def load(cls, folder: str | Path) -> "HandClassifier":
        """Load a folder written by `save` (``config.json`` + ``model.safetensors``; the weights
        must fit the arch named in the config exactly)."""
        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise weights_lib.MissingWeightsError(
                    f"hand classifier: {folder / name} not found. Train one with "
                    "`egotwin-bench train-hand-classifier --dataset DIR --init-weights PATH --out DIR` "
                    "and pass that --out folder as --hand-classifier."
                )
        raw = json.loads((folder / CONFIG_FILE).read_text())
        raw["alpha"] = tuple(raw["alpha"])
        config = HandClassifierConfig(**raw)
        model = weights_lib.load_checked(create_model(config.arch), folder / WEIGHTS_FILE,
                                         f"the {config.arch!r} hand classifier of {folder / CONFIG_FILE}")
        return cls(model, config)

    def save(self, folder: str | Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into `folder` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{WEIGHTS_FILE}.tmp"
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        tmp.replace(folder / WEIGHTS_FILE)
        atomic_write_text(json.dumps(asdict(self.config), indent=2), folder / CONFIG_FILE)

    @torch.no_grad()
    def probabilities(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB -> (N, 2) float probabilities (left, right)."""
        out = []
        for i in range(0, len(frames), batch_size):
            out.append(torch.sigmoid(self.model(preprocess(frames[i : i + batch_size], self.img_size))))
        return torch.cat(out).numpy()

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB -> (N, 2) bool hand presence (left, right)."""
        return self.probabilities(frames) >= self.config.threshold
