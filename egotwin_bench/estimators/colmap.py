"""COLMAP pose backend through pycolmap (CPU, no weights): the default without DROID-SLAM.

Per clip, in a temporary folder (API of the pinned pycolmap 4.2.1):

1. the frames are written as PNG files ``000000.png`` ... and imported by
   ``pycolmap.extract_features`` with ``CameraMode.SINGLE`` and one ``PINHOLE`` camera whose
   ``fx, fy, cx, cy`` are the clip's intrinsics, the principal point moved by +0.5 px from
   OpenCV's convention (pixel centres at integers) to COLMAP's (pixel centres at +0.5);
   SIFT on the CPU, at most `ColmapConfig.max_image_size` pixels on the long side (COLMAP
   rescales the image for extraction and the keypoints back, so the camera stays the clip's);
2. ``pycolmap.match_exhaustive`` (every pair of the 41 frames) with geometric verification, or
   ``match_sequential`` (`ColmapConfig.matching`);
3. ``pycolmap.global_mapping`` (GLOMAP's global mapper) with the bundle adjustment refining
   neither the focal length, the principal point nor extra parameters: the intrinsics stay fixed;
   if it registers fewer than half the frames, ``pycolmap.incremental_mapping`` (same fixed
   intrinsics) runs too and the model with more registered frames is kept;
4. the model with the most registered frames is kept; ``Image.cam_from_world()`` (world to
   camera) is inverted into camera-to-world; unregistered frames are filled by
   ``pycolmap.Rigid3d.interpolate`` between their registered neighbours (held from the nearest
   one before the first / after the last) and reported in `PoseEstimate.registered`.

No model at all (a textureless clip, too few matches) raises `PoseEstimationError` with the
feature and match counts. Runs are repeatable: RANSAC and the mapper take `ColmapConfig.seed`
and one clip runs on one thread (two runs give the same poses, tested).
"""

from __future__ import annotations

import importlib
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from egotwin_bench.estimators.base import PoseEstimate, PoseEstimationError, check_frames
from egotwin_bench.hashing import digest

PYCOLMAP_VERSION: str = "4.2.1"
"""The pycolmap version pinned in pyproject.toml (its options and defaults were read from it)."""
OPENCV_TO_COLMAP_PIXEL: float = 0.5
"""COLMAP puts pixel centres at +0.5 (the top-left pixel spans [0, 1]); OpenCV at integers."""
INSTALL_HINT = f"install it with `pip install pycolmap=={PYCOLMAP_VERSION}` (pinned in pyproject.toml)"


@dataclass(frozen=True)
class ColmapConfig:
    """Settings of the COLMAP backend (everything here is part of the pose cache id)."""

    max_image_size: int = 480
    """Long side (px) SIFT sees; COLMAP rescales the frame and maps keypoints back."""
    max_num_features: int = 8192
    """SIFT keypoints kept per frame (COLMAP's default)."""
    first_octave: int = -1
    """SIFT's first octave: -1 (COLMAP's default) upsamples the frame 2x first, 0 starts at its size."""
    matching: str = "exhaustive"
    """`exhaustive` (all pairs) or `sequential` (each frame with its `sequential_overlap` successors)."""
    sequential_overlap: int = 10
    num_threads: int = 1
    """Threads of extraction, matching and mapping of one clip. One: runs are bit-repeatable (with
    two, poses differ between runs by ~1e-4 relative); parallelism comes from clips as Ray tasks."""
    seed: int = 0
    """Seed of RANSAC and the mappers (repeatable poses)."""
    incremental_fallback: bool = True
    """When the global mapper registers fewer than half the frames (or none), also run COLMAP's
    incremental mapper and keep the model with more registered frames."""


COLMAP_PRESETS: dict[str, ColmapConfig] = {
    "default": ColmapConfig(),
    "fast": ColmapConfig(max_image_size=240, max_num_features=2048, first_octave=0, matching="sequential"),
}
"""Named settings (`--colmap-preset`). ``fast``: SIFT on a 240 px frame from its own size (no 2x
upsampling), 2048 keypoints, each frame matched with its 10 successors: 3.6x (128 px drafts
upsampled to 480 px) to 5.9x (480 px clips) fewer CPU seconds than ``default``, as accurate
within what 10 synthetic clips resolve (docs/benchmark.md, "COLMAP presets"); ``default`` stays
the validated setting (61 clips of issue #19)."""


def colmap_preset(name: str) -> ColmapConfig:
    """The `ColmapConfig` of a preset name; a clear error naming the presets otherwise."""
    if name not in COLMAP_PRESETS:
        raise ValueError(f"unknown COLMAP preset {name!r}; choose one of {', '.join(COLMAP_PRESETS)}")
    return COLMAP_PRESETS[name]


