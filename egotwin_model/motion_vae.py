"""1D causal-convolution motion VAE (paper §3.1 "Motion Tokenization", appendix A).

Shapes: motion features x (B, T, Din) (T = 81 frames at 16 FPS; Din 288 head-centric or 275
root-centric) <-> latents z (B, L, C_m) (L = 21, C_m = 64). Time is causal everywhere: every
convolution pads only at the start of the time axis (replicating frame 0), the 2x downsampling
is a causal conv (kernel 4, stride 2: 81 -> 41 -> 21) and the 2x upsampling keeps the first frame
and repeats the others (21 -> 41 -> 81), so latent k depends on frames <= 4k only, and in
particular latent 0 on frame 0 alone (the first pose), as in CogVideoX's causal video VAE.

Encoder: causal conv k3 Din -> c0; DownBlocks (ResNets, the first `num_resampling_blocks` end
with a causal k4/s2 conv); MidBlock (ResNets at the last width); GroupNorm + SiLU + causal conv
k3 -> 2 C_m (mean, log-variance). The decoder mirrors it: conv k3 C_m -> last width, MidBlock,
UpBlocks (ResNets, the first ones end with nearest 2x upsampling + causal conv k3), GroupNorm +
SiLU + causal conv k3 -> Din. GroupNorm statistics are per frame (`FrameGroupNorm`) so that
normalisation does not leak future frames into the past.

Loss (eq. 1): for each of the four feature groups (head3d, head6d, joint3d, joint6d) the
reconstruction MSE averaged over the group's features plus lambda_KL x the KL to N(0, I)
averaged over latent elements; the total is the mean over the groups (the KL term is the same
for every group, so it enters once with weight lambda_KL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from egotwin_bench.motion import REPRESENTATIONS
from egotwin_model.config import MotionVAEConfig
from egotwin_model.pretrained import PretrainedMixin

GroupIndex = slice | Sequence[int] | torch.Tensor


class CausalConv1d(nn.Conv1d):
    """Conv1d over (B, C, T) padded with `kernel - 1` copies of frame 0 at the start only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        self.causal_padding = kernel_size - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.causal_padding, 0), mode="replicate")
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over the channels of each frame separately, (B, C, T) -> (B, C, T).

    A GroupNorm over (channels, time) would mix statistics of future frames into the past and
    break causality; per-frame statistics keep latent k a function of frames <= 4k only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c))
        return y.reshape(b, t, c).transpose(1, 2)


