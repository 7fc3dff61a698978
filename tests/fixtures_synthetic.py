"""Session fixtures of synthetic Nymeria-format data (`egotwin_bench.synthetic`), shared by all parts.

* `synthetic_root`: 4 clean sequences x 15 s, 352 px RGB at 10 FPS, MPS at 1 kHz. Subjects and
  locations (s0,l0), (s1,l1), (s2,l0), (s3,l2): the last sequence's subject and location appear in
  no other sequence (an unseen test split).
* `synthetic_faulty_root`: 7 sequences x 8 s at 160 px; sequences 0..5 carry one fault each, in
  the order of `SYNTHETIC_FAULTS`, the last is clean. `synthetic_faulty_root / "faults.json"`
  maps sequence id -> its faults.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SYNTHETIC_CONFIG = dict(sequences=4, seconds=15.0, seed=0, resolution=352, fps=10, trajectory_hz=1000)
SYNTHETIC_FAULTS: tuple[str, ...] = (
    "jittered_timestamps", "irregular_timestamps", "zero_quaternions",
    "truncated_mp4", "missing_narration", "missing_trajectory",
)
SYNTHETIC_FAULTY_CONFIG = dict(sequences=7, seconds=8.0, seed=1, resolution=160, fps=10, trajectory_hz=200,
                               faults=SYNTHETIC_FAULTS)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Folder of 4 clean synthetic sequences (see module docstring)."""
    from egotwin_bench.synthetic.writer import SyntheticConfig, make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, SyntheticConfig(**SYNTHETIC_CONFIG), workers=1)
    return out


@pytest.fixture(scope="session")
def synthetic_faulty_root(tmp_path_factory) -> Path:
    """Folder of 7 short sequences, one fault each on the first six (see module docstring)."""
    from egotwin_bench.synthetic.writer import SyntheticConfig, make_synthetic, sequence_specs

    out = tmp_path_factory.mktemp("synthetic_faulty")
    config = SyntheticConfig(**SYNTHETIC_FAULTY_CONFIG)
    make_synthetic(out, config, workers=1)
    (out / "faults.json").write_text(json.dumps({s.sequence_id: list(s.faults) for s in sequence_specs(config)}, indent=1))
    return out
