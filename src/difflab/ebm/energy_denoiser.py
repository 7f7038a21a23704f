"""A noise-conditional energy E_θ(x, σ) as a :class:`~difflab.denoiser.Denoiser`, so that every diffusion sampler
(annealed Langevin, predictor-corrector, the ODE ones) runs on it.

On a schedule x_t = α_t x_0 + σ_t ε the rescaled x̃ = x_t/α_t = x_0 + σ̃ ε has noise level σ̃ = σ_t/α_t, and the
energy's score at that level is s̃ = −∇_x̃ E_θ(x̃, σ̃). Tweedie's formula (Efron 2011, Eq. 2.8) turns it into the
denoiser's predictions: ε̂ = −σ̃ s̃ and x̂_0 = x̃ − σ̃ ε̂ = x̃ + σ̃² s̃.
"""

from __future__ import annotations

import torch

from ..denoiser import Prediction
from ..schedules import as_time

Tensor = torch.Tensor


class EnergyDenoiser:
    """ε̂ and x̂_0 of a noise-conditional energy ``energy(x, sigma)`` under ``schedule`` (a VE schedule between the
    levels it was trained on is the natural one). Differentiates the energy in x, also under ``torch.no_grad``."""

    def __init__(self, energy, schedule):
        self.energy, self.schedule = energy, schedule

    def __call__(self, x_t: Tensor, t) -> Prediction:
        t = as_time(t)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        alpha = self.schedule.alpha(t.cpu()).to(x_t.device, x_t.dtype)
        sigma = self.schedule.sigma(t.cpu()).to(x_t.device, x_t.dtype)
        shape = (-1, *[1] * (x_t.ndim - 1))
        x_tilde, s_tilde = x_t / alpha.reshape(shape), sigma / alpha
        with torch.enable_grad():
            x = x_tilde.detach().requires_grad_(True)
            score = -torch.autograd.grad(self.energy(x, s_tilde).sum(), x)[0]
        eps = -s_tilde.reshape(shape) * score
        return Prediction(eps=eps.detach(), x0=(x_tilde - s_tilde.reshape(shape) * eps).detach())
