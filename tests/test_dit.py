"""EgoTwinDiT: CogVideoX equivalence, parameter counts, modality paths, interaction mask effect."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from egotwin_model.config import MOTION_LATENTS, VIDEO_LATENT_FRAMES, DiTConfig, EgoTwinConfig
from egotwin_model.dit import EgoTwinDiT

pytestmark = pytest.mark.usefixtures("torch_one_thread")

B = 2


@pytest.fixture(scope="module")
def tiny_cfg() -> DiTConfig:
    # a non-square RoPE base grid (sample 8 x 12 latents) exercises the pipeline's crop logic
    return dataclasses.replace(EgoTwinConfig.load("tiny").dit, sample_width=12)


def _inputs(cfg: DiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "text": torch.randn(B, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g),
        "video": torch.randn(B, VIDEO_LATENT_FRAMES, cfg.in_channels, 8, 8, generator=g),
        "motion": torch.randn(B, MOTION_LATENTS, cfg.motion_channels, generator=g),
        "t_video": torch.tensor([17, 900]),
        "t_motion": torch.tensor([999, 3]),
    }


@pytest.fixture(scope="module")
def cogvideox_folder(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: DiTConfig) -> Path:
    """A randomly initialised tiny `CogVideoXTransformer3DModel` saved by diffusers."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(123)
    ref = CogVideoXTransformer3DModel(
        num_attention_heads=tiny_cfg.num_attention_heads, attention_head_dim=tiny_cfg.attention_head_dim,
        in_channels=tiny_cfg.in_channels, out_channels=tiny_cfg.out_channels, time_embed_dim=tiny_cfg.time_embed_dim,
        text_embed_dim=tiny_cfg.text_embed_dim, num_layers=tiny_cfg.num_layers, sample_width=tiny_cfg.sample_width,
        sample_height=tiny_cfg.sample_height, sample_frames=tiny_cfg.sample_frames, patch_size=tiny_cfg.patch_size,
        max_text_seq_length=tiny_cfg.max_text_seq_length, use_rotary_positional_embeddings=True,
    )
    # non-trivial AdaLN / output weights (diffusers initialises some of them to zero)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("cogvideox") / "transformer"
    ref.save_pretrained(folder)
    return folder


