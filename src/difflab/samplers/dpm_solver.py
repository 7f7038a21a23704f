"""DPM-Solver and DPM-Solver++ (Lu et al. 2022): exponential integrators of the probability-flow ODE in λ.

Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around
10 Steps" (NeurIPS); Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models".

Notation, as in the papers: a time t has α_t, σ_t from the schedule and the *half* log-SNR
λ_t = log(α_t/σ_t) (difflab's ``schedule.lambda_`` is log(α²/σ²) = 2λ_t). A step t → s has
h = λ_s − λ_t > 0. The exact solution of the probability-flow ODE is, with the noise prediction
(DPM-Solver, Eq. 3.4), x_s = (α_s/α_t) x_t − α_s ∫_{λ_t}^{λ_s} e^{−λ} ε̂ dλ, and with the data
prediction (its counterpart in DPM-Solver++), x_s = (σ_s/σ_t) x_t + σ_s ∫_{λ_t}^{λ_s} e^{λ} x̂_0 dλ;
the solvers differ only in how they approximate the integral. Only α_t, σ_t and λ_t enter, so
they work unchanged for discrete VP, continuous VP, sub-VP and VE (α = 1) schedules.

The last step goes to t = 0, where σ = 0 and λ = +∞: every solver here takes it as a first-order
step, whose limit is the model's x̂_0 (no division by σ_s = 0 and no intermediate time beyond
λ = +∞ is ever formed). This is also the lower order at the final step that the DPM-Solver++
authors use for stability with few steps (their ``lower_order_final``).

Equation numbers below refer to the arXiv versions of the papers; where a formula is derived here
rather than printed in the paper (DPM-Solver++(3M), the integrals I_k) the docstring says so.
"""

from __future__ import annotations

import math

import torch

from ..random import randn
from . import register, step_pairs
from ._kernels import (LOWER_ORDER_FINAL_BELOW, alpha_sigma, as_time, check_flag, check_order,  # noqa: F401
                       ddim_step_from_eps, ddim_step_from_x0, exp_integrals, half_lambda, multistep_order, time_at)



# --------------------------------------------------------------------------------------------------
# DPM-Solver (noise prediction, singlestep): Lu et al. 2022a
# --------------------------------------------------------------------------------------------------

def dpm_solver_1_update(x, eps_t, a_t: float, s_t: float, a_s: float, s_s: float):
    """DPM-Solver-1 (Lu et al. 2022a, Eq. 3.7): x_s = (α_s/α_t) x_t − σ_s (e^h − 1) ε̂(x_t, t), which is
    deterministic DDIM (their Sec. 4.1). σ_s e^h = α_s σ_t/α_t is used so the step to σ_s = 0 is the
    limit x̂_0 = (x_t − σ_t ε̂)/α_t."""
    return ddim_step_from_eps(x, eps_t, a_t, s_t, a_s, s_s)


def dpm_solver_2_update(denoiser, x, eps_t, t_coefs, s_coefs, r1: float = 0.5):
    """DPM-Solver-2 (Lu et al. 2022a, Algorithm 1, r_1 = ½): one intermediate time u with
    λ_u = λ_t + r_1 h,
      u = (α_u/α_t) x_t − σ_u (e^{r_1 h} − 1) ε̂_t,
      x_s = (α_s/α_t) x_t − σ_s (e^h − 1) ε̂_t − σ_s/(2 r_1) (e^h − 1) (ε̂(u, t_u) − ε̂_t).
    Two network evaluations (ε̂_t is given)."""
    schedule = denoiser.schedule
    (a_t, s_t, lam_t), (a_s, s_s, lam_s) = t_coefs, s_coefs
    h = lam_s - lam_t
    t_u = time_at(schedule, lam_t + r1 * h)
    a_u, s_u = alpha_sigma(schedule, t_u)
    u = (a_u / a_t) * x - s_u * math.expm1(r1 * h) * eps_t
    eps_u = denoiser(u, t_u).eps
    return (a_s / a_t) * x - s_s * math.expm1(h) * eps_t - s_s / (2 * r1) * math.expm1(h) * (eps_u - eps_t)


