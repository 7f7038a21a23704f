"""The forward process and its exact formulas (Ho et al. 2020, "Denoising Diffusion Probabilistic
Models", Sec. 2; Salimans & Ho 2022, "Progressive Distillation", Sec. 4 for v).

All functions take a :class:`~difflab.schedules.Schedule`, tensors x of shape (B, ...) and
timesteps t of shape (B,) (or a scalar), and return tensors of x's dtype. Coefficients come
from the schedule's float64 tables.
"""

from __future__ import annotations

import torch

from .errors import DifflabError
from .schedules import Schedule

Tensor = torch.Tensor
PARAMETERIZATIONS = ("eps", "x0", "v")


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, a draw from q(x_t | x_0) (DDPM Eq. 4)."""
    return schedule.at(schedule.alpha_t, t, x0) * x0 + schedule.at(schedule.sigma_t, t, x0) * noise


def q_mean_variance(schedule: Schedule, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean √ᾱ_t x_0 and variance (1 − ᾱ_t) of q(x_t | x_0) (DDPM Eq. 4)."""
    mean = schedule.at(schedule.alpha_t, t, x0) * x0
    return mean, schedule.at(1.0 - schedule.alpha_bar, t, x0).expand_as(x0)


def q_posterior(schedule: Schedule, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (DDPM Eqs. 6–7)."""
    mean = schedule.at(schedule.posterior_mean_coef_x0, t, x_t) * x0 + schedule.at(schedule.posterior_mean_coef_xt, t, x_t) * x_t
    return mean, schedule.at(schedule.posterior_variance, t, x_t).expand_as(x_t)


def q_posterior_between(schedule: Schedule, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_s | x_t, x_0) for any 0 ≤ s < t (DDPM Eqs. 6–7 applied to the
    two-step chain s → t, whose single-step noise is β_{t|s} = 1 − ᾱ_t / ᾱ_s). With s = t − 1 this is
    :func:`q_posterior`; on a subsequence of timesteps it is the respaced posterior
    (Nichol & Dhariwal 2021, Sec. 4)."""
    ab_t = schedule.at(schedule.alpha_bar, t, x_t)
    ab_s = schedule.at(schedule.alpha_bar, s, x_t)
    beta = 1.0 - ab_t / ab_s
    mean = (ab_s.sqrt() * beta * x0 + (ab_t / ab_s).sqrt() * (1.0 - ab_s) * x_t) / (1.0 - ab_t)
    return mean, (beta * (1.0 - ab_s) / (1.0 - ab_t)).expand_as(x_t)


def eps_to_x0(schedule: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t, Eq. 4 solved for x_0 (DDPM Eq. 15)."""
    return (x_t - schedule.at(schedule.sigma_t, t, x_t) * eps) / schedule.at(schedule.alpha_t, t, x_t)


def x0_to_eps(schedule: Schedule, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """ε = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t), Eq. 4 solved for ε."""
    return (x_t - schedule.at(schedule.alpha_t, t, x_t) * x0) / schedule.at(schedule.sigma_t, t, x_t)


def v_target(schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """v = α_t ε − σ_t x_0 with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) (Salimans & Ho 2022, Sec. 4)."""
    return schedule.at(schedule.alpha_t, t, x0) * eps - schedule.at(schedule.sigma_t, t, x0) * x0


def v_to_x0(schedule: Schedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """x_0 = α_t x_t − σ_t v (Salimans & Ho 2022, Sec. 4; uses α_t² + σ_t² = 1)."""
    return schedule.at(schedule.alpha_t, t, x_t) * x_t - schedule.at(schedule.sigma_t, t, x_t) * v


def v_to_eps(schedule: Schedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """ε = σ_t x_t + α_t v (Salimans & Ho 2022, Sec. 4)."""
    return schedule.at(schedule.sigma_t, t, x_t) * x_t + schedule.at(schedule.alpha_t, t, x_t) * v


def eps_to_score(schedule: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """∇ log q(x_t) ≈ −ε / √(1 − ᾱ_t) (Song et al. 2021, score-based SDEs, Eq. 7 and Appx. B)."""
    return -eps / schedule.at(schedule.sigma_t, t, x_t)


def target(schedule: Schedule, parameterization: str, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """The regression target of L_simple for a parameterization: ε, x_0 or v."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    return v_target(schedule, x0, t, eps)


def to_eps_x0(schedule: Schedule, parameterization: str, x_t: Tensor, t: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
    """Turn a network output in the given parameterization into the pair (ε̂, x̂_0)."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return output, eps_to_x0(schedule, x_t, t, output)
    if parameterization == "x0":
        return x0_to_eps(schedule, x_t, t, output), output
    return v_to_eps(schedule, x_t, t, output), v_to_x0(schedule, x_t, t, output)


def check_parameterization(name: str) -> None:
    if name not in PARAMETERIZATIONS:
        raise DifflabError(f"unknown parameterization {name!r}; expected one of {', '.join(PARAMETERIZATIONS)}.")
