"""Motion VAE (appendix A): shapes, causality, eq. 1, parameter counts at paper size."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from egotwin_bench.constants import HEAD_CENTRIC_DIM, MOTION_FRAMES, ROOT_CENTRIC_DIM
from egotwin_model.config import MOTION_LATENTS, EgoTwinConfig
from egotwin_model.motion_vae import MotionVAE, group_indices, vae_loss

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_vae() -> MotionVAE:
    torch.manual_seed(0)
    return MotionVAE(EgoTwinConfig.load("tiny").motion_vae).eval()


def test_shapes_81_21_81(tiny_vae: MotionVAE) -> None:
    x = torch.randn(2, MOTION_FRAMES, HEAD_CENTRIC_DIM)
    post = tiny_vae.encode(x)
    assert MOTION_LATENTS == 21
    assert post.mean.shape == post.logvar.shape == (2, 21, tiny_vae.config.latent_dim)
    assert tiny_vae.decode(post.sample()).shape == x.shape


def test_root_centric_input_dim() -> None:
    cfg = EgoTwinConfig.load("tiny").with_representation("root_centric")
    assert cfg.motion_vae.in_dim == ROOT_CENTRIC_DIM
    vae = MotionVAE(cfg.motion_vae)
    x = torch.randn(1, MOTION_FRAMES, ROOT_CENTRIC_DIM)
    total, parts = vae.loss(x, group_indices("root_centric"))
    assert torch.isfinite(total) and set(parts) == {"recon/head3d", "recon/head6d", "recon/joint3d", "recon/joint6d", "kl"}


@torch.no_grad()
@pytest.mark.parametrize("first_changed", [1, 5, 8, 40, 80])
def test_encoder_is_causal(tiny_vae: MotionVAE, first_changed: int) -> None:
    """Latent l depends on frames <= 4l only: changing frames >= f leaves latents l < f/4 unchanged."""
    x = torch.randn(1, MOTION_FRAMES, HEAD_CENTRIC_DIM)
    y = x.clone()
    y[:, first_changed:] += torch.randn_like(y[:, first_changed:])
    a, b = tiny_vae.encode(x).mean, tiny_vae.encode(y).mean
    n_same = (first_changed + 3) // 4  # latents l with 4l < first_changed
    assert torch.equal(a[:, :n_same], b[:, :n_same])  # bit-exact: latent 0 never sees frame k > 0
    assert not torch.allclose(a[:, n_same:], b[:, n_same:])


@torch.no_grad()
def test_first_pose_alone_gives_latent_0(tiny_vae: MotionVAE) -> None:
    """Encoding frame 0 alone (the first-pose condition) gives latent 0 of the clip (to rounding:
    convolutions over other lengths sum in another order)."""
    x = torch.randn(2, MOTION_FRAMES, HEAD_CENTRIC_DIM)
    alone = tiny_vae.encode(x[:, :1])
    assert alone.mean.shape == (2, 1, tiny_vae.config.latent_dim)
    torch.testing.assert_close(alone.mean, tiny_vae.encode(x).mean[:, :1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("first_changed", [1, 3, 20])
def test_decoder_is_causal(tiny_vae: MotionVAE, first_changed: int) -> None:
    """Decoded frames <= 4(l-1) do not depend on latents >= l; frame 0 only on latent 0."""
    z = torch.randn(1, MOTION_LATENTS, tiny_vae.config.latent_dim)
    w = z.clone()
    w[:, first_changed:] += 1.0
    a, b = tiny_vae.decode(z), tiny_vae.decode(w)
    n_same = 4 * (first_changed - 1) + 1
    assert torch.equal(a[:, :n_same], b[:, :n_same])
    assert not torch.allclose(a[:, n_same:], b[:, n_same:])


def test_eq1_known_answer() -> None:
    """Total = mean over groups of (group MSE + lambda * KL); group sizes do not weight it."""
    target = torch.zeros(1, 5, 10)
    recon = torch.zeros(1, 5, 10)
    recon[..., 0:2] = 1.0  # group a: MSE 1
    recon[..., 2:10] = 2.0  # group b: MSE 4 (8 features)
    kl = torch.tensor(3.0)
    total, parts = vae_loss(recon, target, kl, {"a": slice(0, 2), "b": list(range(2, 10))}, kl_weight=0.1)
    assert parts["recon/a"].item() == 1.0 and parts["recon/b"].item() == 4.0
    assert total.item() == pytest.approx((1.0 + 4.0) / 2 + 0.1 * 3.0)


def test_kl_of_standard_normal_is_zero(tiny_vae: MotionVAE) -> None:
    from egotwin_model.motion_vae import DiagonalGaussian

    g = DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    assert torch.equal(g.kl(), torch.zeros(2, 3))
    g = DiagonalGaussian(torch.ones(1, 1), torch.zeros(1, 1))
    assert g.kl().item() == pytest.approx(0.5)


def test_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    vae = MotionVAE(EgoTwinConfig.load("tiny").motion_vae)
    x = torch.randn(2, MOTION_FRAMES, HEAD_CENTRIC_DIM).cumsum(1) * 0.1  # smooth-ish signals
    groups = group_indices("head_centric")
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = vae.loss(x, groups, generator=g)[0].item()
    for _ in range(30):
        opt.zero_grad()
        loss = vae.loss(x, groups, generator=g)[0]
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_bad_shapes_are_clear_errors(tiny_vae: MotionVAE) -> None:
    with pytest.raises(ValueError, match=r"must be \(B, T, 288\)"):
        tiny_vae.encode(torch.randn(1, 81, 275))
    with pytest.raises(ValueError, match="must be 1 \\+ 4k"):
        tiny_vae.encode(torch.randn(1, 80, 288))
    with pytest.raises(ValueError, match="latents must be"):
        tiny_vae.decode(torch.randn(1, 21, 3))


def test_paper_size_parameter_counts() -> None:
    """Appendix A: 'both the encoder and decoder contain approximately 200M parameters'.

    With appendix A's structure (mirrored widths, 4 ResNets per DownBlock, 5 per UpBlock) the
    decoder is necessarily ~1.3x the encoder; we get 187M + 247M = 434M (see docs/model.md).
    """
    cfg = EgoTwinConfig.load("paper").motion_vae
    assert cfg.encoder_channels[-1] == 2048 and cfg.latent_dim == 64
    with torch.device("meta"):
        vae = MotionVAE(cfg)
    enc = sum(p.numel() for p in vae.encoder.parameters())
    dec = sum(p.numel() for p in vae.decoder.parameters())
    print(f"motion VAE encoder {enc / 1e6:.1f}M, decoder {dec / 1e6:.1f}M")
    assert abs(enc / 200e6 - 1) < 0.15
    assert abs((enc + dec) / 400e6 - 1) < 0.15
    assert abs(dec / 200e6 - 1) < 0.25


def test_config_rejects_mismatched_latent_dim() -> None:
    cfg = EgoTwinConfig.load("tiny")
    with pytest.raises(ValueError, match="motion_channels"):
        dataclasses.replace(cfg, motion_vae=dataclasses.replace(cfg.motion_vae, latent_dim=5))


@pytest.mark.parametrize("representation", ["head_centric", "root_centric"])
def test_save_pretrained_round_trip_is_exact(tmp_path, representation: str) -> None:
    cfg = EgoTwinConfig.load("tiny").with_representation(representation).motion_vae
    torch.manual_seed(1)
    vae = MotionVAE(cfg).eval()
    folder = vae.save_pretrained(tmp_path / "vae")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = MotionVAE.from_pretrained(folder)
    assert loaded.config == cfg and not loaded.training
    state, state2 = vae.state_dict(), loaded.state_dict()
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    x = torch.randn(2, MOTION_FRAMES, cfg.in_dim)
    with torch.no_grad():
        assert torch.equal(vae.encode(x).mean, loaded.encode(x).mean)
        assert torch.equal(vae.decode(torch.randn(2, 21, cfg.latent_dim, generator=torch.Generator().manual_seed(0))),
                           loaded.decode(torch.randn(2, 21, cfg.latent_dim, generator=torch.Generator().manual_seed(0))))
    vae.save_pretrained(folder)  # overwriting an existing folder works and leaves no temp folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]


def test_from_pretrained_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        MotionVAE.from_pretrained(tmp_path / "nowhere")
    from egotwin_model.dit import EgoTwinDiT

    EgoTwinDiT(EgoTwinConfig.load("tiny").dit).save_pretrained(tmp_path / "dit")
    with pytest.raises(ValueError, match="holds a 'EgoTwinDiT', not a MotionVAE"):
        MotionVAE.from_pretrained(tmp_path / "dit")
    vae = MotionVAE(EgoTwinConfig.load("tiny").motion_vae)
    vae.save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        MotionVAE.from_pretrained(tmp_path / "vae")
    root = MotionVAE(EgoTwinConfig.load("tiny").with_representation("root_centric").motion_vae)
    root.save_pretrained(tmp_path / "root")
    config = (tmp_path / "root" / "config.json")
    config.write_text(config.read_text().replace("275", "288"))  # weights no longer fit the config
    with pytest.raises(RuntimeError, match="size mismatch"):
        MotionVAE.from_pretrained(tmp_path / "root")


@pytest.mark.parametrize("variant", ["wo_mr", "vidmld"])
def test_without_motion_reformulation_is_root_centric(variant: str) -> None:
    """"w/o MR" (and VidMLD) swap the 288-d head-centric features for the 275-d root-centric ones:
    the VAE's input layer and the loss groups change with them."""
    base = EgoTwinConfig.load("tiny")
    cfg = base.with_ablation(variant)
    assert cfg.variant == variant and base.variant == "egotwin"
    assert (cfg.representation, cfg.motion_vae.in_dim) == ("root_centric", ROOT_CENTRIC_DIM)
    assert MotionVAE(cfg.motion_vae).encoder.conv_in.weight.shape[1] == ROOT_CENTRIC_DIM
    assert MotionVAE(base.motion_vae).encoder.conv_in.weight.shape[1] == HEAD_CENTRIC_DIM
    for c in (cfg, base):  # the four eq. 1 groups index the representation's own features
        groups = group_indices(c.representation)
        assert set(groups) == {"head3d", "head6d", "joint3d", "joint6d"}
        features = torch.arange(c.motion_vae.in_dim)
        sizes = [features[i if isinstance(i, slice) else torch.as_tensor(i)].numel() for i in groups.values()]
        assert min(sizes) > 0  # (an index list past in_dim would raise)
    assert EgoTwinConfig.from_dict(cfg.to_dict()).variant == variant  # the switch survives run.json