def dpm_solver_3_update(denoiser, x, eps_t, t_coefs, s_coefs, r1: float = 1 / 3, r2: float = 2 / 3):
    """DPM-Solver-3 (Lu et al. 2022a, Algorithm 2, r_1 = ⅓, r_2 = ⅔): intermediate times λ_t + r_i h,
      u_1 = (α_1/α_t) x_t − σ_1 (e^{r_1 h} − 1) ε̂_t,                     D_1 = ε̂(u_1) − ε̂_t,
      u_2 = (α_2/α_t) x_t − σ_2 (e^{r_2 h} − 1) ε̂_t − σ_2 r_2/r_1 ((e^{r_2 h} − 1)/(r_2 h) − 1) D_1,
      D_2 = ε̂(u_2) − ε̂_t,
      x_s = (α_s/α_t) x_t − σ_s (e^h − 1) ε̂_t − σ_s/r_2 ((e^h − 1)/h − 1) D_2.
    Three network evaluations (ε̂_t is given)."""
    schedule = denoiser.schedule
    (a_t, s_t, lam_t), (a_s, s_s, lam_s) = t_coefs, s_coefs
    h = lam_s - lam_t
    t_1, t_2 = time_at(schedule, lam_t + r1 * h), time_at(schedule, lam_t + r2 * h)
    (a_1, s_1), (a_2, s_2) = alpha_sigma(schedule, t_1), alpha_sigma(schedule, t_2)
    u_1 = (a_1 / a_t) * x - s_1 * math.expm1(r1 * h) * eps_t
    d_1 = denoiser(u_1, t_1).eps - eps_t
    phi_2 = math.expm1(r2 * h) / (r2 * h) - 1
    u_2 = (a_2 / a_t) * x - s_2 * math.expm1(r2 * h) * eps_t - s_2 * (r2 / r1) * phi_2 * d_1
    d_2 = denoiser(u_2, t_2).eps - eps_t
    phi = math.expm1(h) / h - 1
    return (a_s / a_t) * x - s_s * math.expm1(h) * eps_t - (s_s / r2) * phi * d_2


@register("dpm_solver", order=3, stochastic=False, nfe_per_step=3, min_steps=2)
def dpm_solver(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
               progress: bool = False, order: int = 3) -> torch.Tensor:
    """DPM-Solver-k, singlestep, noise prediction, in the log-SNR (Lu et al. 2022a, Algorithms 1–2).

    A *step* is one interval t → s of the discretization; DPM-Solver-``order`` spends ``order``
    network evaluations on it, placing its intermediate times in λ between t and s (found with
    ``schedule.t_from_lambda``). The last step, to the data, is first order (1 NFE), so S visited
    times cost order·(S − 1) + 1 NFE. ``order = 1`` is DDIM with η = 0 (Lu et al. 2022a, Sec. 4.1).
    The registered metadata (order 3, 3 NFE per step) describe the default.
    The paper spaces the steps evenly in λ: ``discretization="logsnr"``. Like any singlestep high-order
    method it needs steps that are not too long in λ; for two or three steps over the whole range the
    multistep solvers below, with their lower-order final steps, are the safer choice.
    """
    order = check_order(order)
    schedule = denoiser.schedule
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "dpm_solver"):
        tt, ss = as_time(t), as_time(s)
        pred = denoiser(x, tt)
        a_t, s_t = alpha_sigma(schedule, tt)
        a_s, s_s = alpha_sigma(schedule, ss)
        if order == 1 or s == 0:
            x_next = dpm_solver_1_update(x, pred.eps, a_t, s_t, a_s, s_s)
        else:
            t_coefs, s_coefs = (a_t, s_t, half_lambda(a_t, s_t)), (a_s, s_s, half_lambda(a_s, s_s))
            update = dpm_solver_2_update if order == 2 else dpm_solver_3_update
            x_next = update(denoiser, x, pred.eps, t_coefs, s_coefs)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x


# --------------------------------------------------------------------------------------------------
# DPM-Solver++ (data prediction, multistep): Lu et al. 2022b
# --------------------------------------------------------------------------------------------------

def dpmpp_1_update(x, x0_t, a_t: float, s_t: float, a_s: float, s_s: float):
    """DPM-Solver++1 (Lu et al. 2022b, the first-order data-prediction solver):
    x_s = (σ_s/σ_t) x_t + α_s (1 − e^{−h}) x̂_0(x_t, t), deterministic DDIM in data-prediction form. e^{−h} = σ_s α_t / (α_s σ_t), so the step to σ_s = 0
    returns x̂_0."""
    return ddim_step_from_x0(x, x0_t, a_t, s_t, a_s, s_s)


