"""Denoising diffusion implicit models (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models")."""

from __future__ import annotations

import torch

from ..errors import DifflabError
from ..random import randn
from ..process import transition_variance
from . import register, step_pairs
from ._kernels import ddim_step


def ddim_sigma(a_t: float, s_t: float, a_s: float, s_s: float, eta: float) -> float:
    """σ_t(η) = η (σ_s/σ_t) √(σ_t² − (α_t/α_s)² σ_s²) for the step t → s: η times the posterior
    standard deviation (DDIM Eq. 16, which reads η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s) for VP)."""
    return eta * (s_s / s_t) * transition_variance(a_t, s_t, a_s, s_s) ** 0.5


@register("ddim", order=1, stochastic=False, nfe_per_step=1, steppable=True, eps_is_noise=True, from_zero_snr=True)
def ddim(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
         progress: bool = False, eta: float = 0.0) -> torch.Tensor:
    """x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z with c = σ_t(η) on the visited pairs t → s (DDIM Eq. 12,
    α_s = √ᾱ_s and σ_s = √(1 − ᾱ_s) for VP; the same update is exact for VE and sub-VP marginals).

    η = 0 is the deterministic DDIM sampler; η = 1 on the full schedule is DDPM ancestral sampling
    with σ² = β̃ (DDIM Sec. 4.1).
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
        raise DifflabError(f"DDIM eta must be a number >= 0, got {eta!r}.")
    schedule = denoiser.schedule
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "ddim"):
        pred = denoiser(x, t)
        a_t, s_t = float(schedule.alpha(t)), float(schedule.sigma(t))
        a_s, s_s = float(schedule.alpha(s)), float(schedule.sigma(s))
        c = ddim_sigma(a_t, s_t, a_s, s_s, eta)
        x_next = ddim_step(pred.x0, pred.eps, a_s, max(s_s**2 - c**2, 0.0) ** 0.5)
        if c > 0:
            x_next = x_next + c * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x
