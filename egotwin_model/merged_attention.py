"""Exact masked joint attention at unmasked-flash speed: the log-sum-exp merge.

The interaction mask (DESIGN §6, `egotwin_model.interaction`) only restricts attention between
video and the ~21 motion tokens. Token layout: ``[main | motion]`` with ``main`` = text + video
(n_main tokens, unmasked among themselves) and ``motion`` = the last ``L_m`` tokens. So:

* main queries over main keys: one fused attention call, no mask (the expensive part; cuDNN on
  Hopper GPUs, FlashAttention-2 on older ones, the flash-style kernel on CPU);
* main queries over motion keys: a tiny dense (n_main x L_m) masked attention;
* motion queries over all keys: a tiny dense (L_m x N) masked attention;

and the two main-query parts are merged by their log-sum-exps, as in ring attention.
Backward re-uses flash's backward kernel fed with the *merged* output and LSE, which yields the
exact gradients of the main-key part (dS = P (dP - rowsum(dO * O)) with the global P, O); the
small parts' gradients are computed densely. Results equal dense masked softmax attention to
rounding (see `tests/test_merged_attention.py`).

Shapes: q, k, v (B, H, N, Dh); masks are boolean, True = may attend.
"""

from __future__ import annotations

from typing import Literal

import torch

_NEG_INF = float("-inf")


Kernel = Literal["cudnn", "flash", "cpu"]


def fused_kernel(device: torch.device | str) -> Kernel:
    """The unmasked fused kernel for `device`: cuDNN's on Hopper (what SDPA itself picks there),
    FlashAttention-2 on other GPUs, the flash-style CPU kernel on CPU.

    Decided outside compiled code (`MaskSpec.prepared`): these queries return Python values, and
    inside a ``torch.compile``d block each would break the graph.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu"
    if torch.backends.cuda.cudnn_sdp_enabled() and torch.cuda.get_device_capability(device) >= (9, 0):
        return "cudnn"
    return "flash"


def _flash_forward(q, k, v, scale: float, kernel: Kernel):
    """Unmasked fused attention -> (out, lse (B, H, N) float32 natural log, seed, offset).

    `seed`/`offset` are the kernel's dropout RNG tensors (unused at dropout 0, but its backward
    takes them); empty on CPU.
    """
    if kernel == "cudnn":
        out, lse, _, _, _, _, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, k, v, None, True, 0.0, False, False, scale=scale
        )
        return out, lse.reshape(lse.shape[:3]), seed, offset
    if kernel == "flash":
        out, lse, _, _, _, _, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, False, False, scale=scale
        )
        return out, lse, seed, offset
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    return out, lse, q.new_empty(0), q.new_empty(0)


def _flash_backward(dout, q, k, v, out, lse, seed, offset, scale: float, kernel: Kernel):
    """Backward of `_flash_forward`'s kernel, fed with `out` and `lse` (B, H, N) of our choice."""
    n = q.shape[2]
    if kernel == "cudnn":  # cuDNN wants its Stats as (B, H, N, 1) with unit last stride
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout, q, k, v, out, lse.contiguous().unsqueeze(-1), seed, offset, None, None, None, n, n,
            0.0, False, scale=scale,
        )
    if kernel == "flash":
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, out, lse, None, None, n, n, 0.0, False, seed, offset, scale=scale
        )
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        dout, q, k, v, out, lse, 0.0, False, scale=scale
    )


def _masked_scores(q, k, mask, scale):
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    return s.masked_fill(~mask, _NEG_INF)


# The fused kernels are wrapped as custom operators: opaque to torch.compile, so Inductor calls
# them with the inputs as given (it would otherwise re-lay out cuDNN's statistics tensor, which
# cuDNN rejects) while it still traces and fuses the small dense parts around them. Their fake
# (shape) implementations are the functions themselves: every aten op inside has a meta kernel.


def _fused_forward_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, kernel: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    out, lse, seed, offset = _flash_forward(q.contiguous(), k.contiguous(), v.contiguous(), scale, kernel)
    return out, lse.float(), seed, offset


