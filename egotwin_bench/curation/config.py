"""Configuration of a curation run (every threshold in one dataclass, recorded in the card)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from egotwin_bench.curation.alignment import AlignmentConfig
from egotwin_bench.curation.splits import SplitConfig
from egotwin_bench.curation.undistort import PinholeView
from egotwin_bench.curation.windows import WindowPolicy


@dataclass(frozen=True)
class FilterConfig:
    max_trajectory_gap_s: float = 0.1
    """A clip whose MPS poses leave a gap longer than this is dropped ("trajectory_gap")."""
    min_trajectory_quality: float = 0.0
    """Drop a clip if any MPS pose in it has `quality_score` below this ("trajectory_quality");
    0 disables (MPS closed-loop poses carry no per-pose score in every release)."""
    max_frame_offset_s: float | None = None
    """Largest |capture time - clip time| of a video frame; None: half the median RGB frame
    interval + 2 ms. Larger means a dropped camera frame ("rgb_frame_missing")."""
    static_max_displacement_m: float = 0.05
    """A clip where no segment moves farther than this from its first-frame position is
    "static_clip" (a person standing still with a still head: uninformative)."""


@dataclass(frozen=True)
class CurationConfig:
    windows: WindowPolicy = field(default_factory=WindowPolicy)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    view: PinholeView = field(default_factory=PinholeView)
    filters: FilterConfig = field(default_factory=FilterConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    rgb_source: str = "vrs"
    """"vrs" uses data.vrs when present, else the exported recording; "exported" the opposite."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes a sequence's clips (not the split seed)."""
        d = self.to_dict()
        d.pop("splits")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def config_from_dict(d: dict) -> CurationConfig:
    """Build a `CurationConfig` from nested dicts (a TOML file's tables); unknown keys raise."""
    sections = {"windows": WindowPolicy, "alignment": AlignmentConfig, "view": PinholeView,
                "filters": FilterConfig, "splits": SplitConfig}
    kwargs = {}
    for key, value in d.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ValueError(f"[{key}] must be a table")
            try:
                kwargs[key] = sections[key](**value)
            except TypeError as exc:
                raise ValueError(f"[{key}]: {exc}") from exc
        elif key == "rgb_source":
            kwargs[key] = value
        else:
            raise ValueError(f"unknown curation config key {key!r}; known: {sorted(sections) + ['rgb_source']}")
    return CurationConfig(**kwargs)
