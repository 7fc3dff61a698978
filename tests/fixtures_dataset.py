"""Session fixture `built_dataset`: the curated dataset of the synthetic Nymeria fixture.

Built once per test session with the in-process engine (no Ray start-up; the Ray engine is
checked to give the identical dataset in tests/test_curation_pipeline.py). Consumers get the
folder path; read it with `egotwin_bench.data.ClipDataset` / `CuratedDataset`.
"""

from __future__ import annotations

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
