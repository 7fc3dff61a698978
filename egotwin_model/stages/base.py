"""What a stage builder returns (`Stage`) and the seeded initialisation builders use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

@dataclass
class Stage:
    """A built stage: the checkpointed module, its data and loss.

    The trainable parameters are those of `model` with ``requires_grad`` (looked up after
    FSDP wrapping, which replaces the parameter objects). `loss(batch, generator)` returns
    (scalar, parts); every random draw of a step comes from `generator` (or torch's global RNG,
    e.g. dropout), both of which are checkpointed. `post_backward(model)` may edit gradients
    before clipping; `no_decay` names parameters without weight decay. `finalize()` writes what
    later stages load (called on every rank once `max_steps` is reached).
    """

    name: str
    model: nn.Module
    num_items: int
    batch: Callable[[list[int]], dict[str, torch.Tensor]]
    loss: Callable[[dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    finalize: Callable[[], None] = lambda: None
    post_backward: Callable[[nn.Module], None] | None = None
    no_decay: tuple[str, ...] = ()
    blocks: nn.ModuleList | None = None
    """Transformer blocks to shard one by one under FSDP2 (None: the root only)."""
    extra_state: dict[str, Any] = field(default_factory=dict)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with its random initialisation drawn from `seed` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