class ResnetBlock1d(nn.Module):
    """GroupNorm -> SiLU -> causal conv k3, twice, plus a (1x1 conv) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels)
        self.conv1 = CausalConv1d(in_channels, out_channels, 3)
        self.norm2 = FrameGroupNorm(groups, out_channels)
        self.conv2 = CausalConv1d(out_channels, out_channels, 3)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class CausalDownsample1d(nn.Module):
    """Causal conv k4 s2: T -> 1 + (T - 1) // 2 (output t sees inputs 2t-3 .. 2t)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, 4, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CausalUpsample1d(nn.Module):
    """Nearest 2x upsampling that keeps frame 0 single (T -> 2T - 1), then causal conv k3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        return self.conv(x)


class _Stage(nn.Module):
    """`n` ResNets (first one changes width) and an optional resampler: a Down/Up/MidBlock."""

    def __init__(self, in_channels: int, out_channels: int, n: int, groups: int, resample: nn.Module | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock1d(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(n)]
        )
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.resample is None else self.resample(x)


def _stages(channels: Sequence[int], layers: int, cfg: MotionVAEConfig, resampler: type[nn.Module]) -> nn.ModuleList:
    """Down/UpBlocks of output widths `channels`; the first `num_resampling_blocks` resample."""
    blocks, prev = [], channels[0]
    for i, c in enumerate(channels):
        resample = resampler(c) if i < cfg.num_resampling_blocks else None
        blocks.append(_Stage(prev, c, layers, cfg.norm_groups, resample))
        prev = c
    return nn.ModuleList(blocks)


class MotionEncoder(nn.Module):
    """(B, Din, T) -> (B, 2 C_m, L) moments."""

    def __init__(self, cfg: MotionVAEConfig) -> None:
        super().__init__()
        ch = cfg.encoder_channels
        self.conv_in = CausalConv1d(cfg.in_dim, ch[0], 3)
        self.down_blocks = _stages(ch, cfg.layers_per_down_block, cfg, CausalDownsample1d)
        prev = ch[-1]
        self.mid_block = _Stage(prev, prev, cfg.mid_layers, cfg.norm_groups, None)
        self.norm_out = FrameGroupNorm(cfg.norm_groups, prev)
        self.conv_out = CausalConv1d(prev, 2 * cfg.latent_dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MotionDecoder(nn.Module):
    """(B, C_m, L) -> (B, Din, T)."""

    def __init__(self, cfg: MotionVAEConfig) -> None:
        super().__init__()
        ch = tuple(reversed(cfg.encoder_channels))
        self.conv_in = CausalConv1d(cfg.latent_dim, ch[0], 3)
        self.mid_block = _Stage(ch[0], ch[0], cfg.mid_layers, cfg.norm_groups, None)
        self.up_blocks = _stages(ch, cfg.layers_per_up_block, cfg, CausalUpsample1d)
        prev = ch[-1]
        self.norm_out = FrameGroupNorm(cfg.norm_groups, prev)
        self.conv_out = CausalConv1d(prev, cfg.in_dim, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)); tensors (B, L, C_m)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, (B, L, C_m)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)


class MotionVAE(PretrainedMixin, nn.Module):
    """Causal motion VAE: `encode` (B, T, Din) -> DiagonalGaussian (B, L, C_m); `decode` back.
    `save_pretrained(folder)` / `MotionVAE.from_pretrained(folder)`: config.json + safetensors."""

    config_class = MotionVAEConfig

    def __init__(self, config: MotionVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = MotionEncoder(config)
        self.decoder = MotionDecoder(config)

    def _check(self, x: torch.Tensor, channels: int, what: str) -> None:
        if x.dim() != 3 or x.shape[-1] != channels:
            raise ValueError(f"{what} must be (B, T, {channels}), got {tuple(x.shape)}")
        if (x.shape[1] - 1) % self.config.temporal_compression:
            raise ValueError(f"{what} length {x.shape[1]} must be 1 + {self.config.temporal_compression}k")

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, T, Din) -> posterior over z (B, 1 + (T-1)/4, C_m)."""
        self._check(x, self.config.in_dim, "motion")
        moments = self.encoder(x.transpose(1, 2)).transpose(1, 2)
        mean, logvar = moments.chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, C_m) -> features (B, 1 + 4 (L-1), Din)."""
        if z.dim() != 3 or z.shape[-1] != self.config.latent_dim:
            raise ValueError(f"latents must be (B, L, {self.config.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    def loss(self, x: torch.Tensor, groups: Mapping[str, GroupIndex], *, sample_posterior: bool = True,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 1. `groups`: name -> feature slice / index list (`representation.LOSS_GROUPS`).

        Returns (total, parts) with parts `recon/<group>` and `kl` (detached scalars).
        """
        recon, posterior = self(x, sample_posterior=sample_posterior, generator=generator)
        kl = posterior.kl().mean()
        return vae_loss(recon, x, kl, groups, self.config.kl_weight)


def vae_loss(recon: torch.Tensor, target: torch.Tensor, kl: torch.Tensor, groups: Mapping[str, GroupIndex],
             kl_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1/|groups|) sum_c (MSE_c + kl_weight * KL): eq. 1 as a pure function of tensors."""
    if not groups:
        raise ValueError("need at least one loss group")
    parts: dict[str, torch.Tensor] = {}
    terms = []
    for name, index in groups.items():
        if not isinstance(index, slice):
            index = torch.as_tensor(index, device=target.device, dtype=torch.long)
        mse = F.mse_loss(recon[..., index], target[..., index])
        parts[f"recon/{name}"] = mse.detach()
        terms.append(mse + kl_weight * kl)
    parts["kl"] = kl.detach()
    total = torch.stack(terms).mean()
    return total, parts


def group_indices(representation: str) -> dict[str, GroupIndex]:
    """The VAE loss groups of a representation (`head_centric`, `root_centric`)."""
    rep = REPRESENTATIONS[representation]
    return dict(rep.LOSS_GROUPS)
