"""Encoders: tiny tokenizer + T5 (save/load, padding, null text), CogVideoX VAE wrapper, weight errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from egotwin_model.encoders import (
    MissingWeightsError,
    TextEncoder,
    TinyTextEncoderConfig,
    TinyVideoVAEConfig,
    VideoVAE,
    build_tiny_text_encoder,
    build_tiny_video_vae,
    check_weights_folder,
    frames_to_tensor,
    load_encoders,
    tensor_to_frames,
)

TEXTS = ["C walks forward and turns left", "C opens the door", "C sits on the sofa and looks at the tv"] * 5


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    return build_tiny_text_encoder(TEXTS, TinyTextEncoderConfig(d_model=32, d_ff=64, vocab_size=64))


def test_tokenizer_pads_truncates_and_appends_eos(text_encoder: TextEncoder) -> None:
    text_encoder.max_length = 12
    ids = text_encoder.tokenize(["C walks forward", "", " ".join(["door"] * 40)])
    assert ids.shape == (3, 12)
    pad, eos = text_encoder.tokenizer.pad_token_id, text_encoder.tokenizer.eos_token_id
    assert (pad, eos) == (0, 1)
    assert ids[1, 0] == eos and (ids[1, 1:] == pad).all()  # the null text: eos then padding
    n = int((ids[0] != pad).sum())
    assert ids[0, n - 1] == eos and (ids[0, n:] == pad).all()
    assert (ids[2] != pad).all()  # truncated to the full length
    assert text_encoder.tokenizer.unk_token_id not in ids[0].tolist()  # seen words are in the vocabulary


def test_text_encoder_save_load_round_trip(text_encoder: TextEncoder, tmp_path: Path) -> None:
    text_encoder.max_length = 16
    emb = text_encoder.encode(["C opens the door", ""])
    assert emb.shape == (2, 16, 32) and emb.dtype == torch.float32
    assert not torch.allclose(emb[0], emb[1])
    text_encoder.save(tmp_path)
    loaded = TextEncoder.from_folder(tmp_path)
    loaded.max_length = 16
    assert torch.equal(loaded.tokenize(["C opens the door"]), text_encoder.tokenize(["C opens the door"]))
    assert torch.equal(loaded.encode(["C opens the door", ""]), emb)


def test_missing_weights_name_the_file_and_the_source(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=r"tokenizer weights: folder .*tokenizer not found.*THUDM/CogVideoX-5b"):
        check_weights_folder(tmp_path)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match=r"vae weights: no file matching 'diffusion_pytorch_model\*\.safetensors"):
        VideoVAE.from_folder(tmp_path, 64)
    (tmp_path / "tokenizer").mkdir()
    for name in ("tokenizer_config.json", "spiece.model"):
        (tmp_path / "tokenizer" / name).write_text("")
    with pytest.raises(MissingWeightsError, match=r"text_encoder weights: folder .*text_encoder not found"):
        TextEncoder.from_folder(tmp_path)


def test_frame_conversion_round_trip() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 5, 16, 16, 3), dtype=np.uint8)
    x = frames_to_tensor(frames, 16)
    assert x.shape == (2, 3, 5, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(tensor_to_frames(x).numpy(), frames)
    small = frames_to_tensor(frames, 8)
    assert small.shape == (2, 3, 5, 8, 8)
    # a constant image stays constant through the antialiased resize
    flat = np.full((1, 1, 32, 32, 3), 200, np.uint8)
    assert np.array_equal(tensor_to_frames(frames_to_tensor(flat, 8)).numpy(), np.full((1, 1, 8, 8, 3), 200, np.uint8))
    with pytest.raises(ValueError, match="uint8 frames"):
        frames_to_tensor(frames.astype(np.float32), 8)


def test_video_vae_shapes_scaling_and_folder_round_trip(tmp_path: Path, text_encoder: TextEncoder) -> None:
    cfg = TinyVideoVAEConfig(latent_channels=4, block_out_channels=(8, 8, 8, 8), norm_num_groups=4, size=32)
    vae = build_tiny_video_vae(cfg)
    vae.register_to_config(scaling_factor=2.0)
    wrapper = VideoVAE(vae, cfg.size)
    frames = np.random.default_rng(1).integers(0, 256, size=(1, 9, 48, 48, 3), dtype=np.uint8)
    z = wrapper.encode(frames)  # resized 48 -> 32, 9 frames -> 3 latent frames, 32 / 8 = 4
    assert z.shape == (1, 3, 4, 4, 4)
    raw = vae.encode(frames_to_tensor(frames, 32)).latent_dist.mean.permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(z, raw * 2.0)
    assert wrapper.encode(frames[:, :1]).shape == (1, 1, 4, 4, 4)  # the first frame alone: one latent
    out = wrapper.decode(z)
    assert out.shape == (1, 9, 32, 32, 3) and out.dtype == torch.uint8
    vae.save_pretrained(tmp_path / "vae")
    text_encoder.save(tmp_path)
    text, video = load_encoders(tmp_path, text_length=10, video_size=32)
    assert text.max_length == 10 and video.scaling_factor == 2.0
    torch.testing.assert_close(video.encode(frames), z)
