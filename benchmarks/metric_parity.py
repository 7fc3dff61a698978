"""Toolkit metrics vs the reference implementations, on random data and random-weight networks.

Prints one JSON line: per check the measured difference (and, for the intervals, the coverage of
a known Fréchet distance). A reference package is used only where it is installed (pytorch-fid,
scikit-learn; `make install` brings both with the dev extra); otherwise that check says
"not installed" and is skipped. Nothing is installed or downloaded at run time. The references
without a package (VideoGPT's preprocessing, text-to-motion's `calculate_frechet_distance`) are
their code transcribed here, said so in the output.

    python benchmarks/metric_parity.py [--trials 300]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from egotwin_bench.metrics.bootstrap import bootstrap, jackknife
from egotwin_bench.metrics.frechet import FrechetReference, GaussianStats, frechet_distance
from egotwin_bench.metrics.hand_consistency import hand_f1
from egotwin_bench.estimators.video_features import build_inception, i3d_preprocess, inception_preprocess


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def frechet_vs_pytorch_fid(rng: np.random.Generator) -> dict:
    """Our Fréchet distance vs pytorch-fid's `calculate_frechet_distance` (or its transcription)."""
    try:
        # lazy: pytorch-fid is an optional reference (the dev extra); without it, its transcription below
        from pytorch_fid.fid_score import calculate_frechet_distance
        source = "pytorch_fid.fid_score.calculate_frechet_distance"
    except ImportError:
        source = "transcription of pytorch-fid's calculate_frechet_distance (package not installed)"

        def calculate_frechet_distance(mu1, sigma1, mu2, sigma2):
            covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
            return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))
    worst = 0.0
    for n, d in ((500, 64), (300, 128)):
        a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d)) * 1.1 + 0.2
        ours = frechet_distance(a, b)
        ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        worst = max(worst, _rel(ours, float(ref)))
    return {"reference": source, "max_rel_diff": worst}


def inception_vs_pytorch_fid(rng: np.random.Generator) -> dict:
    """Our I-FID preprocessing vs pytorch-fid's InceptionV3 on the same random torchvision weights."""
    frames = torch.from_numpy(rng.integers(0, 256, (2, 480, 480, 3), dtype=np.uint8))
    x = frames.permute(0, 3, 1, 2).float() / 255
    antialiased = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
    plain = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    out = {"antialiased_vs_plain_mean_abs_diff_255": float((antialiased - plain).abs().mean() * 255)}
    try:
        import pytorch_fid.inception as pfi  # lazy: optional reference (the dev extra), may be absent
    except ImportError:
        out["pytorch_fid"] = "not installed"
        return out
    torch.manual_seed(0)
    net = build_inception().eval()
    original = pfi._inception_v3
    pfi._inception_v3 = lambda *a, **k: copy.deepcopy(net)
    try:
        reference = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=False).eval()
    finally:
        pfi._inception_v3 = original
    with torch.no_grad():
        net.fc = torch.nn.Identity()
        ours = net(inception_preprocess(frames))
        theirs = reference(x)[0][:, :, 0, 0]
    out["preprocess_max_abs_diff"] = float((inception_preprocess(frames) - (2 * plain - 1)).abs().max())
    out["features_max_rel_diff"] = float(((ours - theirs).abs().max() / theirs.abs().max()).item())
    return out


def i3d_preprocess_vs_videogpt(rng: np.random.Generator) -> dict:
    """`i3d_preprocess` vs VideoGPT's preprocess (transcribed: videogpt/data.py + fvd/fvd.py), and the
    old antialiased resize's pixel difference."""
    video = torch.from_numpy(rng.integers(0, 256, (1, 8, 480, 480, 3), dtype=np.uint8))
    x = video[0].permute(0, 3, 1, 2).float() / 255
    scale = 224 / 480
    ref = F.interpolate(x, size=(math.ceil(480 * scale), 224), mode="bilinear", align_corners=False)
    ref = (ref.permute(1, 0, 2, 3) - 0.5) * 2
    anti = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    return {"reference": "VideoGPT preprocess (transcribed)",
            "max_abs_diff": float((i3d_preprocess(video)[0] - ref).abs().max()),
            "antialiased_vs_reference_mean_abs_diff_255": float(((anti.permute(1, 0, 2, 3) - 0.5) * 2 - ref).abs().mean()
                                                                * 127.5)}


def hand_f1_vs_sklearn(rng: np.random.Generator) -> dict:
    try:
        from sklearn.metrics import f1_score  # lazy: optional reference (the dev extra), may be absent
    except ImportError:
        return {"sklearn": "not installed"}
    worst = 0.0
    for _ in range(50):
        pres, vis = rng.random((10, 41, 2)) < 0.3, rng.random((10, 41, 2)) < 0.3
        ref = [f1_score(vis[..., h].ravel(), pres[..., h].ravel()) for h in range(2)]
        worst = max(worst, float(np.abs(hand_f1(pres, vis) - ref).max()))
    return {"reference": "sklearn.metrics.f1_score", "max_abs_diff": worst}


def interval_coverage(rng: np.random.Generator, trials: int) -> dict:
    """Coverage of a known d² = |shift|² (same covariance) by the jackknife and the percentile
    bootstrap of n = 100 vectors against the true reference Gaussian, and the jackknife's coverage
    of the estimator's mean (its spread without its finite-sample bias)."""
    out = {}
    for d, shift in ((16, 0.5), (64, 0.3)):
        ref = FrechetReference.fit(GaussianStats(np.zeros(d), np.eye(d), 10**9))
        true = shift ** 2 * d
        jack = boot = 0
        values, bounds = [], []
        for t in range(trials):
            gen = rng.standard_normal((100, d)) + shift
            stat = lambda idx: ref.distance(gen[idx])  # noqa: E731
            j = jackknife(stat, 100, rng)
            jack += j.low <= true <= j.high
            values.append(j.value)
            bounds.append((j.low, j.high))
            if t < min(trials, 100):  # the bootstrap costs 100 distances per trial
                b = bootstrap(stat, 100, rng, 100)
                boot += b.low <= true <= b.high
        mean = float(np.mean(values))
        out[f"D{d}_n100_true{true:g}"] = {"jackknife_coverage": jack / trials,
                                          "jackknife_coverage_of_mean_estimate": float(np.mean(
                                              [lo <= mean <= hi for lo, hi in bounds])),
                                          "bootstrap_coverage": boot / min(trials, 100),
                                          "mean_estimate": mean}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="draws per interval-coverage case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    result = {
        "frechet": frechet_vs_pytorch_fid(rng),
        "ifid_inception": inception_vs_pytorch_fid(rng),
        "fvd_preprocess": i3d_preprocess_vs_videogpt(rng),
        "hand_f1": hand_f1_vs_sklearn(rng),
        "interval_coverage": interval_coverage(rng, args.trials),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
