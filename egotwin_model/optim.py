"""The optimizers a stage can train with (`TrainConfig.optimizer`), built in one place for the
training loop and `benchmarks/train_step.py`.

* ``adamw`` — ``torch.optim.AdamW`` (fused kernel on CUDA; foreach on CPU). Two fp32 moments per
  parameter: at paper size 47 GB of the 71 GB joint checkpoint and of the GPU's memory.
* ``adamw8bit`` — torchao's ``AdamW8bit``: the same update with both moments stored block-wise
  quantised to 8 bits (blocks of 256 values with an fp32 scale each; tensors under 4096 values stay
  fp32), fp32 master weights. Moments drop ~4x (paper size: 47 -> 12 GB), which frees GPU memory
  for less recompute and makes a joint checkpoint ~36 GB. Its update runs through ``torch.compile``
  (one compile per distinct parameter shape: ~26 at paper size, cached by Inductor across runs).
  Checkpoints go through DCP like the others (resume is exact: tests/test_optim.py). Its update
  is one compiled call per parameter tensor (1475 at paper size): ~0.4 ms of host time each
  (benchmarks/optimizer_overhead.py), which the GPU waits for.
* ``adamw_bf16`` — `AdamWBF16`: torch AdamW's update with both moments stored in bf16 (paper size:
  47 -> 23.5 GB), fp32 master weights and fp32 arithmetic, run as multi-tensor (``torch._foreach``)
  kernels over the plain local shards, a few dozen launches a step.

Both take the lr as a plain number set every step with `set_lr`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.distributed.tensor import DTensor

OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw8bit", "adamw_bf16")
"""`TrainConfig.optimizer` values."""

TORCHAO_INSTALL = "`pip install -e '.[train8bit]'` (torchao==0.18.0, pinned in pyproject.toml)"
"""How to get torchao, which the 8-bit optimizer and `parallel.apply_float8` need."""
TORCHAO_HINT = f"the adamw8bit optimizer needs torchao: {TORCHAO_INSTALL}"


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
    if name == "adamw_bf16":
        return AdamWBF16(groups, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {name!r}; optimizers: {', '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; in place where the optimizer keeps it as a tensor (torchao)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _local(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor under a DTensor (this rank's shard), or `t` itself."""
    return t.to_local() if isinstance(t, DTensor) else t


class AdamWBF16(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected; the arithmetic of ``torch.optim.AdamW``) with
    ``exp_avg`` / ``exp_avg_sq`` stored in bf16, like the parameters' DTensor layout (DCP saves and
    reshards them as it does AdamW's). Each step upcasts the moments to fp32, updates them and the
    fp32 parameters with ``torch._foreach`` kernels over chunks of at most `chunk_numel` values
    (bounding the fp32 temporaries: 4 x 4 bytes a value), and stores the moments back rounded to
    bf16; the step's own update uses the unrounded fp32 moments, so the first step equals AdamW's.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, chunk_numel: int = 2**27) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.chunk_numel = chunk_numel
        # torch.optim.Optimizer.load_state_dict casts floating state to the parameter's dtype
        # (fp32): put the moments back in bf16 (exact: they were bf16 values)
        self.register_load_state_dict_post_hook(AdamWBF16._moments_to_bf16)

    @staticmethod
    def _moments_to_bf16(optimizer: "AdamWBF16") -> None:
        for state in optimizer.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(torch.bfloat16)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        if closure is not None:
            raise ValueError("AdamWBF16.step takes no closure")
        for group in self.param_groups:
            by_step: dict[float, list[torch.nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dtype != torch.float32:
                    raise TypeError(f"AdamWBF16 keeps fp32 master weights; got a {p.dtype} parameter")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.bfloat16)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.bfloat16)
                state["step"] += 1
                by_step.setdefault(float(state["step"]), []).append(p)
            for step, params in by_step.items():
                chunk: list[torch.nn.Parameter] = []
                size = 0
                for p in params:
                    chunk.append(p)
                    size += p.numel()
                    if size >= self.chunk_numel:
                        self._update(chunk, group, step)
                        chunk, size = [], 0
                if chunk:
                    self._update(chunk, group, step)

    def _update(self, params: list[torch.nn.Parameter], group: dict[str, Any], step: float) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        ps = [_local(p) for p in params]
        gs = [_local(p.grad).float() for p in params]
        m16 = [_local(self.state[p]["exp_avg"]) for p in params]
        v16 = [_local(self.state[p]["exp_avg_sq"]) for p in params]
        m = [t.float() for t in m16]
        v = [t.float() for t in v16]
        if wd:
            torch._foreach_mul_(ps, 1 - lr * wd)
        torch._foreach_lerp_(m, gs, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, gs, gs, value=1 - beta2)
        torch._foreach_copy_(m16, m)
        torch._foreach_copy_(v16, v)
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(ps, m, denom, value=-lr / bias1)
