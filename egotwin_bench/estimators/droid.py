"""DROID-SLAM pose backend (optional, CUDA), imported lazily from a DROID-SLAM checkout.

DROID-SLAM is not a pip-installable Python package: its ``setup.py`` builds only the CUDA
extension ``droid_backends`` (plus, in its ``thirdparty/lietorch`` submodule, ``lietorch``), and
its Python code lives in ``<repo>/droid_slam/`` as flat modules (``droid.py`` does
``from droid_net import DroidNet``; there is no ``droid_slam/__init__.py``). Its own demo puts
that folder on ``sys.path`` and does ``from droid import Droid``; so does this backend, with the
checkout given as ``--droid-repo DIR`` or ``$DROID_SLAM_DIR``. Install (docs/benchmark.md)::

    git clone --recursive https://github.com/princeton-vl/DROID-SLAM.git
    cd DROID-SLAM
    pip install --no-build-isolation thirdparty/lietorch   # (newer checkouts: thirdparty/pytorch_scatter too)
    pip install --no-build-isolation .                     # builds droid_backends

and download ``droid.pth`` (see its README); pass it as ``--droid-weights PATH``.

The ``args`` namespace of ``Droid(args)`` is built from the checkout's own ``demo.py`` argparse
defaults (read with `ast`, never executed), so versions that add options get their defaults;
`DroidConfig` holds the demo's defaults at the time of writing and is used only when the
checkout has no readable ``demo.py``. Our overrides: ``weights``, ``image_size``,
``disable_vis=True``, ``stereo=False`` (what the demo sets after parsing), ``upsample=False`` and,
where the version has it, ``asynchronous=False``.

Frames are fed exactly as the DROID-SLAM demo does: BGR uint8 resized so that H*W is about
384*512, cropped to multiples of 8, intrinsics ``[fx, fy, cx, cy]`` scaled with the resize,
``droid.track(t, image[None], intrinsics=...)`` per frame, then ``droid.terminate(stream)``
returns one camera-to-world pose per frame as ``tx ty tz qx qy qz qw``.
"""

from __future__ import annotations

import ast
import importlib
import os
import pickle
import sys
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from egotwin_bench import geometry
from egotwin_bench.estimators.base import check_frames
from egotwin_bench.hashing import digest
from egotwin_bench.weights import WeightsMismatchError, sha256_of

DROID_TARGET_PIXELS: int = 384 * 512
"""DROID-SLAM's demo resizes every frame to about this many pixels."""
DROID_REPO_ENV: str = "DROID_SLAM_DIR"
"""Environment variable naming the DROID-SLAM checkout (the `--droid-repo` default)."""
DROID_GIT: str = "https://github.com/princeton-vl/DROID-SLAM.git"
INSTALL_HINT = (
    f"clone it with `git clone --recursive {DROID_GIT}`, in that folder run "
    "`pip install --no-build-isolation thirdparty/lietorch` and `pip install --no-build-isolation .` "
    f"on a CUDA machine, and pass the folder as --droid-repo (or ${DROID_REPO_ENV}); "
    "or use `--estimator builtin`"
)
OVERRIDES: dict[str, Any] = {"disable_vis": True, "stereo": False, "upsample": False}
"""Our settings on top of the demo's defaults (no viewer, monocular, no depth upsampling)."""
DEMO_ONLY_ARGS: frozenset[str] = frozenset({"imagedir", "calib", "t0", "stride", "reconstruction_path"})
"""Demo options about its own input/output files; not passed to `Droid`."""


@dataclass(frozen=True)
class DroidConfig:
    """Fallback `Droid(args)` settings: the public demo's defaults when this was written.

    Used only when the checkout's ``demo.py`` cannot be read (see `demo_defaults`).
    """

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


def demo_defaults(demo_py: str | Path) -> dict[str, Any]:
    """The argparse defaults of DROID-SLAM's ``demo.py`` as {dest: default}, read without running it.

    Every ``*.add_argument("--name", ...)`` call counts: ``default=`` when it is a literal,
    ``False``/``True`` for ``store_true``/``store_false``, else None. ``DEMO_ONLY_ARGS`` are left out.

    Raises:
        OSError: the file cannot be read. SyntaxError: it is not Python.
    """
    tree = ast.parse(Path(demo_py).read_text(encoding="utf8"), filename=str(demo_py))
    found: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument" and node.args):
            continue
        flag = node.args[0]
        if not (isinstance(flag, ast.Constant) and isinstance(flag.value, str) and flag.value.startswith("--")):
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        dest = flag.value[2:].replace("-", "_")
        if isinstance(kwargs.get("dest"), ast.Constant):
            dest = kwargs["dest"].value
        action = kwargs["action"].value if isinstance(kwargs.get("action"), ast.Constant) else None
        default: Any = None
        if "default" in kwargs:
            try:
                default = ast.literal_eval(kwargs["default"])
            except ValueError:
                default = None
        elif action in ("store_true", "store_false"):
            default = action == "store_false"
        if dest not in DEMO_ONLY_ARGS:
            found[dest] = default
    return found


