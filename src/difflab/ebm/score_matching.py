"""The three score-matching estimators of the score-based lecture: exact (Hyvärinen 2005), sliced (Song et al.
2019) and denoising (Vincent 2011).

Each returns per-example losses (N,) of a score model ``score(x) -> s(x)`` (same shape as x) on data ``x``; their
means are unbiased estimates of the objective, whose minimiser is the data score ∇ₓ log p(x) (for denoising: the
score of the noised data). An energy model E gives the score s = −∇ₓE (:func:`energy_score`), so the same losses
train energies and score networks alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import DifflabError
from ..random import randn

Tensor = torch.Tensor
Score = Callable[[Tensor], Tensor]
ESTIMATORS = ("exact", "sliced", "sliced-vr", "denoising")


def energy_score(energy: Callable[[Tensor], Tensor]) -> Score:
    """s(x) = −∇ₓ E(x), kept in the graph (create_graph) so that a loss on it trains E's parameters."""
    def score(x: Tensor) -> Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            e = energy(x)
            if e.shape != (x.shape[0],):
                raise DifflabError(f"the energy must return one number per example, shape ({x.shape[0]},), "
                                   f"got {tuple(e.shape)}.")
            return -torch.autograd.grad(e.sum(), x, create_graph=True)[0]
    return score


def _score(score: Score, x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    s = score(x)
    if s.shape != x.shape:
        raise DifflabError(f"the score model must return the shape of its input {tuple(x.shape)}, got {tuple(s.shape)}.")
    return x, s


def _sum(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


def exact_score_matching(score: Score, x: Tensor) -> Tensor:
    """Hyvärinen 2005, Theorem 1 (Eq. 4): J(θ) = E_p[ tr ∇ₓ s_θ(x) + ½ ‖s_θ(x)‖² ], per example. The trace costs one
    backward pass per dimension, so this is for small dimension (toys)."""
    with torch.enable_grad():
        x, s = _score(score, x)
        flat = s.flatten(1)
        trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
        for i in range(flat.shape[1]):
            gi = torch.autograd.grad(flat[:, i].sum(), x, create_graph=True)[0].flatten(1)[:, i]
            trace = trace + gi
        return trace + 0.5 * _sum(s**2)


def sliced_score_matching(score: Score, x: Tensor, generator=None, projections: int = 1,
                          variance_reduced: bool = False, directions: Tensor | None = None) -> Tensor:
    """Song et al. 2019, Eq. 7: J(θ) = E_v E_p[ vᵀ ∇ₓ s_θ(x) v + ½ (vᵀ s_θ(x))² ] with v ~ N(0, I), one backward pass per
    projection; ``variance_reduced`` (their SSM-VR, Eq. 8) replaces ½ (vᵀ s)² by its expectation over v, ½ ‖s‖².
    ``directions`` (projections, *x.shape) gives the v instead of drawing them from ``generator``."""
    if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
        raise DifflabError(f"sliced score matching needs projections >= 1, got {projections!r}.")
    with torch.enable_grad():
        x, s = _score(score, x)
        total = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
        if directions is not None:
            projections = directions.shape[0]
        for k in range(projections):
            v = randn(x.shape, generator, x.device, x.dtype) if directions is None else directions[k]
            vs = _sum(v * s)
            vjv = _sum(v * torch.autograd.grad(vs.sum(), x, create_graph=True)[0])
            total = total + vjv + (0.5 * _sum(s**2) if variance_reduced else 0.5 * vs**2)
        return total / projections


def denoising_score_matching(score: Score, x: Tensor, sigma: float | Tensor, generator=None,
                             noise: Tensor | None = None) -> Tensor:
    """Vincent 2011, Eq. 8 with the Gaussian kernel (Sec. 4.2): x̃ = x + σ z and
    J(θ) = E[ ½ ‖s_θ(x̃) − ∇ log q_σ(x̃ | x)‖² ], ∇ log q_σ(x̃ | x) = −(x̃ − x)/σ², per example. Its minimiser is the
    score of the noised data q_σ(x̃) = ∫ q_σ(x̃|x) p(x) dx. ``sigma`` is a number or one per example (N,)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not torch.all(sigma > 0):
        raise DifflabError(f"denoising score matching needs a noise level sigma > 0, got {sigma.min().item()!r}.")
    sig = sigma.reshape(-1, *[1] * (x.ndim - 1)) if sigma.ndim else sigma
    z = randn(x.shape, generator, x.device, x.dtype) if noise is None else noise
    x_noisy = x + sig * z
    with torch.enable_grad():
        _, s = _score(score, x_noisy)
        return 0.5 * _sum((s + z / sig) ** 2)
