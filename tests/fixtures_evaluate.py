"""A small curated-format dataset rendered from known camera paths (`room_dataset`).

Each clip is a head camera walking through the textured box room of
`egotwin_bench.estimators.known_scenes`, with the two hands drawn as coloured discs; the motion
(81 frames) carries the exact head pose behind every frame, so view and hand consistency of the
ground truth are known, independently of the curation pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench import geometry, skeleton
from egotwin_bench.constants import MOTION_FPS, MOTION_FRAMES, VIDEO_SIZE
from egotwin_bench.curation import visibility
from egotwin_bench.curation.shards import atomic_write_table, rows_to_table
from egotwin_bench.curation.video import encode_mp4
from egotwin_bench.estimators.base import default_intrinsics
from egotwin_bench.estimators.known_scenes import camera_path, render_room

ROOM_SPLITS: dict[str, int] = {"train": 6, "val": 2, "test": 4}
R_HEAD_CAMERA = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
"""Upright OpenCV camera in the Xsens head frame (X forward, Y left, Z up)."""
T_HEAD_CAMERA = geometry.make_transform(R_HEAD_CAMERA, np.array([0.08, 0.0, 0.05]))


def room_clip(index: int, split: str) -> dict:
    """One clip row (docs/data_format.md schema) of a walk along heading 2*pi*index/7 (speed, gaze
    direction and turn rate drawn from a generator seeded by `index`, so clips differ)."""
    rng = np.random.default_rng(index)
    K = default_intrinsics()
    t = np.arange(MOTION_FRAMES) / MOTION_FPS
    cameras = camera_path("walk", MOTION_FRAMES, MOTION_FPS, heading=2 * np.pi * index / 7,
                          speed=float(rng.uniform(0.6, 1.0)), look=float(rng.uniform(-0.8, 0.8)),
                          turn=float(rng.uniform(-0.3, 0.3)))
    heads = cameras @ geometry.invert_transform(T_HEAD_CAMERA)
    offsets = np.zeros((MOTION_FRAMES, skeleton.NUM_SEGMENTS, 3))
    offsets[..., 2] = -0.3  # the body hangs below the head, out of view
    phase = rng.uniform(0, 2 * np.pi, 4)
    for h, (joint, side) in enumerate(zip(skeleton.HANDS, (1.0, -1.0))):
        offsets[:, joint] = np.stack([
            0.4 + 0.15 * np.sin(1.7 * t + phase[2 * h]),
            np.full_like(t, 0.2 * side),
            -0.35 + 0.3 * np.sin(2.3 * t + phase[2 * h + 1]),
        ], axis=1)
    positions = heads[:, None, :3, 3] + np.einsum("tij,tkj->tki", heads[:, :3, :3], offsets)
    positions[:, skeleton.HEAD] = heads[:, :3, 3]
    rotations = np.repeat(heads[:, None, :3, :3], skeleton.NUM_SEGMENTS, axis=1)
    video_cameras = cameras[::2]
    hands = positions[::2][:, list(skeleton.HANDS)]
    frames = render_room(video_cameras, K, hands_world=hands, render_scale=0.5)
    return {
        "clip_id": f"room{index:02d}__0", "sequence_id": f"room{index:02d}", "subject_id": f"s{index}",
        "location_id": f"l{index}", "split": split, "t0_timecode_ns": 0, "text": "a person walks across a room",
        "text_source": "synthetic", "video_mp4": encode_mp4(frames), "motion_positions": positions,
        "motion_rotations": rotations, "camera_poses": video_cameras, "intrinsics": K,
        "T_head_camera": T_HEAD_CAMERA,
        "hand_visible": visibility.hand_visibility(hands, video_cameras, K, VIDEO_SIZE).astype(np.uint8),
        "alignment_residual_m": 0.0, "alignment_residual_deg": 0.0, "quality_flags": [],
    }


def write_room_dataset(root: Path, splits: dict[str, int] = ROOM_SPLITS) -> Path:
    """Write shards/ + splits.json of a room dataset with the given clips per split."""
    ids: dict[str, list[str]] = {}
    index = 0
    for split, n in splits.items():
        ids[split] = []
        for _ in range(n):
            row = room_clip(index, split)
            atomic_write_table(rows_to_table([row]), root / "shards" / f"clips-{row['sequence_id']}.parquet")
            ids[split].append(row["clip_id"])
            index += 1
    (root / "splits.json").write_text(json.dumps(ids))
    return root


@pytest.fixture(scope="session")
def room_dataset(tmp_path_factory) -> Path:
    """A 12-clip (6 train / 2 val / 4 test) room dataset in the curated format."""
    return write_room_dataset(tmp_path_factory.mktemp("room_dataset"))


ROOM_HAND_TRAINING = dict(arch="tiny", epochs=10, batch_size=16, lr=1e-3, seed=0)
"""Settings of the tiny hand classifier trained on the room dataset (about 20 s on one CPU core)."""


@pytest.fixture(scope="session")
def room_hand_classifier(room_dataset, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny ViT hand classifier trained (random init) on the room dataset's train split, its
    threshold chosen on val: (folder, held-out metrics on the test split)."""
    from egotwin_bench.training.hand_classifier import HandTrainingConfig, train_hand_classifier

    out = tmp_path_factory.mktemp("room_hand_classifier")
    metrics = train_hand_classifier(room_dataset, out, None, HandTrainingConfig(**ROOM_HAND_TRAINING), "test", "val")
    return out, metrics
