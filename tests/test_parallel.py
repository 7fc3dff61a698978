"""FSDP2 + DCP through the same code path as GPU training, on one CPU process (gloo)."""

import torch
from torch import nn

from egotwin_model.parallel import (
    apply_activation_checkpointing,
    apply_fsdp,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU()) for _ in range(3)])
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def _build(info):
    torch.manual_seed(0)
    model = _Toy()
    apply_activation_checkpointing(model.blocks)
    apply_fsdp(model, [model.blocks], info, param_dtype=torch.float32)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _steps(model, opt, n, start):
    losses = []
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 2, generator=g)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_fsdp2_checkpoint_resume_is_exact(tmp_path):
    info = init_distributed("cpu")
    assert info.world_size == 1 and info.device.type == "cpu"
    model, opt = _build(info)
    full = _steps(model, opt, 6, 0)
    assert full[-1] < full[0]

    model, opt = _build(info)
    first = _steps(model, opt, 3, 0)
    save_checkpoint(tmp_path / "ckpt", model, opt, {"step": 3})
    model, opt = _build(info)  # a fresh process would start here
    state = load_checkpoint(tmp_path / "ckpt", model, opt)
    assert state == {"step": 3}
    rest = _steps(model, opt, 3, state["step"])
    assert first + rest == full
