"""Session fixtures of the curation: `built_dataset`, `tiny_sequence` and `ray_session`.

* `built_dataset`: the curated dataset of the synthetic Nymeria fixture (`synthetic_root`),
  built once per test session with the in-process engine (no Ray start-up; the Ray engine is
  checked to give the identical dataset in tests/test_curation_pipeline.py). Consumers get the
  folder path; read it with `egotwin_bench.data.ClipDataset` / `CuratedDataset`.
* `tiny_sequence`: one clean 22 s synthetic sequence at 64 px (RGB 10 FPS, MPS 100 Hz; ~1 s to
  write, ~1 s to curate) and the clip starts of its clean curation (3 clips), for tests that
  damage a copy of it (tests/test_curation_filters.py). `copy_sequence` makes such a copy.
* `ray_session`: one small local Ray (2 CPUs, 256 MiB object store) for the whole session; yields
  the `ray` module. Start-up costs several seconds on two cores, so every Ray test shares it.
* `fake_clip_row(rng, k)`: a schema-valid clip row of random arrays (no curation).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

TINY_CONFIG = dict(sequences=1, seconds=22.0, seed=1, resolution=64, fps=10, trajectory_hz=100)


@dataclass(frozen=True)
class TinySequence:
    path: Path
    """The clean sequence folder (do not modify: copy it with `copy_sequence`)."""
    clip_t0_ns: tuple[int, ...]
    """TIME_CODE starts of the clips a clean curation makes, in order."""
    timecode_to_device_ns: int
    """device time = TIME_CODE + this (the synthetic clocks have no drift)."""


def copy_sequence(tiny: TinySequence, root: Path, sequence_id: str | None = None, **metadata: str) -> Path:
    """Copy the tiny sequence into `root` (created); with `sequence_id`, as another sequence
    (folder name and metadata id), with `metadata` (e.g. subject_id, location_id) overriding
    metadata.json keys. Returns the copy's folder."""
    dest = root / (sequence_id or tiny.path.name)
    shutil.copytree(tiny.path, dest)
    if sequence_id is not None:
        metadata["sequence_id"] = sequence_id
    if metadata:
        meta_path = dest / "metadata.json"
        meta_path.write_text(json.dumps(json.loads(meta_path.read_text()) | metadata))
    return dest


@pytest.fixture(scope="session")
def tiny_sequence(tmp_path_factory) -> TinySequence:
    import pyarrow.parquet as pq

    from egotwin_bench.curation.config import CurationConfig
    from egotwin_bench.curation.pipeline import build_dataset
    from egotwin_bench.synthetic.writer import SyntheticConfig, make_synthetic

    root = tmp_path_factory.mktemp("tiny_sequence")
    make_synthetic(root / "nymeria", SyntheticConfig(**TINY_CONFIG), workers=1)
    (path,) = [p for p in (root / "nymeria").iterdir() if (p / "metadata.json").is_file()]
    card = build_dataset(root / "nymeria", root / "out", CurationConfig(), engine="local")
    assert card["clips"]["total"] == 3, f"the tiny fixture changed: {card['per_sequence']}"
    t0 = pq.read_table(root / "out" / "manifest.parquet", columns=["t0_timecode_ns"]).column(0).to_pylist()
    offset = json.loads((path / "metadata.json").read_text())["synthetic"]["timecode_to_device_offset_ns"]
    return TinySequence(path, tuple(sorted(t0)), int(offset))


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


def fake_clip_row(rng: np.random.Generator, k: int, sequence_id: str = "seq") -> dict:
    """Clip row `k` of sequence `sequence_id` with random arrays of `shards.ARRAY_SHAPES`."""
    from egotwin_bench.constants import VIDEO_FRAMES
    from egotwin_bench.curation.shards import ARRAY_SHAPES

    return {
        "clip_id": f"{sequence_id}__{k}", "sequence_id": sequence_id, "subject_id": "s", "location_id": "l",
        "split": "train", "t0_timecode_ns": 10**15 + k, "text": f"text {k}", "text_source": "atomic_action:x",
        "video_mp4": bytes([k % 256]) * (10 + k),
        **{name: rng.normal(size=shape) for name, shape in ARRAY_SHAPES.items() if name != "hand_visible"},
        "hand_visible": rng.integers(0, 2, (VIDEO_FRAMES, 2)).astype(np.uint8),
        "alignment_residual_m": 0.01, "alignment_residual_deg": 0.5, "quality_flags": ["a"] * (k % 3),
    }
