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
the exact log-sum-exp merge of `egotwin_model.merged_attention` on CUDA (fused flash kernels;
FlexAttention with the `BlockMask` is the `flex` backend), SDPA with the dense boolean mask
elsewhere (FlexAttention has no CPU backward in torch 2.x).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from egotwin_model.merged_attention import fused_kernel, merged_masked_attention, split_dense_mask

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
    kinds, index = layout.kinds_and_indices(device)

    def mask_mod(b, h, q_idx, kv_idx):
        return allowed_tensor(kinds[q_idx], index[q_idx], kinds[kv_idx], index[kv_idx])

    n = layout.total
    return create_block_mask(mask_mod, None, None, n, n, device=str(device), BLOCK_SIZE=block_size)


@dataclass(frozen=True)
class MaskSpec:
    """What `joint_attention` needs to know: the layout, whether to mask, and how.

    `masks` holds the mask already built for `resolve`'s route (`prepared`): the DiT prepares it
    once per forward, outside its blocks, so compiled blocks receive it as an input instead of
    building (or looking up) masks inside the graph, which would break it in two.
    """

    layout: TokenLayout
    enabled: bool = True
    backend: Backend = "auto"
    masks: Any = field(default=None, compare=False, repr=False)

    def resolve(self, device: torch.device) -> str:
        if not self.enabled or self.layout.motion == 0 or self.layout.video == 0:
            return "none"
        if self.backend != "auto":
            return self.backend
        # The log-sum-exp merge runs the fused flash/cuDNN kernel (DESIGN §6: within a few % of
        # unmasked attention on H200; FlexAttention with this mask was 1.9x); dense SDPA on CPU.
        return "merged" if device.type == "cuda" else "dense"

    def prepared(self, device: torch.device | str) -> "MaskSpec":
        """This spec with `masks` built (cached per layout and device) for its route."""
        device = torch.device(device)
        route = self.resolve(device)
        builders = {"dense": _cached_dense, "flex": _cached_block, "merged": _cached_merged}
        if route == "none" or self.masks is not None:
            return self
        if route not in builders:
            raise ValueError(f"unknown attention backend {route!r}; use auto, dense, flex or merged")
        return replace(self, masks=builders[route](self.layout, str(device)))


@lru_cache(maxsize=16)
def _cached_dense(layout: TokenLayout, device: str) -> torch.Tensor:
    return dense_mask(layout, device)


@lru_cache(maxsize=16)
def _cached_block(layout: TokenLayout, device: str):
    return block_mask(layout, device)


@lru_cache(maxsize=16)
def _cached_merged(layout: TokenLayout, device: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(main_to_motion, motion_to_all, fused kernel name) of the merged backend."""
    return (*split_dense_mask(dense_mask(layout, device), layout.motion), fused_kernel(device))


@lru_cache(maxsize=2)
def _flex_attention(compiled: bool):
    """FlexAttention, compiled on CUDA (its fused kernel); eager elsewhere (forward only on CPU)."""
    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_spec: MaskSpec | None) -> torch.Tensor:
    """Softmax attention over the joint sequence. q, k, v: (B, H, N, Dh) -> (B, H, N, Dh).

    The only attention call of the DiT, so faster exact backends can be swapped in here. Pass a
    `MaskSpec.prepared` spec from compiled code (a spec without masks builds them here).
    """
    route = "none" if mask_spec is None else mask_spec.resolve(q.device)
    if route == "none":
        return F.scaled_dot_product_attention(q, k, v)
    if q.shape[2] != mask_spec.layout.total:
        raise ValueError(f"sequence length {q.shape[2]} does not match the mask layout {mask_spec.layout}")
    masks = mask_spec.prepared(q.device).masks
    if route == "dense":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=masks)
    if route == "flex":
        return _flex_attention(q.is_cuda)(q, k, v, block_mask=masks)
    main_to_motion, motion_to_all, kernel = masks
    return merged_masked_attention(q, k, v, main_to_motion, motion_to_all, kernel=kernel)
