"""Reading the reference clips of a curated dataset (docs/data_format.md) for scoring and training."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from egotwin_bench.curation.shards import ARRAY_SHAPES, column_array


@dataclass(frozen=True)
class ReferenceClip:
    """One curated clip with the fields the benchmark needs (arrays as in the clip schema)."""

    clip_id: str
    split: str
    text: str
    video_mp4: bytes
    positions: np.ndarray  # (81, 23, 3) metres, Z up
    rotations: np.ndarray  # (81, 23, 3, 3)
    camera_poses: np.ndarray  # (41, 4, 4) T_world_camera
    intrinsics: np.ndarray  # (3, 3)
    T_head_camera: np.ndarray  # (4, 4)
    hand_visible: np.ndarray  # (41, 2) bool (left, right)


def shard_paths(dataset: str | Path) -> list[Path]:
    """The dataset's shard files; a clear error when `dataset` is not a built dataset."""
    dataset = Path(dataset)
    paths = sorted((dataset / "shards").glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(
            f"{dataset} holds no shards/*.parquet: pass a folder written by `egotwin-bench build-dataset`"
        )
    return paths


def split_ids(dataset: str | Path, split: str) -> list[str]:
    """Clip ids of `split` from ``splits.json``, in file order."""
    path = Path(dataset) / "splits.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pass a folder written by `egotwin-bench build-dataset`")
    splits = json.loads(path.read_text())
    if split not in splits:
        raise KeyError(f"{path} has no split {split!r} (has {', '.join(splits)})")
    return list(splits[split])


def reference_name(dataset: str | Path, split: str = "test") -> str:
    """``<folder name>@<sha256[:12] of the split's clip ids>``: what a submission declares."""
    ids = split_ids(dataset, split)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    return f"{Path(dataset).resolve().name}@{digest}"


def load_clips(dataset: str | Path, split: str, with_video: bool = True, limit: int | None = None) -> list[ReferenceClip]:
    """All clips of `split`, ordered as in ``splits.json`` (at most `limit`)."""
    wanted = split_ids(dataset, split)[:limit]
    keep = set(wanted)
    columns = ["clip_id", "split", "text", *ARRAY_SHAPES] + (["video_mp4"] if with_video else [])
    found: dict[str, ReferenceClip] = {}
    for path in shard_paths(dataset):
        table = pq.read_table(path, columns=columns, filters=[("split", "=", split)])
        if table.num_rows == 0:
            continue
        arrays = {name: column_array(table, name) for name in ARRAY_SHAPES}
        ids = table.column("clip_id").to_pylist()
        texts = table.column("text").to_pylist()
        videos = table.column("video_mp4").to_pylist() if with_video else [b""] * len(ids)
        for i, clip_id in enumerate(ids):
            if clip_id not in keep:
                continue
            found[clip_id] = ReferenceClip(
                clip_id=clip_id,
                split=split,
                text=texts[i],
                video_mp4=videos[i],
                positions=arrays["motion_positions"][i],
                rotations=arrays["motion_rotations"][i],
                camera_poses=arrays["camera_poses"][i],
                intrinsics=arrays["intrinsics"][i],
                T_head_camera=arrays["T_head_camera"][i],
                hand_visible=arrays["hand_visible"][i].astype(bool),
            )
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ValueError(f"{len(missing)} clips of split {split!r} are in splits.json but in no shard: {missing[:3]}")
    return [found[c] for c in wanted]
