"""Reading the reference clips of a curated dataset (docs/data_format.md) for scoring and training."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
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


def iter_clips(
    dataset: str | Path,
    split: str,
    with_video: bool = True,
    clip_ids: list[str] | None = None,
    shard_order: np.ndarray | None = None,
    batch_rows: int = 16,
) -> Iterator[ReferenceClip]:
    """Stream the clips of `split` (or of `clip_ids` within it) shard by shard, `batch_rows` rows
    at a time, so memory holds one batch of videos however large the split.

    Clips come in shard order (`shard_order`: a permutation of the shard list, e.g. per epoch),
    then row order within a shard; `load_clips` reorders them as in ``splits.json``.
    """
    keep = set(split_ids(dataset, split) if clip_ids is None else clip_ids)
    columns = ["clip_id", "split", "text", *ARRAY_SHAPES] + (["video_mp4"] if with_video else [])
    paths = shard_paths(dataset)
    for k in (range(len(paths)) if shard_order is None else shard_order):
        parquet = pq.ParquetFile(paths[int(k)])
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            table = pa.Table.from_batches([batch])
            rows = [i for i, (cid, sp) in enumerate(zip(table.column("clip_id").to_pylist(),
                                                         table.column("split").to_pylist()))
                    if sp == split and cid in keep]
            if not rows:
                continue
            table = table.take(rows)
            arrays = {name: column_array(table, name) for name in ARRAY_SHAPES}
            ids = table.column("clip_id").to_pylist()
            texts = table.column("text").to_pylist()
            videos = table.column("video_mp4").to_pylist() if with_video else [b""] * len(ids)
            for i, clip_id in enumerate(ids):
                yield ReferenceClip(
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


def load_clips(dataset: str | Path, split: str, with_video: bool = True, limit: int | None = None) -> list[ReferenceClip]:
    """All clips of `split`, ordered as in ``splits.json`` (at most `limit`)."""
    wanted = split_ids(dataset, split)[:limit]
    found = {c.clip_id: c for c in iter_clips(dataset, split, with_video, clip_ids=wanted)}
    missing = [c for c in wanted if c not in found]
    if missing:
        raise ValueError(f"{len(missing)} clips of split {split!r} are in splits.json but in no shard: {missing[:3]}")
    return [found[c] for c in wanted]
