"""pipelines/random_pretrained.py: CogVideoX-5b folders with random weights.

Paper size on the meta device (parameter counts against the known totals, the real shard files,
units small enough to materialise, EgoTwinDiT key fit); tiny size written for real (same layout,
sharded): diffusers' / transformers' own loaders and `CogVideoXPipeline` read it strictly, the
init matches the libraries' own, the project's loaders and CLIs run from it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from egotwin_model.config import EgoTwinConfig
from egotwin_model.dit import EgoTwinDiT
from egotwin_model.encoders import TextEncoder, VideoVAE, load_encoders
from tests.fixtures_model import PROMPTS, cli

_PATH = Path(__file__).resolve().parents[1] / "pipelines" / "random_pretrained.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("random_pretrained", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rp = _load_script()
TINY_SHARD = "100KB"  # forces several shards at the tiny size
NETWORKS = {"transformer": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}


# ---------------------------------------------------------------- paper size, meta device


@pytest.fixture(scope="module")
def paper_meta() -> dict[str, torch.nn.Module]:
    configs = rp.part_configs("paper")
    return {part: rp.build_meta(part, configs[part]) for part in NETWORKS}


def test_paper_size_counts_and_files(paper_meta: dict[str, torch.nn.Module]) -> None:
    """CogVideoX-5B transformer ~5.57 B, its VAE ~215.6 M (431 MB in bf16), T5-v1.1-XXL encoder
    ~4.76 B; shards as in THUDM/CogVideoX-5b (transformer and text encoder 2 each, VAE 1 file)."""
    plans = {info["part"]: info for info in rp.plan_random_pretrained("paper")}
    assert abs(plans["transformer"]["parameters"] / 5.57e9 - 1) < 0.002
    assert abs(plans["vae"]["parameters"] / 215.6e6 - 1) < 0.002
    assert abs(plans["text_encoder"]["parameters"] / 4.762e9 - 1) < 0.001
    for info in plans.values():
        assert info["bytes"] == 2 * info["parameters"]  # bf16
    assert plans["transformer"]["files"] == [f"diffusion_pytorch_model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert plans["text_encoder"]["files"] == [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert plans["vae"]["files"] == ["diffusion_pytorch_model.safetensors"] and plans["vae"]["index"] is None
    # paper.toml's [dit] agrees with CogVideoX-5B's config.json, key by key
    assert rp.part_configs("paper")["transformer"] == rp.COGVIDEOX_5B_TRANSFORMER
    # nothing close to the whole network is materialised at once
    for part, model in paper_meta.items():
        biggest = max(sum(t.numel() for _, t in u.tensors()) for u in rp.units(model))
        assert biggest <= rp.UNIT_PARAMS, (part, biggest)


def test_paper_transformer_fits_egotwin_dit(paper_meta: dict[str, torch.nn.Module]) -> None:
    """Every CogVideoX-5B tensor has its counterpart in EgoTwinDiT(paper) with no key mapping
    (the asynchronous timestep Linear is twice as wide), and every text/video tensor is covered."""
    ckpt = {k: tuple(v.shape) for k, v in paper_meta["transformer"].state_dict().items()}
    with torch.device("meta"):
        dit = EgoTwinDiT(EgoTwinConfig.load("paper").dit)
    ours = {k: tuple(v.shape) for k, v in dit.state_dict().items()}
    for key, shape in ckpt.items():
        assert key in ours, key
        if key == "time_embedding.linear_1.weight":
            assert ours[key] == (shape[0], 2 * shape[1])
        else:
            assert ours[key] == shape, key
    uncovered = [k for k in ours if k not in ckpt and not (k.startswith("motion_") or ".motion." in k)]
    assert uncovered == []


# ---------------------------------------------------------------- tiny size, written


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("random_pretrained") / "weights"
    rp.write_random_pretrained(out, "tiny", narrations=list(PROMPTS) * 3, max_shard_size=TINY_SHARD,
                               progress=False, log=lambda _: None)
    return out


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_layout_index_and_dtype(tiny_weights: Path) -> None:
    index = json.loads((tiny_weights / "model_index.json").read_text())
    assert {k: v for k, v in index.items() if k != "_diffusers_version"} == rp.MODEL_INDEX
    assert (tiny_weights / "scheduler" / "scheduler_config.json").is_file()
    assert sorted(p.name for p in (tiny_weights / "tokenizer").iterdir()) == [
        "added_tokens.json", "special_tokens_map.json", "spiece.model", "tokenizer_config.json"]
    for part, stem in NETWORKS.items():
        folder = tiny_weights / part
        weight_map = json.loads((folder / f"{stem}.safetensors.index.json").read_text())["weight_map"]
        shards = sorted(folder.glob(f"{stem}-*-of-*.safetensors"))
        assert len(shards) >= 2 and sorted(set(weight_map.values())) == [p.name for p in shards]
        for shard in shards:  # the index names exactly the tensors of each shard
            with safe_open(str(shard), "pt") as f:
                assert sorted(f.keys()) == sorted(k for k, v in weight_map.items() if v == shard.name)
                assert f.metadata() == {"format": "pt"}
        tensors = _tensors(folder)
        assert all(t.dtype == torch.bfloat16 for t in tensors.values())
        model = rp.build_meta(part, json.loads((folder / "config.json").read_text()))
        assert sorted(tensors) == sorted(rp.saved_keys(model))
    assert "encoder.embed_tokens.weight" not in _tensors(tiny_weights / "text_encoder")  # tied to shared


def test_libraries_load_it_strictly(tiny_weights: Path) -> None:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel

    for cls, part in ((CogVideoXTransformer3DModel, "transformer"), (AutoencoderKLCogVideoX, "vae"),
                      (T5EncoderModel, "text_encoder")):
        model, info = cls.from_pretrained(tiny_weights / part, output_loading_info=True)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), (part, info)
        written = _tensors(tiny_weights / part)
        state = model.state_dict()
        assert all(torch.equal(state[k].to(torch.bfloat16), v) for k, v in written.items())
    pipe = CogVideoXPipeline.from_pretrained(tiny_weights)
    assert type(pipe.tokenizer).__name__ == "T5Tokenizer"
    assert type(pipe.scheduler).__name__ == "CogVideoXDDIMScheduler"
    assert pipe.vae.config.scaling_factor == 0.7 and pipe.scheduler.config.timestep_spacing == "trailing"


def _assert_same_init(written: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    """Per tensor: constants equal; random tensors with the reference's mean and std (5 sigma)."""
    for name, ref in reference.items():
        if name not in written:
            continue
        x, y, n = written[name].float(), ref.float(), ref.numel()
        if n == 1 or y.std() == 0:
            assert torch.equal(x, y), name  # ones / zeros
            continue
        if n < 64:
            continue
        assert abs(float(x.std() / y.std()) - 1) < 5 / (2 * n) ** 0.5 + 0.02, name
        assert abs(float(x.mean() - y.mean())) < 5 * float(y.std()) / n**0.5 * 2**0.5 + 1e-3, name


