"""What the samplers share: the one first-order step (deterministic DDIM, Song et al. 2021, Eq. 12 with η = 0,
which DPM-Solver-1, DPM-Solver++1, EDM's Euler step, PNDM's transfer and DDIM inversion all are), the times
and coefficients they read off a schedule, and the option checks. A sampler family lives in its own file and
takes its helpers from here, never from another family's file."""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError
from ..sde import sde_coefficients

#: with fewer steps than this, multistep solvers lower their order at the last steps (DPM-Solver++ practice)
LOWER_ORDER_FINAL_BELOW = 15
#: EDM's largest noise level σ̃_max (Karras et al. 2022, Table 1)
SIGMA_MAX = 80.0


def ddim_step(x0, eps, a_s: float, s_s: float):
    """x_s = α_s x̂_0 + σ_s ε̂: the deterministic DDIM step to time s from a prediction (x̂_0, ε̂) made at t
    (Song et al. 2021, "DDIM", Eq. 12 with σ_t(η) = 0; α_s = √ᾱ_s, σ_s = √(1 − ᾱ_s) for VP). At σ_s = 0 it
    returns x̂_0. The first-order step of every solver here is this function."""
    return a_s * x0 + s_s * eps


def ddim_step_from_eps(x, eps, a_t: float, s_t: float, a_s: float, s_s: float):
    """:func:`ddim_step` with x̂_0 = (x_t − σ_t ε̂)/α_t implied by ε̂ (DDPM Eq. 15): DPM-Solver-1 (Lu et al.
    2022a, Eq. 3.7) and PNDM's transfer φ(x_t, ε', t, s) (Liu et al. 2022, Eq. 11)."""
    return ddim_step((x - s_t * eps) / a_t, eps, a_s, s_s)


def ddim_step_from_x0(x, x0, a_t: float, s_t: float, a_s: float, s_s: float):
    """:func:`ddim_step` with ε̂ = (x_t − α_t x̂_0)/σ_t implied by x̂_0: DPM-Solver++1 (Lu et al. 2022b), whose
    step depends on the data prediction alone."""
    return ddim_step(x0, (x - a_t * x0) / s_t, a_s, s_s)


def euler_update(x_tilde, eps, sigma_from: float, sigma_to: float):
    """One Euler step of dx̃/dσ̃ = ε̂ (EDM Algorithm 1, the Euler step): x̃ + (σ̃_to − σ̃_from) ε̂."""
    return ddim_step(x_tilde - sigma_from * eps, eps, 1.0, sigma_to)


def as_time(t):
    """A visited time as the schedule and the denoiser receive it: integer timesteps stay integers (an
    exact table lookup); anything else becomes a float64 scalar tensor, so that the sampler's α, σ and
    the denoiser's agree to float64 precision."""
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    return torch.as_tensor(t, dtype=torch.float64).reshape(())


def alpha_sigma(schedule, t) -> tuple[float, float]:
    """(α_t, σ_t) as Python floats (float64)."""
    return float(schedule.alpha(t)), float(schedule.sigma(t))


def half_lambda(a: float, s: float) -> float:
    """λ = log(α/σ), the half log-SNR of the DPM-Solver papers (σ > 0)."""
    return math.log(a) - math.log(s)


def time_at(schedule, lam: float) -> torch.Tensor:
    """The time with half log-SNR ``lam`` (a float64 scalar tensor), via ``schedule.t_from_lambda``."""
    return schedule.t_from_lambda(torch.tensor(2.0 * lam, dtype=torch.float64)).reshape(())


