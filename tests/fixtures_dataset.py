"""Session fixtures of the curation: `built_dataset` and `ray_session`.

* `built_dataset`: the curated dataset of the synthetic Nymeria fixture (`synthetic_root`),
  built once per test session with the in-process engine (no Ray start-up; the Ray engine is
  checked to give the identical dataset in tests/test_curation_pipeline.py). Consumers get the
  folder path; read it with `egotwin_bench.data.ClipDataset` / `CuratedDataset`.
* `ray_session`: one small local Ray (2 CPUs, 256 MiB object store) for the whole session; yields
  the `ray` module. Start-up costs several seconds on two cores, so every Ray test shares it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def built_dataset(synthetic_root, tmp_path_factory) -> Path:
    from egotwin_bench.curation.config import CurationConfig
    from egotwin_bench.curation.pipeline import build_dataset

    out = tmp_path_factory.mktemp("built_dataset")
    card = build_dataset(synthetic_root, out, CurationConfig(), engine="local")
    assert card["clips"]["total"] > 0, f"the synthetic fixture produced no clips: {card['skip_reasons']} {card['drop_reasons']}"
    return out


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.pop("RAY_ADDRESS", None)  # never attach a test run to someone's cluster
    ray.init(num_cpus=2, object_store_memory=256 * 1024**2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