def _fused_backward_impl(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                         lse: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor, scale: float, kernel: str
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = _flash_backward(dout.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
                                 out.contiguous(), lse.float().contiguous(), seed, offset, scale, kernel)
    return dq, dk, dv


_fused_forward = torch.library.custom_op("egotwin::fused_attention", _fused_forward_impl, mutates_args=())
_fused_forward.register_fake(_fused_forward_impl)
_fused_backward = torch.library.custom_op("egotwin::fused_attention_backward", _fused_backward_impl, mutates_args=())
_fused_backward.register_fake(_fused_backward_impl)


class _MergedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, main_to_motion, motion_to_all, scale, kernel):
        n_main = main_to_motion.shape[0]
        qm, km, vm = q[:, :, :n_main], k[:, :, :n_main], v[:, :, :n_main]
        qx, kx, vx = q[:, :, n_main:], k[:, :, n_main:], v[:, :, n_main:]

        out1, lse1, seed, offset = _fused_forward(qm, km, vm, scale, kernel)
        s2 = _masked_scores(qm, kx, main_to_motion, scale)  # (B, H, n_main, Lm)
        lse = torch.logaddexp(lse1, torch.logsumexp(s2, dim=-1))
        p2 = torch.exp(s2 - lse[..., None])
        out_main = (torch.exp(lse1 - lse)[..., None] * out1.float() + p2 @ vx.float()).to(q.dtype)

        s3 = _masked_scores(qx, k, motion_to_all, scale)  # (B, H, Lm, N)
        lse3 = torch.logsumexp(s3, dim=-1)
        out_x = (torch.exp(s3 - lse3[..., None]) @ v.float()).to(q.dtype)

        ctx.save_for_backward(q, k, v, out_main, out_x, lse, lse3, seed, offset, main_to_motion, motion_to_all)
        ctx.scale, ctx.kernel = scale, kernel
        return torch.cat([out_main, out_x], dim=2)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out_main, out_x, lse, lse3, seed, offset, main_to_motion, motion_to_all = ctx.saved_tensors
        scale = ctx.scale
        n_main = main_to_motion.shape[0]
        qm, km, vm = q[:, :, :n_main], k[:, :, :n_main], v[:, :, :n_main]
        qx, kx, vx = q[:, :, n_main:], k[:, :, n_main:], v[:, :, n_main:]
        dmain, dx = dout[:, :, :n_main], dout[:, :, n_main:]

        # Main queries x main keys: the fused backward with the merged output and LSE (exact).
        dq_m, dk_m, dv_m = _fused_backward(dmain, qm, km, vm, out_main, lse, seed, offset, scale, ctx.kernel)

        # Main queries x motion keys (dense, tiny).
        p2 = torch.exp(_masked_scores(qm, kx, main_to_motion, scale) - lse[..., None])
        dmain_f = dmain.float()
        delta = (dmain_f * out_main.float()).sum(-1, keepdim=True)
        ds2 = p2 * (dmain_f @ vx.float().transpose(-1, -2) - delta)
        dq_m = dq_m.float() + (ds2 @ kx.float()) * scale
        dk_x = (ds2.transpose(-1, -2) @ qm.float()) * scale
        dv_x = p2.transpose(-1, -2) @ dmain_f

        # Motion queries x all keys (dense, tiny).
        p3 = torch.exp(_masked_scores(qx, k, motion_to_all, scale) - lse3[..., None])
        dx_f = dx.float()
        delta3 = (dx_f * out_x.float()).sum(-1, keepdim=True)
        ds3 = p3 * (dx_f @ v.float().transpose(-1, -2) - delta3)
        dq_x = (ds3 @ k.float()) * scale
        dk = (ds3.transpose(-1, -2) @ qx.float()) * scale + torch.cat([dk_m.float(), dk_x], dim=2)
        dv = p3.transpose(-1, -2) @ dx_f + torch.cat([dv_m.float(), dv_x], dim=2)
        dq = torch.cat([dq_m, dq_x], dim=2)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def merged_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    main_to_motion: torch.Tensor,
    motion_to_all: torch.Tensor,
    scale: float | None = None,
    kernel: Kernel | None = None,
) -> torch.Tensor:
    """Masked attention for the layout ``[main (unmasked) | motion (last L_m tokens)]``.

    Args:
        q, k, v: (B, H, N, Dh), N = n_main + L_m.
        main_to_motion: (n_main, L_m) bool, may main query i attend motion key j.
        motion_to_all: (L_m, N) bool, may motion query i attend key j.
        scale: softmax scale, default 1/sqrt(Dh).
        kernel: the fused kernel of the text+video part (`fused_kernel`; default: chosen here).

    Returns:
        (B, H, N, Dh), equal to dense masked softmax attention.
    """
    n_main, n_motion = main_to_motion.shape
    if q.shape[2] != n_main + n_motion or motion_to_all.shape != (n_motion, q.shape[2]):
        raise ValueError(
            f"mask shapes {tuple(main_to_motion.shape)} / {tuple(motion_to_all.shape)} do not match N={q.shape[2]}"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if q.is_cuda and q.dtype not in (torch.float16, torch.bfloat16):  # CUDA flash needs half precision
        n = q.shape[2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device)
        mask[:n_main, n_main:] = main_to_motion
        mask[n_main:] = motion_to_all
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    kernel = fused_kernel(q.device) if kernel is None else kernel
    return _MergedAttention.apply(q, k, v, main_to_motion.to(q.device), motion_to_all.to(q.device), float(scale), kernel)


def split_dense_mask(mask: torch.Tensor, n_motion: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) bool mask whose main block is all True -> (main_to_motion, motion_to_all)."""
    n_main = mask.shape[0] - n_motion
    if not bool(mask[:n_main, :n_main].all()):
        raise ValueError("the merged attention needs the text+video block of the mask to be unmasked")
    return mask[:n_main, n_main:].contiguous(), mask[n_main:, :].contiguous()
