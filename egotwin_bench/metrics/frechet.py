"""The Fréchet distance between two Gaussians fitted to feature sets (FID, FVD, M-FID).

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})

Everything is float64. The trace of the matrix square root of the product is computed as in
Heusel et al.'s reference code (`scipy.linalg.sqrtm` of S1 S2, imaginary round-off dropped), with
a fallback when that is numerically unusable (singular product, non-finite or clearly complex
result): the symmetric eigen form tr((S1^{1/2} S2 S1^{1/2})^{1/2}), which equals the same trace
exactly and is stable for PSD inputs (rank-deficient covariances of small sets included); only if
that eigendecomposition fails is a ridge eps·I added to both covariances (the reference code's fix).

When one side is given as a feature set with fewer vectors than dimensions (n <= D: small sets,
2048-d Inception features of a few hundred frames, bootstrap resamples), its covariance is
S1 = A^T A with A the (n, D) centred features / sqrt(n - 1), and the same trace is computed
exactly from the small symmetric (n, n) matrix A S2 A^T (whose eigenvalues are the non-zero
eigenvalues of S1 S2): tr((S1 S2)^{1/2}) = sum sqrt(eig(A S2 A^T)). This costs O(n D^2) instead
of the O(D^3) Schur decomposition of `sqrtm` (minutes for D = 2048 on a small CPU).

Many distances against one reference (bootstrap intervals over clips): `FrechetReference`
computes R = S_ref^{1/2} once; then for each resampled set with centred features A / sqrt(n - 1),
tr((S_x S_ref)^{1/2}) = tr((R S_x R)^{1/2}) = the nuclear norm of A R (sum of its singular
values, from the eigenvalues of the smaller of its two Gram matrices): one matrix product and
one symmetric eigendecomposition of size min(n, D) per resample, never a non-symmetric sqrtm.
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


def trace_sqrt_product_low_rank(features: np.ndarray, sigma: np.ndarray) -> float:
    """tr((S_x S)^{1/2}) where S_x is the covariance of `features` (n, D), via the (n, n) form above."""
    x = np.asarray(features, dtype=np.float64)
    a = (x - x.mean(axis=0)) / np.sqrt(x.shape[0] - 1)
    m = a @ np.asarray(sigma, dtype=np.float64) @ a.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


@dataclass(frozen=True)
class FrechetReference:
    """A reference Gaussian with R = S^{1/2} (symmetric PSD root) precomputed, for many Fréchet
    distances of feature sets against it (bootstrap resamples)."""

    stats: GaussianStats
    sigma_sqrt: np.ndarray

    @classmethod
    def fit(cls, reference: GaussianStats | np.ndarray) -> "FrechetReference":
        """From reference stats, or from (N, D) reference features (fitted here)."""
        stats = reference if isinstance(reference, GaussianStats) else gaussian_stats(reference)
        return cls(stats, _sqrtm_psd(stats.sigma))

    def distance(self, features: np.ndarray) -> float:
        """d² between the Gaussian fitted to (n, D) `features` (n >= 2) and the reference."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.stats.mu.shape[0]:
            raise ValueError(f"features must be (n, {self.stats.mu.shape[0]}), got {x.shape}")
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
        mu = x.mean(axis=0)
        a = (x - mu) / np.sqrt(x.shape[0] - 1)
        b = a @ self.sigma_sqrt
        gram = b @ b.T if b.shape[0] <= b.shape[1] else b.T @ b
        tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0.0, None)).sum())
        diff = mu - self.stats.mu
        d2 = diff @ diff + float(np.sum(a * a)) + np.trace(self.stats.sigma) - 2.0 * tr_sqrt
        return float(max(d2, 0.0))


def _is_low_rank_set(x: GaussianStats | np.ndarray) -> bool:
    return not isinstance(x, GaussianStats) and np.ndim(x) == 2 and x.shape[0] <= x.shape[1]


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
    if _is_low_rank_set(stats1) or _is_low_rank_set(stats2):
        small, other = (stats1, b) if _is_low_rank_set(stats1) and (
            not _is_low_rank_set(stats2) or len(stats1) <= len(stats2)) else (stats2, a)
        tr_sqrt = trace_sqrt_product_low_rank(small, other.sigma)
    else:
        tr_sqrt = trace_sqrt_product(a.sigma, b.sigma, eps)
    d2 = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_sqrt
    return float(max(d2, 0.0))