def _diffusers_video(folder: Path, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: diffusers' model with RoPE from CogVideoXPipeline's own method."""
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    ref = CogVideoXTransformer3DModel.from_pretrained(folder).eval()
    video = inputs["video"]
    pipe = SimpleNamespace(transformer=ref, vae_scale_factor_spatial=8)
    rope = CogVideoXPipeline._prepare_rotary_positional_embeddings(
        pipe, video.shape[3] * 8, video.shape[4] * 8, video.shape[1], torch.device("cpu")
    )
    with torch.no_grad():
        return ref(video, inputs["text"], inputs["t_video"], image_rotary_emb=rope).sample


@pytest.mark.parametrize("asynchronous", [False, True])
def test_cogvideox_weights_give_cogvideox_output(cogvideox_folder: Path, tiny_cfg: DiTConfig, asynchronous: bool) -> None:
    cfg = dataclasses.replace(tiny_cfg, asynchronous=asynchronous)
    model = EgoTwinDiT(cfg).eval()
    report = model.load_cogvideox(cogvideox_folder.parent)  # a pipeline root with transformer/ works
    assert report["not_in_checkpoint"] and all("motion" in k for k in report["not_in_checkpoint"])
    inputs = _inputs(cfg)
    expected = _diffusers_video(cogvideox_folder, inputs)
    with torch.no_grad():
        t_motion = None if asynchronous else inputs["t_video"]
        out = model(inputs["text"], inputs["video"], None, inputs["t_video"], t_motion)
    assert out.motion is None
    torch.testing.assert_close(out.video, expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().mean() > 0.1  # a real signal, not two zero outputs


def test_load_errors(tmp_path: Path, cogvideox_folder: Path, tiny_cfg: DiTConfig) -> None:
    model = EgoTwinDiT(tiny_cfg)
    with pytest.raises(FileNotFoundError, match="CogVideoX-5b"):
        model.load_cogvideox(tmp_path)
    bad = tmp_path / "transformer"
    bad.mkdir()
    cfg = json.loads((cogvideox_folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "num_layers": 3}))
    with pytest.raises(ValueError, match="num_layers"):
        model.load_cogvideox(bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        model.load_cogvideox(bad)


def test_paper_size_parameter_counts() -> None:
    """Paper §4.2: text/video ~5B (CogVideoX-5B), motion branch ~300M; on the meta device."""
    cfg = EgoTwinConfig.load("paper").dit
    with torch.device("meta"):
        model = EgoTwinDiT(cfg)
    counts = model.parameter_counts()
    print(f"DiT text/video {counts['text_video'] / 1e9:.3f}B, motion branch {counts['motion'] / 1e6:.1f}M")
    assert abs(counts["text_video"] / 5e9 - 1) < 0.15
    assert abs(counts["motion"] / 300e6 - 1) < 0.15
    assert len(model.blocks) == 42 and sum(b.motion is not None for b in model.blocks) == 21
    assert all(b.motion is not None for b in model.blocks[:21])


def test_modality_paths_and_shapes(tiny_cfg: DiTConfig) -> None:
    torch.manual_seed(0)
    model = EgoTwinDiT(tiny_cfg)
    x = _inputs(tiny_cfg)
    both = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    assert both.video.shape == x["video"].shape and both.motion.shape == x["motion"].shape
    # stage t2m: no video, only the lower (motion) blocks run
    t2m = model(x["text"], None, x["motion"], None, x["t_motion"])
    assert t2m.video is None and t2m.motion.shape == x["motion"].shape
    t2m.motion.square().sum().backward()
    upper = model.blocks[tiny_cfg.motion_layers]
    assert all(p.grad is None for p in upper.parameters())
    assert model.motion_proj_out.weight.grad is not None


def test_motion_head_starts_at_zero(tiny_cfg: DiTConfig) -> None:
    """DiT-style init: the motion output layer is zero, so the first prediction is exactly 0."""
    model = EgoTwinDiT(tiny_cfg)
    x = _inputs(tiny_cfg)
    out = model(x["text"], None, x["motion"], None, x["t_motion"])
    assert torch.equal(out.motion, torch.zeros_like(out.motion))


def test_synchronous_needs_equal_timesteps(tiny_cfg: DiTConfig) -> None:
    model = EgoTwinDiT(dataclasses.replace(tiny_cfg, asynchronous=False))
    x = _inputs(tiny_cfg)
    with pytest.raises(ValueError, match="t_motion == t_video"):
        model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    out = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_video"])
    assert out.video.shape == x["video"].shape


def test_asynchronous_embedding_depends_on_both_timesteps(tiny_cfg: DiTConfig) -> None:
    torch.manual_seed(0)
    model = EgoTwinDiT(tiny_cfg)
    t = torch.tensor([5, 5])
    e1 = model.timestep_embedding(t, t, torch.float32)
    e2 = model.timestep_embedding(t, torch.tensor([5, 800]), torch.float32)
    assert torch.equal(e1[0], e2[0]) and not torch.allclose(e1[1], e2[1])


def _randomise(model: torch.nn.Module) -> None:
    """Give the zero-initialised modulations / heads non-zero weights."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("mask", [True, False])
def test_interaction_mask_isolates_video_frame_0(tiny_cfg: DiTConfig, mask: bool) -> None:
    """One joint block: video frame O^0 sees motion P^0 only, so with the mask its output ignores
    motion tokens 1..20; without the mask it does not."""
    cfg = dataclasses.replace(tiny_cfg, num_layers=1, motion_layers=1, interaction_mask=mask)
    model = EgoTwinDiT(cfg).eval()
    _randomise(model)
    x = _inputs(cfg)
    changed = x["motion"].clone()
    changed[:, 1:] += 1.0
    with torch.no_grad():
        a = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
        b = model(x["text"], x["video"], changed, x["t_video"], x["t_motion"])
    frame0_same = torch.equal(a.video[:, 0], b.video[:, 0])
    assert frame0_same is mask
    assert not torch.allclose(a.video[:, 1:], b.video[:, 1:])  # O^i, i >= 1, sees A^{i-1}


def test_per_layer_adaln_variant(tiny_cfg: DiTConfig) -> None:
    model = EgoTwinDiT(dataclasses.replace(tiny_cfg, motion_adaln="per_layer"))
    assert model.motion_adaln_single is None and hasattr(model.blocks[0].motion, "modulation")
    x = _inputs(tiny_cfg)
    assert model(x["text"], None, x["motion"], None, x["t_motion"]).motion.shape == x["motion"].shape


def test_activation_checkpointing_per_block(tiny_cfg: DiTConfig) -> None:
    """Blocks can be wrapped one by one (torch's checkpoint wrapper) with identical results."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    torch.manual_seed(0)
    model = EgoTwinDiT(tiny_cfg)
    _randomise(model)
    x = _inputs(tiny_cfg)
    ref = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    loss_ref = ref.video.square().mean() + ref.motion.square().mean()
    grads_ref = torch.autograd.grad(loss_ref, list(model.parameters()))
    for i, block in enumerate(model.blocks):
        model.blocks[i] = checkpoint_wrapper(block)
    out = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    loss = out.video.square().mean() + out.motion.square().mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert torch.equal(loss, loss_ref)
    for g1, g2 in zip(grads, grads_ref):
        torch.testing.assert_close(g1, g2)
