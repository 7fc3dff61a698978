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


# ---------------------------------------------------------------- save / load, paper variants


@pytest.mark.parametrize("sincos", [False, True])
def test_save_pretrained_round_trip_is_exact(tmp_path: Path, tiny_cfg: DiTConfig, sincos: bool) -> None:
    """config.json + safetensors -> the same config, bit-identical weights and predictions.
    With sin-cos video positions the model has a non-persistent buffer (built, not loaded)."""
    cfg = dataclasses.replace(tiny_cfg, use_video_sincos_positions=sincos)
    torch.manual_seed(0)
    model = EgoTwinDiT(cfg).eval()
    _randomise(model)
    folder = model.save_pretrained(tmp_path / "dit")
    loaded = EgoTwinDiT.from_pretrained(folder, attention_backend="dense")
    assert loaded.config == cfg and loaded.attention_backend == "dense" and not loaded.training
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    state, state2 = model.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    x = _inputs(cfg)
    with torch.no_grad():
        a = model(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
        b = loaded(x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    assert torch.equal(a.video, b.video) and torch.equal(a.motion, b.motion)
    half = EgoTwinDiT.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_from_pretrained_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        EgoTwinDiT.from_pretrained(tmp_path / "no_such_run")


def _attention_routes(model: EgoTwinDiT, x: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The route `joint_attention` takes in each block of one forward."""
    import egotwin_model.dit as dit_module
    from egotwin_model.interaction import joint_attention as real

    routes: list[str] = []

    def spy(q, k, v, spec):
        routes.append(spec.resolve(q.device) if spec is not None else "none")
        return real(q, k, v, spec)

    monkeypatch.setattr(dit_module, "joint_attention", spy)
    t_motion = x["t_motion"] if model.config.asynchronous else x["t_video"]
    with torch.no_grad():
        model(x["text"], x["video"], x["motion"], x["t_video"], t_motion)
    return routes


def test_variant_switches_change_the_computation(tiny_cfg: DiTConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paper Table 2: "w/o IM" drops the mask (fused unmasked SDPA in the joint blocks), "w/o AD"
    has one timestep embedding (input D, not 2D) that refuses t_motion != t_video; VidMLD both."""
    base = EgoTwinConfig.load("tiny")
    base = dataclasses.replace(base, dit=tiny_cfg)
    x = _inputs(tiny_cfg)
    joint, upper = tiny_cfg.motion_layers, tiny_cfg.num_layers - tiny_cfg.motion_layers
    routes, models = {}, {}
    for name in ("egotwin", "wo_im", "wo_ad", "vidmld"):
        cfg = base.with_ablation(name)
        assert cfg.variant == name
        torch.manual_seed(0)
        models[name] = EgoTwinDiT(cfg.dit).eval()
        routes[name] = _attention_routes(models[name], x, monkeypatch)
    assert routes["egotwin"] == routes["wo_ad"] == ["dense"] * joint + ["none"] * upper
    assert routes["wo_im"] == routes["vidmld"] == ["none"] * tiny_cfg.num_layers
    d = tiny_cfg.inner_dim
    widths = {name: m.time_embedding.linear_1.in_features for name, m in models.items()}
    assert widths == {"egotwin": 2 * d, "wo_im": 2 * d, "wo_ad": d, "vidmld": d}
    for name in ("wo_ad", "vidmld"):
        with pytest.raises(ValueError, match="t_motion == t_video"):
            models[name](x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    # same weights, mask on vs off: different predictions for both modalities
    _randomise(models["egotwin"])
    models["wo_im"].load_state_dict(models["egotwin"].state_dict())
    with torch.no_grad():
        a = models["egotwin"](x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
        b = models["wo_im"](x["text"], x["video"], x["motion"], x["t_video"], x["t_motion"])
    assert not torch.allclose(a.video, b.video) and not torch.allclose(a.motion, b.motion)


def test_variant_names() -> None:
    from egotwin_model.config import VARIANTS

    paper = EgoTwinConfig.load("paper")
    switches = {name: paper.with_ablation(name) for name in VARIANTS}
    assert {n: (c.representation, c.dit.interaction_mask, c.dit.asynchronous) for n, c in switches.items()} == {
        "egotwin": ("head_centric", True, True), "wo_mr": ("root_centric", True, True),
        "wo_im": ("head_centric", False, True), "wo_ad": ("head_centric", True, False),
        "vidmld": ("root_centric", False, False),
    }
    assert switches["vidmld"].with_ablation("egotwin") == paper  # variants are absolute, not cumulative
    assert paper.with_variant(interaction_mask=False, asynchronous=False).variant is None  # not a paper row
    with pytest.raises(ValueError, match="known"):
        paper.with_ablation("w/o everything")


def block_inputs(model: EgoTwinDiT, block: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[tuple, dict]:
    """The (args, kwargs) `block` receives when `model(**inputs)` runs (the DiT prepares them)."""
    captured: list[tuple[tuple, dict]] = []

    def hook(module, args, kwargs) -> None:  # returns None: the call's inputs stay as they are
        captured.append((args, kwargs))

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**inputs)
    finally:
        handle.remove()
    return captured[0]


@pytest.mark.parametrize("backend", ["dense", "merged"])
def test_compiled_block_is_one_graph(tiny_cfg: DiTConfig, backend: str) -> None:
    """Masks are built outside the blocks, so `torch.compile` of a masked block (how training
    compiles, `egotwin_model.parallel.apply_compile`) traces it as one graph, no break, and
    computes what eager does."""
    import torch._dynamo as dynamo

    torch.manual_seed(0)
    model = EgoTwinDiT(tiny_cfg, attention_backend=backend)
    block = model.transformer_blocks[0]
    args, kwargs = block_inputs(model, block, _inputs(tiny_cfg))
    dynamo.reset()
    explained = dynamo.explain(block)(*args, **kwargs)
    assert explained.graph_break_count == 0, [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_count == 1
    video = args[0].detach().requires_grad_()
    eager = block(video, *args[1:], **kwargs)
    compiled = torch.compile(block)(video, *args[1:], **kwargs)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(out[0].square().sum() + out[2].square().sum(), video)[0] for out in (eager, compiled)]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
