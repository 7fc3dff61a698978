"""Motion representations (head-centric 288-d, root-centric 275-d) and resampling.

Representations are versioned pure functions of raw world segment positions/rotations; the
curated dataset stores the raw data, never only a representation.

Public names: `head_centric`, `root_centric` (modules), `resample(positions, rotations,
timestamps_ns, fps, t0_ns, n_frames)` and `frame_times_ns` (functions, from `resampling`).
"""

from egotwin_bench.motion import head_centric, root_centric
from egotwin_bench.motion.resampling import frame_times_ns, resample

REPRESENTATIONS = {"head_centric": head_centric, "root_centric": root_centric}
"""Name -> module with `DIM`, `encode`, `decode`, `SLICES`, `LOSS_GROUPS`, `VERSION`."""

__all__ = ["head_centric", "root_centric", "resample", "frame_times_ns", "REPRESENTATIONS"]