def dpmpp_2m_update(x, x0_t, x0_prev, t_coefs, s_coefs, lam_prev: float):
    """DPM-Solver++(2M) step (Lu et al. 2022b, Algorithm 2): with h = λ_s − λ_t, r = (λ_t − λ_prev)/h,
      D = (1 + 1/(2r)) x̂_0(t) − 1/(2r) x̂_0(prev),   x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D."""
    (a_t, s_t, lam_t), (a_s, s_s, lam_s) = t_coefs, s_coefs
    h = lam_s - lam_t
    r = (lam_t - lam_prev) / h
    d = (1 + 1 / (2 * r)) * x0_t - (1 / (2 * r)) * x0_prev
    return (s_s / s_t) * x - a_s * math.expm1(-h) * d


def dpmpp_3m_update(x, x0_t, x0_p1, x0_p2, t_coefs, s_coefs, lam_p1: float, lam_p2: float):
    """DPM-Solver++(3M) step, the third-order member of the multistep family (Lu et al. 2022b; derived
    here from their Taylor expansion kept to the second derivative): x̂_0 along the trajectory is
    expanded around λ_t to second order, its derivatives estimated from the quadratic through the last
    three points (λ_t, λ_{p1}, λ_{p2}) by divided differences,
      x_s = (σ_s/σ_t) x_t + α_s [I_0(h) x̂_0 + I_1(h) x̂_0′ + I_2(h) x̂_0″]   (see :func:`exp_integrals`),
    local error O(h⁴)."""
    (a_t, s_t, lam_t), (a_s, s_s, lam_s) = t_coefs, s_coefs
    h, h1, h2 = lam_s - lam_t, lam_t - lam_p1, lam_p1 - lam_p2
    d1_0 = (x0_t - x0_p1) / h1
    d1_1 = (x0_p1 - x0_p2) / h2
    curv = (d1_0 - d1_1) / (h1 + h2)        # the quadratic's leading coefficient: x̂_0″ / 2
    deriv1, deriv2 = d1_0 + h1 * curv, 2 * curv
    i0, i1, i2 = exp_integrals(h, 2)
    return (s_s / s_t) * x + a_s * (i0 * x0_t + i1 * deriv1 + i2 * deriv2)


def _dpmpp_multistep(denoiser, x_T, timesteps, order, lower_order_final, callback, progress, name):
    """The multistep loop of DPM-Solver++ (Lu et al. 2022b, Algorithm 2 and its third-order analogue):
    one network evaluation per step, the history of (λ, x̂_0) carried between steps, the first steps
    warming up from first order."""
    schedule = denoiser.schedule
    n = len(timesteps)
    history: list[tuple[float, torch.Tensor]] = []   # (λ, x̂_0) of earlier steps, newest last
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, name):
        tt, ss = as_time(t), as_time(s)
        pred = denoiser(x, tt)
        a_t, s_t = alpha_sigma(schedule, tt)
        a_s, s_s = alpha_sigma(schedule, ss)
        lam_t = half_lambda(a_t, s_t)
        k = multistep_order(i, n, order, s, lower_order_final)
        if k == 1:
            x_next = dpmpp_1_update(x, pred.x0, a_t, s_t, a_s, s_s)
        else:
            t_coefs, s_coefs = (a_t, s_t, lam_t), (a_s, s_s, half_lambda(a_s, s_s))
            if k == 2:
                x_next = dpmpp_2m_update(x, pred.x0, history[-1][1], t_coefs, s_coefs, history[-1][0])
            else:
                (lam_p2, x0_p2), (lam_p1, x0_p1) = history[-2], history[-1]
                x_next = dpmpp_3m_update(x, pred.x0, x0_p1, x0_p2, t_coefs, s_coefs, lam_p1, lam_p2)
        history = (history + [(lam_t, pred.x0)])[-2:]
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x


@register("dpmpp_2m", order=2, stochastic=False, nfe_per_step=1, min_steps=2)
def dpmpp_2m(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
             progress: bool = False, lower_order_final: bool = True) -> torch.Tensor:
    """DPM-Solver++(2M): multistep second order, data prediction (Lu et al. 2022b, Algorithm 2).

    One NFE per step: the first step is DPM-Solver++1 (no history yet), the step to the data is first
    order (it returns x̂_0), and with ``lower_order_final`` and fewer than 15 steps the order ramps
    down at the end as well. The paper spaces the steps evenly in λ (``discretization="logsnr"``).
    """
    check_flag(lower_order_final, "lower_order_final")
    return _dpmpp_multistep(denoiser, x_T, timesteps, 2, lower_order_final, callback, progress, "dpmpp_2m")


