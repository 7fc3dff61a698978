"""The interaction mask against DESIGN §6, element by element, and the attention backends."""

from __future__ import annotations

import pytest
import torch

from egotwin_model.interaction import MaskSpec, TokenLayout, allowed, block_mask, dense_mask, joint_attention

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LAYOUTS = [
    TokenLayout(text=3, frames=11, tokens_per_frame=2, motion=21),  # paper lengths, few tokens per frame
    TokenLayout(text=0, frames=2, tokens_per_frame=3, motion=3),
    TokenLayout(text=5, frames=4, tokens_per_frame=1, motion=7),
    TokenLayout(text=4, frames=6, tokens_per_frame=5, motion=11),
    TokenLayout(text=2, frames=3, tokens_per_frame=2, motion=9),  # more motion tokens than chunks
]


def design_rule(layout: TokenLayout) -> torch.Tensor:
    """DESIGN §6 read literally, token by token, with no code shared with the module."""
    tokens = [("text", i) for i in range(layout.text)]
    tokens += [("video", f) for f in range(layout.frames) for _ in range(layout.tokens_per_frame)]
    tokens += [("motion", j) for j in range(layout.motion)]
    chunk = {i: {2 * i + 1, 2 * i + 2} for i in range(layout.frames)}  # A^i = (P^{2i+1}, P^{2i+2})
    video_to_motion = {0: {0}} | {i: chunk[i - 1] for i in range(1, layout.frames)}  # O^i attends A^{i-1}
    motion_to_video: dict[int, set[int]] = {0: {0}}  # O^0 <-> P^0
    for i in range(layout.frames):
        for j in chunk[i]:
            motion_to_video.setdefault(j, set()).update({i, i + 1})  # A^i attends O^i and O^{i+1}
    n = len(tokens)
    out = torch.zeros(n, n, dtype=torch.bool)
    for a, (qk, qi) in enumerate(tokens):
        for b, (kk, ki) in enumerate(tokens):
            if qk == "text" or kk == "text" or qk == kk:
                out[a, b] = True
            elif qk == "video":
                out[a, b] = ki in video_to_motion.get(qi, set())
            else:
                out[a, b] = ki in motion_to_video.get(qi, set())
    return out


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_dense_mask_equals_design(layout: TokenLayout) -> None:
    expected = design_rule(layout)
    got = dense_mask(layout)
    assert got.shape == (layout.total, layout.total)
    assert torch.equal(got, expected)


def test_scalar_rule_examples() -> None:
    assert allowed("video", 0, "motion", 0) and allowed("motion", 0, "video", 0)
    assert not allowed("video", 0, "motion", 1)  # O^0 sees only P^0
    assert allowed("video", 3, "motion", 5) and allowed("video", 3, "motion", 6)  # A^2 = (P^5, P^6)
    assert not allowed("video", 3, "motion", 7)
    assert allowed("motion", 5, "video", 2) and allowed("motion", 5, "video", 3)  # A^2 -> O^2, O^3
    assert not allowed("motion", 5, "video", 4)
    assert not allowed("motion", 0, "video", 1)
    assert allowed("text", 0, "motion", 20) and allowed("video", 10, "text", 0)


def test_paper_layout_counts() -> None:
    """11 frames x 1 token, 21 motion tokens: 1 + 2*10 video->motion and 2 + 20*2 motion->video."""
    layout = TokenLayout(text=0, frames=11, tokens_per_frame=1, motion=21)
    m = dense_mask(layout)
    assert int(m[:11, 11:].sum()) == 21
    assert int(m[11:, :11].sum()) == 1 + 20 * 2


@pytest.mark.parametrize("layout", LAYOUTS[:4], ids=str)
def test_block_mask_equals_dense(layout: TokenLayout) -> None:
    """FlexAttention with the BlockMask (small blocks: full, partial and empty ones) == masked SDPA."""
    from torch.nn.attention.flex_attention import flex_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, layout.total, 8, generator=g) for _ in range(3))
    bm = block_mask(layout, "cpu", block_size=8)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=design_rule(layout))
    torch.testing.assert_close(flex_attention(q, k, v, block_mask=bm), expected, atol=1e-5, rtol=1e-5)
    # the mask_mod itself, element by element
    i = torch.arange(layout.total)
    mod = bm.mask_mod(torch.zeros(()), torch.zeros(()), i[:, None], i[None, :])
    assert torch.equal(mod, design_rule(layout))


def _reference(q, k, v, mask):
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v


@pytest.mark.parametrize("backend", ["dense", "flex", "merged"])
def test_joint_attention_backends(backend: str) -> None:
    layout = TokenLayout(text=3, frames=11, tokens_per_frame=2, motion=21)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, layout.total, 8, generator=g, dtype=torch.float64).float() for _ in range(3))
    expected = _reference(q, k, v, design_rule(layout))
    got = joint_attention(q, k, v, MaskSpec(layout, enabled=True, backend=backend))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_mask_off_is_plain_attention() -> None:
    layout = TokenLayout(text=3, frames=4, tokens_per_frame=2, motion=7)
    spec = MaskSpec(layout, enabled=False)
    assert spec.resolve(torch.device("cpu")) == "none"
    assert MaskSpec(TokenLayout(3, 4, 2, 0)).resolve(torch.device("cpu")) == "none"  # no motion: nothing to mask
    q, k, v = (torch.randn(1, 2, layout.total, 8) for _ in range(3))
    full = torch.ones(layout.total, layout.total, dtype=torch.bool)
    torch.testing.assert_close(joint_attention(q, k, v, spec), _reference(q, k, v, full), atol=1e-5, rtol=1e-5)


def test_wrong_length_is_an_error() -> None:
    layout = TokenLayout(text=3, frames=4, tokens_per_frame=2, motion=7)
    q = torch.randn(1, 2, layout.total + 1, 8)
    with pytest.raises(ValueError, match="does not match the mask layout"):
        joint_attention(q, q, q, MaskSpec(layout, backend="dense"))
