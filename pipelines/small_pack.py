"""A curated dataset as a compact *training pack* for a borrowed GPU, and back (issue #15).

A borrowed accelerator may take only a few tens of MB per call (the device tool used for
`reproduce_small.sh` carries 64 MiB). The small config works at 128 x 128, so the pack holds
what training and sampling at that size need and nothing more:

    PACK/clips.parquet   every column of the clip schema (docs/data_format.md) except the
                         motion, for the `--splits` the GPU needs (train, test: val is
                         not read there), with the video re-encoded at `--size` px, x264 CRF `--crf` (antialiased bilinear,
                         as `egotwin_model.encoders.resize_frames`) and the intrinsics scaled to
                         it (pixel centres at integers: c' = (c + 0.5) s - 0.5, f' = f s)
    PACK/motion.npz      per clip: the frame-0 head position (float32, metres) and, quantised,
                         positions relative to it (int16, 1/4 mm; |offset| < 8.19 m; delta-coded
                         along time) and unit quaternions w x y z (int16, x 32767, sign-continuous
                         in time), deflated
    PACK/pack.json       source dataset, size, quantisation steps, clip count

`unpack` writes a dataset in the normal layout (shards/*.parquet + splits.json + the source
card), readable by every `egotwin-model` command. Quantisation error: positions <= 0.125 mm,
rotations <= ~5e-5 rad (checked by `tests/test_small_pack.py`); the benchmark itself always
scores against the full-size source dataset.

    python pipelines/small_pack.py pack   --dataset DATASET --out PACK [--size 128]
    python pipelines/small_pack.py unpack --pack PACK --out DATASET_128
    python pipelines/small_pack.py finish --submission SUB --reference DATASET

On the GPU host, `egotwin-model sample --video-size 128` writes the generated videos at the
model's size (70 clips: ~4 MB instead of ~40 MB at 480 px). TM2V and TV2M submissions sampled
against the 128 px pack copy the *condition* modality from it (`egotwin_model.sample`).
`finish` upsamples the generated videos to 480 px with the sampler's `upsample_video` (what
`sample` itself does at the default size; the one difference is one more x264 pass at 128 px)
and puts back the full-size reference's condition (the 480 px video of TV2M, the unquantised
motion of TM2V), so that the condition is exactly the benchmark's reference clip and only the
generated modality is the model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from egotwin_bench.constants import VIDEO_FPS, VIDEO_SIZE
from egotwin_bench.curation.shards import ARRAY_SHAPES, atomic_write_table, atomic_write_text, clip_schema, column_array, rows_to_table
from egotwin_bench.curation.video import decode_mp4, encode_mp4
from egotwin_bench.evaluate.reference import load_clips, reference_name, shard_paths
from egotwin_bench.evaluate.submission import read_meta, read_motion, write_clip, write_meta
from egotwin_bench.skeleton import HEAD
from egotwin_model.encoders import resize_frames
from egotwin_model.sample import upsample_video

POSITION_STEP_M: float = 2.5e-4
"""Position quantum, metres (int16 -> +-8.19 m around the clip's first head position)."""
QUATERNION_SCALE: int = 32767
MOTION_COLUMNS: tuple[str, ...] = ("motion_positions", "motion_rotations")
PACK_VERSION: int = 1


def resize_video(mp4: bytes, size: int, crf: int = 28) -> tuple[bytes, int]:
    """Re-encode a clip's MP4 at `size` x `size` (antialiased bilinear downscale), x264 `crf`;
    returns the new MP4 and the source's side in pixels.

    At 128 px CRF 28 costs ~20 KB a clip and a mean 3.5 grey levels (CRF 20: 52 KB, 2.5)."""
    frames = torch.as_tensor(decode_mp4(mp4)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    small = resize_frames(frames, size).clamp(0, 255).round().to(torch.uint8)
    return encode_mp4(small.permute(0, 2, 3, 1).numpy(), fps=VIDEO_FPS, crf=crf), int(frames.shape[-1])


def scale_intrinsics(K: np.ndarray, scale: float) -> np.ndarray:
    """Pinhole K of an image resized by `scale` (pixel centres at integer coordinates)."""
    out = np.asarray(K, dtype=np.float64).copy()
    out[0, 0] *= scale
    out[1, 1] *= scale
    out[0, 2] = (out[0, 2] + 0.5) * scale - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * scale - 0.5
    return out.astype(np.float32)


def quantise_motion(positions: np.ndarray, rotations: np.ndarray) -> dict[str, np.ndarray]:
    """(N, T, 23, 3) positions, (N, T, 23, 3, 3) rotations -> int16 deltas + float32 origins."""
    origin = positions[:, :1, HEAD:HEAD + 1, :].astype(np.float32)  # (N, 1, 1, 3)
    q_pos = np.round((positions - origin) / POSITION_STEP_M)
    if np.abs(q_pos).max(initial=0) > np.iinfo(np.int16).max:
        raise ValueError("a segment is more than 8.19 m from its clip's first head position")
    quat = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_quat(scalar_first=True).reshape(*rotations.shape[:-2], 4)
    for t in range(1, quat.shape[1]):  # sign-continuous in time: small deltas
        flip = (quat[:, t] * quat[:, t - 1]).sum(-1, keepdims=True) < 0
        quat[:, t] = np.where(flip, -quat[:, t], quat[:, t])
    q_rot = np.round(quat * QUATERNION_SCALE)
    d_pos = np.diff(q_pos, axis=1, prepend=0)  # a segment moves < 8 m in 1/16 s
    if np.abs(d_pos).max(initial=0) > np.iinfo(np.int16).max:
        raise ValueError("a per-frame position delta does not fit int16")
    return {"origin": origin, "positions": d_pos.astype(np.int16), "quaternions": q_rot.astype(np.int16)}


def dequantise_motion(packed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `quantise_motion`: float32 positions (N, T, 23, 3), rotations (N, T, 23, 3, 3)."""
    positions = np.cumsum(packed["positions"].astype(np.int64), axis=1) * POSITION_STEP_M + packed["origin"]
    quat = packed["quaternions"].astype(np.float64) / QUATERNION_SCALE
    rot = Rotation.from_quat(quat.reshape(-1, 4), scalar_first=True).as_matrix().reshape(*quat.shape[:-1], 3, 3)
    return positions.astype(np.float32), rot.astype(np.float32)


def pack(dataset: Path, out: Path, size: int, splits: tuple[str, ...] = ("train", "test"), crf: int = 28) -> dict:
    """Write PACK (see the module docstring) from a built dataset; returns pack.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    light = [f.name for f in clip_schema() if f.name not in MOTION_COLUMNS]
    tables, positions, rotations = [], [], []
    for path in tqdm(shard_paths(dataset), desc="pack shards"):
        table = pq.read_table(path, filters=[("split", "in", list(splits))])
        if table.num_rows == 0:
            continue
        positions.append(column_array(table, "motion_positions"))
        rotations.append(column_array(table, "motion_rotations"))
        table = table.select(light)
        videos, sides = zip(*(resize_video(v, size, crf) for v in table.column("video_mp4").to_pylist()))
        K = column_array(table, "intrinsics")
        K = np.stack([scale_intrinsics(k, size / side) for k, side in zip(K, sides)]).reshape(len(table), -1)
        table = table.set_column(light.index("video_mp4"), "video_mp4", pa.array(videos, pa.binary()))
        table = table.set_column(light.index("intrinsics"), "intrinsics",
                                 pa.FixedSizeListArray.from_arrays(pa.array(K.reshape(-1)), 9))
        tables.append(table)
    table = pa.concat_tables(tables)
    atomic_write_table(table, out / "clips.parquet")
    motion = quantise_motion(np.concatenate(positions), np.concatenate(rotations))
    np.savez_compressed(out / "motion.npz", **motion)
    info = {"version": PACK_VERSION, "source": str(dataset.resolve()), "size": size, "crf": crf,
            "splits": list(splits), "clips": len(table),
            "position_step_m": POSITION_STEP_M, "quaternion_scale": QUATERNION_SCALE}
    atomic_write_text(json.dumps(info, indent=2), out / "pack.json")
    all_splits = json.loads((dataset / "splits.json").read_text())
    atomic_write_text(json.dumps({k: (v if k in splits else []) for k, v in all_splits.items()}), out / "splits.json")
    if (dataset / "dataset_card.md").is_file():
        shutil.copyfile(dataset / "dataset_card.md", out / "dataset_card.md")
    return info


def unpack(pack_dir: Path, out: Path) -> int:
    """Write a dataset (shards/clips-00000.parquet, splits.json) from PACK; returns the clip count."""
    info = json.loads((pack_dir / "pack.json").read_text())
    if info.get("version") != PACK_VERSION:
        raise ValueError(f"{pack_dir} is a version-{info.get('version')} pack; this script reads {PACK_VERSION}")
    table = pq.read_table(pack_dir / "clips.parquet")
    with np.load(pack_dir / "motion.npz") as z:
        positions, rotations = dequantise_motion({k: z[k] for k in z.files})
    if len(positions) != len(table):
        raise ValueError(f"{pack_dir}: {len(table)} clips but {len(positions)} motions")
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        for name in ARRAY_SHAPES:
            if name not in MOTION_COLUMNS:
                row[name] = np.asarray(row[name]).reshape(ARRAY_SHAPES[name])
        row["motion_positions"], row["motion_rotations"] = positions[i], rotations[i]
    atomic_write_table(rows_to_table(rows), out / "shards" / "clips-00000.parquet")
    shutil.copyfile(pack_dir / "splits.json", out / "splits.json")
    if (pack_dir / "dataset_card.md").is_file():
        shutil.copyfile(pack_dir / "dataset_card.md", out / "dataset_card.md")
    atomic_write_text(json.dumps({**info, "unpacked_from": str(pack_dir.resolve())}, indent=2), out / "pack.json")
    return len(rows)


def finish(submission: Path, reference: Path) -> dict[str, int]:
    """A submission sampled on the GPU host against the pack -> the benchmark's form.

    Generated videos written at the model's size (`egotwin-model sample --video-size 128`, to
    keep the transfer small) are upsampled to VIDEO_SIZE with the sampler's own
    `upsample_video`; the condition modality of TM2V / TV2M is rewritten from the full-size
    `reference`; ``submission.json`` names `reference` (the pack's test split is the same clips:
    same digest, another folder name). Returns {"upsampled": clips, "restored": clips}; running
    it twice is a no-op.
    """
    meta = read_meta(submission)
    name = reference_name(reference, "test")
    if meta.reference.rpartition("@")[2] != name.rpartition("@")[2]:
        raise ValueError(f"{submission} was sampled for {meta.reference!r}, another test split than {name!r}")
    counts = {"upsampled": 0, "restored": 0}
    for clip in load_clips(reference, "test", with_video=meta.task == "tv2m"):
        mp4, npz = submission / f"{clip.clip_id}.mp4", submission / f"{clip.clip_id}.npz"
        if not (mp4.is_file() and npz.is_file()):
            continue
        video = mp4.read_bytes()
        if meta.task == "tv2m":
            if video != clip.video_mp4:
                positions, rotations = read_motion(npz, meta.motion_format)
                write_clip(submission, clip.clip_id, clip.video_mp4, positions=positions, rotations=rotations)
                counts["restored"] += 1
            continue
        frames = decode_mp4(video)
        upsample = frames.shape[1] != VIDEO_SIZE
        if upsample:
            video = encode_mp4(upsample_video(torch.from_numpy(frames)))
            counts["upsampled"] += 1
        positions, rotations = read_motion(npz, meta.motion_format)
        restore = meta.task == "tm2v" and not np.array_equal(positions, clip.positions.astype(np.float32))
        if restore:
            positions, rotations = clip.positions, clip.rotations
            counts["restored"] += 1
        if upsample or restore:
            write_clip(submission, clip.clip_id, video, positions=positions, rotations=rotations)
    if counts["upsampled"] or meta.reference != name:
        model = {**meta.model, "upsampled_to": VIDEO_SIZE} if counts["upsampled"] else meta.model
        write_meta(submission, dataclasses.replace(meta, reference=name, model=model))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="built dataset -> PACK")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, default=128, help="video side in pixels (default 128, the small config's)")
    p.add_argument("--splits", default="train,test", help="splits to pack (default train,test: val is not read on the GPU)")
    p.add_argument("--crf", type=int, default=28, help="x264 CRF of the packed videos (default 28)")
    u = sub.add_parser("unpack", help="PACK -> dataset at the pack's size")
    u.add_argument("--pack", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("finish", help="a submission sampled against the pack: videos upsampled to 480 px, "
                       "TM2V/TV2M conditions from the full-size reference")
    r.add_argument("--submission", type=Path, required=True)
    r.add_argument("--reference", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "pack":
        print(json.dumps(pack(args.dataset, args.out, args.size, tuple(args.splits.split(",")), args.crf)))
    elif args.command == "finish":
        print(json.dumps({"submission": str(args.submission), **finish(args.submission, args.reference)}))
    else:
        print(json.dumps({"clips": unpack(args.pack, args.out), "out": str(args.out)}))


if __name__ == "__main__":
    main()
