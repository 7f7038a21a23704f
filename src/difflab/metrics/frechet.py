"""Fréchet distance between two sets of feature vectors (Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", Eq. 6; Dowson & Landau 1982).

d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), computed in float64. The trace of the
cross term is taken from the eigenvalues of the symmetric positive semi-definite matrix
Σ₁^{1/2} Σ₂ Σ₁^{1/2}, which is stabler than a general matrix square root of Σ₁Σ₂.

The number is only "FID" when the features are the standard InceptionV3 pool features; difflab
names every other score by its extractor, e.g. ``FD[mnist-classifier]``.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of ``features`` (N, D), in float64."""
    if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] < 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise DifflabError(f"features must be a 2-D tensor (N, D) with N >= 2, got {shape}.")
    f = features.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


class StreamingStatistics:
    """Mean and covariance of features arriving in batches, accumulated in float64 without keeping them:
    each batch's mean and scatter are merged with the running ones (Chan, Golub & LeVeque 1979, the
    pairwise update of the sum of squared deviations), so the result equals the two-pass statistics of
    all features to rounding."""

    def __init__(self):
        self.count, self.mean, self.scatter = 0, None, None

    def update(self, features: Tensor) -> "StreamingStatistics":
        if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] < 1:
            raise DifflabError(f"a batch of features must be a 2-D tensor (N, D) with N >= 1, got "
                               f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}.")
        f = features.detach().double().cpu()
        if self.mean is not None and f.shape[1] != self.mean.shape[0]:
            raise DifflabError(f"a batch of {f.shape[1]}-d features cannot join statistics of {self.mean.shape[0]}-d features.")
        n, mu = f.shape[0], f.mean(0)
        c = f - mu
        scatter = c.T @ c
        if self.mean is None:
            self.count, self.mean, self.scatter = n, mu, scatter
            return self
        total = self.count + n
        delta = mu - self.mean
        self.scatter = self.scatter + scatter + torch.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total
        return self

    def statistics(self) -> tuple[Tensor, Tensor]:
        """(μ, Σ) with Σ the unbiased covariance, as :func:`feature_statistics` would give for all features at once."""
        if self.count < 2:
            raise DifflabError(f"statistics need at least 2 feature vectors, {self.count} were given.")
        return self.mean, self.scatter / (self.count - 1)


def min_samples(dim: int) -> int:
    """Fewest feature vectors whose covariance can have full rank in ``dim`` dimensions (dim + 1); with fewer,
    Σ is singular and the Fréchet distance depends on which directions the few samples happen to span."""
    return dim + 1


def _psd_sqrt(m: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """d² between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Eq. 6 of Heusel et al. 2017), float64."""
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(v, dtype=torch.float64) for v in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise DifflabError(f"feature statistics differ in shape: means {tuple(mu1.shape)} and {tuple(mu2.shape)}, "
                           f"covariances {tuple(sigma1.shape)} and {tuple(sigma2.shape)}.")
    root1 = _psd_sqrt(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    d2 = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * cross
    return float(d2.clamp(min=0))


def frechet_distance_of(features1: Tensor, features2: Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
