"""The forward process and its exact formulas (Ho et al. 2020, "Denoising Diffusion Probabilistic
Models", Sec. 2; Salimans & Ho 2022, "Progressive Distillation", Sec. 4 for v).

All functions take a schedule (discrete :class:`~difflab.schedules.Schedule` or a continuous SDE
of :mod:`difflab.sde`), tensors x of shape (B, ...) and times t of shape (B,) (or a scalar), and
return tensors of x's dtype. Coefficients α_t, σ_t come from the schedule, in float64; the forward
process is x_t = α_t x_0 + σ_t ε in every case (for the discrete VP schedules α_t = √ᾱ_t,
σ_t = √(1 − ᾱ_t)).
"""

from __future__ import annotations

import torch

from .errors import DifflabError
from .schedules import Schedule, as_time

Tensor = torch.Tensor
PARAMETERIZATIONS = ("eps", "x0", "v", "score")


def _per_example(values: Tensor, like: Tensor) -> Tensor:
    return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _times(t, like: Tensor) -> Tensor:
    t = as_time(t).cpu()
    return t.expand(like.shape[0]) if t.ndim == 0 else t


def alpha(schedule, t, like: Tensor) -> Tensor:
    """α_t per example, shaped to broadcast against ``like``."""
    return _per_example(schedule.alpha(_times(t, like)), like)


def sigma(schedule, t, like: Tensor) -> Tensor:
    """σ_t per example, shaped to broadcast against ``like``."""
    return _per_example(schedule.sigma(_times(t, like)), like)


def alpha_sigma64(schedule, t, like: Tensor) -> tuple[Tensor, Tensor]:
    """α_t and σ_t in float64, one per example of ``like``, shaped (B, 1, ...) to broadcast against it (for the
    coefficients that must not lose precision in ``like``'s dtype: loss weights, EDM's scalings)."""
    shape = torch.empty((like.shape[0],) + (1,) * (like.ndim - 1), dtype=torch.float64, device=like.device)
    return alpha(schedule, t, shape), sigma(schedule, t, shape)


def model_input(schedule, x_t: Tensor, t) -> Tensor:
    """What the network sees: x_t / √(α_t² + σ_t²), unit-scale for every schedule (Karras et al. 2022,
    "Elucidating the Design Space", Table 1, c_in with σ_data = 1). For VP schedules the scale is 1."""
    return x_t * _per_example(schedule.input_scale(_times(t, x_t)), x_t)


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = α_t x_0 + σ_t ε, a draw from q(x_t | x_0) (DDPM Eq. 4: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t))."""
    return alpha(schedule, t, x0) * x0 + sigma(schedule, t, x0) * noise


def q_mean_variance(schedule: Schedule, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean α_t x_0 and variance σ_t² of q(x_t | x_0) (DDPM Eq. 4: √ᾱ_t x_0 and 1 − ᾱ_t)."""
    return alpha(schedule, t, x0) * x0, (sigma(schedule, t, x0) ** 2).expand_as(x0)