def droid_repo(repo: str | Path | None = None) -> Path | None:
    """The DROID-SLAM checkout: `repo`, else ``$DROID_SLAM_DIR``, else None."""
    value = repo if repo is not None else os.environ.get(DROID_REPO_ENV)
    return Path(value).expanduser() if value else None


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
    """DROID-SLAM backend: one `Droid` instance per clip, code from a checkout, weights from `droid.pth`."""

    name = "droid"

    def __init__(self, weights: str | Path | None, repo: str | Path | None = None,
                 config: DroidConfig | None = None) -> None:
        """`repo` None: ``$DROID_SLAM_DIR``. `config`: explicit settings instead of the demo's defaults."""
        self.weights = Path(weights) if weights is not None else None
        self.repo = droid_repo(repo)
        self.config = config
        self.args_source = ""
        """Where the last `namespace` took its defaults from (``<repo>/demo.py`` or `DroidConfig`)."""
        self._weights_sha: str | None = None

    @property
    def modules_dir(self) -> Path | None:
        """``<repo>/droid_slam``: the folder of DROID-SLAM's flat Python modules."""
        return None if self.repo is None else self.repo / "droid_slam"

    def unavailable_reason(self) -> str | None:
        if self.repo is None:
            return f"DROID-SLAM is not installed (no --droid-repo / ${DROID_REPO_ENV}): {INSTALL_HINT}"
        if not (self.modules_dir / "droid.py").is_file():
            return (f"DROID-SLAM is not installed at {self.repo}: no droid_slam/droid.py there (is it a "
                    f"checkout of {DROID_GIT}?); {INSTALL_HINT}")
        for module, how in (
            ("lietorch", f"`pip install --no-build-isolation {self.repo / 'thirdparty' / 'lietorch'}`"),
            ("droid_backends", f"`pip install --no-build-isolation .` in {self.repo}"),
        ):
            try:
                importlib.import_module(module)
            except ImportError as err:
                return f"DROID-SLAM is not installed: its CUDA extension {module!r} does not import ({err}); run {how}"
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return "DROID-SLAM needs a CUDA GPU; none is visible (use `--estimator builtin`)"
        if self.weights is None:
            return "no --droid-weights given: download droid.pth (see the DROID-SLAM README) and pass its path"
        if not self.weights.is_file():
            return f"DROID-SLAM weights not found at {self.weights}: download droid.pth (see the DROID-SLAM README)"
        return None

    def namespace(self, image_size: tuple[int, int]) -> Namespace:
        """The `args` for `Droid(args)`: the demo's defaults (or `config`) + `OVERRIDES`, weights, image size."""
        base, self.args_source = asdict(self.config or DroidConfig()), "DroidConfig"
        if self.config is None and self.repo is not None:
            demo = self.repo / "demo.py"
            try:
                base, self.args_source = demo_defaults(demo), str(demo)
            except (OSError, SyntaxError):
                self.args_source = f"DroidConfig ({demo} not readable)"
        args = {**base, **OVERRIDES, "weights": str(self.weights), "image_size": list(image_size)}
        if "asynchronous" in args:
            args["asynchronous"] = False
        return Namespace(**args)

    def cache_id(self) -> str:
        """``droid-<digest>`` of the weights' sha256 and the `Droid` settings (the pose cache's name)."""
        if self._weights_sha is None:
            self._weights_sha = sha256_of(self.weights) if self.weights is not None and self.weights.is_file() else ""
        settings = {k: v for k, v in vars(self.namespace((0, 0))).items() if k not in ("weights", "image_size")}
        return f"{self.name}-{digest(self._weights_sha, settings)}"

    def droid_class(self) -> type:
        """``droid.Droid`` from ``<repo>/droid_slam`` (put first on ``sys.path``, as the demo does)."""
        modules = self.modules_dir.resolve()
        folder = str(modules)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        loaded = sys.modules.get("droid")
        if loaded is not None and Path(getattr(loaded, "__file__", None) or "").resolve().parent != modules:
            raise RuntimeError(f"another module named 'droid' is already imported ({loaded!r}); "
                               f"cannot load DROID-SLAM from {folder}")
        try:
            return importlib.import_module("droid").Droid
        except ImportError as err:
            raise RuntimeError(f"DROID-SLAM at {self.repo} does not import ({err}); {INSTALL_HINT}") from err

    def _build(self, Droid: type, image_size: tuple[int, int]) -> Any:
        """``Droid(args)``. Its ``load_weights`` reads `weights` with ``torch.load`` and a strict
        ``load_state_dict``; those failing (unreadable file, missing keys, other shapes) raise
        `WeightsMismatchError` naming the file. Other errors (e.g. CUDA) propagate."""
        try:
            return Droid(self.namespace(image_size))
        except (KeyError, OSError, pickle.UnpicklingError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and "state_dict" not in str(err):
                raise
            raise WeightsMismatchError(
                f"{self.weights} does not load into DROID-SLAM's DroidNet ({type(err).__name__}: {err}); "
                "download droid.pth again (see the DROID-SLAM README)") from err

    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB + (3, 3) K -> (N, 4, 4) camera-to-world poses (DROID's scale)."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        frames, K = check_frames(frames, intrinsics)
        torch = importlib.import_module("torch")
        Droid = self.droid_class()

        def stream() -> Iterator[tuple[int, "torch.Tensor", "torch.Tensor"]]:
            for t, frame in enumerate(frames):
                image, calib = prepare_frame(frame, K)
                yield t, torch.as_tensor(image)[None], torch.as_tensor(calib, dtype=torch.float32)

        droid = None
        for t, image, calib in stream():
            if droid is None:
                droid = self._build(Droid, (image.shape[-2], image.shape[-1]))
            droid.track(t, image, intrinsics=calib)
        traj = droid.terminate(stream())
        traj = traj.cpu().numpy() if hasattr(traj, "cpu") else np.asarray(traj)
        if len(traj) != len(frames):
            raise RuntimeError(f"DROID-SLAM returned {len(traj)} poses for {len(frames)} frames")
        return poses_from_droid(traj)
