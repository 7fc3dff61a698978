"""Video quality: Inception-v3 / I3D / CLIP of the real architectures with random weights, loaded
through the real loading code from files written by tests/fixtures_networks.py; providers,
feature cache, missing weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egotwin_bench import weights
from egotwin_bench.evaluate.protocol import EvalClip, MetricProvider
from egotwin_bench.estimators.video_features import build_i3d, load_clip, load_i3d, load_inception, load_state_dict_file
from egotwin_bench.evaluate.providers.video_quality import (
    ClipSimProvider,
    FVDProvider,
    IFIDProvider,
    VideoQualityConfig,
    video_quality_providers,
)
from tests.fixtures_networks import drifting_video as _video


def _clips(videos: list[np.ndarray], tag: str, texts: list[str] | None = None) -> list[EvalClip]:
    texts = texts or ["I walk over to the door."] * len(videos)
    return [EvalClip(f"c{i}", t, lambda v=v: v, np.zeros((81, 23, 3)), np.zeros((81, 23, 3, 3)), np.eye(3), np.eye(4),
                     f"{tag}{i}") for i, (v, t) in enumerate(zip(videos, texts))]


def _noisy(video: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, video.shape)
    return np.clip(video + noise, 0, 255).astype(np.uint8)


def test_inception_round_trip_and_shape(inception_file, torch_one_thread):
    path, net = inception_file
    extractor = load_inception(path, verify=False)
    for name, tensor in net.state_dict().items():
        if name.startswith("fc."):  # the classifier is dropped: features are the 2048-d pool outputs
            continue
        torch.testing.assert_close(extractor.net.state_dict()[name], tensor, rtol=0, atol=0)
    feats = extractor(torch.from_numpy(_video(0)[:2]))
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert extractor.net.transform_input is False and net.Mixed_7c.branch_pool.conv.in_channels == 2048
    with pytest.raises(weights.MissingWeightsError, match="sha256.*corrupt"):
        load_inception(path, verify=True)  # a random file cannot carry the published digest prefix


def test_i3d_round_trip_and_shape(i3d_file, torch_one_thread):
    path, net = i3d_file
    extractor = load_i3d(path)  # no published digest: existence only
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(extractor.net.state_dict()[name], tensor, rtol=0, atol=0)
    assert sum(p.numel() for p in extractor.parameters()) == pytest.approx(12.7e6, rel=0.05)
    feats = extractor(torch.from_numpy(_video(0))[None])
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()
    assert {m.eps for m in extractor.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-5}  # VideoGPT's


def test_i3d_torchscript_is_called_as_stylegan_v(i3d_file, i3d_torchscript_file, tmp_path, torch_one_thread):
    """A TorchScript file with the call signature of StyleGAN-V's i3d_torchscript.pt is called with
    uint8 (B, 3, T, H, W) and rescale/resize/return_features = True; with the same weights it gives
    the features of the state-dict path (VideoGPT's preprocessing), so the two TF-Hub conversions
    are interchangeable. The piergiaj network refuses a TorchScript file and uses BatchNorm eps 1e-3."""
    from egotwin_bench.estimators.video_features import I3DFeatures, I3DTorchScriptFeatures

    scripted, state = load_i3d(i3d_torchscript_file), load_i3d(i3d_file[0])
    assert isinstance(scripted, I3DTorchScriptFeatures) and isinstance(state, I3DFeatures)
    video = torch.from_numpy(_video(1)[:10])[None]  # T = 10: the smallest I3D input is 9 frames
    torch.testing.assert_close(scripted(video), state(video), rtol=1e-4, atol=1e-4)
    with pytest.raises(weights.WeightsMismatchError, match="TorchScript archive"):
        load_i3d(i3d_torchscript_file, "piergiaj")
    piergiaj = load_i3d(i3d_file[0], "piergiaj")
    assert {m.eps for m in piergiaj.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-3}
    with pytest.raises(ValueError, match="unknown FVD network"):
        load_i3d(i3d_file[0], "tf1")


def test_fvd_weights_lookup_order(i3d_file, i3d_torchscript_file, tmp_path, monkeypatch):
    """tfhub looks for i3d_torchscript.pt, then i3d_pretrained_400.pt; a missing network names both files."""
    import shutil

    from egotwin_bench.estimators.video_features import resolve_fvd_weights

    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    with pytest.raises(weights.MissingWeightsError, match="i3d_torchscript.pt.*or i3d_pretrained_400.pt"):
        resolve_fvd_weights()
    shutil.copy(i3d_file[0], tmp_path / weights.I3D_TFHUB_STATE_DICT.filename)
    assert resolve_fvd_weights().name == "i3d_pretrained_400.pt"
    shutil.copy(i3d_torchscript_file, tmp_path / weights.I3D_TFHUB_TORCHSCRIPT.filename)
    assert resolve_fvd_weights().name == "i3d_torchscript.pt"
    assert "i3d_rgb_imagenet.pt" in FVDProvider(VideoQualityConfig(fvd_network="piergiaj")).unavailable_reason()
    assert FVDProvider(VideoQualityConfig()).unavailable_reason() is None
    assert "i3d_torchscript.pt" in FVDProvider(VideoQualityConfig()).describe()
    assert weights.is_torchscript(i3d_torchscript_file) and not weights.is_torchscript(i3d_file[0])


def _videogpt_preprocess(video: torch.Tensor, resolution: int = 224) -> torch.Tensor:
    """VideoGPT's `videogpt.data.preprocess` (THWC uint8 -> CTHW in [-0.5, 0.5]) followed by its FVD
    `preprocess`'s ``* 2``, transcribed line by line as the reference."""
    import math

    video = video.permute(0, 3, 1, 2).float() / 255.0
    t, c, h, w = video.shape
    scale = resolution / min(h, w)
    target = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    video = torch.nn.functional.interpolate(video, size=target, mode="bilinear", align_corners=False)
    t, c, h, w = video.shape
    w0, h0 = (w - resolution) // 2, (h - resolution) // 2
    video = video[:, :, h0:h0 + resolution, w0:w0 + resolution].permute(1, 0, 2, 3).contiguous()
    return (video - 0.5) * 2


def test_i3d_preprocessing_is_videogpts():
    from egotwin_bench.estimators.video_features import i3d_preprocess

    rng = np.random.default_rng(0)
    for shape in ((4, 480, 480, 3), (3, 360, 480, 3), (2, 500, 300, 3)):
        videos = torch.from_numpy(rng.integers(0, 256, (2, *shape), dtype=np.uint8))
        ours = i3d_preprocess(videos)
        ref = torch.stack([_videogpt_preprocess(v) for v in videos])
        assert ours.shape == ref.shape == (2, 3, shape[0], 224, 224)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_inception_features_equal_pytorch_fid(inception_file, torch_one_thread, monkeypatch):
    """With the same (random) torchvision weights, our I-FID features equal pytorch-fid's
    `InceptionV3([3], resize_input=True, normalize_input=True)` (its resize and scaling) exactly."""
    import copy

    pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
    path, net = inception_file
    monkeypatch.setattr(pytorch_fid_inception, "_inception_v3", lambda *a, **k: copy.deepcopy(net))
    reference = pytorch_fid_inception.InceptionV3([3], resize_input=True, normalize_input=True,
                                                  use_fid_inception=False).eval()
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 480, 480, 3), dtype=np.uint8))
    ours = load_inception(path, verify=False)(frames)
    with torch.no_grad():
        theirs = reference(frames.permute(0, 3, 1, 2).float() / 255.0)[0][:, :, 0, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_state_dict_of_another_network_is_refused(i3d_file, tmp_path):
    """Without a published digest, the architecture check is what catches a wrong file: tensor
    names and shapes must match exactly, and the error names the file."""
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(weights.WeightsMismatchError, match=r"other\.pt does not hold I3D weights: 344 tensors missing"):
        load_state_dict_file(build_i3d(), tmp_path / "other.pt", "I3D")
    state = weights.read_state_dict(i3d_file[0])  # unwraps {"state_dict": ...}
    state["logits.conv3d.weight"] = state["logits.conv3d.weight"][:100]  # a 100-class head
    torch.save({"state_dict": state}, tmp_path / "i3d_100.pt")
    with pytest.raises(ValueError, match=r"i3d_100\.pt does not hold I3D.*1 tensors of another shape.*logits\.conv3d\.weight"):
        load_i3d(tmp_path / "i3d_100.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(weights.WeightsMismatchError, match=r"junk\.pt is not a readable PyTorch weights file"):
        load_i3d(tmp_path / "junk.pt")


def test_clip_round_trip_and_scores(clip_folder, torch_one_thread):
    folder, model = clip_folder
    scorer = load_clip(folder)
    assert scorer.model.config.vision_config.patch_size == 32 and scorer.model.config.projection_dim == 512
    loaded = scorer.model.state_dict()
    for name in ("vision_model.embeddings.patch_embedding.weight", "text_projection.weight", "logit_scale"):
        torch.testing.assert_close(loaded[name], model.state_dict()[name], rtol=0, atol=0)
    frames = torch.from_numpy(_video(0)[:3])
    assert scorer.preprocess(frames).shape == (3, 3, 224, 224)
    cos = scorer(frames, "I walk over to the door.")
    assert cos.shape == (3,) and bool((cos.abs() <= 1).all())
    # the cosine is the one of the projected embeddings
    with torch.no_grad():
        tok = scorer.tokenizer(["I walk over to the door."], return_tensors="pt")
        t = model.get_text_features(**tok)
        v = model.get_image_features(pixel_values=scorer.preprocess(frames))
        t = getattr(t, "pooler_output", t)
        v = getattr(v, "pooler_output", v)
    torch.testing.assert_close(cos, torch.nn.functional.cosine_similarity(v, t), rtol=1e-5, atol=1e-5)
    (folder / "tokenizer.json").rename(folder / "tokenizer.json.bak")
    try:
        with pytest.raises(weights.MissingWeightsError, match="tokenizer.json"):
            load_clip(folder)
    finally:
        (folder / "tokenizer.json.bak").rename(folder / "tokenizer.json")


def test_clip_weights_not_matching_the_config_are_refused(clip_folder, tmp_path):
    """A folder whose config.json and weights disagree (here: projection 256 vs 512) fails,
    naming the folder, instead of loading with freshly initialised layers."""
    import json

    folder, _ = clip_folder
    other = tmp_path / "clip-other"
    other.mkdir()
    for f in folder.iterdir():
        if f.name != "config.json":
            (other / f.name).symlink_to(f)
    config = json.loads((folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "projection_dim": 256}))
    with pytest.raises(weights.WeightsMismatchError, match="clip-other"):
        load_clip(other)


def test_missing_weights_name_the_file_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "weights"))
    for spec in (weights.INCEPTION_V3, weights.I3D_TFHUB_TORCHSCRIPT, weights.I3D_TFHUB_STATE_DICT,
                 weights.I3D_PIERGIAJ, weights.CLIP_VIT_B32):
        with pytest.raises(weights.MissingWeightsError) as err:
            weights.resolve(spec)
        message = str(err.value)
        assert spec.filename in message and str(tmp_path / "weights") in message and spec.source[:30] in message
    with pytest.raises(weights.MissingWeightsError, match="inception_v3_google-0cc3c7bd.pth"):
        load_inception()
    with pytest.raises(weights.MissingWeightsError, match="config.json"):
        (tmp_path / "clip").mkdir()
        load_clip(tmp_path / "clip")
    providers = video_quality_providers(VideoQualityConfig())
    assert [p.name for p in providers] == ["ifid", "fvd", "clip_sim"]
    assert "i3d_torchscript.pt" in providers[1].unavailable_reason() and "i3d_pretrained_400.pt" in providers[1].unavailable_reason()
    for p in providers:
        assert isinstance(p, MetricProvider)
        assert p.spec.filename in p.unavailable_reason()


