"""Where the files of one Nymeria sequence live, and which of them are present.

A sequence folder (DESIGN §3, docs/data_format.md)::

    <sequence>/metadata.json
    <sequence>/body/xdata.npz
    <sequence>/narration/{motion_narration,atomic_action,activity_summarization}.csv
    <sequence>/recording_head/data/data.vrs                      (real Nymeria)
    <sequence>/recording_head/data/{rgb.mp4,rgb_timestamps.csv,rgb_calibration.json}  (exported)
    <sequence>/recording_head/mps/slam/closed_loop_trajectory.csv
    <sequence>/recording_head/mps/slam/online_calibration.jsonl  (optional)

Files may be missing; `SequenceLayout.missing()` names what a curation run needs but lacks,
and the download group that brings it. Releases differ in their groups (the public tools'
``nymeria/definitions.py`` and Nymeria+ ``nymeriaplus/layout.py``):

| file | Nymeria group | Nymeria+ group |
|---|---|---|
| ``body/xdata.npz`` | ``body_motion`` | ``body_raw`` |
| ``recording_head/data/data.vrs`` | ``recording_head_data_data_vrs`` (not in ``recording_head``) | none: an ungrouped file, never auto-included; select it |
| ``recording_head/mps/slam/*`` | ``recording_head`` | ``slam`` |
| ``narration/<name>.csv`` | ``narration_<name>_csv`` | ``narration`` |

A sequence is taken for Nymeria+ when it holds one of `NYMERIA_PLUS_MARKERS` (files only that
release has); the paths themselves are the same in both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

METADATA = "metadata.json"
XDATA = "body/xdata.npz"
NARRATION_DIR = "narration"
HEAD_DATA_DIR = "recording_head/data"
VRS = f"{HEAD_DATA_DIR}/data.vrs"
EXPORTED_RGB = f"{HEAD_DATA_DIR}/rgb.mp4"
EXPORTED_TIMESTAMPS = f"{HEAD_DATA_DIR}/rgb_timestamps.csv"
EXPORTED_CALIBRATION = f"{HEAD_DATA_DIR}/rgb_calibration.json"
CLOSED_LOOP = "recording_head/mps/slam/closed_loop_trajectory.csv"
ONLINE_CALIBRATION = "recording_head/mps/slam/online_calibration.jsonl"

NYMERIA_PLUS_MARKERS: tuple[str, ...] = (
    "body/xdata_smpl_neutral.npz", "body/xdata_mhr.glb", "body/xdata.healthcheck", "objects",
    "recording_head/data/audio.vrs",
)
"""Paths (files or folders) of Nymeria+ releases that Nymeria releases do not have."""
_GROUPS: dict[str, tuple[str, str]] = {
    XDATA: ("`body_motion`", "`body_raw`"),
    VRS: ("`recording_head_data_data_vrs` (data.vrs is not in `recording_head`)",
          "none: `recording_head/data/data.vrs` is an ungrouped file, never auto-included; select it"),
    CLOSED_LOOP: ("`recording_head`", "`slam`"),
}


def download_hint(relative: str, nymeria_plus: bool) -> str:
    """Where to get a missing file: its download group in the release the sequence looks like."""
    if relative.startswith(f"{NARRATION_DIR}/"):
        stem = Path(relative).stem
        groups = (f"`narration_{stem}_csv`", "`narration`")
    elif relative in _GROUPS:
        groups = _GROUPS[relative]
    else:
        return relative
    release = "Nymeria+" if nymeria_plus else "Nymeria"
    return f"{relative} (download group, {release}: {groups[1] if nymeria_plus else groups[0]})"


# Keys tried in order in metadata.json (real Nymeria and synthetic spell them differently).
_SEQUENCE_KEYS = ("sequence_id", "sequence_uid", "sequence_name", "name")
_SUBJECT_KEYS = ("subject_id", "subject", "participant_id", "fake_name", "person_id")
_LOCATION_KEYS = ("location_id", "location", "scene_id", "scene", "environment", "house")
_NYMERIA_NAME = re.compile(r"^(?P<date>\d{8})_s\d+_(?P<subject>.+?)_act\d+_(?P<uid>\w+)$")


class LayoutError(ValueError):
    """The folder is not a readable Nymeria sequence."""


@dataclass(frozen=True)
class SequenceLayout:
    """Paths of one sequence folder, plus its ids from `metadata.json`."""

    root: Path
    sequence_id: str
    subject_id: str
    location_id: str
    metadata: dict

    def path(self, relative: str) -> Path:
        return self.root / relative

    def narration_csv(self, name: str) -> Path:
        """`name` is a file stem such as "atomic_action" or "motion_narration"."""
        return self.root / NARRATION_DIR / f"{name}.csv"

    @property
    def has_vrs(self) -> bool:
        return self.path(VRS).is_file()

    @property
    def has_exported_rgb(self) -> bool:
        return all(self.path(p).is_file() for p in (EXPORTED_RGB, EXPORTED_TIMESTAMPS, EXPORTED_CALIBRATION))

    @property
    def is_nymeria_plus(self) -> bool:
        """Holds a file of `NYMERIA_PLUS_MARKERS` (a Nymeria+ release)."""
        return any(self.path(p).exists() for p in NYMERIA_PLUS_MARKERS)

    def missing(self) -> list[str]:
        """What the curation needs and this sequence lacks, each with the download group that
        brings it (see the module docstring)."""
        plus = self.is_nymeria_plus
        out = [download_hint(p, plus) for p in (XDATA, CLOSED_LOOP) if not self.path(p).is_file()]
        if not (self.has_vrs or self.has_exported_rgb):
            out.append(f"{download_hint(VRS, plus)} or an exported recording "
                       f"({EXPORTED_RGB}+{Path(EXPORTED_TIMESTAMPS).name}+{Path(EXPORTED_CALIBRATION).name})")
        return out


def _first(metadata: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def open_sequence(root: str | Path) -> SequenceLayout:
    """Read `metadata.json` of a sequence folder and resolve its ids.

    Ids come from metadata keys (see `_SUBJECT_KEYS` / `_LOCATION_KEYS`); for real Nymeria
    folder names ``<date>_s<k>_<subject>_act<k>_<uid>`` the subject falls back to the name's
    subject part. A sequence without a location id gets ``"unknown"`` (the split then cannot
    keep it out of train/test leakage checks and puts it in train).
    """
    root = Path(root)
    meta_path = root / METADATA
    if not meta_path.is_file():
        raise LayoutError(f"{root}: no {METADATA}; is this a Nymeria sequence folder?")
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise LayoutError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise LayoutError(f"{meta_path}: expected a JSON object")
    match = _NYMERIA_NAME.match(root.name)
    sequence_id = _first(metadata, _SEQUENCE_KEYS) or root.name
    subject_id = _first(metadata, _SUBJECT_KEYS) or (match["subject"] if match else "unknown")
    location_id = _first(metadata, _LOCATION_KEYS) or "unknown"
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", sequence_id):
        sequence_id = re.sub(r"[^A-Za-z0-9_.\-]+", "-", sequence_id)
    return SequenceLayout(root, sequence_id, subject_id, location_id, metadata)


def find_sequences(nymeria_root: str | Path) -> list[Path]:
    """Sequence folders (those holding `metadata.json`) directly under `nymeria_root`, sorted."""
    nymeria_root = Path(nymeria_root)
    if not nymeria_root.is_dir():
        raise LayoutError(f"--nymeria-root {nymeria_root} is not a directory")
    if (nymeria_root / METADATA).is_file():
        return [nymeria_root]
    return sorted(p for p in nymeria_root.iterdir() if p.is_dir() and (p / METADATA).is_file())
