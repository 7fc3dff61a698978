"""DROID-SLAM pose backend (optional extra, CUDA), imported lazily.

Install: ``pip install 'egotwin[droid]'`` (builds DROID-SLAM's CUDA extensions from
https://github.com/princeton-vl/DROID-SLAM) and download ``droid.pth`` from that repository's
README; pass it as ``--droid-weights PATH``.

Frames are fed exactly as the DROID-SLAM demo does: BGR uint8 resized so that H*W is about
384*512, cropped to multiples of 8, intrinsics ``[fx, fy, cx, cy]`` scaled with the resize,
``droid.track(t, image[None], intrinsics=...)`` per frame, then ``droid.terminate(stream)``
returns one camera-to-world pose per frame as ``tx ty tz qx qy qz qw``.
"""

from __future__ import annotations

import importlib
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from egotwin_bench import geometry
from egotwin_bench.estimators.base import check_frames

DROID_TARGET_PIXELS: int = 384 * 512
"""DROID-SLAM's demo resizes every frame to about this many pixels."""

INSTALL_HINT = (
    "install the optional extra with `pip install 'egotwin[droid]'` on a CUDA machine "
    "(builds https://github.com/princeton-vl/DROID-SLAM), or use `--estimator builtin`"
)


@dataclass(frozen=True)
class DroidConfig:
    """The argparse namespace `Droid(args)` expects; defaults are the public demo's."""

    buffer: int = 512
    beta: float = 0.3
    filter_thresh: float = 2.4
    warmup: int = 8
    keyframe_thresh: float = 4.0
    frontend_thresh: float = 16.0
    frontend_window: int = 25
    frontend_radius: int = 2
    frontend_nms: int = 1
    backend_thresh: float = 22.0
    backend_radius: int = 2
    backend_nms: int = 3
    upsample: bool = False
    stereo: bool = False
    disable_vis: bool = True


def droid_input_size(height: int, width: int) -> tuple[int, int, int, int]:
    """(resized h, resized w, cropped h, cropped w) as in DROID-SLAM's demo."""
    scale = np.sqrt(DROID_TARGET_PIXELS / (height * width))
    h1, w1 = int(height * scale), int(width * scale)
    return h1, w1, h1 - h1 % 8, w1 - w1 % 8


def prepare_frame(frame_rgb: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One RGB (H, W, 3) uint8 frame + K -> DROID input: BGR (3, h, w) uint8 and [fx, fy, cx, cy].

    The crop removes rows/columns at the bottom/right only, so the principal point just scales.
    """
    h0, w0 = frame_rgb.shape[:2]
    h1, w1, hc, wc = droid_input_size(h0, w0)
    bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    image = cv2.resize(bgr, (w1, h1), interpolation=cv2.INTER_AREA)[:hc, :wc]
    K = np.asarray(intrinsics, dtype=np.float64)
    calib = np.array([K[0, 0] * w1 / w0, K[1, 1] * h1 / h0, K[0, 2] * w1 / w0, K[1, 2] * h1 / h0])
    return np.ascontiguousarray(image.transpose(2, 0, 1)), calib


def poses_from_droid(traj: np.ndarray) -> np.ndarray:
    """(N, 7) ``tx ty tz qx qy qz qw`` camera-to-world -> (N, 4, 4) matrices."""
    traj = np.asarray(traj, dtype=np.float64)
    if traj.ndim != 2 or traj.shape[1] != 7:
        raise ValueError(f"DROID trajectory must be (N, 7), got {traj.shape}")
    q_wxyz = np.concatenate([traj[:, 6:7], traj[:, 3:6]], axis=1)
    return geometry.make_transform(geometry.quat_wxyz_to_matrix(q_wxyz), traj[:, :3])


class DroidEstimator:
    """DROID-SLAM backend: one `Droid` instance per clip, weights from a local `droid.pth`."""

    name = "droid"

    def __init__(self, weights: str | Path | None, config: DroidConfig | None = None) -> None:
        self.weights = Path(weights) if weights is not None else None
        self.config = config or DroidConfig()

    def unavailable_reason(self) -> str | None:
        try:
            importlib.import_module("droid_slam")
            torch = importlib.import_module("torch")
        except ImportError:
            return f"DROID-SLAM is not installed: {INSTALL_HINT}"
        if not torch.cuda.is_available():
            return "DROID-SLAM needs a CUDA GPU; none is visible (use `--estimator builtin`)"
        if self.weights is None:
            return "no --droid-weights given: download droid.pth (see the DROID-SLAM README) and pass its path"
        if not self.weights.is_file():
            return f"DROID-SLAM weights not found at {self.weights}: download droid.pth (see the DROID-SLAM README)"
        return None

    def namespace(self, image_size: tuple[int, int]) -> Namespace:
        """The `args` for `Droid(args)`: the config plus weights and image size."""
        return Namespace(**asdict(self.config), weights=str(self.weights), image_size=list(image_size))

    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB + (3, 3) K -> (N, 4, 4) camera-to-world poses (DROID's scale)."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        frames, K = check_frames(frames, intrinsics)
        torch = importlib.import_module("torch")
        Droid = importlib.import_module("droid_slam.droid").Droid

        def stream() -> Iterator[tuple[int, "torch.Tensor", "torch.Tensor"]]:
            for t, frame in enumerate(frames):
                image, calib = prepare_frame(frame, K)
                yield t, torch.as_tensor(image)[None], torch.as_tensor(calib, dtype=torch.float32)

        droid = None
        for t, image, calib in stream():
            if droid is None:
                droid = Droid(self.namespace((image.shape[-2], image.shape[-1])))
            droid.track(t, image, intrinsics=calib)
        traj = droid.terminate(stream())
        traj = traj.cpu().numpy() if hasattr(traj, "cpu") else np.asarray(traj)
        if len(traj) != len(frames):
            raise RuntimeError(f"DROID-SLAM returned {len(traj)} poses for {len(frames)} frames")
        return poses_from_droid(traj)
