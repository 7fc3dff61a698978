"""Shared pytest configuration. Fixture modules are plugins named in `pytest_plugins`."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Keep CI's two cores for the test process itself (Ray/torch would otherwise oversubscribe).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

pytest_plugins: list[str] = [
    "tests.fixtures_dataset",
    "tests.fixtures_networks",
    "tests.fixtures_evaluate",
    "tests.fixtures_metrics",
    "tests.fixtures_model",
    "tests.fixtures_synthetic",
]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
