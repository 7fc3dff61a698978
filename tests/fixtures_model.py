"""Fixtures for the model pipeline tests: a small curated dataset in the Parquet format of
docs/data_format.md (random plausible bodies; videos whose stripes follow the head's yaw, so
video and motion are related), and the tiny run trained once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.constants import MOTION_FRAMES, VIDEO_FRAMES, VIDEO_SIZE
from egotwin_bench.skeleton import HEAD

PROMPTS = (
    "C walks forward and turns left",
    "C turns right and looks at the table",
    "C stands still and looks around the room",
    "C walks to the door and opens it",
)


def synthetic_frames(positions: np.ndarray, rotations: np.ndarray, size: int = VIDEO_SIZE) -> np.ndarray:
    """uint8 (41, size, size, 3): stripes whose phase follows the head yaw at each video frame."""
    yaw = np.arctan2(rotations[::2, HEAD, 1, 0], rotations[::2, HEAD, 0, 0])  # (41,)
    x = np.linspace(0, 2 * np.pi, size, dtype=np.float32)
    phase = x[None, :] * 2 + 3 * yaw[:, None]  # (41, W)
    red = 127 + 100 * np.sin(phase)
    green = 127 + 100 * np.cos(phase * 0.5 + positions[::2, HEAD, 2:3])
    img = np.stack([red, green, np.full_like(red, 60)], axis=-1)  # (41, W, 3)
    return np.broadcast_to(img[:, None], (VIDEO_FRAMES, size, size, 3)).round().astype(np.uint8)


def write_dataset(root: Path, n_train: int = 6, n_val: int = 1, n_test: int = 3, seed: int = 0) -> Path:
    """Write a minimal curated dataset (one shard + splits.json, full clip schema); return its root."""
    from egotwin_bench.curation.shards import atomic_write_table, rows_to_table
    from egotwin_bench.curation.video import encode_mp4
    from tests.random_bodies import random_motion

    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for _ in range(n):
            k = len(rows)
            pos, rot = random_motion(rng, MOTION_FRAMES, extreme=False)
            cameras = np.repeat(np.eye(4, dtype=np.float32)[None], VIDEO_FRAMES, axis=0)
            cameras[:, :3, :3], cameras[:, :3, 3] = rot[::2, HEAD], pos[::2, HEAD]
            rows.append({
                "clip_id": f"seq{k % 3}__{k * 5000:08d}", "sequence_id": f"seq{k % 3}", "subject_id": f"s{k % 3}",
                "location_id": f"l{k % 3}", "split": split, "t0_timecode_ns": k * 5_000_000_000,
                "text": PROMPTS[k % len(PROMPTS)], "text_source": "synthetic",
                "video_mp4": encode_mp4(synthetic_frames(pos, rot)), "motion_positions": pos,
                "motion_rotations": rot, "camera_poses": cameras,
                "intrinsics": np.array([[240.0, 0, 240], [0, 240, 240], [0, 0, 1]]), "T_head_camera": np.eye(4),
                "hand_visible": np.zeros((VIDEO_FRAMES, 2), np.uint8), "alignment_residual_m": 0.0,
                "alignment_residual_deg": 0.0, "quality_flags": [],
            })
            splits[split].append(rows[-1]["clip_id"])
    atomic_write_table(rows_to_table(rows), root / "shards" / "clips-synthetic.parquet")
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="session")
def model_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-clip curated dataset (6 train, 1 val, 3 test) in the Parquet contract format."""
    return write_dataset(tmp_path_factory.mktemp("model_dataset"))


TINY_STEPS: dict[str, int] = {"video-vae": 3, "vae": 40, "t2m": 30, "joint": 12}
"""Steps of each stage in the session's tiny run: enough for the losses to fall, seconds each."""
TINY_BATCH: dict[str, int] = {"video-vae": 1, "vae": 4, "t2m": 4, "joint": 2}
TINY_LR: float = 2e-3


def cli(*args: str) -> str:
    """Run `egotwin-model ARGS` in-process; assert success and return its output."""
    from typer.testing import CliRunner

    from egotwin_model.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"egotwin-model {' '.join(map(str, args))} failed:\n{result.output}\n{result.exception!r}"
    return result.output


def train_tiny_stage(run: Path, dataset: Path, stage: str, steps: int | None = None, *extra: str) -> str:
    """`egotwin-model train` as the demo calls it (+ the session's batch size, lr, log every step)."""
    return cli("train", "--stage", stage, "--config", "tiny", "--dataset", dataset, "--run", run,
               "--steps", steps or TINY_STEPS[stage], "--batch-size", TINY_BATCH[stage], "--lr", TINY_LR,
               "--log-every", 1, *extra)


@pytest.fixture(scope="session")
def tiny_run(model_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-config RUN_DIR trained through every stage by the CLI, invoked as the demo does
    (the cache is built by the first stage that needs it)."""
    run = tmp_path_factory.mktemp("tiny_run") / "run"
    for stage in ("video-vae", "vae", "t2m", "joint"):
        train_tiny_stage(run, model_dataset, stage)
    return run
