"""Guidance (eq. 3, eq. 4, vanilla CFG) and the diffusion schedule / conditioning rules."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from egotwin_model import diffusion
from egotwin_model.config import MOTION_LATENTS, VIDEO_LATENT_FRAMES, DiffusionConfig, EgoTwinConfig, GuidanceConfig
from egotwin_model.dit import DiTOutput, EgoTwinDiT
from egotwin_model.guidance import (
    combine,
    guided_prediction,
    passes,
    split_passes,
    stack_passes,
    two_condition_cfg,
    vanilla_cfg,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

UNIT = GuidanceConfig(text_scale=1.0, video_scale=1.0, motion_scale=1.0)
PAPER = GuidanceConfig()


@pytest.fixture(scope="module")
def alphas() -> torch.Tensor:
    return diffusion.alphas_cumprod(DiffusionConfig())


def _model(asynchronous: bool) -> EgoTwinDiT:
    cfg = dataclasses.replace(EgoTwinConfig.load("tiny").dit, asynchronous=asynchronous)
    torch.manual_seed(0)
    model = EgoTwinDiT(cfg).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero motion head and modulations
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _latents(cfg, b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, VIDEO_LATENT_FRAMES, cfg.in_channels, 8, 8, generator=g)
    motion = torch.randn(b, MOTION_LATENTS, cfg.motion_channels, generator=g)
    return {
        "text": torch.randn(b, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g),
        "null_text": torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g),
        "video": video, "motion": motion,
        "video_noise": torch.randn(video.shape, generator=g), "motion_noise": torch.randn(motion.shape, generator=g),
    }


def test_formulas_known_answers() -> None:
    u, c, f = torch.tensor(0.0), torch.tensor(1.0), torch.tensor(3.0)
    assert two_condition_cfg(f, c, u, 6.0, 4.0).item() == 0 + 6 * 1 + 4 * 2
    assert vanilla_cfg(torch.tensor(2.0), torch.tensor(0.5), 6.0).item() == 0.5 + 6 * 1.5


@pytest.mark.parametrize("asynchronous", [True, False])
@pytest.mark.parametrize("task", ["t2vm", "tm2v", "tv2m"])
def test_unit_scales_give_the_unguided_prediction(task: str, asynchronous: bool, alphas: torch.Tensor) -> None:
    model = _model(asynchronous)
    x = _latents(model.config)
    plan = passes(task, asynchronous)
    inputs = stack_passes(plan, text=x["text"], null_text=x["null_text"], video=x["video"], motion=x["motion"],
                          t=torch.tensor([400, 400]), video_noise=x["video_noise"], motion_noise=x["motion_noise"],
                          alphas=alphas, t_max=999)
    with torch.no_grad():
        outputs = split_passes(plan, model(**inputs))
    conditional = outputs["full" if asynchronous else "cond"]
    guided = combine(task, asynchronous, outputs, UNIT)
    if task in ("t2vm", "tm2v"):
        assert torch.equal(guided.video, conditional.video)
    else:
        assert guided.video is None
    if task in ("t2vm", "tv2m"):
        assert torch.equal(guided.motion, conditional.motion)
    else:
        assert guided.motion is None
    # and the end-to-end helper equals one plain conditional model call (up to batch rounding)
    with torch.no_grad():
        helper = guided_prediction(model, task, text=x["text"], null_text=x["null_text"], video=x["video"],
                                   motion=x["motion"], t=400, scales=UNIT, asynchronous=asynchronous,
                                   video_noise=x["video_noise"], motion_noise=x["motion_noise"], alphas=alphas)
        first = plan[0]
        single = model(**stack_passes((first,), text=x["text"], null_text=x["null_text"], video=x["video"],
                                      motion=x["motion"], t=torch.tensor([400, 400]), video_noise=x["video_noise"],
                                      motion_noise=x["motion_noise"], alphas=alphas, t_max=999))
    for name in ("video", "motion"):
        if getattr(helper, name) is not None:
            torch.testing.assert_close(getattr(helper, name), getattr(single, name), atol=1e-5, rtol=1e-5)


def test_guidance_changes_the_prediction() -> None:
    model = _model(True)
    x = _latents(model.config)
    kwargs = dict(text=x["text"], null_text=x["null_text"], video=x["video"], motion=x["motion"], t=500,
                  asynchronous=True, video_noise=x["video_noise"], motion_noise=x["motion_noise"])
    with torch.no_grad():
        a = guided_prediction(model, "t2vm", scales=UNIT, **kwargs)
        b = guided_prediction(model, "t2vm", scales=PAPER, **kwargs)
    assert not torch.allclose(a.video, b.video) and not torch.allclose(a.motion, b.motion)


def test_pass_inputs_follow_the_null_rules(alphas: torch.Tensor) -> None:
    """Dropped modality: noise at t = T-1 with the clean latent 0; condition: clean at t = 0; null text."""
    cfg = EgoTwinConfig.load("tiny").dit
    x = _latents(cfg)
    plan = passes("tm2v", True)
    assert [p.name for p in plan] == ["full", "text", "uncond"]
    inputs = stack_passes(plan, text=x["text"], null_text=x["null_text"], video=x["video"], motion=x["motion"],
                          t=torch.tensor([250, 250]), video_noise=None, motion_noise=x["motion_noise"],
                          alphas=alphas, t_max=999)
    assert inputs["t_video"].tolist() == [250] * 6
    assert inputs["t_motion"].tolist() == [0, 0, 999, 999, 999, 999]
    m_full, m_text, m_uncond = inputs["motion"].chunk(3)
    assert torch.equal(m_full, x["motion"])
    assert torch.equal(m_text[:, 1:], x["motion_noise"][:, 1:]) and torch.equal(m_text[:, :1], x["motion"][:, :1])
    assert torch.equal(m_uncond, m_text)
    t_full, t_text, t_uncond = inputs["text"].chunk(3)
    assert torch.equal(t_full, x["text"]) and torch.equal(t_text, x["text"])
    assert torch.equal(t_uncond, x["null_text"].expand_as(x["text"]))
    assert len(passes("t2vm", True)) == 5 and len(passes("t2vm", False)) == 2
    with pytest.raises(ValueError, match="unknown task"):
        passes("v2m", True)


def test_synchronous_condition_is_renoised(alphas: torch.Tensor) -> None:
    cfg = EgoTwinConfig.load("tiny").dit
    x = _latents(cfg)
    t = torch.tensor([600, 600])
    inputs = stack_passes(passes("tv2m", False), text=x["text"], null_text=x["null_text"], video=x["video"],
                          motion=x["motion"], t=t, video_noise=x["video_noise"], motion_noise=None,
                          alphas=alphas, t_max=999)
    expected = diffusion.keep_first_latent(diffusion.add_noise(alphas, x["video"], x["video_noise"], t), x["video"])
    assert torch.equal(inputs["video"][:2], expected)
    assert torch.equal(inputs["t_video"], inputs["t_motion"])


# ---------------------------------------------------------------- diffusion


def test_schedule_is_cogvideox_zero_terminal_snr_v_prediction(alphas: torch.Tensor) -> None:
    sched = diffusion.make_scheduler(DiffusionConfig())
    assert sched.config.prediction_type == "v_prediction" and sched.config.rescale_betas_zero_snr
    assert alphas.shape == (1000,) and alphas[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert torch.all(alphas[1:] < alphas[:-1])


def test_targets_round_trip(alphas: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 21, 8, generator=g), torch.randn(4, 21, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = diffusion.add_noise(alphas, x0, noise, t)
    v = diffusion.training_targets(alphas, x0, noise, t)
    torch.testing.assert_close(diffusion.predicted_x0(alphas, xt, v, t), x0, atol=1e-5, rtol=1e-5)
    assert torch.allclose(xt[3], noise[3])  # zero terminal SNR: x_{T-1} is pure noise
    assert torch.allclose(v[3], -x0[3], atol=1e-6)  # ... and v = -x0 there


def test_loss_ignores_the_clean_first_latent() -> None:
    target = torch.randn(2, 11, 4, 8, 8)
    pred = target.clone()
    pred[:, 0] += 5.0
    assert diffusion.loss(pred, target, mask_first_latent=True).item() == 0.0
    assert diffusion.loss(pred, target, mask_first_latent=False).item() == pytest.approx(25.0 / 11)


def test_noisy_inputs_keep_latent_0_clean(alphas: torch.Tensor) -> None:
    x0 = torch.randn(3, 21, 8)
    xt, noise = diffusion.noisy_inputs(alphas, x0, torch.tensor([999, 500, 1]), torch.Generator().manual_seed(0))
    assert torch.equal(xt[:, 0], x0[:, 0]) and not torch.allclose(xt[:, 1:], x0[:, 1:])


def test_timesteps_sync_and_async() -> None:
    tv, tm = diffusion.sample_timesteps(64, False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tv, tm) and tv.min() >= 0 and tv.max() < 1000
    tv, tm = diffusion.sample_timesteps(64, True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(tv, tm)
    again = diffusion.sample_timesteps(64, True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], tv) and torch.equal(again[1], tm)


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_ddim_with_an_oracle_recovers_the_data(steps: int, alphas: torch.Tensor) -> None:
    """With the true v at every step, deterministic DDIM lands on x0, and latent 0 stays the condition."""
    sched = diffusion.make_scheduler(DiffusionConfig())
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 21, 8, generator=g, dtype=torch.float64)
    x = diffusion.initial_latents(x0, generator=g)
    for t in diffusion.set_inference_steps(sched, steps):
        tb = torch.full((2,), int(t))
        eps = (x - alphas[tb].sqrt().reshape(-1, 1, 1) * x0) / (1 - alphas[tb]).sqrt().reshape(-1, 1, 1)
        v = diffusion.training_targets(alphas, x0, eps, tb)
        x = diffusion.denoise_step(sched, v, t, x, condition=x0)
        assert torch.equal(x[:, 0], x0[:, 0])
    torch.testing.assert_close(x, x0, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="--steps"):
        diffusion.set_inference_steps(sched, 0)


@pytest.mark.parametrize("variant", ["egotwin", "wo_ad", "vidmld"])
def test_variant_sets_timesteps_and_guidance(variant: str) -> None:
    """"w/o AD" / VidMLD: one shared timestep in training and vanilla CFG (cond + uncond) at sampling;
    EgoTwin: independent timesteps and eq. 3 / eq. 4 (3 / 5 passes)."""
    asynchronous = EgoTwinConfig.load("tiny").with_ablation(variant).dit.asynchronous
    assert asynchronous is (variant == "egotwin")
    tv, tm = diffusion.sample_timesteps(256, asynchronous, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tv, tm) is (not asynchronous)
    counts = {task: len(passes(task, asynchronous)) for task in ("t2vm", "tm2v", "tv2m")}
    assert counts == ({"t2vm": 5, "tm2v": 3, "tv2m": 3} if asynchronous else {"t2vm": 2, "tm2v": 2, "tv2m": 2})


def test_each_branch_is_guided_by_the_other_modalitys_scale() -> None:
    """Distinct scales (w_t 6, w_v 2, w_m 5) on stub outputs: the video branch is guided by the
    motion condition (w_m), the motion branch by the video condition (w_v) — eq. 3 / eq. 4."""
    scales = GuidanceConfig(text_scale=6.0, video_scale=2.0, motion_scale=5.0)

    def out(v: float, m: float) -> DiTOutput:
        return DiTOutput(torch.tensor([v]), torch.tensor([m]))

    t2vm = {"full": out(3.0, 30.0), "video_text": out(1.0, 0.0), "video_uncond": out(0.5, 0.0),
            "motion_text": out(0.0, 10.0), "motion_uncond": out(0.0, 4.0)}
    g = combine("t2vm", True, t2vm, scales)
    assert g.video.item() == 0.5 + 6 * (1.0 - 0.5) + 5 * (3.0 - 1.0)
    assert g.motion.item() == 4.0 + 6 * (10.0 - 4.0) + 2 * (30.0 - 10.0)
    pair = {"full": out(3.0, 30.0), "text": out(1.0, 10.0), "uncond": out(0.5, 4.0)}
    assert combine("tm2v", True, pair, scales).video.item() == 0.5 + 6 * 0.5 + 5 * 2.0  # motion condition: w_m
    assert combine("tv2m", True, pair, scales).motion.item() == 4.0 + 6 * 6.0 + 2 * 20.0  # video condition: w_v
    sync = {"cond": out(1.0, 10.0), "uncond": out(0.5, 4.0)}
    g = combine("t2vm", False, sync, scales)  # w/o AD: vanilla CFG on the text only
    assert (g.video.item(), g.motion.item()) == (0.5 + 6 * 0.5, 4.0 + 6 * 6.0)


@pytest.mark.parametrize("task", ["t2vm", "tv2m"])
def test_t2vm_and_tv2m_pass_inputs(task: str, alphas: torch.Tensor) -> None:
    """Each pass's (text, video state, motion state, timesteps) as eq. 4 (and eq. 3 mirrored) read."""
    cfg = EgoTwinConfig.load("tiny").dit
    x = _latents(cfg)
    plan = passes(task, True)
    inputs = stack_passes(plan, text=x["text"], null_text=x["null_text"], video=x["video"], motion=x["motion"],
                          t=torch.tensor([250, 250]), video_noise=x["video_noise"], motion_noise=x["motion_noise"],
                          alphas=alphas, t_max=999)
    n = len(plan)
    texts, videos, motions = (inputs[k].chunk(n) for k in ("text", "video", "motion"))
    tv, tm = inputs["t_video"].reshape(n, -1)[:, 0].tolist(), inputs["t_motion"].reshape(n, -1)[:, 0].tolist()
    null = x["null_text"].expand_as(x["text"])
    noised_v = torch.cat([x["video"][:, :1], x["video_noise"][:, 1:]], dim=1)
    noised_m = torch.cat([x["motion"][:, :1], x["motion_noise"][:, 1:]], dim=1)
    if task == "t2vm":
        assert [p.name for p in plan] == ["full", "video_text", "video_uncond", "motion_text", "motion_uncond"]
        assert tv == [250, 250, 250, 999, 999] and tm == [250, 999, 999, 250, 250]
        expect_text = [x["text"], x["text"], null, x["text"], null]
        expect_v = [x["video"], x["video"], x["video"], noised_v, noised_v]
        expect_m = [x["motion"], noised_m, noised_m, x["motion"], x["motion"]]
    else:  # the condition video enters clean (t = 0) or dropped (noise, t = T - 1)
        assert [p.name for p in plan] == ["full", "text", "uncond"]
        assert tv == [0, 999, 999] and tm == [250, 250, 250]
        expect_text = [x["text"], x["text"], null]
        expect_v = [x["video"], noised_v, noised_v]
        expect_m = [x["motion"]] * 3
    for got, want in zip((texts, videos, motions), (expect_text, expect_v, expect_m)):
        for g, w in zip(got, want):
            assert torch.equal(g, w)
