"""Training stages on the tiny config (CPU): falling losses, frozen text branch in t2m, bit-exact
resume after a crash, variant switches, data order, errors that say what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from egotwin_model import checkpoint
from egotwin_model import train as train_mod
from egotwin_model.precompute import load_tensors
from egotwin_model.run import dit_path, make_run_settings, motion_vae_path, open_run, train_config
from egotwin_model.stages import base as stage_base
from egotwin_model.stages import t2m_joint
from egotwin_model.train import batch_indices, build_stage, evaluation_loss, run_stage
from tests.fixtures_model import TINY_BATCH, TINY_LR, cli


def fork_run(src: Path, dst: Path, keep: tuple[str, ...]) -> Path:
    """A new RUN_DIR sharing `src`'s settings, encoders and cache and the finished stages `keep`
    (symlinks: read only), so one stage can be retrained there."""
    dst.mkdir(parents=True)
    shutil.copy(src / "run.json", dst / "run.json")
    for name in ("encoders", "cache", *keep):
        (dst / name).symlink_to(src / name)
    return dst


def _weights(stage: str, run: Path) -> Path:
    return motion_vae_path(run) if stage == "vae" else dit_path(run, stage)


def test_video_vae_loss_falls_and_encoders_are_saved(tiny_run: Path) -> None:
    losses = [json.loads(line)["loss"] for line in (tiny_run / "video-vae" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for part in ("tokenizer", "text_encoder", "vae"):
        assert (tiny_run / "encoders" / part).is_dir()
    vae_config = json.loads((tiny_run / "encoders" / "vae" / "config.json").read_text())
    assert vae_config["scaling_factor"] != 1.0  # set from the train latents' std
    manifest = json.loads((tiny_run / "cache" / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "val", "test"}  # built by the first stage that needed it
    assert manifest["video_latent_shape"] == [11, 4, 8, 8]  # 41 frames, 64 x 64 -> 11 x 8 x 8, 4 channels


@pytest.mark.parametrize("stage", ["vae", "t2m", "joint"])
def test_stage_loss_falls_on_the_train_set(tiny_run: Path, stage: str) -> None:
    """Same items, same noise/timesteps/dropout draws: the trained weights beat the stage's start."""
    settings = open_run(tiny_run, None)
    tc = train_config(stage, settings.model_config(), batch_size=TINY_BATCH[stage])
    built = build_stage(stage, tiny_run, settings, tc)  # the stage's initial weights
    items = list(range(built.num_items))
    before = evaluation_loss(built, items, draws=8)
    built.model.load_state_dict(load_tensors(_weights(stage, tiny_run)))
    after = evaluation_loss(built, items, draws=8)
    print(f"{stage}: {before:.4f} -> {after:.4f}")
    assert after < before


def test_t2m_trains_only_the_motion_branch(tiny_run: Path) -> None:
    from egotwin_model.dit import EgoTwinDiT, _is_motion

    config = open_run(tiny_run, None).model_config()
    start = stage_base.seeded(lambda: EgoTwinDiT(config.dit), 0).state_dict()
    trained = load_tensors(dit_path(tiny_run, "t2m"))
    key = t2m_joint.TIME_EMBEDDING_WEIGHT
    for name, value in trained.items():
        if _is_motion(name):
            continue
        if name == key:  # columns [t_video | t_motion]: only the t_motion half learns
            half = value.shape[1] // 2
            assert torch.equal(value[:, :half], start[name][:, :half])
            assert not torch.equal(value[:, half:], start[name][:, half:])
        else:
            assert torch.equal(value, start[name]), f"{name} changed in stage t2m"
    assert any(not torch.equal(v, start[k]) for k, v in trained.items() if _is_motion(k))


