"""Per-clip cache of everything the frozen encoders produce, so training never runs them.

Layout (one safetensors file per clip, written atomically; existing files are skipped, so an
interrupted run resumes where it stopped)::

    <cache>/manifest.json                 encoder description, latent shapes, clip ids per split
    <cache>/null_text.safetensors         text_emb (L_t, D_t): the empty prompt (CFG's null text)
    <cache>/motion_stats.safetensors      <representation>_mean / _std (D,) over the train split
    <cache>/<split>/<clip_id>.safetensors
        text_emb             (L_t, D_t)        T5 last hidden state of the padded prompt
        video_latents        (F', C_v, h, w)   VAE posterior mean x scaling_factor, all 41 frames
        first_frame_latent   (1, C_v, h, w)    the first frame encoded alone (the condition)
        head_centric         (81, 288)         raw (un-normalised) motion features
        root_centric         (81, 275)

The first video latent used as the condition is the first frame encoded *on its own*, in
training as at sampling time, where only the first frame is known: CogVideoX's VAE normalises
over time (GroupNorm), so latent 0 of a whole clip also depends on later frames.

Clips are read straight from the curated Parquet shards (docs/data_format.md): the prompt, the
MP4 and the raw world motion, from which both representations are computed here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from egotwin_bench.constants import VIDEO_FRAMES
from egotwin_bench.curation.shards import column_array
from egotwin_bench.curation.video import decode_mp4
from egotwin_bench.evaluate.reference import shard_paths, split_ids
from egotwin_bench.motion import REPRESENTATIONS

SPLITS: tuple[str, ...] = ("train", "val", "test")
CACHE_VERSION: int = 2
"""2: head_centric/2 features (frame-0 h_rr = identity 6D)."""


@dataclass(frozen=True)
class Clip:
    """One curated clip as the model needs it (positions metres, Z up, 16 FPS; video 8 FPS)."""

    clip_id: str
    split: str
    text: str
    video_mp4: bytes
    positions: np.ndarray  # (81, 23, 3) world
    rotations: np.ndarray  # (81, 23, 3, 3) world

    def frames(self) -> np.ndarray:
        """uint8 (41, 480, 480, 3) RGB."""
        frames = decode_mp4(self.video_mp4)
        if frames.shape[0] != VIDEO_FRAMES:
            raise ValueError(f"clip {self.clip_id}: {frames.shape[0]} video frames, expected {VIDEO_FRAMES}")
        return frames


def read_clips(dataset: str | Path, split: str, limit: int | None = None, with_video: bool = True) -> Iterator[Clip]:
    """Stream the clips of `split` (the first `limit` of splits.json) shard by shard."""
    wanted = set(split_ids(dataset, split)[:limit])
    seen: set[str] = set()
    columns = ["clip_id", "text", "motion_positions", "motion_rotations"] + (["video_mp4"] if with_video else [])
    for path in shard_paths(dataset):
        table = pq.read_table(path, columns=columns, filters=[("split", "=", split)])
        if table.num_rows == 0:
            continue
        positions, rotations = column_array(table, "motion_positions"), column_array(table, "motion_rotations")
        for i, clip_id in enumerate(table.column("clip_id").to_pylist()):
            if clip_id not in wanted:
                continue
            seen.add(clip_id)
            yield Clip(clip_id=clip_id, split=split, text=str(table.column("text")[i].as_py()),
                       video_mp4=table.column("video_mp4")[i].as_py() if with_video else b"",
                       positions=positions[i], rotations=rotations[i])
    missing = wanted - seen
    if missing:
        raise KeyError(f"{len(missing)} clip(s) of split {split!r} are in splits.json but in no shard, e.g. {sorted(missing)[:3]}")


def motion_features(positions: np.ndarray, rotations: np.ndarray) -> dict[str, torch.Tensor]:
    """Both representations of one world motion: {name: (81, D) float32}."""
    return {
        name: torch.as_tensor(np.asarray(module.encode(positions, rotations), dtype=np.float32))
        for name, module in REPRESENTATIONS.items()
    }


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def write_json(path: Path, obj: object) -> None:
    """Atomic JSON write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def clip_path(cache: Path, split: str, clip_id: str) -> Path:
    return Path(cache) / split / f"{clip_id}.safetensors"