@register("dpmpp_3m", order=3, stochastic=False, nfe_per_step=1, min_steps=2)
def dpmpp_3m(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
             progress: bool = False, lower_order_final: bool = True) -> torch.Tensor:
    """DPM-Solver++(3M): multistep third order, data prediction (Lu et al. 2022b's multistep family; the
    update is :func:`dpmpp_3m_update`).

    One NFE per step; the first two steps warm up with orders 1 and 2 (DPM-Solver++1, Algorithm 2),
    the step to the data is first order, and with ``lower_order_final`` and fewer than 15 steps the
    order comes down to 2 and 1 over the last steps.
    """
    check_flag(lower_order_final, "lower_order_final")
    return _dpmpp_multistep(denoiser, x_T, timesteps, 3, lower_order_final, callback, progress, "dpmpp_3m")


# --------------------------------------------------------------------------------------------------
# SDE-DPM-Solver++(2M): the stochastic counterpart (released by the DPM-Solver++ authors; derived here)
# --------------------------------------------------------------------------------------------------

def dpmpp_sde_update(x, x0, noise, a_t: float, s_t: float, a_s: float, s_s: float):
    """One step of the reverse diffusion SDE in data-prediction form with x̂_0 (or the multistep
    combination D) held fixed over the step (SDE-DPM-Solver++, Lu et al. 2022b). By variation of
    constants the reverse SDE in λ has x_s = (σ_s/σ_t) e^{−h} x_t + 2α_s ∫_{λ_t}^{λ_s} e^{−2(λ_s−λ)} x̂_0 dλ
    plus Gaussian noise of variance σ_s² (1 − e^{−2h}) (derived here); x̂_0 ≈ D constant gives
      x_s = (σ_s/σ_t) e^{−h} x_t + α_s (1 − e^{−2h}) D + σ_s √(1 − e^{−2h}) z.
    With D = x̂_0 this is the DDPM posterior step; at σ_s = 0 it returns D."""
    decay = (s_s * a_t) / (a_s * s_t)  # e^{−h}
    x_next = (s_s / s_t) * decay * x + a_s * (1.0 - decay**2) * x0
    if s_s > 0:
        x_next = x_next + s_s * math.sqrt(max(1.0 - decay**2, 0.0)) * noise
    return x_next


@register("dpmpp_2m_sde", order=2, stochastic=True, nfe_per_step=1, min_steps=2)
def dpmpp_2m_sde(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None,
                 progress: bool = False, lower_order_final: bool = True) -> torch.Tensor:
    """SDE-DPM-Solver++(2M): multistep second-order solver of the reverse diffusion SDE with the data
    prediction (the SDE variant of Lu et al. 2022b's Algorithm 2, as its authors released it): the same
    combination
    D = (1 + 1/(2r)) x̂_0(t) − 1/(2r) x̂_0(prev) as DPM-Solver++(2M), put into the exact SDE step of
    :func:`dpmpp_sde_update`, with fresh noise each step.

    One NFE per step; first step and the step to the data first order (no noise on the last step).
    """
    check_flag(lower_order_final, "lower_order_final")
    schedule = denoiser.schedule
    n = len(timesteps)
    prev: tuple[float, torch.Tensor] | None = None
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "dpmpp_2m_sde"):
        tt, ss = as_time(t), as_time(s)
        pred = denoiser(x, tt)
        a_t, s_t = alpha_sigma(schedule, tt)
        a_s, s_s = alpha_sigma(schedule, ss)
        lam_t = half_lambda(a_t, s_t)
        d = pred.x0
        if multistep_order(i, n, 2, s, lower_order_final) == 2:
            h = half_lambda(a_s, s_s) - lam_t
            r = (lam_t - prev[0]) / h
            d = (1 + 1 / (2 * r)) * pred.x0 - (1 / (2 * r)) * prev[1]
        noise = randn(x.shape, generator, x.device, x.dtype) if s_s > 0 else None
        x_next = dpmpp_sde_update(x, d, noise, a_t, s_t, a_s, s_s)
        prev = (lam_t, pred.x0)
        if callback is not None:
            callback(i, t, x, pred)
        x = x_next
    return x