def test_drop_text_rate_and_rows() -> None:
    """Rows become the null prompt with probability p, and only whole rows."""
    g = torch.Generator().manual_seed(0)
    text, null = torch.randn(20_000, 3, 2, generator=g), torch.zeros(3, 2)
    out = t2m_joint.drop_text(text, null, 0.1, g)
    dropped = (out == 0).all(dim=(1, 2))
    assert 0.09 < dropped.float().mean().item() < 0.11
    assert torch.equal(out[~dropped], text[~dropped])
    assert torch.equal(t2m_joint.drop_text(text, null, 0.0, g), text)


@pytest.mark.parametrize("stage", ["t2m", "joint"])
def test_diffusion_stages_drop_text_with_p_01(tiny_run: Path, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stages 2 and 3 both apply the 10% text dropout (paper §3.3) in their loss."""
    calls: list[float] = []
    real = t2m_joint.drop_text
    monkeypatch.setattr(t2m_joint, "drop_text", lambda t, n, p, g: calls.append(p) or real(t, n, p, g))
    settings = open_run(tiny_run, None)
    tc = train_config(stage, settings.model_config(), batch_size=2)
    built = build_stage(stage, tiny_run, settings, tc)
    built.loss(built.batch([0, 1]), torch.Generator().manual_seed(0))
    assert calls == [0.1]


class _Killed(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["vae", "t2m", "joint"])
def test_resume_after_a_crash_is_bit_exact(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           stage: str) -> None:
    keep = {"vae": (), "t2m": ("vae",), "joint": ("vae", "t2m")}[stage]
    options = dict(max_steps=4, batch_size=2, lr=TINY_LR, log_every=1, progress=False)
    straight = fork_run(tiny_run, tmp_path / "straight", keep)
    run_stage(stage, straight, **options)

    resumed = fork_run(tiny_run, tmp_path / "resumed", keep)
    real_step, calls = train_mod.train_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # killed during step 3: the step-2 checkpoint is the last one
            raise _Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", crashing_step)
    with pytest.raises(_Killed):
        run_stage(stage, resumed, checkpoint_every=2, **options)
    assert checkpoint.latest_checkpoint(resumed, stage).name == "step-2"
    assert not _weights(stage, resumed).exists()
    monkeypatch.setattr(train_mod, "train_step", real_step)
    log = run_stage(stage, resumed, checkpoint_every=2, **options)
    assert [r["step"] for r in log] == [3, 4]

    a, b = load_tensors(_weights(stage, straight)), load_tensors(_weights(stage, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read = lambda run: [json.loads(x) for x in (run / stage / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["loss"] for r in read(straight)] == [r["loss"] for r in read(resumed)]
    with pytest.raises(ValueError, match="same --batch-size"):
        run_stage(stage, resumed, **{**options, "max_steps": 6, "batch_size": 1})


def test_t2m_checkpoints_hold_only_trainable_tensors_keep_the_newest_and_save_bf16(tiny_run: Path, tmp_path: Path) -> None:
    """Disk levers of the paper-size pipeline: a t2m checkpoint leaves out the frozen text/video
    branch (the bit-exact resume test above covers that it still resumes exactly), --keep-checkpoints
    prunes older steps, --save-dtype bfloat16 halves the final file and stage joint still loads it."""
    import torch.distributed.checkpoint as dcp

    run = fork_run(tiny_run, tmp_path / "run", ("vae",))
    run_stage("t2m", run, max_steps=4, batch_size=2, lr=TINY_LR, checkpoint_every=1, keep_checkpoints=2,
              save_dtype="bfloat16", progress=False)
    ckpts = sorted(p.name for p in (run / "t2m" / "checkpoints").iterdir())
    assert ckpts == ["step-3", "step-4"]
    saved = {k.split(".", 1)[1] for k in dcp.FileSystemReader(str(run / "t2m" / "checkpoints" / "step-4"))
             .read_metadata().state_dict_metadata if k.startswith("model.")}
    settings = open_run(run, None)
    built = build_stage("t2m", run, settings, train_config("t2m", settings.model_config()))
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in built.model.named_parameters() if not p.requires_grad}
    assert trainable and frozen and trainable <= saved and not (saved & frozen)
    final = load_tensors(dit_path(run, "t2m"))
    assert {v.dtype for v in final.values() if v.is_floating_point()} == {torch.bfloat16}
    joint = build_stage("joint", run, settings, train_config("joint", settings.model_config()))
    w = dict(joint.model.named_parameters())["proj_out.weight"]
    assert w.dtype == torch.float32 and torch.equal(w.detach(), final["proj_out.weight"].float())
    with pytest.raises(ValueError, match="save dtype"):
        checkpoint.save_weights(built.model, tmp_path / "x.safetensors", "float16")


def test_batch_order_is_a_pure_function_of_seed_and_step() -> None:
    n, bs = 7, 3
    order = [i for step in range(7) for i in batch_indices(n, bs, step, seed=5)]  # 3 epochs
    for epoch in range(3):
        assert sorted(order[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert batch_indices(n, bs, 4, seed=5) == order[12:15]
    assert batch_indices(n, bs, 0, seed=6) != batch_indices(n, bs, 0, seed=5)


def test_variant_switches_reach_the_config(tmp_path: Path) -> None:
    dit = lambda s: s.model_config().dit  # noqa: E731
    plain = make_run_settings("tiny")
    assert plain.variant == "egotwin" and dit(plain).interaction_mask and dit(plain).asynchronous
    vidmld = make_run_settings("tiny", variant="vidmld")
    assert vidmld.model_config().representation == "root_centric"
    assert not dit(vidmld).interaction_mask and not dit(vidmld).asynchronous
    assert vidmld.model_config().motion_vae.in_dim == 275
    wo_im = make_run_settings("tiny", interaction_mask=False)
    assert not dit(wo_im).interaction_mask and dit(wo_im).asynchronous and wo_im.variant == "wo_im"
    wo_ad = make_run_settings("tiny", asynchronous=False)
    assert not dit(wo_ad).asynchronous and dit(wo_ad).interaction_mask and wo_ad.variant == "wo_ad"
    assert make_run_settings("tiny", representation="root_centric").variant == "wo_mr"
    assert make_run_settings("tiny", variant="vidmld", representation="head_centric").variant == "custom"
    with pytest.raises(ValueError, match="unknown variant"):
        make_run_settings("tiny", variant="nope")
    open_run(tmp_path, plain)
    assert open_run(tmp_path, make_run_settings("tiny")) == plain  # same options again: fine
    with pytest.raises(ValueError, match="another config/variant"):
        open_run(tmp_path, vidmld)


def test_errors_say_what_to_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from egotwin_model.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--stage", "vae", "--config", "tiny", "--run", str(run)])
    assert result.exit_code == 1 and "manifest.json not found: pass --dataset" in result.output
    result = CliRunner().invoke(app, ["train", "--stage", "warp", "--run", str(run)])
    assert result.exit_code != 0 and "--stage must be one of" in result.output
    result = CliRunner().invoke(app, ["train", "--stage", "t2m", "--run", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "start the run with --config" in result.output
    result = CliRunner().invoke(app, ["train", "--stage", "vae", "--variant", "vidmld", "--run", str(tmp_path / "v")])
    assert result.exit_code == 2 and "need --config" in result.output  # never silently the tiny config
    assert not (tmp_path / "v").exists()


def test_help_lists_the_demo_options() -> None:
    out = cli("train", "--help")
    for option in ("--stage", "--config", "--dataset", "--run", "--steps", "--variant", "--sync-diffusion",
                   "--no-interaction-mask", "--representation"):
        assert option in out


@pytest.mark.slow
def test_torchrun_two_ranks_fsdp2_trains_and_resumes(tiny_run: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m egotwin_model.train` on CPU (gloo): FSDP2-sharded joint
    stage, rank-0 weights and log, resume from the 2-rank checkpoint."""
    import os
    import subprocess
    import sys

    run = fork_run(tiny_run, tmp_path / "dist", ("vae", "t2m"))
    torchrun = Path(sys.executable).parent / "torchrun"

    def launch(steps: int) -> None:
        cmd = [str(torchrun), "--nproc-per-node", "2", "-m", "egotwin_model.train", "--stage", "joint", "--out",
               str(run), "--max-steps", str(steps), "--batch-size", "2", "--checkpoint-every", "2", "--log-every", "1"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    launch(2)
    launch(4)
    assert [p.name for p in sorted((run / "joint" / "checkpoints").iterdir())] == ["step-2", "step-4"]
    state = json.loads((run / "joint" / "checkpoints" / "step-4" / "train_state.json").read_text())
    assert len(state["rng"]) == 2  # one RNG state per rank
    steps = [json.loads(x)["step"] for x in (run / "joint" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    weights = load_tensors(dit_path(run, "joint"))
    assert weights.keys() == load_tensors(dit_path(tiny_run, "joint")).keys()


def test_precompute_cli_caches_the_requested_clips(tiny_run: Path, model_dataset: Path, tmp_path: Path) -> None:
    """`egotwin-model precompute` on a run with encoders: manifest, per-clip tensors equal to the
    training cache's, and a rerun that encodes nothing new."""
    from egotwin_model.precompute import clip_path, load_manifest

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "run.json", run / "run.json")
    (run / "encoders").symlink_to(tiny_run / "encoders")
    args = ("precompute", "--dataset", model_dataset, "--run", run, "--splits", "train,test", "--limit", 2)
    out = cli(*args)
    assert "cached train 2, test 2 clips" in out
    manifest = load_manifest(run / "cache")
    assert {k: len(v) for k, v in manifest["splits"].items()} == {"train": 2, "test": 2}
    assert manifest["video_latent_shape"] == [11, 4, 8, 8]
    clip = manifest["splits"]["test"][0]
    mine, theirs = load_tensors(clip_path(run / "cache", "test", clip)), load_tensors(clip_path(tiny_run / "cache", "test", clip))
    assert set(mine) == set(theirs) >= {"text_emb", "video_latents", "first_frame_latent", "head_centric", "root_centric"}
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=1e-5)
    stamp = clip_path(run / "cache", "test", clip).stat().st_mtime_ns
    cli(*args)
    assert clip_path(run / "cache", "test", clip).stat().st_mtime_ns == stamp  # resumed: nothing re-encoded


def test_fsdp2_world_of_one_trains_the_tiny_joint_stage_and_resumes_exactly(tiny_run: Path, tmp_path: Path) -> None:
    """The GPU code path on CPU: FSDP2 (one gloo process) + activation checkpointing around the
    tiny joint stage, DCP checkpoint at step 2, resume in fresh modules == uninterrupted run."""
    from egotwin_model.parallel import init_distributed
    from egotwin_model.parallel import parallelize
    from egotwin_model.train import train as train_stage

    info = init_distributed("cpu")
    settings = open_run(tiny_run, None)

    def run(run_dir: Path, steps: int) -> list[float]:
        tc = train_config("joint", settings.model_config(), batch_size=2, max_steps=steps, checkpoint_every=2,
                          log_every=1, ac_every=1)
        built = build_stage("joint", run_dir, settings, tc)
        parallelize(built, info, tc)
        return [r["loss"] for r in train_stage(built, tc, run_dir, progress=False, info=info)]

    full = run(fork_run(tiny_run, tmp_path / "full", ("vae", "t2m")), 4)
    resumed_dir = fork_run(tiny_run, tmp_path / "resumed", ("vae", "t2m"))
    first = run(resumed_dir, 2)
    rest = run(resumed_dir, 4)
    assert len(full) == 4 and first + rest == full
    assert torch.equal(load_tensors(dit_path(resumed_dir, "joint"))["proj_out.weight"],
                       load_tensors(dit_path(tmp_path / "full", "joint"))["proj_out.weight"])
