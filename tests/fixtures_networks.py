"""Fixtures for the network tests (motion VAE, DiT, interaction mask, guidance)."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Run tiny CPU networks on one intra-op thread (much faster than 2 for tiny tensors,
    and immune to a loaded machine); the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
