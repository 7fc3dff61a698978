"""Faults `make-synthetic --faults` injects: the cases the curation must survive (issue #4).

| fault | what is written | what the curation should do |
|---|---|---|
| ``jittered_timestamps`` | 3 Xsens timestamps displaced by +-2..4 ms (a spike each) | patch to 1/240 s (drift < 10 ms), keep |
| ``irregular_timestamps`` | Xsens clock jumps by 40 ms once (all later stamps shifted) | reject (drift > 10 ms) |
| ``zero_quaternions`` | 12 (frame, segment) quaternions set to 0 | carry the previous frame's rotation, keep |
| ``truncated_mp4`` | ``rgb.mp4`` cut to 55 % of its bytes (CSV still lists every frame) | skip the lost frames / the sequence |
| ``missing_narration`` | ``narration/atomic_action.csv`` deleted | skip (no narration) |
| ``missing_trajectory`` | ``mps/slam/closed_loop_trajectory.csv`` deleted | skip (no trajectory) |

Array faults act on the arrays before they are written; file faults on the finished folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egotwin_bench.nymeria import layout as L

ARRAY_FAULTS: tuple[str, ...] = ("jittered_timestamps", "irregular_timestamps", "zero_quaternions")
FILE_FAULTS: tuple[str, ...] = ("truncated_mp4", "missing_narration", "missing_trajectory")
FAULTS: tuple[str, ...] = ARRAY_FAULTS + FILE_FAULTS

JITTER_US: tuple[float, float] = (2000.0, 4000.0)
"""Size range of a patchable timestamp spike (above the reader's 1 ms step tolerance)."""
JUMP_US: float = 40_000.0
"""Size of the unpatchable clock jump (above the reader's 10 ms drift limit)."""
TRUNCATE_FRACTION: float = 0.55


def parse_faults(text: str | None) -> tuple[str, ...]:
    """Comma-separated fault names -> tuple (validated, order kept, duplicates removed)."""
    if not text:
        return ()
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    return tuple(dict.fromkeys(names))


def assign_faults(faults: tuple[str, ...], sequences: int) -> dict[int, tuple[str, ...]]:
    """Sequence index -> its faults: fault j goes to sequence j modulo the first N-1 sequences.

    The last sequence (the one with an unseen subject and location, see `writer.assign_ids`)
    stays clean so the test split keeps data; with one sequence it gets every fault.
    """
    pool = max(1, sequences - 1)
    out: dict[int, list[str]] = {}
    for j, name in enumerate(faults):
        out.setdefault(j % pool, []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def apply_timestamp_fault(timestamps_us: np.ndarray, fault: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A copy of int64 Xsens timestamps with the fault applied, and a description of it."""
    t = timestamps_us.copy()
    n = t.shape[0]
    if fault == "jittered_timestamps":
        frames = np.sort(rng.choice(np.arange(10, n - 10, 7), size=min(3, max(1, (n - 20) // 7)), replace=False))
        shifts = np.round(rng.uniform(*JITTER_US, frames.size) * rng.choice([-1, 1], frames.size)).astype(np.int64)
        t[frames] += shifts
        return t, {"frames": frames.tolist(), "shift_us": shifts.tolist()}
    if fault == "irregular_timestamps":
        frame = int(rng.integers(n // 3, 2 * n // 3))
        t[frame:] += int(JUMP_US)
        return t, {"from_frame": frame, "jump_us": int(JUMP_US)}
    raise ValueError(f"not a timestamp fault: {fault}")


def apply_zero_quaternions(q: np.ndarray, rng: np.random.Generator, count: int = 12) -> tuple[np.ndarray, dict]:
    """A copy of (F, 23, 4) quaternions with `count` random (frame >= 1, segment) entries zeroed."""
    q = q.copy()
    frames = rng.integers(1, q.shape[0], count)
    segments = rng.integers(0, q.shape[1], count)
    q[frames, segments] = 0.0
    return q, {"frames": frames.tolist(), "segments": segments.tolist()}


def apply_file_fault(sequence_dir: Path, fault: str) -> dict:
    """Damage the written sequence folder in place; returns a description."""
    if fault == "truncated_mp4":
        path = sequence_dir / L.EXPORTED_RGB
        data = path.read_bytes()
        keep = int(len(data) * TRUNCATE_FRACTION)
        path.write_bytes(data[:keep])
        return {"file": L.EXPORTED_RGB, "kept_bytes": keep, "original_bytes": len(data)}
    if fault == "missing_narration":
        path = sequence_dir / L.NARRATION_DIR / "atomic_action.csv"
        path.unlink()
        return {"removed": f"{L.NARRATION_DIR}/atomic_action.csv"}
    if fault == "missing_trajectory":
        (sequence_dir / L.CLOSED_LOOP).unlink()
        return {"removed": L.CLOSED_LOOP}
    raise ValueError(f"not a file fault: {fault}")
