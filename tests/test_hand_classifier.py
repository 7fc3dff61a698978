"""The ViT hand classifier: focal loss known answer, local weight loading and its errors,
save/load round trip, `train-hand-classifier` on the room dataset (the F1 >= 0.9 check on curated
synthetic clips is in tests/test_evaluate_synthetic.py, slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from egotwin_bench.estimators.hand_classifier import (
    ARCHS,
    HandClassifier,
    HandClassifierConfig,
    create_model,
    focal_loss,
    load_backbone,
)
from egotwin_bench.weights import MissingWeightsError


def test_focal_loss_known_answer():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1, 0]])
    p_right = 1 / (1 + math.exp(-2.0))
    # left: positive, p = 0.5, alpha 0.80; right: negative, p_t = 1 - p, alpha_t = 1 - 0.75.
    left = 0.80 * (1 - 0.5) ** 2 * -math.log(0.5)
    right = 0.25 * p_right**2 * -math.log(1 - p_right)
    assert focal_loss(logits, targets).item() == pytest.approx(left + right, rel=1e-6)
    # gamma 0 and alpha 0.5 per hand: half the binary cross-entropy.
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
    assert focal_loss(logits, targets, (0.5, 0.5), 0.0).item() == pytest.approx(0.5 * bce.sum().item(), rel=1e-6)


def test_tiny_arch_has_two_logits():
    model = create_model("tiny").eval()
    size = ARCHS["tiny"]["img_size"]
    assert model(torch.zeros(3, 3, size, size)).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown hand-classifier arch"):
        create_model("resnet")


def _pretrained_like(arch: str) -> torch.nn.Module:
    """A randomly initialised model of `arch` with timm's 1000-class ImageNet head, like a
    downloaded checkpoint."""
    import timm

    spec = ARCHS[arch]
    return timm.create_model(spec["model"], pretrained=False, num_classes=1000, img_size=spec["img_size"],
                             **spec["kwargs"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_load_backbone_from_local_checkpoint(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = _pretrained_like("tiny")
    path = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    model = create_model("tiny")
    left_new = load_backbone(model, path)
    assert sorted(left_new) == ["head.bias", "head.weight"]
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith("head."):
            torch.testing.assert_close(own[k], v)


def test_load_backbone_errors(tmp_path):
    from safetensors.torch import save_file

    missing = tmp_path / "vit_base.safetensors"
    with pytest.raises(MissingWeightsError, match="vit_base.safetensors") as info:
        load_backbone(create_model("tiny"), missing)
    assert "huggingface.co/timm" in str(info.value)
    wrong = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(2, 96), "blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(ValueError, match="does not fit this ViT"):
        load_backbone(create_model("tiny"), wrong)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    classifier = HandClassifier(create_model("tiny"), HandClassifierConfig(arch="tiny", threshold=0.4))
    frames = np.random.default_rng(0).integers(0, 255, (5, 480, 480, 3), dtype=np.uint8)
    classifier.save(tmp_path / "hc")
    loaded = HandClassifier.load(tmp_path / "hc")
    assert loaded.config.threshold == 0.4 and loaded.config.alpha == (0.80, 0.75) and loaded.config.gamma == 2.0
    np.testing.assert_allclose(loaded.probabilities(frames), classifier.probabilities(frames), atol=1e-6)
    assert loaded.predict(frames).shape == (5, 2)
    with pytest.raises(MissingWeightsError, match="train-hand-classifier"):
        HandClassifier.load(tmp_path / "nothing")


def test_cli_requires_init_weights(room_dataset, tmp_path):
    from egotwin_bench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train-hand-classifier", "--dataset", str(room_dataset), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--init-weights" in res.output
    res = runner.invoke(app, ["train-hand-classifier", "--dataset", str(room_dataset), "--out", str(tmp_path / "o"),
                              "--arch", "tiny", "--init-weights", str(tmp_path / "absent.safetensors")])
    assert res.exit_code == 2 and "absent.safetensors not found" in res.output
    assert not (tmp_path / "o").exists()


def test_trained_on_room_clips_beats_trivial(room_hand_classifier, room_dataset):
    """Trained from scratch on 6 clips, the tiny ViT must clearly beat 'always present' on the
    2 held-out clips (that baseline's mean F1 there is ~0.53)."""
    from egotwin_bench.evaluate.reference import load_clips
    from egotwin_bench.metrics.hand_consistency import f1_score

    folder, metrics = room_hand_classifier
    labels = np.concatenate([c.hand_visible for c in load_clips(room_dataset, "val", with_video=False)])
    trivial = np.mean([f1_score(np.ones(len(labels), bool), labels[:, h]) for h in range(2)])
    assert metrics["n_frames"] == len(labels)
    assert metrics["f1_mean"] >= 0.75 and metrics["f1_mean"] > trivial + 0.15, (metrics, trivial)
    assert HandClassifier.load(folder).config.metrics["f1_mean"] == pytest.approx(metrics["f1_mean"])
