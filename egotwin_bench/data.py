"""Reading a curated dataset (`build-dataset` output, docs/data_format.md).

* `ClipDataset(root, split, representation)` — a torch Dataset of dict(video uint8
  (41, 480, 480, 3), motion float32 (81, D), text str, metadata dict).
* `CuratedDataset(root)` — cheap access without decoding video: the manifest, split ids and
  the raw arrays (world joints, camera poses, ...) of any clip.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import Dataset

from egotwin_bench.curation.shards import ARRAY_SHAPES, column_array
from egotwin_bench.curation.video import decode_mp4
from egotwin_bench.motion import REPRESENTATIONS

SPLITS = ("train", "val", "test")
RAW_ARRAYS = tuple(ARRAY_SHAPES)
"""Array columns returned by `CuratedDataset.arrays`: motion_positions, motion_rotations,
camera_poses, intrinsics, T_head_camera, hand_visible."""


class CuratedDataset:
    """A built dataset folder: manifest, splits and per-clip raw arrays (no video decoding)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.parquet"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest} not found: {self.root} is not a built dataset "
                "(run `egotwin-bench build-dataset --nymeria-root DIR --out DIR`)"
            )
        self.manifest: pa.Table = pq.read_table(manifest)
        self.splits: dict[str, list[str]] = json.loads((self.root / "splits.json").read_text())
        ids = self.manifest.column("clip_id").to_pylist()
        self._index = {cid: k for k, cid in enumerate(ids)}

    def clip_ids(self, split: str | None = None) -> list[str]:
        """Clip ids of a split (all clips if None), in manifest order."""
        if split is None:
            return list(self._index)
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        wanted = set(self.splits[split])
        return [c for c in self._index if c in wanted]

    def row(self, clip_id: str) -> dict:
        """Manifest row (ids, text, split, intrinsics, ... and `shard`, `row`) of a clip."""
        return {k: v[0] for k, v in self.manifest.slice(self._index[clip_id], 1).to_pydict().items()}

    @lru_cache(maxsize=64)
    def _row_groups(self, shard: str) -> tuple[pq.FileMetaData, np.ndarray]:
        """Footer of a shard and the first row of each row group, (G + 1,) with the total last."""
        meta = pq.read_metadata(self.root / shard)
        counts = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        return meta, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def clip_table(self, clip_id: str, columns: tuple[str, ...]) -> pa.Table:
        """One-row table of `columns` of a clip, read from the one row group holding it
        (shards have `shards.ROW_GROUP_SIZE`-row groups: a clip costs ~16 clips of I/O, not a shard)."""
        if clip_id not in self._index:
            raise KeyError(f"unknown clip id {clip_id!r}")
        k = self._index[clip_id]
        shard = self.manifest.column("shard")[k].as_py()
        row = int(self.manifest.column("row")[k].as_py())
        meta, starts = self._row_groups(shard)
        if not 0 <= row < starts[-1]:
            raise IndexError(f"{shard} has {starts[-1]} rows, the manifest says clip {clip_id!r} is row {row}; "
                             "the dataset folder is inconsistent (rebuild it)")
        group = int(np.searchsorted(starts, row, side="right") - 1)
        with pq.ParquetFile(self.root / shard, metadata=meta) as f:
            table = f.read_row_group(group, columns=list(columns))
        return table.slice(row - int(starts[group]), 1)

    def arrays(self, clip_id: str, names: tuple[str, ...] = RAW_ARRAYS) -> dict[str, np.ndarray]:
        """Raw arrays of one clip, float32 (hand_visible: bool), shapes of `ARRAY_SHAPES`."""
        return _arrays(self.clip_table(clip_id, tuple(names)), names)

    def video(self, clip_id: str) -> np.ndarray:
        """(41, 480, 480, 3) uint8 RGB frames of a clip."""
        return decode_mp4(self.video_bytes(clip_id))

    def video_bytes(self, clip_id: str) -> bytes:
        """The clip's H.264 MP4 file as bytes."""
        return self.clip_table(clip_id, ("video_mp4",)).column("video_mp4")[0].as_py()


def _arrays(one: pa.Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Array columns `names` of a one-row clip table -> NumPy (hand_visible as bool)."""
    out = {n: column_array(one, n)[0] for n in names}
    if "hand_visible" in out:
        out["hand_visible"] = out["hand_visible"].astype(bool)
    return out


class ClipDataset(Dataset):
    """Torch dataset of curated clips.

    Items: ``video`` uint8 (41, 480, 480, 3), ``motion`` float32 (81, D) in `representation`
    ("head_centric" D=288 or "root_centric" D=275, computed from the stored world motion),
    ``text`` str, ``metadata`` dict (clip/sequence/subject/location ids, split, text_source,
    t0_timecode_ns, intrinsics (3, 3), T_head_camera (4, 4), camera_poses (41, 4, 4),
    hand_visible (41, 2) bool, quality_flags).
    """

    def __init__(self, root: str | Path, split: str = "train", representation: str = "head_centric",
                 load_video: bool = True):
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}, got {representation!r}")
        self.data = CuratedDataset(root)
        self.split = split
        self.representation = REPRESENTATIONS[representation]
        self.load_video = load_video
        self.ids = self.data.clip_ids(split)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        cid = self.ids[i]
        table = self.data.clip_table(cid, RAW_ARRAYS + (("video_mp4",) if self.load_video else ()))
        arrays = _arrays(table, RAW_ARRAYS)
        motion = self.representation.encode(
            arrays["motion_positions"].astype(np.float64), arrays["motion_rotations"].astype(np.float64)
        )
        row = self.data.row(cid)
        meta = {k: row[k] for k in ("clip_id", "sequence_id", "subject_id", "location_id", "split",
                                     "text_source", "t0_timecode_ns", "quality_flags")}
        meta |= {k: arrays[k] for k in ("intrinsics", "T_head_camera", "camera_poses", "hand_visible")}
        item = {"motion": np.asarray(motion, dtype=np.float32), "text": row["text"], "metadata": meta}
        if self.load_video:
            item["video"] = decode_mp4(table.column("video_mp4")[0].as_py())
        return item
