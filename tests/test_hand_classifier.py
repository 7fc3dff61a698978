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
from egotwin_bench.weights import MissingWeightsError, WeightsMismatchError


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
    # Weights of another architecture than config.json names: refused, naming the file.
    import json

    config = json.loads((tmp_path / "hc" / "config.json").read_text())
    (tmp_path / "hc" / "config.json").write_text(json.dumps({**config, "arch": "vit_small_patch16_224"}))
    with pytest.raises(WeightsMismatchError, match=r"model\.safetensors does not hold the 'vit_small_patch16_224'"):
        HandClassifier.load(tmp_path / "hc")


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
    """Trained from scratch on 6 clips (threshold picked on the 2 val clips), the tiny ViT must
    clearly beat 'always present' on the 4 test clips."""
    from egotwin_bench.evaluate.reference import load_clips
    from egotwin_bench.metrics.hand_consistency import f1_score

    folder, metrics = room_hand_classifier
    labels = np.concatenate([c.hand_visible for c in load_clips(room_dataset, "test", with_video=False)])
    trivial = np.mean([f1_score(np.ones(len(labels), bool), labels[:, h]) for h in range(2)])
    assert metrics["split"] == "test" and metrics["n_frames"] == len(labels)
    assert metrics["f1_mean"] >= 0.8 and metrics["f1_mean"] > trivial + 0.15, (metrics, trivial)
    loaded = HandClassifier.load(folder)
    assert loaded.config.metrics["f1_mean"] == pytest.approx(metrics["f1_mean"])
    assert loaded.config.threshold == metrics["threshold"] == loaded.config.metrics["threshold_split"]["threshold"]
    assert loaded.config.metrics["threshold_split"]["split"] == "val"


def test_threshold_split_must_differ_from_eval_split(room_dataset, tmp_path):
    from egotwin_bench.training.hand_classifier import HandTrainingConfig, train_hand_classifier

    with pytest.raises(ValueError, match="report F1 on another split"):
        train_hand_classifier(room_dataset, tmp_path, None, HandTrainingConfig(arch="tiny"), "val", "val")


def test_repeat_factors_balance_rare_hands():
    from egotwin_bench.training.hand_classifier import frame_repeats, repeat_factors

    labels = np.zeros((100, 2), bool)
    labels[:5, 0] = True  # left: 5% of frames
    labels[:60, 1] = True  # right: already common
    factors = repeat_factors(labels, positive_fraction=0.3, max_repeat=8)
    # 5 frames x r out of 95 + 5 r = 0.3 -> r = 8.14, capped at 8; right needs none.
    assert factors.tolist() == [8, 1]
    assert repeat_factors(labels, 0.3, 20).tolist() == [8, 1]  # round(8.14)
    reps = frame_repeats(labels, factors)
    assert reps[:5].tolist() == [8] * 5 and set(reps[5:].tolist()) == {1}
    share = (reps * labels[:, 0]).sum() / reps.sum()
    assert share == pytest.approx(40 / 135)
    assert repeat_factors(labels, 0.0, 8).tolist() == [1, 1]
    assert repeat_factors(np.zeros((10, 2), bool), 0.3, 8).tolist() == [1, 1]  # nothing to repeat


def test_training_batches_stream_every_repeated_frame_once():
    from egotwin_bench.training.hand_classifier import training_batches

    class Source:
        """Three 'clips' of uint8 frames whose pixel value is the frame number."""

        def iterate(self, rng):
            for c in range(3):
                frames = torch.arange(10 * c, 10 * c + 10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4)
                labels = np.zeros((10, 2), bool)
                labels[0, 0] = True
                yield frames, labels

    batches = list(training_batches(Source(), np.array([3, 1]), batch_size=4, buffer=8, rng=np.random.default_rng(0)))
    seen = sorted(int(v) for x, _ in batches for v in x[:, 0, 0, 0])
    expected = sorted(list(range(30)) + [0, 0, 10, 10, 20, 20])  # each clip's frame 0 three times
    assert seen == expected
    assert all(x.dtype == torch.uint8 for x, _ in batches) and [len(y) for _, y in batches][:-1] == [4] * 8
    for x, y in batches:
        np.testing.assert_array_equal(y[:, 0].numpy(), (x[:, 0, 0, 0] % 10 == 0).numpy())


def test_choose_threshold_pools_hands():
    from egotwin_bench.training.hand_classifier import choose_threshold

    labels = np.zeros((20, 2), bool)
    labels[:10, 1] = True  # the left hand never shows on this split
    probs = np.zeros((20, 2))
    probs[:10, 1] = 0.42
    probs[10:, 1] = 0.1
    probs[0, 0] = 0.3  # one left false positive below the right positives' score
    # 0.35 and 0.40 separate perfectly; the tie goes to the one nearer 0.5.
    assert choose_threshold(probs, labels) == pytest.approx(0.4)
    probs[:10, 1] = 0.8
    assert choose_threshold(probs, labels) == pytest.approx(0.5)
    probs[0, 0] = 0.9  # a confident left false positive costs the same at every threshold below 0.9
    assert choose_threshold(probs, labels) == pytest.approx(0.5)
    assert choose_threshold(probs, np.zeros((20, 2), bool)) == 0.5


def test_resize_frames_keeps_uint8_and_predict_matches(tmp_path):
    from egotwin_bench.estimators.hand_classifier import normalize, preprocess, resize_frames

    frames = np.random.default_rng(0).integers(0, 255, (3, 480, 480, 3), dtype=np.uint8)
    small = resize_frames(frames, 128)
    assert small.dtype == torch.uint8 and small.shape == (3, 3, 128, 128)
    torch.testing.assert_close(preprocess(frames, 128), normalize(small))
    with pytest.raises(ValueError, match="uint8"):
        resize_frames(frames.astype(np.float32), 128)
