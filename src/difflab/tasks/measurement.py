"""Conditioning on a linear measurement by replacement: the denoiser wrapper behind inpainting and ILVR.

Given a linear map P (a mask, a low-pass filter) and the measured values P y of an image y, the replacement
method keeps the measured part of every x_t at a draw from the forward process of y and lets the model fill in
the rest: x_{t−1} = (I − P) x'_{t−1} + P y_{t−1}, x'_{t−1} ~ p_θ(x_{t−1} | x_t), y_{t−1} ~ q(y_{t−1} | y)
(Song et al. 2021, "Score-Based Generative Modeling through SDEs", Appx. I.2; Lugmayr et al. 2022, "RePaint",
Eq. 8 with P = m ⊙; Choi et al. 2021, "ILVR", Eq. 4 with P = φ_N, a low-pass filter).

Here the replacement is made on the denoiser's prediction, so every registered sampler runs it unchanged: the
measured part of x̂_0 becomes P y and that of ε̂ a fresh standard normal draw (:func:`replace_prediction`).
The DDIM step x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z then puts α_s P y + √(σ_s² − c²) P z' + c P z into the
measured part, a fresh draw of P y_s with y_s ~ q(y_s | y), which is the replacement above exactly; the last
step (s = 0, α = 1, σ = 0) returns P y itself. Samplers that read ε̂ as a smooth function of x_t (the ODE
solvers, the predictor-corrector's Langevin steps) get instead ε̂ = (x_t − α_t x̂_0)/σ_t, the noise x_t holds
given x̂_0 (:func:`consistent_prediction`): then −ε̂/σ_t is, on the measured part, the exact score of
q(x_t | y), whose reverse-time dynamics keep that part at q(x_t | y).
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import process
from ..denoiser import Prediction
from ..random import randn

Tensor = torch.Tensor


def replace_x0(x0: Tensor, project: Callable[[Tensor], Tensor], measured: Tensor) -> Tensor:
    """x̂_0 − P x̂_0 + P y: the prediction with its measured part replaced (RePaint Eq. 8 / ILVR Eq. 4 at t = 0)."""
    return x0 - project(x0) + measured


def replace_prediction(pred: Prediction, project, measured: Tensor, noise: Tensor) -> Prediction:
    """(x̂_0, ε̂) with P x̂_0 = P y and P ε̂ = P z for fresh noise z: through any DDIM step the measured part of x_s
    is a fresh draw from q(y_s | y) (Song et al. 2021, Appx. I.2; RePaint Eq. 8)."""
    return Prediction(eps=pred.eps - project(pred.eps) + project(noise), x0=replace_x0(pred.x0, project, measured),
                      v_raw=pred.v_raw)


def consistent_prediction(schedule, x_t: Tensor, t, pred: Prediction, project, measured: Tensor) -> Prediction:
    """(x̂_0, ε̂) with P x̂_0 = P y and ε̂ = (x_t − α_t x̂_0)/σ_t recomputed from it (DDPM Eq. 4 solved for ε), so the
    score −ε̂/σ_t is exact on the measured part: ∇ log q(x_t | y) there."""
    x0 = replace_x0(pred.x0, project, measured)
    times = torch.full((x_t.shape[0],), float(t), dtype=torch.float64) if not torch.is_tensor(t) or t.ndim == 0 else t
    return Prediction(eps=process.x0_to_eps(schedule, x_t, times, x0), x0=x0, v_raw=pred.v_raw)


class Replacement:
    """A denoiser conditioned on the measurement P y = ``measured`` by replacement (see the module docstring).

    ``project``: the linear map P (same shape in and out); ``fresh_noise``: True replaces ε̂'s measured part by
    fresh noise from ``generator`` (for ``ddim`` and ``ddpm``; the latter reads x̂_0 alone), False recomputes ε̂
    from x̂_0 (for every other sampler). ``t_stop``: below this time the prediction is left alone (ILVR's
    conditioning range, Choi et al. 2021, Sec. 4.3); 0 conditions every step.
    """

    def __init__(self, denoiser, project: Callable[[Tensor], Tensor], measured: Tensor, fresh_noise: bool = True,
                 generator=None, t_stop: float = 0.0):
        self.inner, self.schedule = denoiser, denoiser.schedule
        self.project, self.measured = project, measured
        self.fresh_noise, self.generator, self.t_stop = bool(fresh_noise), generator, float(t_stop)

    def __call__(self, x_t: Tensor, t) -> Prediction:
        pred = self.inner(x_t, t)
        if float(t) < self.t_stop:
            return pred
        if self.fresh_noise:
            return replace_prediction(pred, self.project, self.measured,
                                      randn(x_t.shape, self.generator, x_t.device, x_t.dtype))
        return consistent_prediction(self.schedule, x_t, t, pred, self.project, self.measured)


def fresh_noise_for(sampler: str) -> bool:
    """Whether a sampler takes ε̂ as the noise of its step (ddim, ddpm) rather than as a function of x_t: its
    ``eps_is_noise`` capability (:func:`difflab.samplers.register`)."""
    from ..samplers import info

    return info(sampler)["eps_is_noise"]


__all__ = ["Replacement", "replace_x0", "replace_prediction", "consistent_prediction", "fresh_noise_for"]
