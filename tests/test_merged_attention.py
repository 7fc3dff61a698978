import pytest
import torch

from egotwin_model.merged_attention import merged_masked_attention, split_dense_mask


def _random_mask(n_main: int, n_motion: int, gen: torch.Generator) -> torch.Tensor:
    n = n_main + n_motion
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[:n_main, n_main:] = torch.rand(n_main, n_motion, generator=gen) > 0.6
    mask[n_main:, :n_main] = torch.rand(n_motion, n_main, generator=gen) > 0.6
    mask[:3, :] = True  # "text" rows see everything
    return mask


@pytest.mark.parametrize("n_main,n_motion", [(40, 5), (97, 21)])
def test_merged_attention_equals_dense_masked_attention(n_main, n_motion):
    gen = torch.Generator().manual_seed(0)
    B, H, D = 2, 3, 16
    n = n_main + n_motion
    q, k, v = (torch.randn(B, H, n, D, generator=gen, dtype=torch.float64).float().requires_grad_() for _ in range(3))
    mask = _random_mask(n_main, n_motion, gen)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    dout = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    out = merged_masked_attention(q, k, v, *split_dense_mask(mask, n_motion))
    grads = torch.autograd.grad(out, (q, k, v), dout)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=5e-5, rtol=1e-4)


def test_split_dense_mask_refuses_masked_main_block():
    mask = torch.ones(10, 10, dtype=torch.bool)
    mask[0, 1] = False
    with pytest.raises(ValueError, match="unmasked"):
        split_dense_mask(mask, 3)


def test_fused_kernel_ops_pass_opcheck_and_compiled_gradients_match() -> None:
    """The fused-kernel custom ops: consistent fake (shape) kernels and schemas
    (`torch.library.opcheck`); compiled (fullgraph) merged attention gives eager's gradients."""
    from egotwin_model.interaction import TokenLayout, dense_mask
    from egotwin_model.merged_attention import _fused_backward, _fused_forward

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 8, generator=g) for _ in range(3))
    torch.library.opcheck(_fused_forward, (q, k, v, 8 ** -0.5, "cpu"), test_utils=("test_schema", "test_faketensor"))
    out, lse, seed, offset = _fused_forward(q, k, v, 8 ** -0.5, "cpu")
    torch.library.opcheck(_fused_backward, (torch.randn_like(out), q, k, v, out, lse, seed, offset, 8 ** -0.5, "cpu"),
                          test_utils=("test_schema", "test_faketensor"))

    layout = TokenLayout(3, 4, 2, 5)
    m2m, m2a = split_dense_mask(dense_mask(layout), layout.motion)
    q, k, v = (torch.randn(2, 2, layout.total, 8, generator=g, requires_grad=True) for _ in range(3))

    def grads(fn):
        out = fn(q, k, v, m2m, m2a)
        return torch.autograd.grad(out.square().sum(), (q, k, v))

    for a, b in zip(grads(merged_masked_attention), grads(torch.compile(merged_masked_attention, fullgraph=True))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
