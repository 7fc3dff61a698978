"""Every per-clip filter (the alignment residual included), on damaged copies of one tiny
synthetic sequence (`tiny_sequence`: 22 s, 64 px, 3 clips when clean). Each test damages the
data around the middle clip only, so the outcome is "2 clips kept, 1 dropped for <reason>",
counted in the report and in the dataset card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from egotwin_bench.curation.config import CurationConfig, FilterConfig
from egotwin_bench.curation.pipeline import build_dataset
from egotwin_bench.nymeria import layout as L
from egotwin_bench.nymeria.exported_recording import ExportedRecording, write_exported_recording
from tests.fixtures_dataset import TinySequence, copy_sequence

CLIP_S = 5.0
MPS_TIME_COLUMN, MPS_TRANSLATION, MPS_POSE = 1, slice(3, 6), slice(3, 10)
"""closed_loop_trajectory.csv: tracking_timestamp_us, then tx..tz, then qx..qw of the device."""


def _curate(seq: Path, config: CurationConfig = CurationConfig()) -> tuple[dict, dict, str]:
    """Curate the one sequence of `seq.parent` -> (its report, the card, dataset_card.md)."""
    out = seq.parent.parent / "out"
    card = build_dataset(seq.parent, out, config, engine="local")
    report = json.loads((out / "report" / f"{seq.name}.json").read_text())
    return report, card, (out / "dataset_card.md").read_text()


def _assert_one_clip_dropped(seq: Path, reason: str) -> dict:
    report, card, md = _curate(seq)
    assert report["status"] == "ok", report["reason"]
    assert report["clips"] == 2 and report["drops"] == {reason: 1}, (report["clips"], report["drops"])
    assert card["drop_reasons"] == {reason: 1} and card["clips"]["total"] == 2
    assert f"- `{reason}`: 1" in md
    return report


def _middle_clip(tiny: TinySequence) -> tuple[int, int]:
    """TIME_CODE [start, end] ns of the middle clip."""
    t0 = tiny.clip_t0_ns[1]
    return t0, t0 + int(CLIP_S * 1e9)


def _edit_xsens(seq: Path, edit: Callable[[dict[str, np.ndarray], np.ndarray], None]) -> None:
    """`edit(arrays, timestamps_ns)` changes the arrays of body/xdata.npz in place."""
    path = seq / L.XDATA
    with np.load(path) as f:
        arrays = dict(f)
    edit(arrays, arrays["timestamps_us"].astype(np.int64) * 1000)
    np.savez(path, **arrays)


def _edit_mps(seq: Path, tiny: TinySequence, edit: Callable[[list[list[str]], np.ndarray], list[list[str]]]) -> None:
    """`edit(rows, timecode_ns)` returns the new rows of the MPS closed-loop CSV."""
    path = seq / L.CLOSED_LOOP
    header, *lines = path.read_text().splitlines()
    rows = [line.split(",") for line in lines]
    timecode = np.array([int(r[MPS_TIME_COLUMN]) for r in rows], dtype=np.int64) * 1000 - tiny.timecode_to_device_ns
    path.write_text("\n".join([header] + [",".join(r) for r in edit(rows, timecode)]) + "\n")


def test_alignment_residual_drops_only_the_clip_whose_glasses_disagree(tiny_sequence, tmp_path):
    """10 cm of noise on the MPS device positions inside the middle clip: the body no longer
    explains the glasses there, so that clip (and only that one) is dropped per clip."""
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    t0, t1 = _middle_clip(tiny_sequence)
    rng = np.random.default_rng(0)

    def jitter(rows, t_ns):
        for j in np.flatnonzero((t_ns > t0 + 500_000_000) & (t_ns < t1 - 500_000_000)):
            r = rows[j]
            r[MPS_TRANSLATION] = [f"{float(v) + d:.9f}" for v, d in zip(r[MPS_TRANSLATION], rng.normal(0, 0.1, 3))]
        return rows

    _edit_mps(seq, tiny_sequence, jitter)
    report = _assert_one_clip_dropped(seq, "alignment_residual")
    limit = CurationConfig().alignment.max_residual_m
    assert max(report["alignment"]["clip_residual_m"]) < limit / 3  # the neighbours stay clean


def test_static_clip(tiny_sequence, tmp_path):
    """Body and glasses both stand still (consistently) over the middle clip."""
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    t0, t1 = _middle_clip(tiny_sequence)
    with np.load(seq / L.XDATA) as f:
        x0_ns = int(f["timestamps_us"][0]) * 1000
    grid = 50_000_000  # Xsens (240 Hz) and MPS (100 Hz) samples coincide every 50 ms
    start = x0_ns + (t0 - 100_000_000 - x0_ns) // grid * grid
    end = t1 + 100_000_000

    def freeze_body(arrays, t_ns):
        frozen = (t_ns >= start) & (t_ns <= end)
        first = np.flatnonzero(frozen)[0]
        assert t_ns[first] == start
        for key in ("segment_tXYZ", "segment_qWXYZ"):
            arrays[key][frozen] = arrays[key][first]

    def freeze_glasses(rows, t_ns):
        frozen = np.flatnonzero((t_ns >= start) & (t_ns <= end))
        assert t_ns[frozen[0]] == start
        for j in frozen:
            rows[j][MPS_POSE] = rows[frozen[0]][MPS_POSE]
        return rows

    _edit_xsens(seq, freeze_body)
    _edit_mps(seq, tiny_sequence, freeze_glasses)
    report = _assert_one_clip_dropped(seq, "static_clip")
    assert report["alignment"]["residual_m"] < 0.01


def test_trajectory_gap(tiny_sequence, tmp_path):
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    t0, _ = _middle_clip(tiny_sequence)
    _edit_mps(seq, tiny_sequence, lambda rows, t: [r for r, ti in zip(rows, t) if not t0 + 2e9 < ti < t0 + 2.5e9])
    _assert_one_clip_dropped(seq, "trajectory_gap")


def test_rgb_frame_missing(tiny_sequence, tmp_path):
    """Half a second of camera frames is missing (rewritten recording without them)."""
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    t0, _ = _middle_clip(tiny_sequence)
    data_dir = seq / L.HEAD_DATA_DIR
    rec = ExportedRecording.open(data_dir)
    keep = [i for i, t in enumerate(rec.timecode_ns) if not t0 + 2e9 < t < t0 + 2.5e9]
    assert len(keep) < len(rec)
    frames = dict(rec.iter_frames(keep))
    calibration, device, timecode = rec.calibration, rec.device_time_ns[keep], rec.timecode_ns[keep]
    write_exported_recording(data_dir, (frames[i] for i in keep), device, timecode, calibration, fps=10)
    _assert_one_clip_dropped(seq, "rgb_frame_missing")


def test_nan_frames_drop_only_the_clips_touching_them(tiny_sequence, tmp_path):
    """NaN Xsens frames between two 16 FPS motion samples of the middle clip (the resampled
    motion alone would look finite): that clip is dropped as "nan", the sequence is kept."""
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    t0, _ = _middle_clip(tiny_sequence)
    poisoned = []

    def poison(arrays, t_ns):  # samples at t0 + 2 s and t0 + 2.0625 s read frames within 4.2 ms of them
        bad = (t_ns >= t0 + 2.015e9) & (t_ns <= t0 + 2.040e9)
        poisoned.append(int(bad.sum()))
        arrays["segment_tXYZ"][bad, 0] = np.nan

    _edit_xsens(seq, poison)
    report = _assert_one_clip_dropped(seq, "nan")
    assert poisoned[0] >= 5 and any(f"{poisoned[0]} of" in n and "NaN" in n for n in report["notes"]), report["notes"]


def _truncate_to_decodable(data_dir: Path, frames: int) -> int:
    """Cut rgb.mp4 to the shortest prefix that still decodes `frames` frames; returns the count."""
    mp4 = data_dir / "rgb.mp4"
    data = mp4.read_bytes()
    lo, hi = 0, len(data)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        mp4.write_bytes(data[:mid])
        if ExportedRecording.open(data_dir).count_decodable_frames() >= frames:
            hi = mid
        else:
            lo = mid
    mp4.write_bytes(data[:hi])
    return ExportedRecording.open(data_dir).count_decodable_frames()


def test_truncated_video_keeps_the_clips_that_decoded(tiny_sequence, tmp_path):
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    data_dir = seq / L.HEAD_DATA_DIR
    rec = ExportedRecording.open(data_dir)
    last_clip = tiny_sequence.clip_t0_ns[2]
    cut = int(np.searchsorted(rec.timecode_ns, last_clip + 2.5e9))  # decoding stops inside the last clip
    decodable = _truncate_to_decodable(data_dir, cut)
    assert np.searchsorted(rec.timecode_ns, last_clip) < decodable < len(rec)
    report, card, md = _curate(seq)
    assert report["status"] == "ok" and report["clips"] == 2, report["reason"]
    assert report["drops"] == {"rgb_frame_missing": 1} and card["drop_reasons"] == {"rgb_frame_missing": 1}
    assert any("decoding stopped early" in n and "truncated" in n for n in report["notes"]), report["notes"]
    assert "decoding stopped early" in md
    kept = pq.read_table(tmp_path / "out" / "manifest.parquet", columns=["t0_timecode_ns"]).column(0).to_pylist()
    assert sorted(kept) == list(tiny_sequence.clip_t0_ns[:2])


def test_card_states_that_the_trajectory_quality_filter_is_off(tiny_sequence, tmp_path):
    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    _, card, md = _curate(seq)
    assert card["trajectory_quality_filter"] is False and "trajectory quality: **off**" in md
    _, card, md = _curate(seq, CurationConfig(filters=FilterConfig(min_trajectory_quality=0.5)))
    assert card["trajectory_quality_filter"] is True and "quality_score` below 0.5" in md


def test_decoded_frames_wait_for_the_encoder_in_bounded_numbers(tiny_sequence, tmp_path, monkeypatch):
    """A decoder faster than the encoder must pause (memory would otherwise grow with the
    sequence: every clip's undistorted frames queued); the shard is unchanged by the pauses."""
    import time

    from egotwin_bench.constants import VIDEO_FRAMES
    from egotwin_bench.curation import sequence as S

    seq = copy_sequence(tiny_sequence, tmp_path / "nymeria")
    alive, peak = [0], [0]
    real_undistort, real_encode = S.undistort, S.encode_mp4

    def counted_undistort(raw, table):
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        return real_undistort(raw, table)

    def slow_encode(video, **kwargs):
        time.sleep(0.5)
        alive[0] -= len(video)
        return real_encode(video, **kwargs)

    monkeypatch.setattr(S, "undistort", counted_undistort)
    monkeypatch.setattr(S, "encode_mp4", slow_encode)
    monkeypatch.setattr(S, "MAX_PENDING_ENCODES", 0)
    report, _, _ = _curate(seq)
    assert report["status"] == "ok" and report["clips"] == 3 and report["decoded_frames"] == 3 * VIDEO_FRAMES
    # The decoder waits while a finished clip is encoded; unbounded, all 3 clips would be alive at once.
    assert peak[0] <= VIDEO_FRAMES + 1, peak[0]
    assert report["peak_rss_gib"] > 0.1
