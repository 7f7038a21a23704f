"""Ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Algorithm 2)."""

from __future__ import annotations

import torch

from .. import process
from ..errors import DifflabError
from ..random import randn
from . import register, step_pairs


@register("ddpm", order=1, stochastic=True, nfe_per_step=1)
def ddpm(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, generator=None, callback=None,
         progress: bool = False, variance: str = "beta_tilde") -> torch.Tensor:
    """x_{s} = μ̃(x_t, x̂_0) + σ z, z ~ N(0, I), on the visited pairs t → s (Algorithm 2).

    The mean is the posterior mean of q(x_s | x_t, x_0) with x̂_0 from the denoiser (DDPM Eqs. 7, 11);
    ``variance`` picks σ² = β̃ (``beta_tilde``, the posterior variance) or σ² = β (``beta``), the two
    choices of DDPM Sec. 3.2. On a subsequence of times β becomes σ²_{t|s} (1 − ᾱ_t/ᾱ_s for VP;
    respacing, Nichol & Dhariwal 2021, Sec. 4). No noise is added on the last step.
    """
    if variance not in ("beta_tilde", "beta"):
        raise DifflabError(f"unknown DDPM variance {variance!r}; expected 'beta_tilde' or 'beta'.")
    schedule = denoiser.schedule
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "ddpm"):
        pred = denoiser(x, t)
        batch = x.shape[0]
        mean, posterior_var = process.q_posterior_between(schedule, pred.x0, x, torch.full((batch,), t), torch.full((batch,), s))
        x_next = mean
        if s > 0:
            var = posterior_var
            if variance == "beta":  # σ²_{t|s}, from (α_t, σ_t, α_s, σ_s)
                coefs = (f(torch.tensor(u)) for u in (t, s) for f in (schedule.alpha, schedule.sigma))
                var = torch.full_like(x, float(process.transition_variance(*coefs)))
            x_next = mean + var.sqrt() * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x
