"""The optimizers a stage can train with (`TrainConfig.optimizer`), built in one place for the
training loop and `benchmarks/train_step.py`.

* ``adamw`` — ``torch.optim.AdamW`` (fused kernel on CUDA; foreach on CPU). Two fp32 moments per
  parameter: at paper size 47 GB of the 71 GB joint checkpoint and of the GPU's memory.
* ``adamw8bit`` — torchao's ``AdamW8bit``: the same update with both moments stored block-wise
  quantised to 8 bits (blocks of 256 values with an fp32 scale each; tensors under 4096 values stay
  fp32), fp32 master weights. Moments drop ~4x (paper size: 47 -> 12 GB), which frees GPU memory
  for less recompute and makes a joint checkpoint ~36 GB. Its update runs through ``torch.compile``
  (one compile per distinct parameter shape: ~26 at paper size, cached by Inductor across runs).
  Checkpoints go through DCP like the others (resume is exact: tests/test_optim.py).

Both take the lr as a plain number set every step with `set_lr`.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw8bit")
"""`TrainConfig.optimizer` values."""

TORCHAO_HINT = ("the adamw8bit optimizer needs torchao: `pip install -e '.[train8bit]'` "
                "(torchao==0.18.0, pinned in pyproject.toml)")


def make_optimizer(param_groups: Iterable[dict[str, Any]], name: str, lr: float,
                   betas: tuple[float, float] = (0.9, 0.999), device: torch.device | str = "cpu") -> torch.optim.Optimizer:
    """Optimizer `name` (`OPTIMIZERS`) over `param_groups` (each: params, weight_decay)."""
    groups = list(param_groups)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=torch.device(device).type == "cuda")
    if name == "adamw8bit":
        try:
            # lazy: optional dependency (only this optimizer needs it); its import registers compile hooks
            from torchao.optim import AdamW8bit
        except ImportError as err:
            raise ImportError(TORCHAO_HINT) from err
        return AdamW8bit(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {name!r}; optimizers: {', '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; in place where the optimizer keeps it as a tensor (torchao)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
