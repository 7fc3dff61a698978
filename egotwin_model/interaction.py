"""The video-motion interaction mask (paper §3.2, Fig. 3; DESIGN §6) and joint attention.

Token layout of one joint-attention call: ``[text (Lt) | video (F frames x S tokens, frame-major)
| motion (Lm)]``. Video latent frames are O^0..O^{F-1}; motion tokens P^0..P^{Lm-1}; P^0 is the
initial pose and chunk A^i = (P^{2i+1}, P^{2i+2}) is the motion between O^i and O^{i+1}.
Allowed between video and motion:

* O^0 <-> P^0 (both directions);
* O^i (i >= 1) attends A^{i-1};
* A^i attends O^i and O^{i+1}.

All other video-motion pairs are blocked; text <-> everything and intra-modal attention are free.

One rule, three forms: `allowed` (scalar, readable), `dense_mask` ((N, N) bool, for SDPA on CPU
and tests) and `block_mask` (FlexAttention `BlockMask`, CUDA). `joint_attention` is the single
attention entry point of the DiT: mask off -> fused `F.scaled_dot_product_attention`; mask on ->
FlexAttention on CUDA (or the exact log-sum-exp merge of `egotwin_model.merged_attention`),
SDPA with the dense boolean mask elsewhere (FlexAttention has no CPU backward in torch 2.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

TEXT, VIDEO, MOTION = 0, 1, 2
KIND_CODES: dict[str, int] = {"text": TEXT, "video": VIDEO, "motion": MOTION}
Backend = Literal["auto", "dense", "flex", "merged"]


def allowed(q_kind: str, q_index: int, k_kind: str, k_index: int) -> bool:
    """May a query token attend a key token? Indices: video -> latent frame, motion -> token."""
    if "text" in (q_kind, k_kind) or q_kind == k_kind:
        return True
    if q_kind == "video":  # video query, motion key
        i, j = q_index, k_index
        return (i == 0 and j == 0) or (i >= 1 and j in (2 * i - 1, 2 * i))
    # motion query, video key
    j, i = q_index, k_index
    if j == 0:
        return i == 0
    chunk = (j - 1) // 2
    return i in (chunk, chunk + 1)


@dataclass(frozen=True)
class TokenLayout:
    """Lengths of the joint sequence: Lt text, F video frames of S tokens, Lm motion tokens."""

    text: int
    frames: int
    tokens_per_frame: int
    motion: int

    @property
    def video(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def total(self) -> int:
        return self.text + self.video + self.motion

    def kinds_and_indices(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) kind code (TEXT/VIDEO/MOTION) and (N,) index (video frame / motion token / text pos)."""
        kinds = torch.cat([
            torch.full((self.text,), TEXT), torch.full((self.video,), VIDEO), torch.full((self.motion,), MOTION)
        ]).to(device)
        index = torch.cat([
            torch.arange(self.text),
            torch.arange(self.frames).repeat_interleave(self.tokens_per_frame),
            torch.arange(self.motion),
        ]).to(device)
        return kinds, index


def allowed_tensor(qk: torch.Tensor, qi: torch.Tensor, kk: torch.Tensor, ki: torch.Tensor) -> torch.Tensor:
    """Vectorised `allowed` over broadcastable tensors of kind codes and indices."""
    free = (qk == TEXT) | (kk == TEXT) | (qk == kk)
    video_q = (qk == VIDEO) & (kk == MOTION) & (
        ((qi == 0) & (ki == 0)) | ((qi >= 1) & ((ki == 2 * qi - 1) | (ki == 2 * qi)))
    )
    chunk = torch.div(qi - 1, 2, rounding_mode="floor")
    motion_q = (qk == MOTION) & (kk == VIDEO) & (
        ((qi == 0) & (ki == 0)) | ((qi >= 1) & ((ki == chunk) | (ki == chunk + 1)))
    )
    return free | video_q | motion_q


def dense_mask(layout: TokenLayout, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, N) bool, True where query row may attend key column."""
    kinds, index = layout.kinds_and_indices(device)
    return allowed_tensor(kinds[:, None], index[:, None], kinds[None, :], index[None, :])


def block_mask(layout: TokenLayout, device: torch.device | str = "cuda", block_size: int = 128):
    """The same rule as a FlexAttention `BlockMask` (batch- and head-independent)."""
    from torch.nn.attention.flex_attention import create_block_mask

    kinds, index = layout.kinds_and_indices(device)

    def mask_mod(b, h, q_idx, kv_idx):
        return allowed_tensor(kinds[q_idx], index[q_idx], kinds[kv_idx], index[kv_idx])

    n = layout.total
    return create_block_mask(mask_mod, None, None, n, n, device=str(device), BLOCK_SIZE=block_size)


@dataclass(frozen=True)
class MaskSpec:
    """What `joint_attention` needs to know: the layout, whether to mask, and how."""

    layout: TokenLayout
    enabled: bool = True
    backend: Backend = "auto"

    def resolve(self, device: torch.device) -> str:
        if not self.enabled or self.layout.motion == 0 or self.layout.video == 0:
            return "none"
        if self.backend != "auto":
            return self.backend
        return "flex" if device.type == "cuda" else "dense"


@torch.compiler.disable  # a cache hit, not a graph: keep torch.compile from re-tracing the mask build
@lru_cache(maxsize=16)
def _cached_dense(layout: TokenLayout, device: str) -> torch.Tensor:
    return dense_mask(layout, device)


@torch.compiler.disable  # a cache hit, not a graph: keep torch.compile from re-tracing the mask build
@lru_cache(maxsize=16)
def _cached_block(layout: TokenLayout, device: str):
    return block_mask(layout, device)


@torch.compiler.disable  # a cache hit, not a graph: keep torch.compile from re-tracing the mask build
@lru_cache(maxsize=16)
def _cached_merged(layout: TokenLayout, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    from egotwin_model.merged_attention import split_dense_mask

    return split_dense_mask(dense_mask(layout, device), layout.motion)


@lru_cache(maxsize=2)
def _flex_attention(compiled: bool):
    """FlexAttention, compiled on CUDA (its fused kernel); eager elsewhere (forward only on CPU)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_spec: MaskSpec | None) -> torch.Tensor:
    """Softmax attention over the joint sequence. q, k, v: (B, H, N, Dh) -> (B, H, N, Dh).

    The only attention call of the DiT, so faster exact backends can be swapped in here.
    """
    route = "none" if mask_spec is None else mask_spec.resolve(q.device)
    if route == "none":
        return F.scaled_dot_product_attention(q, k, v)
    if q.shape[2] != mask_spec.layout.total:
        raise ValueError(f"sequence length {q.shape[2]} does not match the mask layout {mask_spec.layout}")
    device = str(q.device)
    if route == "dense":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_cached_dense(mask_spec.layout, device))
    if route == "flex":
        return _flex_attention(q.is_cuda)(q, k, v, block_mask=_cached_block(mask_spec.layout, device))
    if route == "merged":
        from egotwin_model.merged_attention import merged_masked_attention

        main_to_motion, motion_to_all = _cached_merged(mask_spec.layout, device)
        return merged_masked_attention(q, k, v, main_to_motion, motion_to_all)
    raise ValueError(f"unknown attention backend {route!r}; use auto, dense, flex or merged")
