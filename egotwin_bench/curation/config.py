"""Configuration of a curation run (every threshold in one dataclass, recorded in the card)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from egotwin_bench import __version__
from egotwin_bench.curation.alignment import AlignmentConfig
from egotwin_bench.curation.shards import SCHEMA_VERSION
from egotwin_bench.curation.splits import SplitConfig
from egotwin_bench.curation.undistort import PinholeView
from egotwin_bench.curation.video import VideoConfig
from egotwin_bench.curation.windows import WindowPolicy


@dataclass(frozen=True)
class FilterConfig:
    max_trajectory_gap_s: float = 0.1
    """A clip whose MPS poses leave a gap longer than this is dropped ("trajectory_gap")."""
    min_trajectory_quality: float = 0.0
    """Drop a clip if any MPS pose in it has `quality_score` below this ("trajectory_quality");
    0 (the default) disables the filter: MPS closed-loop poses carry no per-pose score in every
    release. The dataset card says whether it was on."""
    max_frame_offset_s: float | None = None
    """Largest |capture time - clip time| of a video frame; None: half the median RGB frame
    interval + 2 ms. Larger means a dropped camera frame ("rgb_frame_missing")."""
    trim_s: float = 1.0
    """Seconds shaved off each end of the span where Xsens, MPS and RGB overlap before the
    alignment and the clip placement (the public Nymeria tools' rule: ``ignore_ns = 1e9`` in
    `NymeriaDataProvider`, ``DEFAULT_TIMELINE_TRIM_NS`` in Nymeria+): the devices start and stop
    recording, and the Xsens filter and MPS settle, there."""
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
    video: VideoConfig = field(default_factory=VideoConfig)
    rgb_source: str = "vrs"
    """"vrs" uses data.vrs when present, else the exported recording; "exported" the opposite."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes a sequence's clips: the config without the split
        (splits are rewritten in place), the toolkit `__version__` and the shard `SCHEMA_VERSION`
        (new code or a new schema redoes every sequence). 16 hex digits."""
        d = self.to_dict()
        d.pop("splits")
        d["_code"] = {"toolkit_version": __version__, "schema": SCHEMA_VERSION}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def config_from_dict(d: dict) -> CurationConfig:
    """Build a `CurationConfig` from nested dicts (a TOML file's tables); unknown keys raise."""
    sections = {"windows": WindowPolicy, "alignment": AlignmentConfig, "view": PinholeView,
                "filters": FilterConfig, "splits": SplitConfig, "video": VideoConfig}
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


def load_config_file(path: str | Path) -> tuple[CurationConfig, dict]:
    """A TOML file as pipelines/curation.toml -> (its `CurationConfig`, its ``[run]`` table or {}).

    Raises ValueError (naming the file) for unknown keys or tables and for invalid TOML.
    """
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc
    run = tables.pop("run", {})
    try:
        return config_from_dict(tables), run
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
