"""Unit tests of the curation building blocks on small hand-made data (no synthetic world)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from egotwin_bench.curation.alignment import (
    AlignmentError,
    anchor_at,
    clip_residual,
    make_track,
    reanchor_motion,
    solve_head_device,
)
from egotwin_bench.curation.splits import SequenceKey, SplitConfig, assign_splits
from egotwin_bench.curation.trajectory import interpolate_poses, max_gap_ns
from egotwin_bench.curation.visibility import hand_visibility
from egotwin_bench.curation.windows import CLIP_NS, WindowPolicy, clip_windows
from egotwin_bench.geometry import make_transform
from egotwin_bench.nymeria.clock import ClockMap
from egotwin_bench.nymeria.narration import NarrationError, read_narration_csv, resolve_to_timecode
from egotwin_bench.nymeria.xsens import XsensError, load_xsens


def _write_xdata(path, t_us, q=None, frames=None, keys: dict | None = None):
    """xdata.npz with random positions; `keys` replaces the default ``framerate=240`` scalars."""
    frames = len(t_us) if frames is None else frames
    pos = np.random.default_rng(0).normal(size=(frames, 69))
    if q is None:
        q = np.tile([1.0, 0.0, 0.0, 0.0], (frames, 23))
    np.savez(path, segment_tXYZ=pos, segment_qWXYZ=q, timestamps_us=np.asarray(t_us, dtype=np.int64),
             segmentCount=23, **({"framerate": 240} if keys is None else keys))


def test_xsens_repairs_timestamps_and_quaternions(tmp_path):
    t = np.round(np.arange(480) * 1e6 / 240).astype(np.int64) + 10**12
    t[100:] += 3000  # one 3 ms glitch: patched, the clock then drifts 3 ms < 10 ms
    q = np.tile([1.0, 0.0, 0.0, 0.0], (480, 23))
    half = np.array([np.cos(0.25), np.sin(0.25), 0.0, 0.0])
    q[:, 4 * 6 : 4 * 7] = half  # head rotated 0.5 rad about X everywhere
    q[50, 4 * 6 : 4 * 7] = 0.0  # zero-norm head quaternion in frame 50
    q[0, 0:4] = 0.0  # zero-norm pelvis in frame 0 -> identity
    _write_xdata(tmp_path / "x.npz", t, q)
    m = load_xsens(tmp_path / "x.npz")
    assert len(m.repairs) == 2
    steps = np.diff(m.timestamps_ns)
    assert np.all(np.abs(steps - 1e9 / 240) <= 1000)  # µs resolution of the file
    np.testing.assert_allclose(m.rotations[50, 6], m.rotations[49, 6])
    np.testing.assert_allclose(m.rotations[50, 6], Rotation.from_rotvec([0.5, 0, 0]).as_matrix(), atol=1e-6)
    np.testing.assert_allclose(m.rotations[0, 0], np.eye(3))


def test_xsens_rejects_drift_beyond_10ms(tmp_path):
    t = np.round(np.arange(480) * 1e6 / 240).astype(np.int64)
    t[100:] += 20_000
    _write_xdata(tmp_path / "x.npz", t)
    with pytest.raises(XsensError, match="ends 20.0 ms"):
        load_xsens(tmp_path / "x.npz")


def test_xsens_rejects_bad_shapes(tmp_path):
    np.savez(tmp_path / "x.npz", segment_tXYZ=np.zeros((10, 60)), segment_qWXYZ=np.zeros((10, 92)),
             timestamps_us=np.arange(10))
    with pytest.raises(XsensError, match="expected segment_tXYZ"):
        load_xsens(tmp_path / "x.npz")


def test_clock_map_round_trip_and_drift():
    tc = np.arange(0, 10**10, 10**8, dtype=np.int64) + 5 * 10**12
    dev = tc - 4 * 10**12 + (np.arange(tc.size) * 10)  # 10 ns drift per pair
    clock = ClockMap.from_pairs(tc, dev)
    q = np.array([tc[3] + 12345, tc[40]])
    np.testing.assert_array_equal(clock.device_to_timecode(clock.timecode_to_device(q)), q)
    assert clock.timecode_to_device(np.array([tc[5]]))[0] == dev[5]
    assert clock.drift_ns == 10 * (tc.size - 1)


def _write_narration(path, starts, ends, texts):
    with open(path, "w") as fh:
        fh.write('start_time,end_time,"Describe my atomic actions"\n')
        for s, e, t in zip(starts, ends, texts):
            fh.write(f'{s},{e},"{t}"\n')


def test_narration_seconds_device_time_and_ns_timecode_agree(tmp_path):
    offset = -3 * 10**12  # device = timecode + offset
    clock = ClockMap.from_pairs(np.array([10**13, 10**13 + 10**11]), np.array([10**13 + offset, 10**13 + 10**11 + offset]))
    span = (10**13, 10**13 + 10**11)
    tc_starts = [10**13 + 10**9, 10**13 + 2 * 10**10]
    tc_ends = [s + 7 * 10**9 for s in tc_starts]
    _write_narration(tmp_path / "ns.csv", tc_starts, tc_ends, ["walk, then sit", "wave"])
    dev_s = [(s + offset) / 1e9 for s in tc_starts]
    dev_e = [(e + offset) / 1e9 for e in tc_ends]
    _write_narration(tmp_path / "s.csv", [f"{v:.6f}" for v in dev_s], [f"{v:.6f}" for v in dev_e], ["walk, then sit", "wave"])
    a = resolve_to_timecode(read_narration_csv(tmp_path / "ns.csv"), span, clock.device_to_timecode)
    b = resolve_to_timecode(read_narration_csv(tmp_path / "s.csv"), span, clock.device_to_timecode)
    assert read_narration_csv(tmp_path / "s.csv").unit == "s"
    np.testing.assert_allclose(a.start_ns, tc_starts)
    np.testing.assert_allclose(b.start_ns, tc_starts, atol=1000)
    assert b.columns["Describe my atomic actions"] == ["walk, then sit", "wave"]
    with pytest.raises(NarrationError, match="neither"):
        resolve_to_timecode(read_narration_csv(tmp_path / "ns.csv"), (0, 10**9), clock.device_to_timecode)


def test_narration_in_the_released_schema_with_a_bom(tmp_path):
    """The released files: request_id, gaia_id, start_time, end_time, annotator, creation_time,
    text; float seconds of the device clock; a UTF-8 BOM before the first header."""
    offset = 5 * 10**12
    clock = ClockMap.from_pairs(np.array([10**13, 2 * 10**13]), np.array([10**13 + offset, 2 * 10**13 + offset]))
    span = (10**13, 10**13 + 10**11)
    rows = [("1", "2", f"{(10**13 + 3 * 10**9 + offset) / 1e9:.6f}", f"{(10**13 + 9 * 10**9 + offset) / 1e9:.6f}",
             "ann_1", "1690000000", "C picks up the cup")]
    text = "\ufeffrequest_id,gaia_id,start_time,end_time,annotator,creation_time,Describe my atomic actions\n"
    text += "\n".join(",".join(r) for r in rows) + "\n"
    (tmp_path / "atomic_action.csv").write_text(text, encoding="utf-8")
    table = resolve_to_timecode(read_narration_csv(tmp_path / "atomic_action.csv"), span, clock.device_to_timecode)
    assert table.unit == "s" and table.clock == "device" and table.note is None
    np.testing.assert_allclose(table.start_ns, [10**13 + 3 * 10**9], atol=1000)
    assert table.columns["Describe my atomic actions"] == ["C picks up the cup"]
    # A BOM before start_time (the first column): the column is still found.
    (tmp_path / "b.csv").write_text("\ufeffstart_time,end_time,x\n1.5,2.5,a\n", encoding="utf-8")
    assert read_narration_csv(tmp_path / "b.csv").start_ns.tolist() == [1_500_000_000]


def test_narration_clock_tie_names_both_candidates(tmp_path):
    same = ClockMap.from_pairs(np.array([0, 10**11]), np.array([0, 10**11]))  # device == TIME_CODE
    _write_narration(tmp_path / "n.csv", [2 * 10**9], [9 * 10**9], ["wave"])
    table = resolve_to_timecode(read_narration_csv(tmp_path / "n.csv"), (0, 10**11), same.device_to_timecode)
    assert table.clock == "device" and "TIME_CODE and device time equally" in table.note


def test_xsens_single_sample_spike_is_repaired_like_the_official_tools(tmp_path):
    """+50 ms on one sample: both its steps are patched, the clock ends where it was recorded
    (the official rule judges the last sample), so the sequence is kept with exact stamps."""
    t = np.round(np.arange(480) * 1e6 / 240).astype(np.int64) + 10**12
    clean = t.copy()
    t[200] += 50_000
    _write_xdata(tmp_path / "x.npz", t)
    m = load_xsens(tmp_path / "x.npz")
    assert m.repairs == ["patched 2 irregular Xsens timestamp steps (max correction 50.00 ms)"]
    np.testing.assert_allclose(m.timestamps_ns, clean * 1000, atol=1000)


def _table(tmp_path, windows, texts):
    _write_narration(tmp_path / "n.csv", [s for s, _ in windows], [e for _, e in windows], texts)
    return read_narration_csv(tmp_path / "n.csv")


def test_clip_windows_policy(tmp_path):
    s, g = 10**12, 10**9
    table = _table(tmp_path, [
        (s, s + 12 * g),                    # 12 s -> two clips centred (1 s margins): [1, 6], [6, 11]
        (s + 10_500_000_000, s + 13_500_000_000),  # 3 s: its clip would start >= 8.2 s and so overlap [6, 11]
        (s + 20 * g, s + 21 * g),           # 1 s -> too short
        (s + 30 * g, s + 33 * g),           # 3 s -> centred clip [29, 34]
        (s + 33_800_000_000, s + 38_600_000_000),  # 4.8 s: centred at 33.7 s overlaps; moved to [34, 39] (96% covered)
        (s + 40 * g, s + 46 * g),           # empty text
        (s + 50 * g, s + 66 * g),           # 16 s: 3 clips do not fit before the data end at 62 s; 2 do: [52, 62]
        (s + 90 * g, s + 96 * g),           # outside the data span
    ], ["a", "b", "c", "d", "h", "", "i", "f"])
    wins, drops = clip_windows(table, (s, s + 62 * g), WindowPolicy(text_column="Describe my atomic actions"))
    assert [(w.t0_ns - s) / g for w in wins] == [1, 6, 29, 34, 52, 57]
    assert all(w.t1_ns - w.t0_ns == CLIP_NS for w in wins)
    assert [w.text for w in wins] == ["a", "a", "d", "h", "i", "i"]
    assert drops == Counter({"overlap": 1, "narration_too_short": 1, "empty_text": 1, "outside_data": 2})
    # Clamped into the data span: a 2.5 s narration at the very start gets the clip [0, 5].
    table = _table(tmp_path, [(s, s + 2_500_000_000)], ["x"])
    wins, _ = clip_windows(table, (s, s + 62 * g), WindowPolicy())
    assert [w.t0_ns for w in wins] == [s]


def _drifting_rig(seconds: float, drift_m: float, drift_deg: float, hz: float = 30.0):
    """Head poses A (Xsens world, drifting), device poses B (MPS world), the true X and the true
    MPS <- Xsens transform per sample (yaw + translation): a smooth random head motion."""
    rng = np.random.default_rng(7)
    n = int(seconds * hz) + 1
    t = np.arange(n) / hz
    knots = np.arange(0, seconds + 2, 1.0)
    head_rv = np.stack([np.interp(t, knots, rng.normal(0, 0.6, knots.size)) for _ in range(3)], axis=-1)
    head_p = np.stack([np.interp(t, knots, np.cumsum(rng.normal(0, 0.4, knots.size))) for _ in range(3)], axis=-1)
    head_p[:, 2] = 1.6 + 0.05 * np.sin(t)
    true_head = make_transform(Rotation.from_rotvec(head_rv).as_matrix(), head_p)
    X = make_transform(Rotation.from_euler("xyz", [90, 3, 88], degrees=True).as_matrix(), np.array([0.09, 0.01, 0.08]))
    Y = make_transform(Rotation.from_euler("z", -40, degrees=True).as_matrix(), np.array([3.0, -1.0, -1.5]))
    B = Y @ true_head @ X
    frac = t / seconds  # smooth drift: linear + a bend
    yaw = np.deg2rad(drift_deg) * (0.6 * frac + 0.4 * frac**2)
    shift = drift_m * np.stack([0.8 * frac + 0.2 * np.sin(3 * frac), 0.6 * frac**2, 0.02 * frac], axis=-1)
    D = make_transform(Rotation.from_euler("z", yaw[:, None]).as_matrix(), shift)
    return t, D @ true_head, B, X, Y @ np.linalg.inv(D)


def test_head_device_offset_from_relative_motions_ignores_drift():
    t, A, B, X, _ = _drifting_rig(600.0, drift_m=1.0, drift_deg=5.0)
    valid = np.ones(len(t), bool)
    r = solve_head_device(A, B, valid, lag=15)
    np.testing.assert_allclose(r.T_head_device[:3, :3], X[:3, :3], atol=2e-4)
    np.testing.assert_allclose(r.T_head_device[:3, 3], X[:3, 3], atol=2e-3)
    noisy = B.copy()
    noisy[:, :3, 3] += np.random.default_rng(1).normal(0, 0.002, (len(t), 3))
    r = solve_head_device(A, noisy, valid, lag=15)
    np.testing.assert_allclose(r.T_head_device[:3, 3], X[:3, 3], atol=3e-3)
    assert 0.002 < r.residual_m < 0.006  # ~ sqrt(2 * 3) * 2 mm


def test_reanchoring_follows_xsens_drift_that_a_constant_transform_cannot():
    """1 m / 5° of Xsens drift over 10 min: a single Xsens -> MPS transform (the old per-sequence
    solve) misplaces the head by decimetres; the windowed anchors stay within millimetres, and
    the per-clip residual says so."""
    t, A, B, X, M_true = _drifting_rig(600.0, drift_m=1.0, drift_deg=5.0)
    t_ns = np.round(t * 1e9).astype(np.int64)
    track = make_track(t_ns, A, B, np.ones(len(t), bool), X)
    constant = track.mean_anchor @ A @ X
    assert np.linalg.norm(constant[:, :3, 3] - B[:, :3, 3], axis=-1).max() > 0.3
    query = t_ns[30:-30:7]
    yaw, trans, count = anchor_at(track, query, 1.0)
    assert count.min() >= 30
    head = reanchor_motion(A[30:-30:7, None, :3, 3], A[30:-30:7, None, :3, :3], yaw, trans, np.eye(4))
    want = M_true[30:-30:7] @ A[30:-30:7]
    assert np.abs(head[0][:, 0] - want[:, :3, 3]).max() < 2e-3
    assert np.abs(head[1][:, 0] - want[:, :3, :3]).max() < 1e-3
    for t0 in (10, 300, 590):
        rm, rd, n = clip_residual(track, t0 * 10**9, (t0 + 5) * 10**9, 1.0)
        assert rm < 2e-3 and rd < 0.05 and n == 150


def test_head_device_offset_degenerate_without_rotation():
    A = make_transform(np.tile(np.eye(3), (50, 1, 1)), np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(AlignmentError, match="unobservable"):
        solve_head_device(A, A, np.ones(50, bool), lag=5, min_pairs=10)


def test_interpolate_poses_midpoint_and_gaps():
    T = np.stack([np.eye(4), make_transform(Rotation.from_rotvec([0, 0, 1.0]).as_matrix(), np.array([2.0, 0, 0]))])
    mid = interpolate_poses(np.array([0, 100]), T, np.array([50]))[0]
    np.testing.assert_allclose(mid[:3, :3], Rotation.from_rotvec([0, 0, 0.5]).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0, 0])
    with pytest.raises(ValueError, match="leave the trajectory"):
        interpolate_poses(np.array([0, 100]), T, np.array([101]))
    assert max_gap_ns(np.array([0, 10, 50, 60]), 5, 55) == 40
    assert max_gap_ns(np.array([0, 10]), 5, 11) == np.iinfo(np.int64).max


def test_hand_visibility_known_answer():
    K = np.array([[240.0, 0, 239.5], [0, 240.0, 239.5], [0, 0, 1]])
    cam = np.tile(np.eye(4), (3, 1, 1))
    hands = np.array([
        [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]],   # centre / behind
        [[1.01, 0.0, 1.0], [0.99, 0.0, 1.0]],  # just outside / just inside the right edge (x = 240 px)
        [[0.0, 0.0, 0.01], [0.0, 0.5, 1.0]],   # too close / inside
    ])
    vis = hand_visibility(hands, cam, K, 480)
    np.testing.assert_array_equal(vis, [[True, False], [False, True], [False, True]])


def test_splits_hold_out_subjects_and_locations_deterministically():
    rng = np.random.default_rng(0)
    keys = [SequenceKey(f"seq{i:02d}", f"subj{rng.integers(6)}", f"loc{rng.integers(4)}") for i in range(30)]
    keys.append(SequenceKey("fresh", "newbie", "newplace"))
    a = assign_splits(keys, SplitConfig(seed=3, test_fraction=0.2))
    b = assign_splits(list(reversed(keys)), SplitConfig(seed=3, test_fraction=0.2))
    assert a == b
    by = {s: [k for k in keys if a[k.sequence_id] == s] for s in ("train", "val", "test")}
    assert by["test"] and by["train"]
    assert not {k.subject_id for k in by["test"]} & {k.subject_id for k in by["train"]}
    assert not {k.location_id for k in by["test"]} & {k.location_id for k in by["train"]}
    small = assign_splits(keys[:3] + [keys[-1]], SplitConfig(seed=0))
    assert small["fresh"] == "test"


@pytest.mark.parametrize("rate", [{"frameRate": np.float64(240.0), "frameCount": np.int64(480)},
                                  {"frameRate": np.array([240.0]), "frameCount": np.array([480])},
                                  {"framerate": np.int64(240)}])
def test_xsens_reads_the_frame_rate_keys(tmp_path, rate):
    t = np.round(np.arange(480) * 1e6 / 240).astype(np.int64)
    _write_xdata(tmp_path / "x.npz", t, keys=rate)
    m = load_xsens(tmp_path / "x.npz")
    assert m.notes == [] and m.repairs == []


def test_xsens_frame_rate_fallback_and_frame_count_are_recorded(tmp_path, caplog):
    t = np.round(np.arange(480) * 1e6 / 200).astype(np.int64)  # a 200 Hz file: only its own rate fits
    _write_xdata(tmp_path / "x.npz", t, keys={"frameRate": np.array([200.0]), "frameCount": np.array([481])})
    m = load_xsens(tmp_path / "x.npz")
    assert m.repairs == [] and m.notes == ["frameCount 481 disagrees with the 480 frames stored; used the 480"]
    t120 = np.round(np.arange(480) * 1e6 / 120).astype(np.int64)
    _write_xdata(tmp_path / "y.npz", t120, keys={"frameRate": np.array([120.0])})
    assert load_xsens(tmp_path / "y.npz").repairs == []
    _write_xdata(tmp_path / "y.npz", t120, keys={})
    with pytest.raises(XsensError, match="clock ends"):  # without its rate, 240 Hz is assumed: 8 ms steps are wrong
        load_xsens(tmp_path / "y.npz")
    t240 = np.round(np.arange(480) * 1e6 / 240).astype(np.int64)
    _write_xdata(tmp_path / "y.npz", t240, keys={})
    with caplog.at_level("WARNING", logger="egotwin_bench.nymeria.xsens"):
        m = load_xsens(tmp_path / "y.npz")
    assert "assumed 240 Hz" in m.notes[0] and "assumed 240 Hz" in caplog.text
    _write_xdata(tmp_path / "z.npz", t, keys={"frameRate": np.array([0.0])})
    with pytest.raises(XsensError, match="not a positive frame rate"):
        load_xsens(tmp_path / "z.npz")
    _write_xdata(tmp_path / "w.npz", t, keys={"frameRate": np.array([240.0, 240.0])})
    with pytest.raises(XsensError, match="must be one number"):
        load_xsens(tmp_path / "w.npz")


def test_xsens_keeps_nan_frames_and_locates_them(tmp_path):
    t = np.round(np.arange(480) * 1e6 / 240).astype(np.int64)
    q = np.tile([1.0, 0.0, 0.0, 0.0], (480, 23))
    q[200, 4:8] = np.nan  # a NaN quaternion is not "zero-norm": it stays NaN
    q[300, 0:4] = 0.0  # repaired as before
    _write_xdata(tmp_path / "x.npz", t, q)
    with np.load(tmp_path / "x.npz") as f:
        arrays = dict(f)
    arrays["segment_tXYZ"][100, 5] = np.inf
    np.savez(tmp_path / "x.npz", **arrays)
    m = load_xsens(tmp_path / "x.npz")
    assert not np.isfinite(m.positions[100]).all() and not np.isfinite(m.rotations[200, 1]).all()
    np.testing.assert_allclose(m.rotations[300, 0], np.eye(3))
    assert any("2 of 480 Xsens frames hold NaN/inf" in n for n in m.notes), m.notes
    ts = m.timestamps_ns
    assert m.nonfinite_between(ts[0], ts[-1]) == 2
    assert m.nonfinite_between(ts[101] + 1, ts[199] - 1) == 0  # strictly between the bad frames
    assert m.nonfinite_between(ts[101], ts[199]) == 0
    assert m.nonfinite_between(ts[100] + 1, ts[150]) == 1  # frame 100 is read to interpolate just after it
    assert m.nonfinite_between(ts[150], ts[200] - 1) == 1


def test_interpolation_clamps_clock_rounding_but_not_gaps():
    from egotwin_bench.curation.trajectory import clamp_to_range

    T = np.stack([np.eye(4), make_transform(Rotation.from_rotvec([0, 0, 1.0]).as_matrix(), np.array([2.0, 0, 0]))])
    end = interpolate_poses(np.array([0, 100]), T, np.array([-3, 103]), tolerance_ns=4)
    np.testing.assert_allclose(end, T)
    with pytest.raises(ValueError, match="by more than 4 ns"):
        interpolate_poses(np.array([0, 100]), T, np.array([105]), tolerance_ns=4)
    np.testing.assert_array_equal(clamp_to_range(np.array([10, 20]), np.array([8, 15, 22]), 2), [10, 15, 20])
    assert max_gap_ns(np.array([0, 10, 50, 60]), 5, 61, tolerance_ns=1) == 40
    assert max_gap_ns(np.array([0, 10, 50, 60]), 5, 62, tolerance_ns=1) == np.iinfo(np.int64).max


def test_alignment_survives_a_clock_one_ns_past_the_trajectory():
    """The TIME_CODE -> device round trip lands the last alignment sample 1 ns after the last
    MPS pose: clamped (no exception), and the offsets are still recovered."""
    from types import SimpleNamespace

    from egotwin_bench.curation.config import CurationConfig
    from egotwin_bench.curation.sequence import align
    from egotwin_bench.nymeria.mps import Trajectory
    from egotwin_bench.nymeria.xsens import XsensMotion

    n = 3 * 240 + 1
    t = np.round(np.arange(n) * 1e9 / 240).astype(np.int64)
    rng = np.random.default_rng(0)
    head = Rotation.from_rotvec(np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0)).as_matrix()
    pos = np.zeros((n, 23, 3))
    pos[:, 6] = np.cumsum(rng.normal(0, 0.01, (n, 3)), axis=0)
    rot = np.tile(np.eye(3), (n, 23, 1, 1))
    rot[:, 6] = head
    X = make_transform(Rotation.from_euler("xyz", [80, 5, 90], degrees=True).as_matrix(), np.array([0.1, 0.0, 0.08]))
    traj = Trajectory(t, make_transform(head, pos[:, 6]) @ X, np.ones(n))
    rgb = SimpleNamespace(clock=SimpleNamespace(timecode_to_device=lambda tc: np.asarray(tc, dtype=np.int64) + 1))
    he = align(XsensMotion(pos, rot, t), traj, rgb, (int(t[0]), int(t[-1])), CurationConfig())
    np.testing.assert_allclose(he.T_head_device, X, atol=1e-4)
