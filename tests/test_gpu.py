"""GPU tests (`make test-gpu`, or `pytest -m gpu` on a CUDA machine)."""

import pytest
import torch

from egotwin_model.interaction import TokenLayout, dense_mask, joint_attention, MaskSpec
from egotwin_model.merged_attention import merged_masked_attention, split_dense_mask

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LAYOUTS = [TokenLayout(226, 11, 900, 21), TokenLayout(20, 3, 16, 5)]


def _qkv(layout, dtype, b=2, h=4, d=64, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(b, h, layout.total, d, device="cuda", generator=g, dtype=torch.float32).to(dtype).requires_grad_()
            for _ in range(3)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_merged_attention_matches_dense_on_cuda_bf16(layout):
    q, k, v = _qkv(layout, torch.bfloat16)
    mask = dense_mask(layout, "cuda")
    qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask)
    dout = torch.randn_like(ref)
    ref_g = torch.autograd.grad(ref, (qf, kf, vf), dout)
    out = merged_masked_attention(q, k, v, *split_dense_mask(mask, layout.motion))
    got_g = torch.autograd.grad(out, (q, k, v), dout.bfloat16())
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    for g, r in zip(got_g, ref_g):
        torch.testing.assert_close(g.float(), r, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("backend", ["flex", "merged"])
def test_masked_backends_agree_with_dense(backend):
    layout = LAYOUTS[1]
    q, k, v = _qkv(layout, torch.float32)
    ref = joint_attention(q, k, v, MaskSpec(layout, backend="dense"))
    if backend == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        compiled = torch.compile(flex_attention)
        from egotwin_model.interaction import block_mask

        out = compiled(q, k, v, block_mask=block_mask(layout, "cuda"))
    else:
        out = joint_attention(q, k, v, MaskSpec(layout, backend=backend))
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
