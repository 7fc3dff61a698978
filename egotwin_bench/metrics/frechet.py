"""The Fréchet distance between two Gaussians fitted to feature sets (FID, FVD, M-FID).

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})

Everything is float64. The trace of the matrix square root of the product is computed as in
Heusel et al.'s reference code (`scipy.linalg.sqrtm` of S1 S2, imaginary round-off dropped), with
a fallback when that is numerically unusable (singular product, non-finite or clearly complex
result): the symmetric eigen form tr((S1^{1/2} S2 S1^{1/2})^{1/2}), which equals the same trace
exactly and is stable for PSD inputs (rank-deficient covariances of small sets included); only if
that eigendecomposition fails is a ridge eps·I added to both covariances (the reference code's fix).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D), float64, of `n` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | Path) -> None:
        """Write to an .npz file atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, mu=self.mu, sigma=self.sigma, n=np.int64(self.n))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "GaussianStats":
        with np.load(path) as z:
            return cls(mu=z["mu"], sigma=z["sigma"], n=int(z["n"]))


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Fit a Gaussian to (N, D) features (N >= 2): mean and unbiased covariance, float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return GaussianStats(mu=x.mean(axis=0), sigma=np.atleast_2d(np.cov(x, rowvar=False)), n=x.shape[0])


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _sqrtm_or_none(a: np.ndarray) -> np.ndarray | None:
    """scipy's sqrtm, or None when it warns (singular input) or returns non-finite values."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            root = scipy.linalg.sqrtm(a)
        except (scipy.linalg.LinAlgWarning, scipy.linalg.LinAlgError):
            return None
    return root if np.isfinite(root).all() else None


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """tr((S1 S2)^{1/2}) for covariance matrices, float64, with the fallbacks described above."""
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    covmean = _sqrtm_or_none(s1 @ s2)
    if covmean is not None and np.iscomplexobj(covmean):
        # imaginary round-off is dropped as in the reference code; a large part means trouble
        covmean = covmean.real if np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3) else None
    if covmean is not None:
        return float(np.trace(covmean))
    try:
        r1 = _sqrtm_psd(s1)
        return float(np.trace(_sqrtm_psd(r1 @ s2 @ r1)))
    except np.linalg.LinAlgError:
        offset = np.eye(s1.shape[0]) * eps
        return float(np.trace(scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset)).real))


def frechet_distance(
    stats1: GaussianStats | np.ndarray, stats2: GaussianStats | np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between two Gaussians, or between two (N, D) feature sets (fitted here).

    Returns d² (the quantity FID/FVD report), clipped at 0 against round-off.
    """
    a = stats1 if isinstance(stats1, GaussianStats) else gaussian_stats(stats1)
    b = stats2 if isinstance(stats2, GaussianStats) else gaussian_stats(stats2)
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    d2 = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt_product(a.sigma, b.sigma, eps)
    return float(max(d2, 0.0))
