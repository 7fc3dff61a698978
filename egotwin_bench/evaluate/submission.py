"""The submission format (docs/data_format.md, DESIGN §8): writing, reading and validating.

```
submissions/<method>/
  submission.json   {"method", "task", "motion_format", "reference", "guidance", "model"}
  <clip_id>.mp4     41 frames, 480x480, 8 FPS (H.264)
  <clip_id>.npz     world_joints: positions (81, 23, 3) + rotations (81, 23, 3, 3), Xsens world
                    head_centric: features (81, 288) (+ optional first_head_pose (4, 4))
```

`validate_submission` collects *every* problem (it never stops at the first) so a participant
fixes everything in one round.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from egotwin_bench.constants import HEAD_CENTRIC_DIM, MOTION_FRAMES, NUM_JOINTS, VIDEO_FPS, VIDEO_FRAMES, VIDEO_SIZE
from egotwin_bench.curation.shards import atomic_write_text
from egotwin_bench.motion import head_centric
from egotwin_bench.skeleton import SEGMENT_NAMES

SUBMISSION_FILE = "submission.json"
TASKS: tuple[str, ...] = ("t2vm", "tm2v", "tv2m")
MOTION_FORMATS: tuple[str, ...] = ("world_joints", "head_centric")
REQUIRED_FIELDS: tuple[str, ...] = ("method", "task", "motion_format")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""Allowed method names and file stems: no path separators, no leading dot, no spaces."""
ROTATION_TOL: float = 1e-3
"""World-joint rotations must satisfy max |RᵀR − I| <= ROTATION_TOL and |det R − 1| <= ROTATION_TOL
(float32 rotation matrices are orthonormal to ~1e-6; scaled or reflected matrices are refused)."""
IGNORED_OS_FILES: frozenset[str] = frozenset({".DS_Store"})
"""Hidden files an OS writes into folders on its own (macOS Finder); the only entries the
validator skips silently. Any other dot-file (an editor backup, a leftover ``.<clip>.mp4.tmp`` of
an interrupted write, AppleDouble ``._*`` copies) is reported."""


@dataclass
class SubmissionMeta:
    """The contents of ``submission.json``."""

    method: str
    task: str
    motion_format: str
    reference: str = ""
    guidance: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """One validation problem; `clip_id` is None for submission-level problems."""

    message: str
    clip_id: str | None = None

    def __str__(self) -> str:
        return f"{self.clip_id}: {self.message}" if self.clip_id else self.message