def exp_integrals(h: float, n: int) -> list[float]:
    """I_k(h) = ∫_0^h e^{−(h−τ)} τ^k / k! dτ for k = 0..n: the weights of the Taylor terms of the
    data-prediction integral, σ_s ∫ e^{λ} x̂_0 dλ = α_s Σ_k I_k(h) x̂_0^{(k)}(λ_t) (the Taylor expansion
    of DPM-Solver++, integrated term by term; derived here). I_0 = 1 − e^{−h} and
    I_k = h^k/k! − I_{k−1}; for h < 1 the series I_k = Σ_j (−1)^j h^{k+1+j} / (k+1+j)! avoids the
    cancellation of that recursion."""
    if h < 1.0:
        out = []
        for k in range(n + 1):
            total, term, j = 0.0, h ** (k + 1) / math.factorial(k + 1), 0
            while abs(term) > 1e-18 * max(abs(total), 1e-300) and j < 60:
                total += term
                j += 1
                term = -term * h / (k + 1 + j)
            out.append(total)
        return out
    out = [-math.expm1(-h)]
    for k in range(1, n + 1):
        out.append(h**k / math.factorial(k) - out[-1])
    return out


def check_order(order, allowed=(1, 2, 3), name: str = "order") -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order not in allowed:
        raise DifflabError(f"{name} must be one of {', '.join(map(str, allowed))}, got {order!r}.")
    return order


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise DifflabError(f"{name} must be True or False, got {value!r}.")
    return value


def multistep_order(i: int, n: int, order: int, s, lower_order_final: bool) -> int:
    """The order of multistep step i of n: at most i + 1 (the history there is), 1 for the step to the
    data (t = 0), and with ``lower_order_final`` and fewer than 15 steps at most n − i, so that the last
    steps before the data come down in order (the DPM-Solver++ authors' practice for few-step sampling)."""
    k = min(order, i + 1)
    if lower_order_final and n < LOWER_ORDER_FINAL_BELOW:
        k = min(k, n - i)
    return 1 if s == 0 else max(k, 1)


def sde_terms(schedule, t: float) -> tuple[float, float, float]:
    """(f(t), g²(t), σ_t) of the forward SDE at time t, floats. For continuous schedules the central
    difference of :func:`~difflab.sde.sde_coefficients` is kept inside (0, 2t) so that it never reaches
    t = 0, where σ_0 = 0 by convention (for VE σ jumps there from σ_min)."""
    t = float(t)
    dt = 1e-4 if getattr(schedule, "discrete", False) else min(1e-4, 0.5 * t)
    f, g2 = sde_coefficients(schedule, t, dt=dt)
    return float(f), float(g2), float(schedule.sigma(torch.tensor(t, dtype=torch.float64)))


def euler_above(denoiser, x, i: int, t, s, sigma_max: float, callback=None):
    """EDM's bounded start (Karras et al. 2022, Table 1: σ_max = 80) for step ``i``, t → s, of a method that mixes
    slopes from several noise levels (Heun, PLMS): the part of the step above σ̃ = ``sigma_max`` is one Euler (= DDIM)
    step, exact there because x̂_0 hardly depends on the noise level. Returns (x, t, pred, done): unchanged with
    pred = None when σ̃_t <= ``sigma_max``; else x at σ̃ = ``sigma_max`` and its (fractional) time, or x at s with
    done = True when s itself lies above ``sigma_max`` or is the data (the step then reported to
    ``callback(i, t, x_t, pred)`` here); pred is the denoiser's answer at t."""
    schedule = denoiser.schedule
    tt, ss = as_time(t), as_time(s)
    a_t, s_t = alpha_sigma(schedule, tt)
    if s_t / a_t <= sigma_max:
        return x, tt, None, False
    pred = denoiser(x, tt)
    a_s, s_s = alpha_sigma(schedule, ss)
    if s_s / a_s >= sigma_max or s_s == 0:
        if callback is not None:
            callback(i, t, x, pred)
        return a_s * euler_update(x / a_t, pred.eps, s_t / a_t, s_s / a_s), ss, pred, True
    t_b = time_at(schedule, -math.log(sigma_max))  # λ/2 = −log σ̃
    a_b, s_b = alpha_sigma(schedule, t_b)
    return a_b * euler_update(x / a_t, pred.eps, s_t / a_t, s_b / a_b), t_b, pred, False