def pycolmap_module() -> Any:
    """``import pycolmap`` (lazy: a compiled extension only the `colmap` backend needs)."""
    return importlib.import_module("pycolmap")


def colmap_camera_params(K: np.ndarray) -> list[float]:
    """OpenCV pinhole K -> COLMAP ``PINHOLE`` params ``[fx, fy, cx, cy]`` (pixel-centre convention)."""
    K = np.asarray(K, dtype=np.float64)
    return [K[0, 0], K[1, 1], K[0, 2] + OPENCV_TO_COLMAP_PIXEL, K[1, 2] + OPENCV_TO_COLMAP_PIXEL]


def fill_unregistered(cam_from_world: list[Any | None]) -> np.ndarray:
    """Per-frame pycolmap ``Rigid3d`` world-to-camera poses, None where unregistered -> (N, 4, 4)
    camera-to-world poses, gaps interpolated (``Rigid3d.interpolate``) between the registered
    neighbours, held from the nearest registered frame at either end.

    Raises:
        ValueError: no frame is registered.
    """
    pycolmap = pycolmap_module()
    known = [i for i, p in enumerate(cam_from_world) if p is not None]
    if not known:
        raise ValueError("no registered frame to interpolate from")
    out = np.zeros((len(cam_from_world), 4, 4))
    for i in range(len(cam_from_world)):
        before = max((k for k in known if k <= i), default=None)
        after = min((k for k in known if k >= i), default=None)
        if before is None or after is None or before == after:
            pose = cam_from_world[before if before is not None else after]
        else:
            pose = pycolmap.Rigid3d.interpolate(cam_from_world[before], cam_from_world[after],
                                                (i - before) / (after - before))
        out[i] = np.linalg.inv(np.vstack([pose.matrix(), [0.0, 0.0, 0.0, 1.0]]))
    return out


def _count(registered: list | None) -> int:
    return 0 if registered is None else sum(p is not None for p in registered)


