"""Input validation shared by the motion representations."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from egotwin_bench.geometry import numpy_or_torch
from egotwin_bench.skeleton import NUM_SEGMENTS


def checked_numpy_or_torch(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`geometry.numpy_or_torch` that first refuses non-floating array inputs with a clear error."""
    inner = numpy_or_torch(fn)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for i, a in enumerate(args):
            if isinstance(a, (np.ndarray, torch.Tensor)):
                floating = a.is_floating_point() if isinstance(a, torch.Tensor) else np.issubdtype(a.dtype, np.floating)
                if not floating:
                    raise TypeError(f"{fn.__name__}: argument {i} must have a floating dtype (float32/float64), got {a.dtype}")
        return inner(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
    return wrapper


def check_pose_sequence(positions, rotations) -> None:
    """Raise a clear error unless positions (..., T, 23, 3) and rotations (..., T, 23, 3, 3) match."""
    for name, x in (("positions", positions), ("rotations", rotations)):
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")
        floating = x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
        if not floating:
            raise TypeError(f"{name} must have a floating dtype (float32/float64), got {x.dtype}")
    if type(positions) is not type(rotations):
        raise TypeError("positions and rotations must both be NumPy arrays or both torch tensors")
    if positions.ndim < 3 or tuple(positions.shape[-2:]) != (NUM_SEGMENTS, 3):
        raise ValueError(f"positions must have shape (..., T, {NUM_SEGMENTS}, 3), got {tuple(positions.shape)}")
    if tuple(rotations.shape[-3:]) != (NUM_SEGMENTS, 3, 3) or tuple(rotations.shape[:-3]) != tuple(positions.shape[:-2]):
        raise ValueError(
            f"rotations must have shape {tuple(positions.shape[:-2]) + (NUM_SEGMENTS, 3, 3)} to match positions "
            f"{tuple(positions.shape)}, got {tuple(rotations.shape)}"
        )
    if positions.shape[-3] < 1:
        raise ValueError("a motion needs at least one frame")


def check_features(features, dim: int, name: str) -> None:
    """Raise a clear error unless features is a float (..., T, dim) array/tensor."""
    if not isinstance(features, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} features must be a NumPy array or a torch tensor, got {type(features).__name__}")
    floating = features.is_floating_point() if isinstance(features, torch.Tensor) else np.issubdtype(features.dtype, np.floating)
    if not floating:
        raise TypeError(f"{name} features must have a floating dtype, got {features.dtype}")
    if features.ndim < 2 or features.shape[-1] != dim:
        raise ValueError(f"{name} features must have shape (..., T, {dim}), got {tuple(features.shape)}")
