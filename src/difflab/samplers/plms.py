"""PLMS, the pseudo linear multistep sampler of PNDM (Liu et al. 2022), with a pseudo Runge–Kutta start.

Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds" (ICLR): the pseudo
linear multistep method PLMS and its pseudo Runge–Kutta / pseudo improved Euler start.

A pseudo method splits a step t → s into a *gradient part*, an estimate ε' of the noise combined
from network evaluations, and the *transfer part* φ(x_t, ε', t, s) = α_s (x_t − σ_t ε')/α_t + σ_s ε',
the deterministic DDIM step. In the EDM variables x̃ = x/α, σ̃ = σ/α the transfer is the Euler step
x̃_s = x̃_t + (σ̃_s − σ̃_t) ε' of dx̃/dσ̃ = ε̂, so PLMS (Eq. 12, weights (55, −59, 37, −9)/24) is the
four-step Adams–Bashforth method and PRK the classic Runge–Kutta method in σ̃. Their fourth order
holds for steps evenly spaced in σ̃ (the half steps of PRK are taken at the σ̃-midpoint); the paper
spaces steps evenly in the timestep instead, where the fixed weights are a lower-order heuristic.
"""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError
from . import register, step_pairs
from ._kernels import SIGMA_MAX, alpha_sigma, as_time, ddim_step_from_eps, euler_above, time_at

WARMUPS = ("prk", "improved_euler")
# Adams–Bashforth weights on (ε_t, ε_{t+δ}, ε_{t+2δ}, ε_{t+3δ}), newest first; order q uses row q − 1.
ADAMS_BASHFORTH = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def transfer(x, eps, a_t: float, s_t: float, a_s: float, s_s: float):
    """The transfer part φ(x_t, ε', t, s) of PNDM (Liu et al. 2022, Eq. 11): the deterministic DDIM step
    α_s (x_t − σ_t ε')/α_t + σ_s ε' (at σ_s = 0 the x̂_0 that ε' implies)."""
    return ddim_step_from_eps(x, eps, a_t, s_t, a_s, s_s)


def plms_eps(history: list) -> torch.Tensor:
    """The pseudo linear multistep gradient ε' = (55 ε_t − 59 ε_{t+δ} + 37 ε_{t+2δ} − 9 ε_{t+3δ})/24
    (Liu et al. 2022, Eq. 12), or the lower-order Adams–Bashforth combination while fewer than four
    evaluations are known. ``history`` holds ε at the visited times, newest last."""
    weights = ADAMS_BASHFORTH[min(len(history), 4) - 1]
    return sum(w * e for w, e in zip(weights, reversed(history)))


def prk_eps(denoiser, x, eps_t, t_coefs, s_coefs):
    """The pseudo Runge–Kutta gradient (Liu et al. 2022, PRK): with the half step at the σ̃-midpoint u,
      e1 = ε̂_t, x1 = φ(x_t, e1, t, u), e2 = ε̂(x1, u), x2 = φ(x_t, e2, t, u), e3 = ε̂(x2, u),
      x3 = φ(x_t, e3, t, s), e4 = ε̂(x3, s),   ε' = (e1 + 2 e2 + 2 e3 + e4)/6.
    Three network evaluations (ε̂_t is given)."""
    schedule = denoiser.schedule
    (_, a_t, s_t), (ss, a_s, s_s) = t_coefs, s_coefs
    sig_u = 0.5 * (s_t / a_t + s_s / a_s)
    t_u = time_at(schedule, -math.log(sig_u))  # λ/2 = −log σ̃
    a_u, s_u = alpha_sigma(schedule, t_u)
    e2 = denoiser(transfer(x, eps_t, a_t, s_t, a_u, s_u), t_u).eps
    e3 = denoiser(transfer(x, e2, a_t, s_t, a_u, s_u), t_u).eps
    e4 = denoiser(transfer(x, e3, a_t, s_t, a_s, s_s), ss).eps
    return (eps_t + 2 * e2 + 2 * e3 + e4) / 6