@dataclass
class ValidationReport:
    """All problems of one submission folder and the clips that passed every check."""

    path: Path
    meta: SubmissionMeta | None
    problems: list[Problem]
    valid_clips: list[str]
    n_expected: int

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = f"{self.path}: {len(self.valid_clips)}/{self.n_expected} clips valid"
        if self.ok:
            return head
        lines = [head + f", {len(self.problems)} problem(s):"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


# -- writing -------------------------------------------------------------------------------------

def write_meta(folder: Path, meta: SubmissionMeta) -> None:
    """Write ``submission.json`` atomically."""
    atomic_write_text(json.dumps(asdict(meta), indent=2), folder / SUBMISSION_FILE)


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_clip(
    folder: Path,
    clip_id: str,
    video_mp4: bytes,
    positions: np.ndarray | None = None,
    rotations: np.ndarray | None = None,
    features: np.ndarray | None = None,
    first_head_pose: np.ndarray | None = None,
) -> None:
    """Write one clip's ``.mp4`` and ``.npz`` (world joints, or head-centric `features` with an
    optional (4, 4) `first_head_pose`)."""
    if not SAFE_NAME.match(clip_id):
        raise ValueError(f"clip id {clip_id!r} is not a safe file name")
    _atomic_bytes(folder / f"{clip_id}.mp4", video_mp4)
    buf = io.BytesIO()
    if features is not None:
        extra = {} if first_head_pose is None else {"first_head_pose": np.asarray(first_head_pose, np.float32)}
        np.savez(buf, features=np.asarray(features, dtype=np.float32), **extra)
    else:
        np.savez(buf, positions=np.asarray(positions, np.float32), rotations=np.asarray(rotations, np.float32))
    _atomic_bytes(folder / f"{clip_id}.npz", buf.getvalue())


# -- reading -------------------------------------------------------------------------------------

def read_meta(folder: Path) -> SubmissionMeta:
    """Parse ``submission.json`` (raises ValueError with every problem found)."""
    path = folder / SUBMISSION_FILE
    if not path.is_file():
        raise ValueError(f"{SUBMISSION_FILE} is missing")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{SUBMISSION_FILE} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{SUBMISSION_FILE} must hold a JSON object")
    errors = [f"{SUBMISSION_FILE} lacks field {k!r}" for k in REQUIRED_FIELDS if k not in raw]
    if "task" in raw and raw["task"] not in TASKS:
        errors.append(f"task must be one of {', '.join(TASKS)}, got {raw['task']!r}")
    if "motion_format" in raw and raw["motion_format"] not in MOTION_FORMATS:
        errors.append(f"motion_format must be one of {', '.join(MOTION_FORMATS)}, got {raw['motion_format']!r}")
    if "method" in raw and not (isinstance(raw["method"], str) and SAFE_NAME.match(raw["method"])):
        errors.append(f"method must be a safe name (letters, digits, . _ -), got {raw.get('method')!r}")
    if errors:
        raise ValueError("; ".join(errors))
    known = {k: raw[k] for k in ("method", "task", "motion_format", "reference", "guidance", "model") if k in raw}
    return SubmissionMeta(**known)


def read_motion(path: Path, motion_format: str) -> tuple[np.ndarray, np.ndarray]:
    """A clip's motion as world positions (81, 23, 3) and rotations (81, 23, 3, 3), float32.

    Head-centric features decode in the canonical frame (first-frame head at the origin), moved
    by ``first_head_pose`` when given; the consistency metrics are invariant to that rigid motion.
    """
    with np.load(path, allow_pickle=False) as z:
        if motion_format == "world_joints":
            return z["positions"].astype(np.float32), z["rotations"].astype(np.float32)
        first = z["first_head_pose"].astype(np.float64) if "first_head_pose" in z.files else None
        positions, rotations = head_centric.decode(z["features"].astype(np.float64), first)
        return np.asarray(positions, np.float32), np.asarray(rotations, np.float32)


def clip_hashes(folder: Path, clip_id: str) -> tuple[str, str]:
    """(video hash, content hash) of a submitted clip: sha256 of the video bytes, and sha256 of
    the video bytes followed by the motion bytes."""
    video = hashlib.sha256((folder / f"{clip_id}.mp4").read_bytes())
    content = video.copy()
    content.update((folder / f"{clip_id}.npz").read_bytes())
    return video.hexdigest(), content.hexdigest()


# -- validation ----------------------------------------------------------------------------------

def check_video(path: Path) -> list[str]:
    """Problems of one video file: unreadable, frame count, size, fps."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate
            n = 0
            size = None
            for frame in container.decode(stream):
                n += 1
                size = (frame.height, frame.width)
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
        return [f"video unreadable ({type(err).__name__}: {err})"]
    problems = []
    if n != VIDEO_FRAMES:
        problems.append(f"video has {n} frames, expected {VIDEO_FRAMES}")
    if size != (VIDEO_SIZE, VIDEO_SIZE):
        problems.append(f"video frames are {size[1] if size else '?'}x{size[0] if size else '?'}, expected {VIDEO_SIZE}x{VIDEO_SIZE}")
    if rate is None or abs(float(Fraction(rate)) - VIDEO_FPS) > 1e-3:
        problems.append(f"video is {float(rate) if rate else 'unknown'} FPS, expected {VIDEO_FPS}")
    return problems


def check_motion(path: Path, motion_format: str) -> list[str]:
    """Problems of one motion file: unreadable, missing arrays, shapes, NaN/inf."""
    expected = (
        {"positions": (MOTION_FRAMES, NUM_JOINTS, 3), "rotations": (MOTION_FRAMES, NUM_JOINTS, 3, 3)}
        if motion_format == "world_joints"
        else {"features": (MOTION_FRAMES, HEAD_CENTRIC_DIM)}
    )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001
        return [f"motion unreadable ({type(err).__name__}: {err})"]
    problems = []
    for name, shape in expected.items():
        if name not in arrays:
            problems.append(f"motion lacks array {name!r} (motion_format {motion_format})")
            continue
        a = arrays[name]
        if a.shape != shape:
            problems.append(f"motion {name} has shape {a.shape}, expected {shape}")
        elif not np.issubdtype(a.dtype, np.floating):
            problems.append(f"motion {name} has dtype {a.dtype}, expected float")
        elif not np.all(np.isfinite(a)):
            problems.append(f"motion {name} contains NaN or inf")
        elif name == "rotations":
            problems += rotation_problems(a)
    if "first_head_pose" in arrays and arrays["first_head_pose"].shape != (4, 4):
        problems.append(f"motion first_head_pose has shape {arrays['first_head_pose'].shape}, expected (4, 4)")
    return problems


def rotation_problems(rotations: np.ndarray, tol: float = ROTATION_TOL) -> list[str]:
    """One problem naming the first (frame, joint) whose (3, 3) matrix is not a rotation
    (orthonormal within `tol`, determinant +1 within `tol`), with how many are not; [] if all are.

    Args:
        rotations: (T, J, 3, 3) finite world segment rotations.
    """
    r = np.asarray(rotations, dtype=np.float64)
    ortho = np.abs(np.swapaxes(r, -1, -2) @ r - np.eye(3)).max(axis=(-1, -2))
    det = np.linalg.det(r)
    bad = (ortho > tol) | (np.abs(det - 1.0) > tol)
    if not bad.any():
        return []
    frame, joint = (int(i) for i in np.argwhere(bad)[0])
    return [f"motion rotations are not rotation matrices at {int(bad.sum())} of {bad.size} (frame, joint) "
            f"entries; first at frame {frame}, joint {joint} ({SEGMENT_NAMES[joint]}): max |R^T R - I| = "
            f"{ortho[frame, joint]:.3g}, det = {det[frame, joint]:.3g} (tolerance {tol:g})"]


def method_clash(report: ValidationReport, claimed: dict[tuple[str, str], Path]) -> Problem | None:
    """The problem of a submission whose (method, task) is already in `claimed` (key -> the
    folder scored under it), else None. Leaderboard rows are keyed by (method, task): a second
    folder under the same name would give two rows nobody can tell apart, so it is not scored."""
    if report.meta is None:
        return None
    key = (report.meta.method, report.meta.task)
    if key not in claimed:
        return None
    return Problem(f"method {key[0]!r} (task {key[1]}) is already claimed by submission folder "
                   f"{claimed[key].name!r}: not scored; give each submission its own method name")


def validate_submission(folder: str | Path, expected_ids: list[str], reference: str | None = None) -> ValidationReport:
    """Check a submission folder against the reference split's clip ids; every problem is listed."""
    folder = Path(folder)
    problems: list[Problem] = []
    if not folder.is_dir():
        return ValidationReport(folder, None, [Problem(f"{folder} is not a folder")], [], len(expected_ids))
    if not SAFE_NAME.match(folder.name):
        problems.append(Problem(f"folder name {folder.name!r} is not a safe name (letters, digits, . _ -)"))
    meta = None
    try:
        meta = read_meta(folder)
    except ValueError as err:
        problems.append(Problem(str(err)))
    if meta is not None and reference and meta.reference and meta.reference != reference:
        problems.append(Problem(f"submission was made for reference {meta.reference!r}, evaluating against {reference!r}"))

    expected = set(expected_ids)
    present: dict[str, set[str]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name == SUBMISSION_FILE or entry.name in IGNORED_OS_FILES:
            continue
        stem, suffix = entry.stem, entry.suffix
        if entry.is_symlink() or not entry.is_file():
            problems.append(Problem(f"unexpected {'link' if entry.is_symlink() else 'folder'} {entry.name!r}"))
            continue
        if entry.name.startswith("."):
            problems.append(Problem(f"hidden file {entry.name!r}: remove it (a submission holds only "
                                    f"{SUBMISSION_FILE} and <clip_id>.mp4 / .npz)"))
            continue
        if suffix not in (".mp4", ".npz"):
            problems.append(Problem(f"unexpected file {entry.name!r} (only <clip_id>.mp4 / .npz)"))
            continue
        if not SAFE_NAME.match(stem):
            problems.append(Problem(f"unsafe file name {entry.name!r}"))
            continue
        if stem not in expected:
            problems.append(Problem(f"extra file {entry.name!r}: no clip {stem!r} in the reference split"))
            continue
        present.setdefault(stem, set()).add(suffix)

    valid = []
    motion_format = meta.motion_format if meta is not None else None
    for clip_id in expected_ids:
        have = present.get(clip_id, set())
        clip_problems = [f"missing {clip_id}{s}" for s in (".mp4", ".npz") if s not in have]
        if ".mp4" in have:
            clip_problems += check_video(folder / f"{clip_id}.mp4")
        if ".npz" in have and motion_format is not None:
            clip_problems += check_motion(folder / f"{clip_id}.npz", motion_format)
        problems += [Problem(m, clip_id) for m in clip_problems]
        if not clip_problems and motion_format is not None:
            valid.append(clip_id)
    return ValidationReport(folder, meta, problems, valid, len(expected_ids))
