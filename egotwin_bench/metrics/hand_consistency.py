"""Hand consistency (paper §4.1, appendix B): HandScore.

For each video frame k and hand h (left, right):

* *presence*: the hand classifier says hand h is in the generated frame k;
* *visibility*: in the generated motion (frame 2k), the hand segment's origin lies in front of
  the head camera and projects inside the 480x480 image with the reference clip's intrinsics and
  ``T_head_camera`` -- the same rule (`egotwin_bench.curation.visibility`) that labels the
  curated clips' ``hand_visible``.

True positive = present and visible, false positive = present and not visible, false negative =
visible and not present. Two levels (docs/metrics.md, "HandScore"):

* **set level** (the leaderboard): per hand, the F1 of the TP/FP/FN counts pooled over all
  frames of all clips (micro F1, sklearn's ``f1_score`` of the flattened labels); HandScore is
  the mean over the hands whose F1 is defined;
* **per clip** (``per_clip.parquet``): the same over the clip's 41 frames only.

A hand with no positive in either source (TP + FP + FN = 0) has an undefined F1: it is left out
of the mean and named (`undefined_hands`), never counted as 1 (a set where the generator never
shows a hand the motion never shows would otherwise gain half a point). With both hands
undefined the value is NaN. The per-clip column therefore does not average to the set value:
pooling weights clips by their positives, and clips without any positive are NaN per clip.
"""

from __future__ import annotations

import numpy as np

from egotwin_bench import skeleton
from egotwin_bench.constants import VIDEO_SIZE
from egotwin_bench.curation import visibility
from egotwin_bench.metrics.view_consistency import head_camera_trajectory


def hand_visibility(
    positions: np.ndarray,
    rotations: np.ndarray,
    T_head_camera: np.ndarray,
    intrinsics: np.ndarray,
) -> np.ndarray:
    """Hand visibility from a motion clip at the video frames.

    Args:
        positions: (81, 23, 3) world segment positions, metres.
        rotations: (81, 23, 3, 3) world segment rotations.
        T_head_camera: (4, 4) camera pose in the Head segment frame.
        intrinsics: (3, 3) pinhole K of the 480x480 frames.

    Returns:
        (41, 2) bool, hands ordered (left, right).
    """
    cameras = head_camera_trajectory(positions, rotations, T_head_camera)
    step = (np.asarray(positions).shape[0] - 1) // (cameras.shape[0] - 1)
    hands = np.asarray(positions, dtype=np.float64)[::step][:, list(skeleton.HANDS)]
    return visibility.hand_visibility(hands, cameras, np.asarray(intrinsics, dtype=np.float64), VIDEO_SIZE)


HANDS: tuple[str, str] = ("left", "right")


def f1_score(predicted: np.ndarray, target: np.ndarray, zero_division: float = float("nan")) -> float:
    """F1 of boolean arrays (any shape, pooled): 2 TP / (2 TP + FP + FN); `zero_division` (NaN:
    undefined) when neither has a positive, as sklearn's parameter of that name."""
    predicted = np.asarray(predicted, dtype=bool)
    target = np.asarray(target, dtype=bool)
    tp = int(np.sum(predicted & target))
    fp = int(np.sum(predicted & ~target))
    fn = int(np.sum(~predicted & target))
    if tp + fp + fn == 0:
        return float(zero_division)
    return 2.0 * tp / (2.0 * tp + fp + fn)


def hand_f1(presence: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(2,) F1 per hand (left, right) pooled over all leading axes; NaN where undefined.

    Args:
        presence: (..., 2) bool classifier output (left, right).
        visibility: (..., 2) bool visibility from the motion.
    """
    presence = np.asarray(presence, dtype=bool)
    visibility = np.asarray(visibility, dtype=bool)
    if presence.shape != visibility.shape or presence.shape[-1] != 2:
        raise ValueError(f"presence {presence.shape} and visibility {visibility.shape} must match, (..., 2)")
    return np.array([f1_score(presence[..., h], visibility[..., h]) for h in range(2)])


def hand_score(presence: np.ndarray, visibility: np.ndarray) -> float:
    """HandScore: mean over the hands with a defined F1 (`hand_f1`); NaN when neither is defined."""
    f1 = hand_f1(presence, visibility)
    return float(np.mean(f1[np.isfinite(f1)])) if np.isfinite(f1).any() else float("nan")


def undefined_hands(presence: np.ndarray, visibility: np.ndarray) -> list[str]:
    """Names of the hands whose pooled F1 is undefined (no positive in presence nor visibility)."""
    return [HANDS[h] for h, v in enumerate(hand_f1(presence, visibility)) if not np.isfinite(v)]
