"""Local save / load of a network, diffusers-style: a folder with ``config.json`` + weights.

    <folder>/config.json                            {"_class_name": ..., <config dataclass fields>}
    <folder>/diffusion_pytorch_model.safetensors    the state dict (the file name diffusers uses)

`PretrainedMixin` gives a module whose ``__init__(config, **runtime_kwargs)`` takes one frozen
config dataclass (`MotionVAEConfig`, `DiTConfig`) `save_pretrained(folder)` and
`from_pretrained(folder)`. Saving is atomic (written into ``<folder>.tmp``, then renamed over
the folder). Loading never touches the network: a missing folder or file is a clear error.
Networks are built on the meta device and the weights assigned, so a 5.9B DiT is not first
randomly initialised on the CPU (models with non-persistent buffers are built normally).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from egotwin_model.config import section_from_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """`save_pretrained` / `from_pretrained` for an `nn.Module` built from `config_class`."""

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and the safetensors weights into `folder` (replaced atomically)."""
        assert isinstance(self, nn.Module)
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        config = {"_class_name": type(self).__name__, **dataclasses.asdict(self.config)}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return folder

    @classmethod
    def load_config(cls, folder: str | Path) -> Any:
        """The config dataclass stored in ``folder/config.json``."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: `{cls.__name__}.from_pretrained` needs a local folder written by "
                f"`save_pretrained` (config.json + {WEIGHTS_NAME})"
            )
        data = json.loads(path.read_text())
        name = data.pop("_class_name", None)
        if name != cls.__name__:
            raise ValueError(f"{path} holds a {name!r}, not a {cls.__name__}")
        return section_from_dict(cls.config_class, data, str(path))

    @classmethod
    def from_pretrained(cls: type[M], folder: str | Path, *, device: str | torch.device = "cpu",
                        torch_dtype: torch.dtype | None = None, **kwargs: Any) -> M:
        """The network saved in `folder`; `kwargs` go to ``__init__`` (e.g. `attention_backend`).
        Weights keep their stored dtype unless `torch_dtype` is given; the module is in eval mode."""
        folder = Path(folder)
        config = cls.load_config(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found (the weights `save_pretrained` writes next to config.json)")
        state = load_file(str(weights), device=str(device))
        with torch.device("meta"):
            model = cls(config, **kwargs)
        assign = not any(b.is_meta for _, b in _non_persistent_buffers(model))
        if not assign:  # a buffer computed in __init__ is not in the file: build for real
            with torch.device(device):
                model = cls(config, **kwargs)
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"{weights} does not fit {cls.__name__}({config!r}): missing {missing[:8]}, "
                           f"unexpected {unexpected[:8]}")
        model.load_state_dict(state, strict=True, assign=assign)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()


def _non_persistent_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    persistent = set(module.state_dict())
    return [(name, b) for name, b in module.named_buffers() if name not in persistent]
