"""Fixtures for the network tests: one intra-op thread for tiny CPU networks, and weight files
of the real video-quality architectures (Inception-v3, I3D, CLIP ViT-B/32) with random weights,
written in the formats users download (shared by tests/test_video_quality.py and the runner
tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from egotwin_bench import weights
from egotwin_bench.constants import VIDEO_FRAMES

DRIFT_SIZE = 64
"""Side of `drifting_video` frames; the extractors resize to their own input size."""


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Run tiny CPU networks on one intra-op thread (much faster than 2 for tiny tensors,
    and immune to a loaded machine); the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def drifting_video(seed: int) -> np.ndarray:
    """(41, 64, 64, 3) uint8: a smooth random image drifting sideways (a moving scene)."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.uniform(0, 255, (1, 3, 8, 16))).float()
    wide = torch.nn.functional.interpolate(base, size=(DRIFT_SIZE, 2 * DRIFT_SIZE), mode="bicubic",
                                           align_corners=False)
    frames = [wide[0, :, :, t // 2: t // 2 + DRIFT_SIZE] for t in range(VIDEO_FRAMES)]
    return torch.stack(frames).permute(0, 2, 3, 1).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def calibrate_batchnorm(net: torch.nn.Module, x: torch.Tensor,
                        forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.nn.Module:
    """Set BatchNorm running statistics from one batch (random weights otherwise give activations
    of 1e10 or 1e-7 through a deep net), then return the net in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batch
    net.train()
    (forward or net)(x)
    for m in bns:
        m.momentum = 0.1
    return net.eval()


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """torchvision Inception-v3 with random (BatchNorm-calibrated) weights, saved as a bare state
    dict under its published file name: (path, net)."""
    from egotwin_bench.estimators.video_features import build_inception

    torch.manual_seed(0)
    frames = torch.from_numpy(drifting_video(0)[::40])  # 2 frames: BatchNorm needs a batch > 1
    net = calibrate_batchnorm(build_inception(), torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).float() / 127.5 - 1, size=(299, 299), mode="bilinear"))
    path = tmp_path_factory.mktemp("inception") / weights.INCEPTION_V3.filename
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="session")
def i3d_file(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """Kinetics-400 I3D (VideoGPT's layout of the TF-Hub weights: BatchNorm eps 1e-5) with random
    (calibrated) weights, saved wrapped as ``{"state_dict": ...}`` under VideoGPT's file name."""
    from egotwin_bench.estimators.video_features import build_i3d

    torch.manual_seed(0)
    net = build_i3d()
    clip = torch.from_numpy(drifting_video(0)[:16]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    clip = torch.nn.functional.interpolate(clip, size=(16, 112, 112), mode="trilinear")
    calibrate_batchnorm(net, clip, net.features)  # 112 px keeps it cheap; features hold every BN
    path = tmp_path_factory.mktemp("i3d") / weights.I3D_TFHUB_STATE_DICT.filename
    torch.save({"state_dict": net.state_dict()}, path)  # wrapped, as some ports save it
    return path, net


class TFHubI3DStandIn(torch.nn.Module):
    """A module with the call signature of StyleGAN-V's ``i3d_torchscript.pt``:
    ``forward(x, rescale=False, resize=False, return_features=False)`` on (B, 3, T, H, W) uint8-valued
    input; returns the 400 logits (``return_features``) or their softmax. Its internals (x / 127.5 - 1,
    trilinear resize of H, W to 224) are this test's model of the real file, which is not shipped."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = torch.nn.functional.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        logits = self.net(x)
        return logits if return_features else torch.softmax(logits, dim=-1)


@pytest.fixture(scope="session")
def i3d_torchscript_file(i3d_file, tmp_path_factory) -> Path:
    """`TFHubI3DStandIn` around the `i3d_file` network, scripted and saved as ``i3d_torchscript.pt``."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, the file format is not
        module = torch.jit.script(TFHubI3DStandIn(copy.deepcopy(i3d_file[1])).eval())
    path = tmp_path_factory.mktemp("i3d_ts") / weights.I3D_TFHUB_TORCHSCRIPT.filename
    module.save(str(path))
    return path


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A transformers CLIP folder: ViT-B/32 config (the default CLIPConfig), random weights, and a
    byte-level BPE tokenizer without merges (every character is a token)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip") / weights.CLIP_VIT_B32.filename
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    model.save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder, model
