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

import torch

_NEG_INF = float("-inf")


def _use_cudnn(q: torch.Tensor) -> bool:
    """cuDNN's fused attention (Hopper kernels) where SDPA itself would pick it; else FA2."""
    return (q.is_cuda and torch.backends.cuda.cudnn_sdp_enabled()
            and torch.cuda.get_device_capability(q.device) >= (9, 0))


def _flash_forward(q, k, v, scale):
    """Unmasked fused attention -> (out, lse natural-log (B, H, N) float32, backward state).

    CUDA: cuDNN on Hopper (the kernel unmasked SDPA uses there), FlashAttention-2 otherwise;
    CPU: the flash-style CPU kernel. The state records which kernel ran, for the backward.
    """
    if _use_cudnn(q):
        out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, k, v, None, True, 0.0, False, False, scale=scale
        )
        return out, lse.reshape(lse.shape[:3]), ("cudnn", lse, cq, ck, mq, mk, seed, offset)
    if q.is_cuda:
        out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, False, False, scale=scale
        )
        return out, lse, ("flash", cq, ck, mq, mk, seed, offset)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    return out, lse, ("cpu",)


def _flash_backward(dout, q, k, v, out, lse, state, scale):
    """Backward of `_flash_forward`'s kernel, fed with `out` and `lse` (B, H, N) of our choice."""
    kind = state[0]
    if kind == "cudnn":
        lse_like, cq, ck, mq, mk, seed, offset = state[1:]
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout, q, k, v, out, lse.reshape(lse_like.shape).contiguous(), seed, offset, None, cq, ck, mq, mk,
            0.0, False, scale=scale,
        )
    if kind == "flash":
        cq, ck, mq, mk, seed, offset = state[1:]
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, out, lse, cq, ck, mq, mk, 0.0, False, seed, offset, scale=scale
        )
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        dout, q, k, v, out, lse, 0.0, False, scale=scale
    )


def _masked_scores(q, k, mask, scale):
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    return s.masked_fill(~mask, _NEG_INF)


class _MergedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, main_to_motion, motion_to_all, scale):
        n_main = main_to_motion.shape[0]
        qm, km, vm = q[:, :, :n_main], k[:, :, :n_main], v[:, :, :n_main]
        qx, kx, vx = q[:, :, n_main:], k[:, :, n_main:], v[:, :, n_main:]

        out1, lse1, state = _flash_forward(qm.contiguous(), km.contiguous(), vm.contiguous(), scale)
        s2 = _masked_scores(qm, kx, main_to_motion, scale)  # (B, H, n_main, Lm)
        lse2 = torch.logsumexp(s2, dim=-1)
        lse = torch.logaddexp(lse1.float(), lse2)
        p2 = torch.exp(s2 - lse[..., None])
        out_main = torch.exp(lse1.float() - lse)[..., None] * out1.float() + p2 @ vx.float()
        out_main = out_main.to(q.dtype)

        s3 = _masked_scores(qx, k, motion_to_all, scale)  # (B, H, Lm, N)
        lse3 = torch.logsumexp(s3, dim=-1)
        out_x = (torch.exp(s3 - lse3[..., None]) @ v.float()).to(q.dtype)

        ctx.save_for_backward(q, k, v, out_main, out_x, lse, lse3, main_to_motion, motion_to_all)
        ctx.state, ctx.scale = state, scale
        return torch.cat([out_main, out_x], dim=2)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out_main, out_x, lse, lse3, main_to_motion, motion_to_all = ctx.saved_tensors
        scale = ctx.scale
        n_main = main_to_motion.shape[0]
        qm, km, vm = q[:, :, :n_main], k[:, :, :n_main], v[:, :, :n_main]
        qx, kx, vx = q[:, :, n_main:], k[:, :, n_main:], v[:, :, n_main:]
        dmain = dout[:, :, :n_main].contiguous()
        dx = dout[:, :, n_main:]

        # Main queries x main keys: flash backward with the merged output and LSE (exact).
        dq_m, dk_m, dv_m = _flash_backward(
            dmain, qm.contiguous(), km.contiguous(), vm.contiguous(), out_main.contiguous(),
            lse.to(torch.float32).contiguous(), ctx.state, scale,
        )
        dq_m, dk_m, dv_m = dq_m.float(), dk_m.float(), dv_m.float()

        # Main queries x motion keys (dense, tiny).
        p2 = torch.exp(_masked_scores(qm, kx, main_to_motion, scale) - lse[..., None])
        dmain_f = dmain.float()
        delta = (dmain_f * out_main.float()).sum(-1, keepdim=True)
        ds2 = p2 * (dmain_f @ vx.float().transpose(-1, -2) - delta)
        dq_m = dq_m + (ds2 @ kx.float()) * scale
        dk_x = (ds2.transpose(-1, -2) @ qm.float()) * scale
        dv_x = p2.transpose(-1, -2) @ dmain_f

        # Motion queries x all keys (dense, tiny).
        p3 = torch.exp(_masked_scores(qx, k, motion_to_all, scale) - lse3[..., None])
        dx_f = dx.float()
        delta3 = (dx_f * out_x.float()).sum(-1, keepdim=True)
        ds3 = p3 * (dx_f @ v.float().transpose(-1, -2) - delta3)
        dq_x = (ds3 @ k.float()) * scale
        dk = (ds3.transpose(-1, -2) @ qx.float()) * scale
        dv = p3.transpose(-1, -2) @ dx_f

        dk[:, :, :n_main] += dk_m
        dk[:, :, n_main:] += dk_x
        dv[:, :, :n_main] += dv_m
        dv[:, :, n_main:] += dv_x
        dq = torch.cat([dq_m, dq_x], dim=2)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


def merged_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    main_to_motion: torch.Tensor,
    motion_to_all: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Masked attention for the layout ``[main (unmasked) | motion (last L_m tokens)]``.

    Args:
        q, k, v: (B, H, N, Dh), N = n_main + L_m.
        main_to_motion: (n_main, L_m) bool, may main query i attend motion key j.
        motion_to_all: (L_m, N) bool, may motion query i attend key j.
        scale: softmax scale, default 1/sqrt(Dh).

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
    return _MergedAttention.apply(q, k, v, main_to_motion.to(q.device), motion_to_all.to(q.device), scale)


def split_dense_mask(mask: torch.Tensor, n_motion: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) bool mask whose main block is all True -> (main_to_motion, motion_to_all)."""
    n_main = mask.shape[0] - n_motion
    if not bool(mask[:n_main, :n_main].all()):
        raise ValueError("the merged attention needs the text+video block of the mask to be unmasked")
    return mask[:n_main, n_main:].contiguous(), mask[n_main:, :].contiguous()
