"""Clip Parquet schema (docs/data_format.md) and atomic shard writing / reading.

Array columns are ``fixed_size_list<float32>`` (hand_visible: ``<uint8>``) flattened in C order;
their shapes are in `ARRAY_SHAPES` and in each file's schema metadata (key ``egotwin.shapes``),
so plain pyarrow / polars / `ray.data.read_parquet` read the shards without custom code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from egotwin_bench.constants import MOTION_FRAMES, NUM_JOINTS, VIDEO_FRAMES

SCHEMA_VERSION = "egotwin-clips/1"

ARRAY_SHAPES: dict[str, tuple[int, ...]] = {
    "motion_positions": (MOTION_FRAMES, NUM_JOINTS, 3),
    "motion_rotations": (MOTION_FRAMES, NUM_JOINTS, 3, 3),
    "camera_poses": (VIDEO_FRAMES, 4, 4),
    "intrinsics": (3, 3),
    "T_head_camera": (4, 4),
    "hand_visible": (VIDEO_FRAMES, 2),
}
ROW_GROUP_SIZE: int = 16
"""Rows per Parquet row group of a shard: a reader of one clip (`data.CuratedDataset`) reads
one group (~16 MB of video), not the whole shard."""
HEAVY_COLUMNS: tuple[str, ...] = ("video_mp4", "motion_positions", "motion_rotations", "camera_poses")
"""Columns left out of `manifest.parquet`."""


def _fixed(dtype: pa.DataType, shape: tuple[int, ...]) -> pa.DataType:
    return pa.list_(dtype, int(np.prod(shape)))


def clip_schema() -> pa.Schema:
    fields = [
        pa.field("clip_id", pa.string()),
        pa.field("sequence_id", pa.string()),
        pa.field("subject_id", pa.string()),
        pa.field("location_id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("t0_timecode_ns", pa.int64()),
        pa.field("text", pa.string()),
        pa.field("text_source", pa.string()),
        pa.field("video_mp4", pa.binary()),
    ]
    for name, shape in ARRAY_SHAPES.items():
        fields.append(pa.field(name, _fixed(pa.uint8() if name == "hand_visible" else pa.float32(), shape)))
    fields += [
        pa.field("alignment_residual_m", pa.float32()),
        pa.field("alignment_residual_deg", pa.float32()),
        pa.field("quality_flags", pa.list_(pa.string())),
    ]
    meta = {"egotwin.schema": SCHEMA_VERSION, "egotwin.shapes": json.dumps({k: list(v) for k, v in ARRAY_SHAPES.items()})}
    return pa.schema(fields, metadata=meta)


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Clip dicts (arrays as NumPy of the shapes in ARRAY_SHAPES) -> Arrow table of `clip_schema`."""
    schema = clip_schema()
    columns = {}
    for f in schema:
        values = [r[f.name] for r in rows]
        if f.name in ARRAY_SHAPES:
            shape = ARRAY_SHAPES[f.name]
            np_dtype = np.uint8 if f.name == "hand_visible" else np.float32
            flat = np.stack([np.asarray(v, dtype=np_dtype).reshape(shape) for v in values]).reshape(len(rows), -1) \
                if rows else np.zeros((0, int(np.prod(shape))), np_dtype)
            columns[f.name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), int(np.prod(shape)))
        else:
            columns[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(columns, schema=schema)


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-size-list column -> (rows, *shape) NumPy array."""
    col = table.column(name).combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(table), *ARRAY_SHAPES[name])


def _atomic_replace(path: str | Path, write: Callable[[Path], None]) -> None:
    """Durably replace `path`: `write` fills a temp file next to it (``.<name>.tmp-<pid>``,
    removed by `pipeline.remove_stale_temp_files` after a kill), which is fsynced, renamed over
    `path`, and the folder fsynced so the rename survives a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_table(table: pa.Table, path: str | Path, row_group_size: int = ROW_GROUP_SIZE) -> None:
    """Write Parquet (zstd, `row_group_size` rows per group) atomically and durably to `path`."""
    _atomic_replace(path, lambda tmp: pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd"))


def atomic_write_rows(rows: Iterable[dict], path: str | Path, row_group_size: int = ROW_GROUP_SIZE) -> int:
    """Stream clip dicts (`rows_to_table`'s) into a Parquet shard at `path`, atomically and
    durably, one row group of `row_group_size` rows at a time: at most one group is held in
    memory, not the whole shard (a 60 min sequence gives ~0.5 GB of clips). Returns the number
    of rows; an exception raised by `rows` leaves no file (and any earlier `path` untouched)."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with pq.ParquetWriter(tmp, clip_schema(), compression="zstd") as writer:
            for group in _groups(rows, row_group_size):
                writer.write_table(rows_to_table(group), row_group_size=row_group_size)
                count += len(group)

    _atomic_replace(path, write)
    return count


def _groups(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    group: list[dict] = []
    for row in rows:
        group.append(row)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def atomic_write_text(text: str, path: str | Path) -> None:
    """Same for a small text/JSON file (reports, splits, the card): UTF-8."""
    _atomic_replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_shards(paths: Iterable[str | Path], columns: list[str] | None = None) -> pa.Table:
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        schema = clip_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
        return schema.empty_table()
    return pa.concat_tables(tables)
