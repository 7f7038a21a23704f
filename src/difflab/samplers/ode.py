"""The probability-flow ODE (Song et al. 2021, Eq. 13) solved by adaptive Dormand–Prince 5(4).

Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential Equations", Sec. 4.3;
the solver is the embedded Runge–Kutta pair of Dormand & Prince 1980 ("A family of embedded Runge-Kutta
formulae") with the step-size control of Hairer, Nørsett & Wanner, "Solving Ordinary Differential
Equations I", Sec. II.4–II.5.

The ODE dx/dt = f(t) x − ½ g²(t) ∇log p_t(x) has the same marginals p_t as the forward SDE
dx = f(t) x dt + g(t) dw; with the score −ε̂/σ_t it reads dx/dt = f(t) x + ½ g²(t) ε̂/σ_t. Here f and g²
come from :func:`difflab.sde.sde_coefficients`, so one drift serves the discrete VP schedules (t in
timesteps), VP, sub-VP and VE. The solver is shared with :mod:`difflab.likelihood`, which integrates
the same ODE forward in time together with its divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..denoiser import Prediction
from ..errors import DifflabError
from . import register
from ._kernels import sde_terms

Tensor = torch.Tensor

# Dormand–Prince 5(4) tableau (Dormand & Prince 1980, Table 2; Hairer et al., Table II.5.2).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = _A[6] + (0.0,)  # the 5th-order weights are the last stage's row (first same as last, FSAL)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))  # local error estimate y5 − y4 = h Σ e_j k_j

_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


@dataclass
class ODEPrediction(Prediction):
    """The prediction handed to an ``ode`` callback, with ``nfe``: denoiser evaluations so far."""

    nfe: int = 0


def check_tolerances(rtol, atol) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DifflabError(f"ODE {name} must be a number > 0, got {value!r}.")


def _axpy(y: tuple[Tensor, ...], h: float, coefs, ks: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """y + h Σ_j coefs[j] k_j, component by component."""
    out = []
    for c, yc in enumerate(y):
        acc = yc
        for a, k in zip(coefs, ks):
            if a != 0.0:
                acc = acc + (h * a) * k[c]
        out.append(acc)
    return tuple(out)


def _error_ratio(err, y, y_new, rtol: float, atol: float) -> float:
    """max over components of the RMS of err / (atol + rtol max(|y|, |y_new|)) (Hairer et al., Eq. II.4.11)."""
    worst = 0.0
    for e, a, b in zip(err, y, y_new):
        scale = atol + rtol * torch.maximum(a.abs(), b.abs())
        worst = max(worst, float((e / scale).pow(2).mean().sqrt()))
    return worst


def dormand_prince(func: Callable, t0: float, t1: float, y0, rtol: float = 1e-5, atol: float = 1e-5,
                   h0: float | None = None, on_step: Callable | None = None, max_steps: int = 100_000):
    """Integrate dy/dt = func(t, y) from t0 to t1 (either direction) with the embedded Dormand–Prince
    5(4) pair, advancing with the 5th-order solution (local extrapolation) and FSAL, so an accepted step
    costs 6 evaluations. A step is accepted when the RMS of the error estimate scaled by
    atol + rtol·|y| is ≤ 1; the next step is h·clamp(0.9·err^(−1/5), 0.2, 10) (no growth after a
    rejection) (Hairer et al., Sec. II.4).

    ``y0`` is a tensor or a tuple of tensors (then ``func`` returns a tuple too; the error is the worst
    component's). ``h0`` is the first step to try (default 1% of the interval). ``on_step(i, t, y,
    t_new, y_new)`` is called after each accepted step. Returns (y(t1), number of func evaluations).
    """
    check_tolerances(rtol, atol)
    single = isinstance(y0, Tensor)
    y = (y0,) if single else tuple(y0)

    def f(t, state):
        out = func(t, state[0] if single else state)
        return (out,) if single else tuple(out)

    t0, t1 = float(t0), float(t1)
    span = abs(t1 - t0)
    if span == 0.0:
        return y0, 0
    direction = 1.0 if t1 > t0 else -1.0
    h = span / 100 if h0 is None else min(abs(float(h0)), span)
    if not h > 0:
        raise DifflabError(f"the first ODE step must be > 0, got {h0!r}.")
    t, k1, nfe, accepted = t0, f(t0, y), 1, 0
    for _ in range(max_steps):
        remaining = abs(t1 - t)
        if remaining <= 1e-12 * span:
            return (y[0] if single else y), nfe
        last = h >= remaining * (1 - 1e-10)
        t_new = t1 if last else t + direction * h
        dt = t_new - t
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(t + _C[i] * dt, _axpy(y, dt, _A[i], ks)))
        nfe += 6
        y_new = _axpy(y, dt, _B5, ks)  # equals stage 7's input, where ks[6] was evaluated
        err = tuple(dt * sum(e * k[c] for e, k in zip(_E, ks) if e != 0.0) for c in range(len(y)))
        ratio = _error_ratio(err, y, y_new, rtol, atol)
        if ratio <= 1.0:
            if on_step is not None:
                on_step(accepted, t, y[0] if single else y, t_new, y_new[0] if single else y_new)
            accepted += 1
            t, y, k1 = t_new, y_new, ks[6]
            factor = _MAX_FACTOR if ratio == 0.0 else min(_MAX_FACTOR, max(_MIN_FACTOR, _SAFETY * ratio ** -0.2))
        else:  # rejected (NaN counts as rejected): shrink and retry from the same point
            factor = _MIN_FACTOR if ratio != ratio else min(1.0, max(_MIN_FACTOR, _SAFETY * ratio ** -0.2))
        h = abs(dt) * factor
        if h < 1e-14 * span:
            raise DifflabError(f"the ODE step size fell below {1e-14 * span:.3g} at t = {t:.6g}; "
                               "the drift may be non-finite or the tolerances too tight.")
    raise DifflabError(f"the ODE solver did not reach t = {t1:.6g} in {max_steps} steps; loosen rtol/atol.")


def probability_flow_drift(denoiser, x: Tensor, t: float) -> tuple[Tensor, Prediction]:
    """dx/dt = f(t) x − ½ g²(t) ∇log p_t(x) = f(t) x + ½ g²(t) ε̂/σ_t (Song et al. 2021, Eq. 13, with the
    score −ε̂/σ_t), and the prediction it used. t is a float (a timestep for discrete schedules); the
    denoiser receives it as a float64 0-d tensor so that no precision is lost."""
    f, g2, sigma = sde_terms(denoiser.schedule, t)
    pred = denoiser(x, torch.tensor(float(t), dtype=torch.float64))
    return f * x + (0.5 * g2 / sigma) * pred.eps, pred


def ode_solve(denoiser, x: Tensor, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
              h0: float | None = None, callback: Callable | None = None) -> tuple[Tensor, int]:
    """Integrate the probability-flow ODE (Song et al. 2021, Eq. 13) from time t0 to t1 (> 0) with
    :func:`dormand_prince`; returns (x(t1), denoiser evaluations). ``callback(i, t, x_t, prediction)``
    is called for each accepted step i with its starting point and the prediction there, an
    :class:`ODEPrediction` whose ``nfe`` counts the evaluations so far."""
    if not float(t1) > 0 or not float(t0) > 0:
        raise DifflabError(f"the probability-flow ODE is defined for t > 0 only, got t0 = {t0}, t1 = {t1}.")
    state = {"nfe": 0, "last": None, "start": None}

    def drift(t, y):
        v, pred = probability_flow_drift(denoiser, y, t)
        state["nfe"] += 1
        state["last"] = pred
        if state["start"] is None:
            state["start"] = pred
        return v

    def on_step(i, t, y, t_new, y_new):
        if callback is not None:
            p = state["start"]
            callback(i, t, y, ODEPrediction(eps=p.eps, x0=p.x0, nfe=state["nfe"]))
        state["start"] = state["last"]  # FSAL: the last stage was evaluated at (t_new, y_new)

    return dormand_prince(drift, t0, t1, x, rtol, atol, h0, on_step)


@register("ode", order=5, stochastic=False, nfe_per_step=6, min_steps=1)
def ode(denoiser, x_T: Tensor, timesteps, generator=None, callback=None, progress: bool = False,
        rtol: float = 1e-5, atol: float = 1e-5) -> Tensor:
    """Probability-flow ODE (Song et al. 2021, Eq. 13) by adaptive Dormand–Prince 5(4), then x̂_0.

    Integrates from the first visited time (t_max) down to the schedule's t_min with local error
    tolerances ``rtol``/``atol``, then returns the denoised x̂_0 at t_min (the last step to t = 0, as the
    authors' code does). The number of steps only sets the first step, (t_max − t_min)/steps; the solver
    chooses the rest, costing 6 evaluations per accepted step plus one at the start and one for x̂_0
    (the registry's ``nfe_per_step`` counts accepted solver steps). ``callback(i, t, x_t, prediction)`` is
    called per accepted step and once more for the final x̂_0; its prediction is an
    :class:`ODEPrediction` whose ``nfe`` is the number of denoiser evaluations so far (total in the last
    call). :func:`ode_solve` returns the count directly.
    """
    check_tolerances(rtol, atol)
    schedule = denoiser.schedule
    ts = [float(t) for t in timesteps]
    t0, t1 = ts[0], float(schedule.t_min)
    steps = {"n": 0}

    def count(i, t, x, pred):
        steps["n"] = i + 1
        if callback is not None:
            callback(i, t, x, pred)

    x, nfe = ode_solve(denoiser, x_T, t0, t1, rtol, atol, h0=max(t0 - t1, 0.0) / len(ts) or None, callback=count)
    pred = denoiser(x, torch.tensor(t1, dtype=torch.float64))
    if callback is not None:
        callback(steps["n"], t1, x, ODEPrediction(eps=pred.eps, x0=pred.x0, nfe=nfe + 1))
    return pred.x0


__all__ = ["dormand_prince", "ode_solve", "probability_flow_drift", "sde_terms", "ODEPrediction", "ode"]
