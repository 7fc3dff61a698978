"""Motion representations (head-centric 288-d, root-centric 275-d) and resampling.

Representations are versioned pure functions of raw world segment positions/rotations; the
curated dataset stores the raw data, never only a representation.
"""

from egotwin_bench.motion import head_centric, resample, root_centric

REPRESENTATIONS = {"head_centric": head_centric, "root_centric": root_centric}
"""Name -> module with `DIM`, `encode`, `decode`, `LOSS_GROUPS`, `VERSION`."""

__all__ = ["head_centric", "root_centric", "resample", "REPRESENTATIONS"]