def test_weights_found_in_cache_folder(inception_file, tmp_path, monkeypatch):
    path, _ = inception_file
    monkeypatch.setenv(weights.CACHE_ENV, str(path.parent))
    assert weights.resolve(weights.INCEPTION_V3, verify=False) == path
    assert IFIDProvider(VideoQualityConfig(verify_weights=False)).unavailable_reason() is None
    # with the checksum on (the default), a file that is not the published one is skipped up front
    assert "sha256" in IFIDProvider(VideoQualityConfig()).unavailable_reason()
    monkeypatch.delenv(weights.CACHE_ENV)
    monkeypatch.setenv(weights.CACHE_ROOT_ENV, str(tmp_path))
    assert weights.cache_dir() == tmp_path / "weights" and weights.features_dir() == tmp_path / "features"


@pytest.mark.parametrize("kind", ["I-FID", pytest.param("FVD", marks=pytest.mark.slow)])
def test_frechet_providers_score_matched_sets_best(kind, inception_file, i3d_file, tmp_path, torch_one_thread):
    """Identical sets score 0, slightly perturbed frames less than strongly perturbed ones; the
    feature cache serves repeated clips. (FVD: ~6 s per I3D clip on one CPU core, hence slow.)"""
    config = VideoQualityConfig(inception_weights=str(inception_file[0]), i3d_weights=str(i3d_file[0]),
                                verify_weights=False, ifid_frame_stride=10, feature_cache=str(tmp_path / "cache"))
    provider_type = IFIDProvider if kind == "I-FID" else FVDProvider
    n = 3 if kind == "I-FID" else 2
    reference = _clips([_video(s) for s in range(n)], "ref")
    same = _clips([_video(s) for s in range(n)], "ref")  # the same content: cached features are reused
    slight = _clips([_noisy(_video(s), 10.0, s) for s in range(n)], "slight")
    strong = _clips([_noisy(_video(s), 60.0, s) for s in range(n)], "strong")
    rng = np.random.default_rng(0)
    provider = provider_type(config)
    results = {name: provider.evaluate(gen, reference, rng).metrics
               for name, gen in (("same", same), ("slight", slight), ("strong", strong))}
    scores = {name: m[kind].value for name, m in results.items()}
    for m in results.values():  # every value lies in its (jackknife) interval; < 3 clips: no interval
        for v in m.values():
            assert v.low <= v.value <= v.high if n >= 3 else np.isnan(v.low) and np.isnan(v.high), m
    if kind == "FVD":
        assert 0 < results["slight"]["FVD16"].value < results["strong"]["FVD16"].value
    print(kind, scores)
    assert scores["same"] == pytest.approx(0.0, abs=1e-9 * scores["strong"])
    assert 0 < scores["slight"] < scores["strong"]
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3 * n  # 4n clips scored, `same` reused the reference's
    # a second run reads the cache: identical numbers without running the network
    again = provider_type(config)
    again._net = "not used"  # calling it would fail
    assert again.evaluate(slight, reference, rng).metrics[kind].value == scores["slight"]


def test_clip_sim_provider(clip_folder, tmp_path, torch_one_thread):
    config = VideoQualityConfig(clip_weights=str(clip_folder[0]), feature_cache=str(tmp_path / "cache"),
                                bootstrap_resamples=20)
    provider = ClipSimProvider(config)
    assert provider.unavailable_reason() is None
    videos = [_video(s)[::10] for s in range(2)]  # 5 frames each keeps the CPU test short
    clips = _clips(videos, "v", ["I walk over to the door.", "I look down at my hands."])
    res = provider.evaluate(clips, clips, np.random.default_rng(0))
    per_clip = res.per_clip["CLIP-SIM"]
    assert per_clip.shape == (2,) and np.all(np.abs(per_clip) <= 100)
    expected = [100 * float(provider.net(torch.from_numpy(v), c.text).mean()) for v, c in zip(videos, clips)]
    np.testing.assert_allclose(per_clip, expected, rtol=1e-5)
    assert res.metrics["CLIP-SIM"].value == pytest.approx(np.mean(expected), rel=1e-6)
