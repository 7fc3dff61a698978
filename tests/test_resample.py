import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from egotwin_bench.constants import MOTION_FPS, MOTION_FRAMES
from egotwin_bench.motion import frame_times_ns, resample


def _analytic(t_s):
    """Positions linear in time and rotations at constant angular velocity: interpolation is exact."""
    j = np.arange(23)[None, :]
    pos = np.stack([0.5 * t_s[:, None] + 0 * j, -0.2 * t_s[:, None] + j, 0.01 * j + 0 * t_s[:, None]], axis=-1)
    rot = Rotation.from_rotvec(np.outer(t_s, [0.0, 0.0, 1.5])).as_matrix()  # 1.5 rad/s about Z
    return pos, np.repeat(rot[:, None], 23, axis=1)


def test_resample_analytic_motion_with_irregular_timestamps(rng):
    ts = np.cumsum(rng.integers(3_500_000, 4_800_000, size=2000)).astype(np.int64)  # ~240 Hz, jittery
    pos, rot = _analytic(ts / 1e9)
    t0 = int(ts[10]) + 123
    out_pos, out_rot = resample(pos, rot, ts, MOTION_FPS, t0, MOTION_FRAMES)
    t_out = frame_times_ns(t0, MOTION_FPS, MOTION_FRAMES) / 1e9
    ref_pos, ref_rot = _analytic(t_out)
    assert out_pos.shape == (81, 23, 3) and out_rot.shape == (81, 23, 3, 3)
    np.testing.assert_allclose(out_pos, ref_pos, atol=1e-9)
    np.testing.assert_allclose(out_rot, ref_rot, atol=1e-9)
    assert t_out[-1] - t_out[0] == pytest.approx(5.0)


def test_resample_window_outside_data_errors():
    ts = np.arange(100, dtype=np.int64) * 4_166_667
    pos, rot = _analytic(ts / 1e9)
    with pytest.raises(ValueError, match="leaves the data"):
        resample(pos, rot, ts, MOTION_FPS, int(ts[50]), MOTION_FRAMES)
    with pytest.raises(ValueError, match="strictly increasing"):
        resample(pos, rot, ts[::-1].copy(), MOTION_FPS, int(ts[0]), 2)


def test_resample_is_importable_from_egotwin_bench_motion():
    """The public name is the function `egotwin_bench.motion.resample` (its module is `resampling`)."""
    import egotwin_bench.motion as motion
    from egotwin_bench.motion import resample as public
    from egotwin_bench.motion.resampling import resample as impl

    assert callable(motion.resample) and motion.resample is public is impl
    ts = np.arange(241, dtype=np.int64) * 4_166_667  # 1 s at 240 Hz
    pos, rot = _analytic(ts / 1e9)
    out_pos, out_rot = motion.resample(pos, rot, ts, 16.0, int(ts[0]), 17)
    assert out_pos.shape == (17, 23, 3) and out_rot.shape == (17, 23, 3, 3)
    np.testing.assert_allclose(out_pos, _analytic(np.arange(17) / 16.0 + ts[0] / 1e9)[0], atol=1e-9)
