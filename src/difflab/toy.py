"""The exact oracle: an isotropic Gaussian mixture whose noised marginals, denoiser and score are
known in closed form at every noise level.

For data x_0 ~ Σ_k w_k N(μ_k, s_k² I) and any forward process x_t = α_t x_0 + σ_t ε (VP, sub-VP,
VE, discrete or continuous), the noised density is again a mixture,
p_t(x) = Σ_k w_k N(x; α_t μ_k, (α_t² s_k² + σ_t²) I), and Bayes' rule gives per component
E[x_0 | x_t, k] = μ_k + α_t s_k² / (α_t² s_k² + σ_t²) · (x_t − α_t μ_k), weighted by the
responsibilities r_k(x_t). From x̂_0 = Σ_k r_k E[x_0 | x_t, k] follow ε̂ = (x_t − α_t x̂_0)/σ_t and the
score −ε̂/σ_t (Tweedie's formula; Efron 2011, Eq. 2.8). A sampler that is correct must reproduce the
mixture from this denoiser, which makes it a test fixture, a benchmark and a debugging aid.
"""

from __future__ import annotations

import math

import torch

from .denoiser import Prediction
from .errors import DifflabError
from .schedules import as_time

Tensor = torch.Tensor


class GaussianMixture:
    """Σ_k w_k N(μ_k, s_k² I) in D dimensions: ``means`` (K, D), ``stds`` (K,), ``weights`` (K,)."""

    def __init__(self, means, stds, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2 or means.shape[0] == 0:
            raise DifflabError(f"GaussianMixture means must have shape (K, D) with K >= 1, got {tuple(means.shape)}.")
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).reshape(-1)
        if stds.numel() == 1:
            stds = stds.expand(k).clone()
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if stds.shape != (k,) or not torch.all(stds > 0):
            raise DifflabError(f"GaussianMixture stds must be {k} positive numbers, got {stds.tolist()}.")
        if weights.shape != (k,) or not torch.all(weights >= 0) or not weights.sum() > 0:
            raise DifflabError(f"GaussianMixture weights must be {k} non-negative numbers with a positive sum.")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws (n, D), float64: a component by its weight, then its Gaussian."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.stds[comp, None] * noise

    def _noised(self, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Component means α μ_k (B, K, D) and variances α² s_k² + σ² (B, K) for per-example α, σ (B,)."""
        mean = alpha[:, None, None] * self.means.to(alpha)
        var = alpha[:, None] ** 2 * self.stds.to(alpha) ** 2 + sigma[:, None] ** 2
        return mean, var

    def _log_component(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        d = self.dim
        sq = (x[:, None, :] - mean).pow(2).sum(-1)
        return torch.log(self.weights.to(x)) - 0.5 * d * torch.log(2 * math.pi * var) - 0.5 * sq / var

    def log_prob(self, x: Tensor, alpha: Tensor | float = 1.0, sigma: Tensor | float = 0.0) -> Tensor:
        """log p(x) of the mixture (or of its noised marginal p_t, given α_t and σ_t), shape (B,)."""
        x = torch.as_tensor(x).to(torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DifflabError(f"log_prob needs points of shape (N, {self.dim}), got {tuple(x.shape)}.")
        alpha = torch.as_tensor(alpha, dtype=torch.float64).expand(x.shape[0])
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        mean, var = self._noised(alpha, sigma)
        return torch.logsumexp(self._log_component(x, mean, var), dim=-1)

    def posterior_mean(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[x_0 | x_t] for x_t = α x_0 + σ ε (Bayes' rule per component, then the responsibilities).

        With the gain γ_k = α s_k² / (α² s_k² + σ²), E[x_0 | x_t] = Σ_k r_k (μ_k + γ_k (x_t − α μ_k))
        = (Σ_k r_k γ_k) x_t + Σ_k r_k (1 − α γ_k) μ_k, and ‖x_t − α μ_k‖² is expanded into matrix products,
        so a batch costs two (B, D) × (D, K) products."""
        x = x_t.to(torch.float64)
        a = alpha.to(torch.float64)[:, None]                                                     # (B, 1)
        var = a**2 * self.stds**2 + sigma.to(torch.float64)[:, None] ** 2                        # (B, K)
        sq = ((x**2).sum(1, keepdim=True) - 2 * a * (x @ self.means.T) + a**2 * (self.means**2).sum(1)).clamp(min=0)
        logits = torch.log(self.weights) - 0.5 * self.dim * torch.log(2 * math.pi * var) - 0.5 * sq / var
        resp = torch.softmax(logits, dim=-1)                                                     # (B, K)
        gain = a * self.stds**2 / var                                                            # (B, K)
        return (resp * gain).sum(1, keepdim=True) * x + (resp * (1 - a * gain)) @ self.means

    def denoiser(self, schedule) -> "MixtureDenoiser":
        """The exact denoiser of this mixture under ``schedule`` (anything with alpha(t), sigma(t))."""
        return MixtureDenoiser(self, schedule)


class MixtureDenoiser:
    """Closed-form ε*, x_0* (and score) of a :class:`GaussianMixture` under a schedule.

    Works in float64 internally and returns x_t's dtype. Differentiable in x_t (for likelihoods).
    """

    def __init__(self, mixture: GaussianMixture, schedule):
        self.mixture = mixture
        self.schedule = schedule

    def __call__(self, x_t: Tensor, t) -> Prediction:
        if x_t.ndim != 2 or x_t.shape[1] != self.mixture.dim:
            raise DifflabError(f"the mixture oracle takes points of shape (N, {self.mixture.dim}), got {tuple(x_t.shape)}.")
        t = as_time(t)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        alpha = self.schedule.alpha(t.cpu()).to(torch.float64).to(x_t.device)
        sigma = self.schedule.sigma(t.cpu()).to(torch.float64).to(x_t.device)
        x0 = self.mixture.posterior_mean(x_t, alpha, sigma)
        eps = (x_t.to(torch.float64) - alpha[:, None] * x0) / sigma[:, None]
        return Prediction(eps=eps.to(x_t.dtype), x0=x0.to(x_t.dtype))

    def score(self, x_t: Tensor, t) -> Tensor:
        """∇ log p_t(x_t) = −ε*/σ_t."""
        t = as_time(t)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        sigma = self.schedule.sigma(t.cpu()).to(x_t)
        return -self(x_t, t).eps / sigma[:, None]
