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


@pytest.mark.parametrize("backend", ["merged", "flex"])
def test_compiled_masked_block_is_one_graph_on_cuda(backend):
    """How training compiles (per block): a masked bf16 block on CUDA traces as one graph, and
    its compiled forward + backward match eager."""
    import dataclasses

    import torch._dynamo as dynamo

    from egotwin_model.config import EgoTwinConfig
    from egotwin_model.dit import EgoTwinDiT

    cfg = dataclasses.replace(EgoTwinConfig.load("tiny").dit)
    torch.manual_seed(0)
    model = EgoTwinDiT(cfg, attention_backend=backend).cuda().to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(0)
    args = dict(
        text=torch.randn(2, cfg.max_text_seq_length, cfg.text_embed_dim, device="cuda", generator=g).bfloat16(),
        video=torch.randn(2, 11, cfg.in_channels, 8, 8, device="cuda", generator=g).bfloat16(),
        motion=torch.randn(2, 21, cfg.motion_channels, device="cuda", generator=g).bfloat16(),
        t_video=torch.tensor([10, 500], device="cuda"), t_motion=torch.tensor([999, 3], device="cuda"),
    )
    from tests.test_dit import block_inputs

    block = model.transformer_blocks[0]
    a, k = block_inputs(model, block, args)
    dynamo.reset()
    explained = dynamo.explain(block)(*a, **k)
    assert explained.graph_break_count == 0, [r.reason.splitlines()[0] for r in explained.break_reasons]
    video = a[0].detach().requires_grad_()
    eager = block(video, *a[1:], **k)
    compiled = torch.compile(block)(video, *a[1:], **k)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c.float(), e.float(), atol=5e-2, rtol=5e-2)
    ge = torch.autograd.grad(eager[0].float().square().sum(), video)[0]
    gc = torch.autograd.grad(compiled[0].float().square().sum(), video)[0]
    torch.testing.assert_close(gc.float(), ge.float(), atol=1e-1, rtol=5e-2)