class ColmapEstimator:
    """COLMAP (pycolmap): SIFT, exhaustive matching, global mapper, the clip's intrinsics fixed."""

    name = "colmap"

    def __init__(self, config: ColmapConfig | None = None) -> None:
        self.config = config or ColmapConfig()
        self.label = next((self.name if k == "default" else f"{self.name}-{k}"
                           for k, c in COLMAP_PRESETS.items() if c == self.config), f"{self.name}-custom")
        """Leaderboard name of the backend and its settings: ``colmap``, ``colmap-fast``, ``colmap-custom``."""
        if self.config.matching not in ("exhaustive", "sequential"):
            raise ValueError(f"matching must be exhaustive or sequential, got {self.config.matching!r}")
        self.stage_seconds: dict[str, float] = {}
        """CPU seconds (all threads) of extraction, matching and mapping of the last clip (benchmarks)."""
        self.mapper = ""
        """Mapper whose model the last clip's poses come from (`global` or `incremental`)."""

    @property
    def num_cpus(self) -> int:
        """CPUs one clip uses (the Ray task's reservation)."""
        return self.config.num_threads

    def unavailable_reason(self) -> str | None:
        try:
            pycolmap = pycolmap_module()
        except ImportError as err:
            return f"pycolmap does not import ({err}); {INSTALL_HINT}"
        if pycolmap.__version__ != PYCOLMAP_VERSION:
            return (f"pycolmap {pycolmap.__version__} is installed, this backend was measured with "
                    f"{PYCOLMAP_VERSION}; {INSTALL_HINT}")
        return None

    # -- options --------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The pycolmap option objects of one run, built from `config`."""
        pycolmap, cfg = pycolmap_module(), self.config
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = cfg.num_threads
        extraction.max_image_size = cfg.max_image_size
        extraction.sift.max_num_features = cfg.max_num_features
        extraction.sift.first_octave = cfg.first_octave
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = cfg.num_threads
        verification = pycolmap.TwoViewGeometryOptions()
        verification.ransac.random_seed = cfg.seed
        if cfg.matching == "exhaustive":
            pairing = pycolmap.ExhaustivePairingOptions()
        else:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = cfg.sequential_overlap
            pairing.num_threads = cfg.num_threads
        mapping = pycolmap.GlobalPipelineOptions()
        mapping.num_threads = cfg.num_threads
        mapping.random_seed = cfg.seed
        mapper = mapping.mapper
        mapper.num_threads = cfg.num_threads
        for seeded in (mapper, mapper.rotation_averaging, mapper.global_positioning, mapper.retriangulation):
            seeded.random_seed = cfg.seed
        ba = mapping.mapper.bundle_adjustment
        ba.refine_focal_length = False
        ba.refine_principal_point = False
        ba.refine_extra_params = False
        incremental = pycolmap.IncrementalPipelineOptions()
        incremental.num_threads = cfg.num_threads
        incremental.random_seed = cfg.seed
        incremental.ba_refine_focal_length = False
        incremental.ba_refine_principal_point = False
        incremental.ba_refine_extra_params = False
        return {"extraction": extraction, "matching": matching, "verification": verification,
                "pairing": pairing, "mapping": mapping, "incremental": incremental}

    def cache_id(self) -> str:
        """``colmap-<digest>`` of the pycolmap version, `config` and every option value."""
        pycolmap = pycolmap_module()
        opts = {k: v.todict() for k, v in self.options().items()}
        return f"{self.name}-{digest(pycolmap.__version__, asdict(self.config), opts)}"

    # -- the run -------------------------------------------------------------------------------
    def estimate(self, frames: np.ndarray, intrinsics: np.ndarray) -> PoseEstimate:
        """(N, H, W, 3) uint8 RGB + (3, 3) OpenCV K -> `PoseEstimate` (COLMAP's world and scale).

        Raises:
            PoseEstimationError: COLMAP reconstructed no model (the reason gives the counts).
        """
        frames, K = check_frames(frames, intrinsics)
        pycolmap = pycolmap_module()
        opts = self.options()
        n = len(frames)
        names = [f"{i:06d}.png" for i in range(n)]
        quiet = pycolmap.logging.minloglevel
        pycolmap.logging.minloglevel = 2  # glog ERROR: no per-stage INFO lines under the progress bar
        try:
            pycolmap.set_random_seed(self.config.seed)
            with tempfile.TemporaryDirectory(prefix="egotwin-colmap-") as tmp:
                root = Path(tmp)
                images, database, sparse = root / "images", root / "database.db", root / "sparse"
                images.mkdir()
                sparse.mkdir()
                for name, frame in zip(names, frames):
                    cv2.imwrite(str(images / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_PNG_COMPRESSION, 1])
                reader = pycolmap.ImageReaderOptions()
                reader.camera_model = "PINHOLE"
                reader.camera_params = ",".join(repr(float(x)) for x in colmap_camera_params(K))
                clock = time.process_time()
                pycolmap.extract_features(database, images, image_names=names,
                                          camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                          extraction_options=opts["extraction"], device=pycolmap.Device.cpu)
                self.stage_seconds = {"extract": time.process_time() - clock}
                clock = time.process_time()
                match = pycolmap.match_exhaustive if self.config.matching == "exhaustive" else pycolmap.match_sequential
                match(database, matching_options=opts["matching"], pairing_options=opts["pairing"],
                      verification_options=opts["verification"], device=pycolmap.Device.cpu)
                self.stage_seconds["match"] = time.process_time() - clock
                clock = time.process_time()
                models = pycolmap.global_mapping(database, images, sparse, opts["mapping"])
                registered, self.mapper = self._registered(models, names), "global"
                if self.config.incremental_fallback and _count(registered) < n / 2:
                    (root / "incremental").mkdir()
                    again = self._registered(pycolmap.incremental_mapping(
                        database, images, root / "incremental", opts["incremental"]), names)
                    if _count(again) > _count(registered):
                        registered, self.mapper = again, "incremental"
                self.stage_seconds["map"] = time.process_time() - clock
                if registered is None:
                    raise PoseEstimationError(self._no_model_reason(database, n))
        finally:
            pycolmap.logging.minloglevel = quiet
        return PoseEstimate(fill_unregistered(registered), np.array([p is not None for p in registered]))

    @staticmethod
    def _registered(models: dict, names: list[str]) -> list | None:
        """Per frame, the ``cam_from_world`` of the largest model (None: not registered there)."""
        if not models:
            return None
        model = max(models.values(), key=lambda m: m.num_reg_images())
        if model.num_reg_images() == 0:
            return None
        index = {name: i for i, name in enumerate(names)}
        out: list = [None] * len(names)
        for image_id in model.reg_image_ids():
            image = model.image(image_id)
            out[index[image.name]] = image.cam_from_world()
        return out

    @staticmethod
    def _no_model_reason(database: Path, n: int) -> str:
        pycolmap = pycolmap_module()
        bad = {pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE,
               pycolmap.TwoViewGeometryConfiguration.WATERMARK}
        with pycolmap.Database.open(database) as db:
            keypoints = [db.num_keypoints_for_image(im.image_id) for im in db.read_all_images()]
            pairs = sum(g.config not in bad for g in db.read_two_view_geometries()[1])
        return (f"COLMAP reconstructed no model from {n} frames: median {int(np.median(keypoints or [0]))} "
                f"SIFT keypoints per frame, {pairs} geometrically verified frame pairs")
