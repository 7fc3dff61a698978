"""Sampling: T2VM / TM2V / TV2M submissions from the tiny run that the benchmark's validator
accepts, world placement of generated motion, the VidMLD variant end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from egotwin_bench.constants import MOTION_FRAMES, NUM_JOINTS, VIDEO_FRAMES, VIDEO_SIZE
from egotwin_bench.evaluate.reference import load_clips, reference_name, split_ids
from egotwin_bench.evaluate.submission import read_meta, validate_submission
from egotwin_model.sample import decode_to_world
from tests.fixtures_model import cli, train_tiny_stage

LIMIT = 1


def sample_cli(run: Path, dataset: Path, task: str, out: Path, *extra: str) -> str:
    """`egotwin-model sample` as the demo calls it (+ few steps and clips for the test)."""
    return cli("sample", "--run", run, "--dataset", dataset, "--task", task, "--out", out,
               "--steps", 2, "--limit", LIMIT, *extra)


def check_submission(folder: Path, dataset: Path, task: str) -> None:
    expected = split_ids(dataset, "test")[:LIMIT]
    report = validate_submission(folder, expected, reference_name(dataset, "test"))
    assert report.ok, report.summary()
    assert report.valid_clips == expected
    meta = read_meta(folder)
    assert (meta.task, meta.motion_format, meta.method) == (task, "world_joints", folder.name)


@pytest.mark.parametrize("representation", ["head_centric", "root_centric"])
def test_decode_to_world_places_motion_like_the_reference(representation: str) -> None:
    """Encoding a world motion and decoding it with the reference's first pose gives it back."""
    from egotwin_bench.motion import REPRESENTATIONS
    from tests.random_bodies import random_motion

    rng = np.random.default_rng(3)
    pos, rot = (np.stack(a) for a in zip(*[random_motion(rng, MOTION_FRAMES, extreme=False) for _ in range(2)]))
    feats = np.asarray(REPRESENTATIONS[representation].encode(pos, rot))
    out_pos, out_rot = decode_to_world(representation, feats, pos, rot)
    assert out_pos.shape == (2, MOTION_FRAMES, NUM_JOINTS, 3) and out_rot.shape == (2, MOTION_FRAMES, NUM_JOINTS, 3, 3)
    np.testing.assert_allclose(out_pos, pos, atol=1e-4)
    if representation == "head_centric":  # root-centric does not hold the pelvis pitch/roll (its docstring)
        np.testing.assert_allclose(out_rot, rot, atol=1e-4)


@pytest.mark.parametrize("task", ["t2vm", "tm2v", "tv2m"])
def test_sample_writes_a_valid_submission(tiny_run: Path, model_dataset: Path, tmp_path: Path, task: str) -> None:
    from egotwin_bench.curation.video import decode_mp4

    out = tmp_path / "submissions" / f"egotwin-tiny-{task}"
    sample_cli(tiny_run, model_dataset, task, out)
    check_submission(out, model_dataset, task)
    meta = read_meta(out)
    assert meta.guidance["cfg"] == "eq3/eq4" and meta.guidance["text_scale"] == 6.0
    assert meta.model["video_size"] == 64 and meta.model["upsampled_to"] == VIDEO_SIZE

    ref = load_clips(model_dataset, "test", limit=LIMIT)[0]
    video = (out / f"{ref.clip_id}.mp4").read_bytes()
    motion = np.load(io.BytesIO((out / f"{ref.clip_id}.npz").read_bytes()))
    frames = decode_mp4(video)
    assert frames.shape == (VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE, 3)
    if task == "tv2m":  # the given video is the reference's
        assert video == ref.video_mp4
    if task == "tm2v":  # the given motion is the reference's
        np.testing.assert_array_equal(motion["positions"], ref.positions.astype(np.float32))
    else:  # generated motion: its frame 0 is the first-pose condition (motion latent 0 is kept clean and the
        # motion VAE is causal), decoded and placed in the world with the reference's first head pose
        from egotwin_model.sample import Sampler

        assert np.isfinite(motion["positions"]).all()
        sampler = Sampler.from_run(tiny_run)
        pos, rot = ref.positions[None].astype(np.float64), ref.rotations[None].astype(np.float64)
        first_pose, _ = sampler.decode_motion(sampler.motion_latents(pos, rot)[:, :1], pos, rot)
        np.testing.assert_allclose(motion["positions"][0], first_pose[0, 0], atol=1e-4)
        assert np.abs(motion["positions"][1:] - motion["positions"][:1]).max() > 0  # and it moves


