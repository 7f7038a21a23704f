"""Ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Algorithm 2)."""

from __future__ import annotations

import torch

from .. import process
from ..errors import DifflabError
from ..random import randn
from ..variational_bound import interpolate_log_variance, respaced_log_variances
from . import register, step_pairs

VARIANCES = ("beta_tilde", "beta", "learned")


@register("ddpm", order=1, stochastic=True, nfe_per_step=1, mean_shift=True, steppable=True,
          eps_is_noise=True, from_zero_snr=True)
def ddpm(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, generator=None, callback=None,
         progress: bool = False, variance: str | None = None) -> torch.Tensor:
    """x_{s} = μ̃(x_t, x̂_0) + σ z, z ~ N(0, I), on the visited pairs t → s (Algorithm 2).

    The mean is the posterior mean of q(x_s | x_t, x_0) with x̂_0 from the denoiser (DDPM Eqs. 7, 11);
    ``variance`` picks σ² = β̃ (``beta_tilde``, the posterior variance) or σ² = β (``beta``), the two
    choices of DDPM Sec. 3.2. On a subsequence of times β becomes σ²_{t|s} (1 − ᾱ_t/ᾱ_s for VP;
    respacing, Nichol & Dhariwal 2021, Sec. 4). ``learned`` (the default when the denoiser predicts a
    variance, i.e. its predictions carry ``v_raw``; else ``beta_tilde``) takes the network's interpolation
    σ² = exp(v log β_{t,s} + (1 − v) log β̃_{t,s}), v = (v_raw + 1)/2, between the respaced chain's
    β_{t,s} = 1 − ᾱ_t/ᾱ_s and β̃_{t,s} = (1 − ᾱ_s)/(1 − ᾱ_t) β_{t,s} (Nichol & Dhariwal 2021, Eq. 15 and
    Sec. 4; :func:`difflab.variational_bound.respaced_log_variances`). No noise is added on the last step.
    """
    if variance is not None and variance not in VARIANCES:
        raise DifflabError(f"unknown DDPM variance {variance!r}; expected one of {', '.join(VARIANCES)}.")
    schedule = denoiser.schedule
    x = x_T
    log_vars = None
    for i, t, s in step_pairs(timesteps, progress, "ddpm"):
        pred = denoiser(x, t)
        v_raw = getattr(pred, "v_raw", None)
        kind = variance if variance is not None else ("learned" if v_raw is not None else "beta_tilde")
        if kind == "learned" and v_raw is None:
            raise DifflabError("DDPM variance 'learned' needs a denoiser with a learned variance (a network trained "
                               "with diffusion.learned_variance); use beta_tilde or beta.")
        if kind == "learned" and log_vars is None:
            if not getattr(schedule, "discrete", False):
                raise DifflabError("DDPM variance 'learned' needs a discrete schedule (t = 1..T).")
            log_vars = respaced_log_variances(schedule, timesteps)
        batch = x.shape[0]
        mean, posterior_var = process.q_posterior_between(schedule, pred.x0, x, torch.full((batch,), t), torch.full((batch,), s))
        x_next = mean
        if s > 0:
            var = posterior_var
            if kind == "beta":  # σ²_{t|s}, from (α_t, σ_t, α_s, σ_s)
                coefs = (f(torch.tensor(u)) for u in (t, s) for f in (schedule.alpha, schedule.sigma))
                var = torch.full_like(x, float(process.transition_variance(*coefs)))
            elif kind == "learned":
                log_var = interpolate_log_variance(v_raw.to(x.dtype), float(log_vars[0][i]), float(log_vars[1][i]))
                var = torch.exp(log_var)
            if hasattr(denoiser, "mean_shift"):  # classifier guidance, Dhariwal & Nichol 2021, Algorithm 1: μ + s Σ ∇ log p(y|x_t)
                mean = mean + denoiser.mean_shift(x, t, var)
            x_next = mean + var.sqrt() * randn(x.shape, generator, x.device, x.dtype)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x
