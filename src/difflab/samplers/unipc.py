"""UniPC, the unified predictor-corrector multistep solver (Zhao et al. 2023), data prediction.

Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models" (NeurIPS).

Notation as in :mod:`difflab.samplers.dpm_solver`: λ = log(α/σ), a step t → s has h = λ_s − λ_t.
Both halves of UniPC share one update,

    x_s = (σ_s/σ_t) x_t + α_s [ (1 − e^{−h}) x̂_0(t) + B(h) Σ_m a_m D_m / r_m ],

with D_m = x̂_0(λ_m) − x̂_0(t) the differences to other evaluated points, r_m = (λ_m − λ_t)/h, and a_m
fixed by the order conditions Σ_m a_m r_m^{k−1} = k! I_k(h) / (h^k B(h)), k = 1..p, where I_k are the
Taylor weights of the exact data-prediction integral (:func:`~difflab.samplers.dpm_solver.exp_integrals`;
the paper's φ-functions). When there is a single difference the paper takes a_1 = ½, which meets the
condition to O(h) for any B(h) = h + O(h²); with two or more the system is solved exactly (and B(h)
cancels). B(h) is the paper's choice: ``variant="bh1"`` B(h) = h, ``"bh2"`` (default) B(h) = 1 − e^{−h}
(the data-prediction form of the paper's e^h − 1).

* UniP-p (the predictor) uses the p − 1 previous points (r_m < 0): order p. With p = 2 and "bh2" it is
  exactly DPM-Solver++(2M).
* UniC-p (the corrector) re-solves the step just taken with the same points plus the new one, x̂_0 at
  the predicted x_s (r = 1): order p + 1. That evaluation is the one the next step needs anyway, so the
  corrector costs no extra NFE; the corrected x_s continues the trajectory while the model value
  stays the one at the predicted point (the paper's reuse).
"""

from __future__ import annotations

import math

import torch

from ..errors import DifflabError
from . import register, step_pairs
from ._kernels import (alpha_sigma, as_time, check_flag, check_order, ddim_step_from_x0, exp_integrals, half_lambda,
                       multistep_order)

VARIANTS = ("bh1", "bh2")


def b_of_h(h: float, variant: str) -> float:
    """B(h) of UniPC (Zhao et al. 2023, Sec. 3: B_1(h) = h, B_2(h) = e^h − 1, here in data-prediction
    form 1 − e^{−h}); any B(h) = h + O(h²) keeps the order."""
    return h if variant == "bh1" else -math.expm1(-h)


def unipc_coefficients(rs: list[float], h: float, variant: str) -> list[float]:
    """a = R_p(h)^{−1} g_p(h)/B(h) with R_p's rows (r_1^{k−1}, ..., r_p^{k−1}) and g_k = k! I_k(h)/h^k
    (Zhao et al. 2023, Theorem 3.1's order conditions); a_1 = ½ when p = 1, as the paper does."""
    p = len(rs)
    if p == 1:
        return [0.5]
    ints = exp_integrals(h, p)
    b = b_of_h(h, variant)
    r_matrix = torch.tensor([[r ** (k - 1) for r in rs] for k in range(1, p + 1)], dtype=torch.float64)
    g = torch.tensor([math.factorial(k) * ints[k] / (h**k * b) for k in range(1, p + 1)], dtype=torch.float64)
    return torch.linalg.solve(r_matrix, g).tolist()


def unipc_update(x, x0_t, points, t_coefs, s_coefs, variant: str):
    """The shared UniP/UniC update (Zhao et al. 2023, Sec. 3, data prediction): from x_t with x̂_0(t) and
    the other evaluated points ``points`` = [(λ_m, x̂_0(λ_m))], to s. With no points it is the first-order
    step (DPM-Solver++1 / DDIM), whose limit at σ_s = 0 is x̂_0."""
    (a_t, s_t, lam_t), (a_s, s_s, lam_s) = t_coefs, s_coefs
    x_next = ddim_step_from_x0(x, x0_t, a_t, s_t, a_s, s_s)
    if not points:
        return x_next
    h = lam_s - lam_t
    rs = [(lam_m - lam_t) / h for lam_m, _ in points]
    coefs = unipc_coefficients(rs, h, variant)
    correction = sum(a_m * (x0_m - x0_t) / r_m for a_m, r_m, (_, x0_m) in zip(coefs, rs, points))
    return x_next + a_s * b_of_h(h, variant) * correction


@register("unipc", order=3, stochastic=False, nfe_per_step=1, min_steps=2)
def unipc(denoiser, x_T: torch.Tensor, timesteps, generator=None, callback=None, progress: bool = False,
          order: int = 2, variant: str = "bh2", corrector: bool = True, lower_order_final: bool = True) -> torch.Tensor:
    """UniPC-p: UniP-p predictor with the UniC-p corrector, data prediction, multistep (Zhao et al. 2023).

    ``order`` is the predictor's p (default 2: UniP-2 with UniC-2, order of accuracy 3, the
    registered one). One NFE per step: the model value at each visited time serves the corrector of
    the step into it and the predictor of the step out of it; the step to the data is first order
    (it returns x̂_0 at the last predicted point) and has no corrector after it. The first steps warm
    up from p = 1; with ``lower_order_final`` and fewer than 15 steps the order comes down at the end.
    ``corrector=False`` gives the plain UniP-p. The paper spaces the steps evenly in λ
    (``discretization="logsnr"``).
    """
    order = check_order(order)
    if variant not in VARIANTS:
        raise DifflabError(f"unipc variant must be 'bh1' or 'bh2', got {variant!r}.")
    check_flag(corrector, "corrector")
    check_flag(lower_order_final, "lower_order_final")
    schedule = denoiser.schedule
    n = len(timesteps)
    history: list[tuple[float, torch.Tensor]] = []  # (λ, x̂_0) of earlier visited times, newest last
    last_step = None  # what UniC needs to redo the step just taken
    x_eval = x_T      # the predicted x at the current time, where the model is evaluated
    for i, t, s in step_pairs(timesteps, progress, "unipc"):
        tt, ss = as_time(t), as_time(s)
        pred = denoiser(x_eval, tt)
        a_t, s_t = alpha_sigma(schedule, tt)
        a_s, s_s = alpha_sigma(schedule, ss)
        t_coefs = (a_t, s_t, half_lambda(a_t, s_t))
        x = x_eval
        if corrector and last_step is not None:  # UniC: redo the previous step with the new point (r = 1)
            x_prev, x0_prev, points_prev, coefs_prev = last_step
            x = unipc_update(x_prev, x0_prev, points_prev + [(t_coefs[2], pred.x0)], coefs_prev, t_coefs, variant)
        k = multistep_order(i, n, order, s, lower_order_final)
        points = history[len(history) - (k - 1):] if k > 1 else []
        if s == 0:
            x_eval = ddim_step_from_x0(x, pred.x0, a_t, s_t, a_s, s_s)
        else:
            x_eval = unipc_update(x, pred.x0, points, t_coefs, (a_s, s_s, half_lambda(a_s, s_s)), variant)
        if callback is not None:
            callback(i, t, x, pred)
        last_step = (x, pred.x0, points, t_coefs)
        history = (history + [(t_coefs[2], pred.x0)])[-max(order - 1, 1):]
    return x_eval
