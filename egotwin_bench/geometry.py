"""Rotations and rigid transforms: thin wrappers over roma that accept NumPy or torch.

Every function takes NumPy arrays or torch tensors of any batch shape and returns the same
kind (NumPy results keep the input's float dtype). NumPy inputs go through roma in float64 so
both paths agree to rounding.

Conventions
-----------
* Quaternions are **w, x, y, z** (Nymeria / Xsens order); roma's are x, y, z, w.
* 6D rotations (Zhou et al. 2019) are the first two *columns* of the matrix, flattened row-major
  from the (3, 2) block: ``[R00, R01, R10, R11, R20, R21]``. Decoding is Gram-Schmidt.
* A rigid transform ``T_a_b`` is a (..., 4, 4) matrix mapping points from frame b to frame a.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import roma
import torch

Array = np.ndarray | torch.Tensor


def numpy_or_torch(fn: Callable[..., torch.Tensor]) -> Callable[..., Array]:
    """Decorator: run a torch implementation on NumPy inputs too (float64 inside, input dtype out).

    Positional arguments are the arrays; keyword arguments pass through unchanged.
    """

    def wrapper(*args, **kwargs):
        if any(isinstance(a, torch.Tensor) for a in args):
            return fn(*args, **kwargs)
        dtype = np.result_type(*[np.asarray(a).dtype for a in args])
        out_dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
        kwargs = {k: (torch.as_tensor(np.asarray(v, dtype=np.float64)) if isinstance(v, np.ndarray) else v)
                  for k, v in kwargs.items()}
        targs = [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in args]
        out = fn(*targs, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.numpy().astype(out_dtype) if o.is_floating_point() else o.numpy() for o in out)
        return out.numpy().astype(out_dtype) if out.is_floating_point() else out.numpy()

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _check_last(x: Array, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, shape))}), got {tuple(x.shape)}")


@numpy_or_torch
def matrix_to_6d(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 6) first two columns."""
    _check_last(R, (3, 3), "R")
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


@numpy_or_torch
def sixd_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) 6D rotations -> (..., 3, 3) rotation matrices (Gram-Schmidt, roma)."""
    _check_last(d6, (6,), "d6")
    return roma.special_gramschmidt(d6.reshape(*d6.shape[:-1], 3, 2))


@numpy_or_torch
def quat_wxyz_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions w, x, y, z (normalised here) -> (..., 3, 3) rotation matrices."""
    _check_last(q, (4,), "q")
    xyzw = torch.cat([q[..., 1:], q[..., :1]], dim=-1)
    return roma.unitquat_to_rotmat(xyzw / xyzw.norm(dim=-1, keepdim=True))


@numpy_or_torch
def matrix_to_quat_wxyz(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions w, x, y, z with w >= 0."""
    _check_last(R, (3, 3), "R")
    xyzw = roma.rotmat_to_unitquat(R)
    q = torch.cat([xyzw[..., 3:], xyzw[..., :3]], dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


@numpy_or_torch
def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (...,) rotation angle in radians, in [0, pi] (numerically safe)."""
    _check_last(R, (3, 3), "R")
    return roma.rotmat_to_rotvec(R).norm(dim=-1)


@numpy_or_torch
def rotation_about_z(yaw: torch.Tensor) -> torch.Tensor:
    """(...,) yaw angles in radians -> (..., 3, 3) rotations about +Z."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    z, o = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*yaw.shape, 3, 3)


@numpy_or_torch
def make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation and (..., 3) translation -> (..., 4, 4) rigid transform."""
    _check_last(R, (3, 3), "R")
    _check_last(t, (3,), "t")
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = R.new_zeros(*batch, 4, 4)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


@numpy_or_torch
def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of (..., 4, 4) rigid transforms (exact, no general matrix inverse)."""
    _check_last(T, (4, 4), "T")
    R = T[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = R
    out[..., :3, 3] = -(R @ T[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1.0
    return out


@numpy_or_torch
def transform_points(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) transforms to (..., N, 3) or (..., 3) points (broadcasting batch dims)."""
    _check_last(T, (4, 4), "T")
    _check_last(p, (3,), "p")
    if p.dim() == T.dim() - 1:  # (..., 3) single point per transform
        return (T[..., :3, :3] @ p[..., None])[..., 0] + T[..., :3, 3]
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def geodesic_distance(R1: Array, R2: Array) -> Array:
    """Angle in radians of R1^T R2 for (..., 3, 3) rotations."""
    if isinstance(R1, torch.Tensor):
        return rotation_angle(R1.transpose(-1, -2) @ R2)
    return rotation_angle(np.swapaxes(R1, -1, -2) @ R2)
