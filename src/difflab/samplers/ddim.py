"""Denoising diffusion implicit models (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models")."""

from __future__ import annotations

import torch

from ..errors import DifflabError
from ..random import randn
from . import register, step_pairs


def ddim_sigma(alpha_bar_t: torch.Tensor, alpha_bar_s: torch.Tensor, eta: float) -> torch.Tensor:
    """σ_t(η) = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s) for the step t → s (DDIM Eq. 16)."""
    return eta * ((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)).sqrt()


@register("ddim")
def ddim(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, generator=None, callback=None,
         progress: bool = False, eta: float = 0.0) -> torch.Tensor:
    """x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z on the visited pairs t → s (DDIM Eq. 12).

    η = 0 is the deterministic DDIM sampler; η = 1 on the full schedule is DDPM ancestral sampling
    with σ² = β̃ (DDIM Sec. 4.1).
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
        raise DifflabError(f"DDIM eta must be a number >= 0, got {eta!r}.")
    schedule = denoiser.schedule
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "ddim"):
        pred = denoiser(x, t)
        ab_t, ab_s = schedule.alpha_bar[t], schedule.alpha_bar[s]
        sigma = ddim_sigma(ab_t, ab_s, eta)
        direction = (1 - ab_s - sigma**2).clamp(min=0).sqrt()
        x_next = float(ab_s.sqrt()) * pred.x0 + float(direction) * pred.eps
        if float(sigma) > 0:
            x_next = x_next + float(sigma) * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x
