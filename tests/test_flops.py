"""The analytic FLOP formula used for MFU agrees with PyTorch's FLOP counter on a real forward."""

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from egotwin_model.config import EgoTwinConfig
from egotwin_model.dit import EgoTwinDiT
from egotwin_model.flops import dit_flops


@pytest.mark.parametrize("with_video", [True, False])
def test_analytic_flops_match_counted(with_video):
    cfg = EgoTwinConfig.load("tiny").dit
    cfg = dataclasses.replace(cfg, num_attention_heads=4, attention_head_dim=32, motion_dim=64, text_embed_dim=96)
    model = EgoTwinDiT(cfg).eval()
    b, lt, frames, hw, lm = 2, 16, 3, 8, 5
    text = torch.randn(b, lt, cfg.text_embed_dim)
    video = torch.randn(b, frames, cfg.in_channels, hw, hw) if with_video else None
    motion = torch.randn(b, lm, cfg.motion_channels)
    t = torch.randint(0, 1000, (b,))
    # The math SDPA backend decomposes attention into matmuls the counter sees (the fused CPU
    # kernel is not registered with FlopCounterMode).
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(text, video, motion, t if with_video else None, t)
    counted = counter.get_total_flops() / b
    video_tokens = frames * (hw // cfg.patch_size) ** 2 if with_video else 0
    analytic = dit_flops(cfg, lt, video_tokens, lm).forward
    assert analytic == pytest.approx(counted, rel=0.03), (analytic, counted)
