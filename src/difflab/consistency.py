"""Consistency models (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models"; Song & Dhariwal 2023, "Improved
Techniques for Training Consistency Models", iCT): a network f(x_t, t) that maps every point of a probability-flow
ODE trajectory to the trajectory's end x_0, so one evaluation draws a sample.

It is trained on pairs of neighbouring noise levels σ_i < σ_{i+1} of a grid: the output at the noisier point is pulled
towards the (stop-gradient) output at the less noisy one. In consistency *training* both points share one noise,
x_{σ_i} = x_0 + σ_i z and x_{σ_{i+1}} = x_0 + σ_{i+1} z (the one-sample estimate of the ODE step); in consistency
*distillation* the less noisy point is one ODE step of a teacher from the noisier one. Noise levels are σ̃ = σ_t/α_t and
points x̃ = x_t/α_t, so the same rules hold on any schedule (on EDM's VE schedule α_t = 1). This module holds the
equations; :class:`difflab.denoiser.ConsistencyPreconditioning` the boundary condition f(x, σ_min) = x, the loss
:func:`difflab.objectives.consistency_training`, the sampler :mod:`difflab.samplers.consistency`.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

#: iCT's constants (Song & Dhariwal 2023, Sec. 3 and Table 1 for CIFAR-10): the curriculum's initial and final number
#: of discretization steps, the log-normal proposal of noise levels, and the pseudo-Huber constant per √dimension
S0, S1 = 10, 1280
P_MEAN, P_STD = -1.1, 2.0
HUBER_C_PER_SQRT_DIM = 0.00054


def discretization_steps(step: int, total_steps: int, s0: int = S0, s1: int = S1) -> int:
    """N(k) = min(s0 · 2^⌊k/K'⌋, s1) + 1 with K' = ⌊K / (log₂⌊s1/s0⌋ + 1)⌋: the number of noise levels at training
    step k of K, doubling from s0 + 1 to s1 + 1 in equal stages (iCT Sec. 3.4, Eq. 8, the exponential curriculum)."""
    stage = max(1, math.floor(total_steps / (math.log2(s1 // s0) + 1)))
    return min(s0 * 2 ** (step // stage), s1) + 1


def level_probabilities(sigmas: Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> Tensor:
    """p(σ_i) ∝ erf((ln σ_{i+1} − P_mean)/(√2 P_std)) − erf((ln σ_i − P_mean)/(√2 P_std)) for the N − 1 pairs of the
    increasing grid ``sigmas``: the log-normal proposal of iCT (Sec. 3.5, Eq. 10), float64."""
    z = (sigmas.double().log() - p_mean) / (math.sqrt(2) * p_std)
    mass = torch.erf(z[1:]) - torch.erf(z[:-1])
    return mass / mass.sum()


def pair_weight(sigma_lo: Tensor, sigma_hi: Tensor) -> Tensor:
    """λ(σ_i) = 1/(σ_{i+1} − σ_i): iCT's loss weighting (Sec. 3.3, Eq. 9), which gives close levels, where the two
    outputs differ little, the weight of far ones."""
    return 1.0 / (sigma_hi - sigma_lo)


def pseudo_huber(a: Tensor, b: Tensor) -> Tensor:
    """d(a, b) = √(‖a − b‖² + c²) − c per example with c = 0.00054 √d (d the dimension of one example): iCT's metric
    (Sec. 3.3), quadratic for small differences and linear for large ones, float32 or wider."""
    dim = a[0].numel()
    c = HUBER_C_PER_SQRT_DIM * math.sqrt(dim)
    sq = (a - b).float().pow(2).flatten(1).sum(1)
    return sq / ((sq + c * c).sqrt() + c)  # = √(‖a − b‖² + c²) − c without the cancellation of tiny differences


def karras_levels(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """σ_i = (σ_min^{1/ρ} + (i − 1)/(N − 1) (σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ for i = 1..N, increasing, float64: EDM's
    noise levels (Karras et al. 2022, Eq. 5), the grid of consistency models (Song et al. 2023, Sec. 5)."""
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    u = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_min ** (1 / rho) + u * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho


#: the largest noise level of the grids (EDM's σ_max, Table 1): a schedule's noisier times keep their own t_max
KARRAS_SIGMA_MAX = 80.0


def level_times(schedule, n: int, rho: float = 7.0, t_hi: float | None = None) -> Tensor:
    """The times of :func:`karras_levels` on ``schedule``, increasing, from t_min to ``t_hi`` (default t_max): σ̃ = σ/α
    from σ̃(t_min) to min(σ̃(t_hi), 80), mapped through the log-SNR λ = −2 ln σ̃, with both ends exactly t_min and
    t_hi (a schedule noisier than σ̃ = 80 at t_hi keeps t_hi as its top level)."""
    t_min = float(schedule.t_min)
    t_hi = float(schedule.t_max) if t_hi is None else float(t_hi)
    lam_hi = float(schedule.lambda_(torch.tensor(t_min, dtype=torch.float64)))
    lam_lo = float(schedule.lambda_(torch.tensor(t_hi, dtype=torch.float64)))
    sigmas = karras_levels(n, math.exp(-lam_hi / 2), min(math.exp(-lam_lo / 2), KARRAS_SIGMA_MAX), rho)
    ts = schedule.t_from_lambda(-2 * torch.log(sigmas)).double()
    ts[0], ts[-1] = t_min, t_hi
    return ts


def scaled_levels(schedule, t: Tensor) -> tuple[Tensor, Tensor]:
    """(α_t, σ̃_t = σ_t/α_t) of times ``t``, float64."""
    t = t.double().cpu()
    return schedule.alpha(t).double(), (schedule.sigma(t) / schedule.alpha(t)).double()


def heun_step(teacher, x: Tensor, t_hi: Tensor, t_lo: Tensor) -> Tensor:
    """One Heun step of the teacher's probability-flow ODE from x at t_hi to t_lo (per-example times (B,)): in the scaled
    variables dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃ (Karras et al. 2022, Eq. 3 and Algorithm 1, lines 5–8), the ODE solver Φ of
    consistency distillation (Song et al. 2023, Algorithm 2). Returns x at t_lo in the schedule's own coordinates."""
    schedule = teacher.schedule
    shape = (-1, *[1] * (x.ndim - 1))
    a_hi, s_hi = (v.to(x.device).reshape(shape) for v in scaled_levels(schedule, t_hi))
    a_lo, s_lo = (v.to(x.device).reshape(shape) for v in scaled_levels(schedule, t_lo))
    xt = x.double() / a_hi
    d_hi = (xt - teacher(x, t_hi).x0.double()) / s_hi
    x_euler = xt + (s_lo - s_hi) * d_hi
    d_lo = (x_euler - teacher((a_lo * x_euler).to(x.dtype), t_lo).x0.double()) / s_lo
    return (a_lo * (xt + (s_lo - s_hi) * (d_hi + d_lo) / 2)).to(x.dtype)