def test_init_follows_the_libraries_rules(tiny_weights: Path) -> None:
    """The same distributions as diffusers' / transformers' own constructors give."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(12345)
    for cls, part in ((CogVideoXTransformer3DModel, "transformer"), (AutoencoderKLCogVideoX, "vae")):
        ref = cls.from_config(json.loads((tiny_weights / part / "config.json").read_text()))
        _assert_same_init(_tensors(tiny_weights / part), ref.state_dict())
    ref = T5EncoderModel(T5Config.from_dict(json.loads((tiny_weights / "text_encoder" / "config.json").read_text())))
    _assert_same_init(_tensors(tiny_weights / "text_encoder"), ref.state_dict())


def test_seeded_per_unit_reruns_and_force(tiny_weights: Path, tmp_path: Path) -> None:
    """Same seed -> same tensors whatever the shard split; other seed -> other tensors; a rerun
    keeps complete parts, --force rewrites them."""
    args = dict(scale="tiny", parts=("vae",), progress=False, log=lambda _: None)
    rp.write_random_pretrained(tmp_path / "a", **args)  # one file, 10 GB limit
    a = _tensors(tmp_path / "a" / "vae")
    b = _tensors(tiny_weights / "vae")
    assert len(list((tmp_path / "a" / "vae").glob("*.safetensors"))) == 1
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rp.write_random_pretrained(tmp_path / "c", seed=1, **args)
    c = _tensors(tmp_path / "c" / "vae")
    assert not torch.equal(a["encoder.conv_in.conv.weight"], c["encoder.conv_in.conv.weight"])
    stamp = (tmp_path / "c" / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert rp.write_random_pretrained(tmp_path / "c", seed=0, **args) == []  # kept
    assert torch.equal(_tensors(tmp_path / "c" / "vae")["encoder.conv_in.conv.weight"], c["encoder.conv_in.conv.weight"])
    rp.write_random_pretrained(tmp_path / "c", seed=0, force=True, **args)
    assert (tmp_path / "c" / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns != stamp
    assert torch.equal(_tensors(tmp_path / "c" / "vae")["encoder.conv_in.conv.weight"], a["encoder.conv_in.conv.weight"])
    assert not (tmp_path / "c" / "vae.tmp").exists()


def test_tokenizer_follows_t5_conventions(tiny_weights: Path) -> None:
    text = TextEncoder.from_folder(tiny_weights)
    tok = text.tokenizer
    assert type(tok).__name__ == "T5Tokenizer"
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    assert tok.convert_tokens_to_ids("<extra_id_99>") == len(tok) - 100
    assert len(tok) <= text.model.config.vocab_size == rp.TinyTextEncoderConfig().vocab_size
    text.max_length = 64
    ids = text.tokenize([PROMPTS[0], ""])
    n = int((ids[0] != 0).sum())
    assert ids[0, n - 1] == 1 and tok.unk_token_id not in ids[0].tolist()  # eos appended, seen words known
    assert ids[1, 0] == 1 and (ids[1, 1:] == 0).all()
    assert tok.decode(ids[0], skip_special_tokens=True) == PROMPTS[0]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_weights / "tokenizer" / "spiece.model"))
    assert ids[0, : n - 1].tolist() == sp.encode(PROMPTS[0])  # the fast tokenizer is the spiece model


def test_project_loaders_read_it(tiny_weights: Path) -> None:
    cfg = EgoTwinConfig.load("tiny")
    text, video = load_encoders(tiny_weights, cfg.dit.max_text_seq_length, 64)
    emb = text.encode(["C opens the door", ""])
    assert emb.shape == (2, cfg.dit.max_text_seq_length, cfg.dit.text_embed_dim) and torch.isfinite(emb).all()
    frames = torch.randint(0, 256, (1, 9, 64, 64, 3), dtype=torch.uint8)
    z = video.encode(frames)
    assert z.shape == (1, 3, cfg.dit.in_channels, 8, 8) and video.scaling_factor == 0.7
    dit = EgoTwinDiT(cfg.dit)
    report = dit.load_cogvideox(tiny_weights)
    written = _tensors(tiny_weights / "transformer")
    assert sorted(report["loaded"]) == sorted(written)
    state = dit.state_dict()
    for key, value in written.items():
        got = state[key][:, : value.shape[1]] if key == "time_embedding.linear_1.weight" else state[key]
        assert torch.equal(got, value.float()), key


def test_missing_tensor_is_an_error(tiny_weights: Path, tmp_path: Path) -> None:
    for part, stem in (("text_encoder", "model"), ("vae", "diffusion_pytorch_model")):
        root = tmp_path / part
        shutil.copytree(tiny_weights, root)
        shard = sorted((root / part).glob(f"{stem}-*.safetensors"))[0]
        tensors = load_file(shard)
        tensors.pop(sorted(tensors)[0])
        save_file(tensors, str(shard), metadata={"format": "pt"})
        with pytest.raises((ValueError, KeyError, RuntimeError), match="missing|not found|does not"):
            (TextEncoder.from_folder(root) if part == "text_encoder" else VideoVAE.from_folder(root, 64))


def test_cli_dry_run_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert rp.main(["--dry-run", "--scale", "tiny"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["part"] for line in lines] == ["transformer", "vae", "text_encoder"]
    assert rp.main(["--out", str(tmp_path / "w"), "--scale", "tiny", "--parts", "vae", "--override", "vae.latent_channels=3"]) == 1
    assert "latent_channels" in capsys.readouterr().err
    assert rp.main(["--out", str(tmp_path / "w"), "--scale", "tiny", "--parts", "unet"]) == 1
    assert not (tmp_path / "w" / "vae").exists()


def test_precompute_and_train_from_the_folder(tiny_weights: Path, model_dataset: Path, tmp_path: Path) -> None:
    """`egotwin-model precompute/train --weights DIR`: the cache holds T5 embeddings of the
    written text encoder, and stage t2m starts from the written transformer (frozen tensors)."""
    run = tmp_path / "run"
    cli("precompute", "--config", "tiny", "--weights", tiny_weights, "--dataset", model_dataset, "--out", run,
        "--splits", "train", "--limit", "2")
    manifest = json.loads((run / "cache" / "manifest.json").read_text())
    assert manifest["video_scaling_factor"] == 0.7 and manifest["video_latent_shape"] == [11, 4, 8, 8]
    for stage in ("vae", "t2m"):
        cli("train", "--stage", stage, "--config", "tiny", "--weights", tiny_weights, "--run", run,
            "--steps", 1, "--batch-size", 2)
    t2m = load_file(run / "t2m" / "model.safetensors")
    written = _tensors(tiny_weights / "transformer")
    for key in ("patch_embed.text_proj.weight", "transformer_blocks.0.attn1.to_q.weight", "proj_out.weight"):
        assert torch.equal(t2m[key].float(), written[key].float()), key


@pytest.mark.slow
def test_gpu_pipeline_script_rehearsed_on_cpu(tmp_path: Path) -> None:
    """pipelines/paper_pipeline_gpu.sh, every step at the tiny size on the CPU: each step ends
    with rc 0 and one JSON line; the interrupted joint run is resumed from its checkpoint."""
    import os
    import subprocess

    out = tmp_path / "out"
    env = {**os.environ, "WORK": str(tmp_path / "work"), "OUT": str(out), "PYTHON": sys.executable,
           "SCALE": "tiny", "DEVICE": "cpu", "JOINT_FLAGS": "", "SEQUENCES": "2", "SECONDS_PER_SEQUENCE": "16",
           "RESOLUTION": "128", "WORKERS": "1", "ENGINE": "local", "CLIPS": "2", "SAMPLE_STEPS": "2", "JOINT_STEPS": "30",
           "KILL_AFTER": "500"}
    script = _PATH.parent / "paper_pipeline_gpu.sh"
    done = subprocess.run(["bash", str(script)], cwd=_PATH.parents[1], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "paper_pipeline.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == ["data", "data_curate", "weights", "precompute", "vae", "t2m", "joint",
                                            "joint_resume", "sample_t2vm", "sample_tm2v", "sample_tv2m", "evaluate"]
    assert all(r["rc"] == 0 or r["killed"] for r in records) and all(r["wall_s"] > 0 for r in records)
    joint = {r["step"]: r for r in records}
    assert joint["joint"]["killed"] and not joint["joint_resume"]["killed"]
    resumed = (out / "paper_pipeline_logs" / "joint_resume.log").read_text()
    first = int(resumed.split("joint: steps ")[1].split("..")[0])
    assert first > 1  # started from the interrupted run's checkpoint
