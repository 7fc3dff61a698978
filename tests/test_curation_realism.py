"""Curation of a `make-synthetic --realism` copy of the tiny sequence, against its exact ground
truth: Xsens drift (0.3 m / 3° over 22 s, far faster than real captures), 1 s unusable ends, MPS
noise, Xsens timestamp spikes and narrations in the released schema (device seconds, BOM).

The realistic copy shares the tiny sequence's content (its RGB is copied, not rendered), so the
clean curation's clips are the reference of what must survive."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.pipeline import build_dataset
from egotwin_bench.synthetic import realism as RL
from egotwin_bench.synthetic.truth import clip_errors
from egotwin_bench.synthetic.writer import SyntheticConfig, make_synthetic
from tests.fixtures_dataset import TINY_CONFIG

DRIFT = dict(drift_m=0.3, drift_deg=3.0)


@pytest.fixture(scope="module")
def realistic(tiny_sequence, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("realistic") / "nymeria"
    make_synthetic(root, SyntheticConfig(**TINY_CONFIG, realism=True, **DRIFT), rgb_from=tiny_sequence.path.parent)
    return root


def _curate(root: Path, out: Path, config: CurationConfig = CurationConfig()) -> tuple[dict, dict]:
    card = build_dataset(root, out, config, engine="local")
    (report,) = [json.loads(p.read_text()) for p in (out / "report").glob("*.json")]
    return card, report


def test_realistic_files_hold_every_nuisance(realistic, tiny_sequence):
    (seq,) = [p for p in realistic.iterdir() if (p / "metadata.json").is_file()]
    gt = json.loads((seq / "synthetic_gt" / "sequence.json").read_text())
    assert gt["realism"]["drift_m"] == 0.3 and gt["realism"]["spikes"] == 2
    raw = (seq / "narration" / "atomic_action.csv").read_bytes()
    assert raw.startswith("\ufeff".encode()) and raw.decode("utf-8-sig").startswith(",".join(RL.NARRATION_HEADER))
    with np.load(seq / "body" / "xdata.npz") as x, np.load(tiny_sequence.path / "body" / "xdata.npz") as c:
        steps = np.diff(x["timestamps_us"])
        assert (steps > 40_000).sum() == 2  # two single-sample spikes of +50 ms
        drift = np.abs(x["segment_tXYZ"] - c["segment_tXYZ"]).max()
        assert 0.3 < drift < 1.0  # the whole body moved by the drift (+ heading about the origin)
    with np.load(seq / RL.GT_FILE) as e:
        assert np.linalg.norm(e["xsens_error_trans"][:, :2], axis=-1).max() > 0.3 - 1e-9


def test_realistic_clips_survive_and_match_the_ground_truth(realistic, tiny_sequence, tmp_path):
    card, report = _curate(realistic, tmp_path / "out")
    assert report["status"] == "ok", report["reason"]
    starts = sorted(e.t0_timecode_ns for e in clip_errors(tmp_path / "out", realistic))
    assert len(starts) == len(tiny_sequence.clip_t0_ns)
    np.testing.assert_allclose(starts, tiny_sequence.clip_t0_ns, atol=1_000_000)  # the clean preset's clips
    for e in clip_errors(tmp_path / "out", realistic):
        assert e.camera_m < 0.02 and e.motion_m < 0.02, e
        assert e.camera_deg < 1.0 and e.motion_deg < 1.0, e
        assert e.residual_m < 0.01 and e.residual_deg < 0.5, e
    assert any("patched 4 irregular Xsens timestamp steps" in r for r in report["repairs"])
    assert report["alignment"]["xsens_drift_m"] > 0.1


def test_one_transform_per_sequence_cannot_follow_the_drift(realistic, tmp_path):
    """The anchor averaged over the whole sequence (what one Xsens -> MPS transform per sequence
    amounts to): every clip is dropped by its residual — the drift handling is what keeps them."""
    config = CurationConfig()
    config = replace(config, alignment=replace(config.alignment, anchor_window_s=1e4))
    card, report = _curate(realistic, tmp_path / "out", config)
    assert report["status"] == "skipped" and "'alignment_residual': 3" in report["reason"], report["reason"]


def test_the_unusable_first_second_is_trimmed(realistic, tmp_path):
    """A narration over the first 5 s: with the 1 s trim no clip can use it; without the trim its
    clip reads the settling Xsens and MPS and is wrong by centimetres (or dropped)."""
    (seq,) = [p for p in realistic.iterdir() if (p / "metadata.json").is_file()]
    gt = json.loads((seq / "synthetic_gt" / "sequence.json").read_text())
    start = gt["timecode_start_ns"]
    (seq / "narration" / "edge.csv").write_text(
        f"start_time,end_time,Describe my atomic actions\n{start},{start + 5 * 10**9},stands and looks around\n")
    config = replace(CurationConfig(), windows=replace(CurationConfig().windows, narration_file="edge"))
    card, report = _curate(realistic, tmp_path / "trimmed", config)
    assert report["status"] == "skipped" and "'outside_data': 1" in report["reason"], report["reason"]
    untrimmed = replace(config, filters=replace(config.filters, trim_s=0.0))
    card, report = _curate(realistic, tmp_path / "untrimmed", untrimmed)
    if report["status"] == "ok":
        (e,) = clip_errors(tmp_path / "untrimmed", realistic)
        assert max(e.camera_m, e.motion_m) > 0.02, e
    else:
        assert "'alignment_residual': 1" in report["reason"], report["reason"]
