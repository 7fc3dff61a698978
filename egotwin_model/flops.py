"""Analytic model FLOPs of the EgoTwin DiT (for MFU), counted from the config.

Per sample forward, with D = heads x head_dim, D_m the motion width, N_tv = L_t + L_v,
L = number of layers, L_mo = motion layers, F = 4 (feed-forward expansion):

* text projection ``2 L_t D_t D``; video patch embedding ``2 L_v (C_v p^2) D``;
  output projection ``2 L_v D (p^2 C_v)``; motion in/out ``4 L_m C_m D_m``;
* each block, text + video linears ``2 N_tv (4 D^2 + 2 F D^2) = 24 N_tv D^2``;
* each block, attention ``4 N^2 D`` (QK^T and PV), N = N_tv + L_m in motion blocks;
* each motion block, ``2 L_m (3 D_m D + D D_m + 2 F D_m^2)``;
* AdaLN modulation linears per block ``2 (2 T_e 6 D)`` (+ motion's), per sample.

Training FLOPs = forward + backward, backward = 2 x forward for every matmul whose weights
train, 1 x forward (input gradients only) for frozen weights (stage t2m freezes text/video),
and 2 x forward for attention. Activation-checkpointing recompute is not counted (MFU
convention: model FLOPs, not hardware FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass

from egotwin_model.config import DiTConfig


@dataclass(frozen=True)
class StepFlops:
    forward: float
    train: float


def dit_flops(cfg: DiTConfig, text_len: int, video_tokens: int, motion_tokens: int,
              frozen_text_video: bool = False) -> StepFlops:
    """FLOPs per sample of one forward and one training step (see module docstring)."""
    d, dm, f = cfg.inner_dim, cfg.motion_dim, 4
    n_tv = text_len + video_tokens
    p2c = cfg.patch_size**2 * cfg.in_channels
    has_video = video_tokens > 0
    layers = cfg.num_layers if has_video else cfg.motion_layers
    motion_layers = min(cfg.motion_layers, layers) if motion_tokens else 0

    tv_linear = 2 * text_len * cfg.text_embed_dim * d + (2 * video_tokens * p2c * d * 2 if has_video else 0)
    tv_linear += layers * (24 * n_tv * d * d + 2 * 2 * cfg.time_embed_dim * 6 * d)
    attention = sum(4 * (n_tv + (motion_tokens if i < motion_layers else 0)) ** 2 * d for i in range(layers))
    motion_linear = 4 * motion_tokens * cfg.motion_channels * dm if motion_tokens else 0
    motion_linear += motion_layers * 2 * motion_tokens * (3 * dm * d + d * dm + 2 * f * dm * dm)
    forward = tv_linear + attention + motion_linear
    train = forward + (1 if frozen_text_video else 2) * tv_linear + 2 * attention + 2 * motion_linear
    return StepFlops(forward=float(forward), train=float(train))
