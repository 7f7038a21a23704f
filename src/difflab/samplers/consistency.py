"""Multistep consistency sampling, for consistency models only (Song et al. 2023, "Consistency Models", Algorithm 1)."""

from __future__ import annotations

import torch

from ..random import randn
from . import register, step_pairs


@register("consistency", order=1, stochastic=True, nfe_per_step=1, steppable=True, from_zero_snr=True, open_end=True,
          only_for="consistency")
def consistency(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
                progress: bool = False) -> torch.Tensor:
    """x̂_0 = f(x_t, t) at each visited time, then fresh noise up to the next one: x_s = α_s (x̂_0 + √(σ̃_s² − σ̃_min²) z)
    with σ̃ = σ/α and σ̃_min that of the schedule's t_min (Algorithm 1, τ_n on the visited times; on a VE schedule
    x_s = x̂_0 + √(σ_s² − σ_min²) z). The visited times are a discretization's for ``steps`` + 1 without t_min
    (``open_end``): two logsnr steps visit t_max and the middle of the log-SNR range. One step is one-step generation, x̂_0 = f(x_T, T). For consistency models (diffusion.formulation: consistency); a
    diffusion model's x̂_0 is a posterior mean, not a sample, so other models are refused (:func:`check_denoiser`)."""
    schedule = denoiser.schedule
    t_min = torch.tensor(float(schedule.t_min), dtype=torch.float64)
    s_min = float(schedule.sigma(t_min) / schedule.alpha(t_min))
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "consistency"):
        pred = denoiser(x, t)
        if callback is not None:
            callback(i, t, x, pred)
        if s == 0:
            return pred.x0
        s64 = torch.as_tensor(s, dtype=torch.float64)
        a_s, s_s = float(schedule.alpha(s64)), float(schedule.sigma(s64) / schedule.alpha(s64))
        x = a_s * (pred.x0 + max(s_s**2 - s_min**2, 0.0) ** 0.5 * randn(x.shape, generator, x.device, x.dtype))
    return x