def precompute(
    dataset: str | Path,
    cache: str | Path,
    text_encoder,
    video_vae,
    splits: Sequence[str] = SPLITS,
    limit: int | None = None,
    batch_size: int = 4,
    storage_dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> dict:
    """Fill `cache` for `splits` of `dataset` with `text_encoder` / `video_vae` (see module doc).

    Returns the manifest (also written to ``cache/manifest.json``). Motion statistics come from
    the train split's features (all frames, per dimension; std floored at 1e-3).
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    null = cache / "null_text.safetensors"
    if not null.exists():
        save_tensors(null, {"text_emb": text_encoder.encode([""])[0].to(storage_dtype)})
    manifest: dict = {
        "version": CACHE_VERSION, "dataset": str(Path(dataset).resolve()), "text_dim": text_encoder.dim,
        "text_length": text_encoder.max_length, "video_size": video_vae.size,
        "video_scaling_factor": video_vae.scaling_factor, "splits": {},
    }
    if (cache / "manifest.json").is_file():  # keep the splits cached by earlier calls (same version)
        manifest["splits"] = {k: v for k, v in load_manifest(cache)["splits"].items() if k not in splits}
    for split in splits:
        ids = split_ids(dataset, split)[:limit]
        manifest["splits"][split] = ids
        todo = [c for c in ids if not clip_path(cache, split, c).exists()]
        if not todo:
            continue
        bar = tqdm(total=len(todo), desc=f"precompute {split}", disable=not progress)
        batch: list[Clip] = []
        clips = (c for c in read_clips(dataset, split, limit) if not clip_path(cache, split, c.clip_id).exists())
        for clip in clips:
            batch.append(clip)
            if len(batch) == batch_size:
                _encode_batch(batch, cache, text_encoder, video_vae, storage_dtype)
                bar.update(len(batch))
                batch = []
        if batch:
            _encode_batch(batch, cache, text_encoder, video_vae, storage_dtype)
            bar.update(len(batch))
        bar.close()
    some = next((clip_path(cache, s, ids[0]) for s, ids in manifest["splits"].items() if ids), None)
    if some is not None:
        first = load_tensors(some)
        manifest["video_latent_shape"] = list(first["video_latents"].shape)
    if "train" in manifest["splits"]:
        write_motion_stats(cache, manifest["splits"]["train"])
    write_json(cache / "manifest.json", manifest)
    return manifest


def _encode_batch(batch: list[Clip], cache: Path, text_encoder, video_vae, dtype: torch.dtype) -> None:
    text = text_encoder.encode([c.text for c in batch])
    frames = np.stack([c.frames() for c in batch])
    latents = video_vae.encode(frames)
    first = video_vae.encode(frames[:, :1])
    for i, clip in enumerate(batch):
        tensors = {"text_emb": text[i].to(dtype), "video_latents": latents[i].to(dtype),
                   "first_frame_latent": first[i].to(dtype)}
        tensors.update(motion_features(clip.positions, clip.rotations))
        save_tensors(clip_path(cache, clip.split, clip.clip_id), tensors, {"clip_id": clip.clip_id, "text": clip.text})


def write_motion_stats(cache: Path, train_ids: Sequence[str]) -> None:
    """Per-dimension mean/std of each representation over all frames of the train clips."""
    if not train_ids:
        raise ValueError("the train split is empty: motion statistics need training clips")
    stats: dict[str, torch.Tensor] = {}
    for name in REPRESENTATIONS:
        x = torch.cat([load_tensors(clip_path(cache, "train", c))[name] for c in train_ids]).double()
        stats[f"{name}_mean"] = x.mean(0).float()
        stats[f"{name}_std"] = x.std(0).clamp_min(1e-3).float()
    save_tensors(cache / "motion_stats.safetensors", stats)


def load_manifest(cache: str | Path) -> dict:
    """The cache's manifest; a cache of another `CACHE_VERSION` is an error (its features differ)."""
    path = Path(cache) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `egotwin-model precompute` first")
    manifest = json.loads(path.read_text())
    if manifest.get("version") != CACHE_VERSION:
        raise ValueError(f"{path} is a version-{manifest.get('version')} cache, this toolkit reads version "
                         f"{CACHE_VERSION} (its motion features differ): delete {Path(cache)} "
                         "and run `egotwin-model precompute` again")
    return manifest
