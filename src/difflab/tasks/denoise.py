"""Denoising an image of known Gaussian noise level with a diffusion model's reverse process (Sohl-Dickstein et
al. 2015, "Deep Unsupervised Learning using Nonequilibrium Thermodynamics", Sec. 2.5 and Fig. 5).

An observation y = x_0 + s ε has, scaled by α_t, the law of the forward process at the step whose noise-to-signal
ratio σ_t/α_t equals s: α_t y = α_t x_0 + α_t s ε ≈ x_t. So the reverse process can start there, from α_t y,
instead of from pure noise (the posterior p(x_0 | y) of the model, up to the gap between s and σ_t/α_t).
"""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError
from ._common import sample_from, timesteps_from

Tensor = torch.Tensor


def noise_to_signal(schedule, t) -> float:
    """σ_t/α_t = exp(−λ_t/2), the noise level of x_t/α_t = x_0 + (σ_t/α_t) ε (DDPM Eq. 4 divided by √ᾱ_t)."""
    return math.exp(-0.5 * float(schedule.lambda_(torch.tensor(t, dtype=torch.float64))))


def matching_step(schedule, noise_std: float):
    """The time whose σ_t/α_t is closest to ``noise_std`` (model units): for a discrete schedule the step
    t ∈ 1..T nearest in log(σ_t/α_t), i.e. in log-SNR; for a continuous one t with λ_t = −2 log s exactly.
    A level above the schedule's largest, σ/α at t_max, is refused."""
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std > 0 \
            or not math.isfinite(noise_std):
        raise DifflabError(f"the noise level must be a positive number, got {noise_std!r}.")
    top = noise_to_signal(schedule, schedule.t_max)
    if noise_std > top:
        raise DifflabError(f"the noise level {noise_std:.4g} (model units) is above this schedule's largest, "
                           f"σ/α = {top:.4g} at its last step.")
    lam = -2.0 * math.log(noise_std)
    if schedule.discrete:
        steps = torch.arange(1, schedule.T + 1)
        return int(steps[torch.argmin((schedule.lambda_(steps) - lam).abs())])
    t = float(schedule.t_from_lambda(torch.tensor(lam, dtype=torch.float64)))
    return min(max(t, float(schedule.t_min)), float(schedule.t_max))


def denoise(denoiser, noisy: Tensor, noise_std: float, sampler: str = "ddim", steps: int = 50, generator=None,
            **options) -> Tensor:
    """The model's reconstruction of ``noisy`` = x_0 + s ε (model coordinates, s = ``noise_std`` in model units):
    start the reverse process at the step t with σ_t/α_t ≈ s from x_t = α_t y (Sohl-Dickstein et al. 2015,
    Fig. 5) and run ``sampler`` to 0 with its share of ``steps``."""
    schedule = denoiser.schedule
    t = matching_step(schedule, noise_std)
    alpha = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
    return sample_from(denoiser, alpha * noisy, timesteps_from(schedule, t, steps), sampler, generator, **options)


def data_to_model_std(noise_std: float, scale: float) -> float:
    """A noise std in data units ([0, 1] pixels) in the model's units, model = (data − shift)/scale."""
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std > 0:
        raise DifflabError(f"the noise level must be a positive number, got {noise_std!r}.")
    return float(noise_std) / float(scale)


__all__ = ["noise_to_signal", "matching_step", "denoise", "data_to_model_std"]