def q_posterior(schedule: Schedule, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (DDPM Eqs. 6–7): :func:`q_posterior_between`
    with s = t − 1, the one posterior formula."""
    return q_posterior_between(schedule, x0, x_t, t, as_time(t) - 1)


def q_posterior_between(schedule, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_s | x_t, x_0) for any 0 ≤ s < t. With α_{t|s} = α_t/α_s and
    σ²_{t|s} = σ_t² − α_{t|s}² σ_s², the mean is (α_{t|s} σ_s²/σ_t²) x_t + (α_s σ²_{t|s}/σ_t²) x_0 and the
    variance σ²_{t|s} σ_s²/σ_t² (Kingma et al. 2021, "Variational Diffusion Models", Eqs. 29–32).
    For the discrete VP schedule with s = t − 1 this is DDPM Eqs. 6–7; on a subsequence of timesteps it
    is the respaced posterior (Nichol & Dhariwal 2021, Sec. 4)."""
    a_t, s_t = alpha(schedule, t, x_t), sigma(schedule, t, x_t)
    a_s, s_s = alpha(schedule, s, x_t), sigma(schedule, s, x_t)
    a_ts = a_t / a_s
    var_ts = transition_variance(a_t, s_t, a_s, s_s)
    mean = (a_ts * s_s**2 / s_t**2) * x_t + (a_s * var_ts / s_t**2) * x0
    return mean, (var_ts * s_s**2 / s_t**2).expand_as(x_t)


def transition_variance(a_t, s_t, a_s, s_s):
    """σ²_{t|s} = σ_t² − (α_t/α_s)² σ_s², the variance of q(x_t | x_s) (Kingma et al. 2021, Eq. 22);
    for the discrete VP schedule 1 − ᾱ_t/ᾱ_s, the β of the respaced chain. Tensors or floats."""
    var = s_t**2 - (a_t / a_s) ** 2 * s_s**2
    return var.clamp(min=0) if isinstance(var, Tensor) else max(var, 0.0)


def eps_to_x0(schedule: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t, Eq. 4 solved for x_0 (DDPM Eq. 15)."""
    return (x_t - sigma(schedule, t, x_t) * eps) / alpha(schedule, t, x_t)


def x0_to_eps(schedule: Schedule, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """ε = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t), Eq. 4 solved for ε."""
    return (x_t - alpha(schedule, t, x_t) * x0) / sigma(schedule, t, x_t)


def v_target(schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """v = α_t ε − σ_t x_0 with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) (Salimans & Ho 2022, Sec. 4)."""
    return alpha(schedule, t, x0) * eps - sigma(schedule, t, x0) * x0


def v_to_x0(schedule: Schedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """x_0 = α_t x_t − σ_t v (Salimans & Ho 2022, Sec. 4; uses α_t² + σ_t² = 1)."""
    return alpha(schedule, t, x_t) * x_t - sigma(schedule, t, x_t) * v


def v_to_eps(schedule: Schedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """ε = σ_t x_t + α_t v (Salimans & Ho 2022, Sec. 4)."""
    return sigma(schedule, t, x_t) * x_t + alpha(schedule, t, x_t) * v


def eps_to_score(schedule: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """∇ log q(x_t) ≈ −ε / √(1 − ᾱ_t) (Song et al. 2021, score-based SDEs, Eq. 7 and Appx. B)."""
    return -eps / sigma(schedule, t, x_t)


def score_to_eps(schedule: Schedule, x_t: Tensor, t: Tensor, score: Tensor) -> Tensor:
    """ε = −σ_t ∇ log q(x_t), the inverse of :func:`eps_to_score`."""
    return -sigma(schedule, t, x_t) * score


def x0_error_scale(schedule, parameterization: str, t, like: Tensor) -> Tensor:
    """The factor by which a parameterization's squared error exceeds the x_0 error it implies at the same x_t,
    float64, shaped (B, 1, ...) like ``like``: ‖ε̂ − ε‖² = SNR ‖x̂_0 − x_0‖² (from x̂_0 = (x_t − σ ε̂)/α),
    ‖v̂ − v‖² = ((α² + σ²)²/σ²) ‖x̂_0 − x_0‖² (SNR + 1 for VP schedules; Salimans & Ho 2022, Sec. 4), 1 for x_0,
    and SNR for the σ-weighted score (its loss is the ε error). SNR = α_t²/σ_t²."""
    a, s = alpha_sigma64(schedule, t, like)
    if parameterization == "x0":
        return torch.ones_like(a)
    if parameterization == "v":
        return (a**2 + s**2) ** 2 / s**2
    return a**2 / s**2


def target(schedule: Schedule, parameterization: str, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """The regression target of L_simple for a parameterization: ε, x_0, v, or the score of
    q(x_t | x_0), −ε/σ_t (denoising score matching; Vincent 2011, Song & Ermon 2019, Eq. 2)."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "score":
        return -eps / sigma(schedule, t, x0)
    return v_target(schedule, x0, t, eps)


def to_eps_x0(schedule: Schedule, parameterization: str, x_t: Tensor, t: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
    """Turn a network output in the given parameterization into the pair (ε̂, x̂_0)."""
    check_parameterization(parameterization)
    if parameterization == "eps":
        return output, eps_to_x0(schedule, x_t, t, output)
    if parameterization == "x0":
        return x0_to_eps(schedule, x_t, t, output), output
    if parameterization == "score":
        eps = score_to_eps(schedule, x_t, t, output)
        return eps, eps_to_x0(schedule, x_t, t, eps)
    return v_to_eps(schedule, x_t, t, output), v_to_x0(schedule, x_t, t, output)


def check_parameterization(name: str) -> None:
    if name not in PARAMETERIZATIONS:
        raise DifflabError(f"unknown parameterization {name!r}; expected one of {', '.join(PARAMETERIZATIONS)}.")