def test_sample_resumes_and_rejects_bad_options(tiny_run: Path, model_dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from egotwin_model.cli import app

    out = tmp_path / "egotwin-tiny"
    sample_cli(tiny_run, model_dataset, "tv2m", out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    sample_cli(tiny_run, model_dataset, "tv2m", out)  # finished clips are skipped
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix != ".json"} == \
        {k: v for k, v in stamps.items() if not k.endswith(".json")}
    result = CliRunner().invoke(app, ["sample", "--run", str(tmp_path / "nowhere"), "--dataset", str(model_dataset),
                                      "--task", "t2vm", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "run.json not found" in result.output
    result = CliRunner().invoke(app, ["sample", "--run", str(tiny_run), "--dataset", str(model_dataset),
                                      "--task", "t2v", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0


def test_vidmld_variant_trains_and_samples(tiny_run: Path, model_dataset: Path, tmp_path: Path) -> None:
    """VidMLD (root-centric, no interaction mask, synchronous diffusion + vanilla CFG) end to end,
    reusing the tiny run's encoders and cache (which holds both motion representations)."""
    run = tmp_path / "vidmld"
    run.mkdir()
    for name in ("encoders", "cache"):
        (run / name).symlink_to(tiny_run / name)
    for stage, steps in (("vae", 2), ("t2m", 1), ("joint", 1)):
        train_tiny_stage(run, model_dataset, stage, steps, "--variant", "vidmld")
    settings = json.loads((run / "run.json").read_text())
    assert settings["variant"] == "vidmld" and settings["config"]["representation"] == "root_centric"
    assert settings["config"]["dit"]["interaction_mask"] is False and settings["config"]["dit"]["asynchronous"] is False
    out = tmp_path / "vidmld-tv2m"
    sample_cli(run, model_dataset, "tv2m", out)
    check_submission(out, model_dataset, "tv2m")
    meta = read_meta(out)
    assert meta.guidance["cfg"] == "vanilla" and meta.model["representation"] == "root_centric"


@pytest.mark.slow
def test_evaluate_accepts_the_samples(tiny_run: Path, model_dataset: Path, tmp_path: Path) -> None:
    """`egotwin-bench evaluate` scores the three task submissions (metrics needing no weights)."""
    from typer.testing import CliRunner

    from egotwin_bench.cli import app

    subs = tmp_path / "submissions"
    for task in ("t2vm", "tm2v", "tv2m"):
        sample_cli(tiny_run, model_dataset, task, subs / f"egotwin-{task}")
    result = CliRunner().invoke(app, ["evaluate", str(subs), "--reference", str(model_dataset), "--out",
                                      str(tmp_path / "results"), "--allow-partial", "--workers", "0",
                                      "--estimator", "builtin"])
    assert result.exit_code == 0, result.output
    board = (tmp_path / "results" / "leaderboard.csv").read_text().splitlines()
    assert len(board) == 4 and all(f"egotwin-{t}" in "\n".join(board) for t in ("t2vm", "tm2v", "tv2m"))


@pytest.mark.slow
def test_pipeline_on_the_curated_synthetic_dataset(built_dataset: Path, tmp_path: Path) -> None:
    """The demo's commands on `egotwin-bench build-dataset` output (the curation fixture)."""
    run = tmp_path / "run"
    for stage in ("video-vae", "vae", "t2m", "joint"):
        cli("train", "--stage", stage, "--config", "tiny", "--dataset", built_dataset, "--run", run,
            "--steps", 2, "--batch-size", 2)
    out = tmp_path / "submissions" / "egotwin-tiny"
    cli("sample", "--run", run, "--dataset", built_dataset, "--task", "t2vm", "--out", out, "--steps", 2)
    report = validate_submission(out, split_ids(built_dataset, "test"), reference_name(built_dataset, "test"))
    assert report.ok, report.summary()


def test_bf16_forward_is_the_fsdp2_mixed_precision_forward_of_training() -> None:
    """CUDA sampling runs the DiT through `BF16Forward`; it must compute what training's FSDP2 bf16
    mixed precision computes (parameters and inputs in bf16), here on CPU, up to bf16 rounding
    (FSDP2 also casts each block's floating inputs, e.g. the rotary tables, to bf16)."""
    import copy

    import torch

    from egotwin_model.config import EgoTwinConfig
    from egotwin_model.dit import EgoTwinDiT
    from egotwin_model.parallel import apply_fsdp, init_distributed
    from egotwin_model.dit import BF16Forward

    cfg = EgoTwinConfig.load("tiny").dit
    torch.manual_seed(0)
    dit = EgoTwinDiT(cfg).eval()
    with torch.no_grad():  # the zero-initialised output heads made non-zero, as after training
        for p in dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    text = torch.randn(2, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g)
    video = torch.randn(2, 3, cfg.in_channels, cfg.sample_height, cfg.sample_width, generator=g)
    motion = torch.randn(2, cfg.motion_length, cfg.motion_channels, generator=g)
    t = torch.tensor([10, 500])
    fsdp = copy.deepcopy(dit)
    apply_fsdp(fsdp, [fsdp.blocks], init_distributed("cpu"), param_dtype=torch.bfloat16)
    with torch.no_grad():
        want = fsdp(text, video, motion, t, t)
        got = BF16Forward(copy.deepcopy(dit))(text, video, motion, t, t)
        full = dit(text, video, motion, t, t)
    assert got.video.dtype == got.motion.dtype == torch.float32
    for name in ("video", "motion"):
        a, b, ref = getattr(got, name), getattr(want, name).float(), getattr(full, name)
        assert not torch.equal(a, ref)  # bf16 arithmetic, not the fp32 model
        # no further from training's forward than training's forward is from fp32
        assert (a - b).abs().max() <= (b - ref).abs().max(), name