def improved_euler_eps(denoiser, x, eps_t, t_coefs, s_coefs):
    """The pseudo improved Euler gradient (Liu et al. 2022): ε' = (ε̂_t + ε̂(φ(x_t, ε̂_t, t, s), s))/2.
    One network evaluation (ε̂_t is given)."""
    (_, a_t, s_t), (ss, a_s, s_s) = t_coefs, s_coefs
    e2 = denoiser(transfer(x, eps_t, a_t, s_t, a_s, s_s), ss).eps
    return 0.5 * (eps_t + e2)


@register("plms", order=4, stochastic=False, nfe_per_step=1, min_steps=2)
def plms(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None, progress: bool = False,
         warmup: str = "prk", sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """PLMS, the pseudo linear multistep method (Liu et al. 2022, Eq. 12): ε' from the last four ε̂ by
    the Adams–Bashforth weights, then the DDIM transfer.

    The four-step formula needs three earlier evaluations, so the run starts with
      * ``warmup="prk"`` (default, the paper's PNDM): the first three steps by pseudo Runge–Kutta,
        4 NFE each; S ≥ 4 visited times cost S + 9 NFE (+ 1 from above ``sigma_max``), and the method keeps
        fourth order;
      * ``warmup="improved_euler"``: the first step by the pseudo improved Euler method (2 NFE), then
        Adams–Bashforth of orders 2 and 3 until four evaluations are known (the cheap start used by the
        latent-diffusion PLMS sampler); S + 1 NFE. Formally third order (the start's local errors are
        O(h³)), though in practice its start errors are small and it behaves like the PRK start.
    The step to the data (t = 0) never evaluates the network there: it is always the multistep
    combination of the evaluations so far. After the warm-up each step costs 1 NFE (the registered
    value). See the module note on step spacing.

    Like EDM's samplers the method starts at σ̃ = ``sigma_max`` = 80 (:func:`~difflab.samplers.edm.euler_above`):
    on the cosine schedule, whose last step has σ̃ ≈ 2·10⁴, a multistep gradient mixed from there is multiplied
    by σ̃_t/α_t in the transfer and the run diverged (mean error 15 at 10 steps on the mixture oracle).
    """
    if warmup not in WARMUPS:
        raise DifflabError(f"plms warmup must be 'prk' or 'improved_euler', got {warmup!r}.")
    if isinstance(sigma_max, bool) or not isinstance(sigma_max, (int, float)) or not sigma_max > 0:
        raise DifflabError(f"plms option sigma_max must be a positive number, got {sigma_max!r}.")
    schedule = denoiser.schedule
    history: list[torch.Tensor] = []  # ε̂ at the visited times, newest last (at most four kept)
    x = x_T
    for i, t, s in step_pairs(timesteps, progress, "plms"):
        x_t, ss = x, as_time(s)
        x, tt, first, done = euler_above(denoiser, x, i, t, s, sigma_max, callback)
        if done:
            continue
        pred = denoiser(x, tt)
        a_t, s_t = alpha_sigma(schedule, tt)
        a_s, s_s = alpha_sigma(schedule, ss)
        warm = len(history)  # multistep evaluations before this one: the warm-up counts them, not the steps
        history = (history + [pred.eps])[-4:]
        t_coefs, s_coefs = (tt, a_t, s_t), (ss, a_s, s_s)
        if s != 0 and warmup == "prk" and warm < 3:
            eps = prk_eps(denoiser, x, pred.eps, t_coefs, s_coefs)
        elif s != 0 and warmup == "improved_euler" and warm == 0:
            eps = improved_euler_eps(denoiser, x, pred.eps, t_coefs, s_coefs)
        else:
            eps = plms_eps(history)
        x_next = transfer(x, eps, a_t, s_t, a_s, s_s)
        if callback is not None:
            callback(i, t, x_t, pred if first is None else first)
        x = x_next
    return x
