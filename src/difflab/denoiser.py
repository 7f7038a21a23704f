"""The denoiser protocol: the one interface every sampler sees.

A denoiser answers "given x_t at timestep t, what are ε̂ and x̂_0?". A trained network in any
parameterization, a guided wrapper, or an exact oracle all look the same to a sampler, so no
sampler holds per-model code. A denoiser exposes the :class:`~difflab.schedules.Schedule` it was
trained on, so samplers can read ᾱ_t without being told twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from . import process
from .schedules import Schedule, as_time

Tensor = torch.Tensor


@dataclass
class Prediction:
    """What a denoiser predicts at (x_t, t): the noise ε̂ and the clean sample x̂_0, and, from a
    network with a learned variance, its raw variance output ``v_raw`` (None otherwise): the
    reverse-step variance is exp(v log β + (1 − v) log β̃) with v = (v_raw + 1)/2 (Nichol & Dhariwal
    2021, Eq. 15; :func:`difflab.variational_bound.interpolate_log_variance`)."""

    eps: Tensor
    x0: Tensor
    v_raw: Tensor | None = None


@runtime_checkable
class Denoiser(Protocol):
    schedule: Schedule

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction: ...


class ModelDenoiser:
    """Wrap a network ``model(x_t, t) -> output`` trained with the given parameterization. The
    network receives ``schedule.model_time(t)`` (the timestep for discrete schedules, 999·t for
    continuous ones). Gradients flow through it (likelihoods need them); samplers run it under
    ``torch.no_grad``.

    ``clip_x0``: optional (low, high) range; x̂_0 is clamped into it and ε̂ recomputed from the
    clamped x̂_0, so both stay consistent (the "clipped" sampling of the DDPM and DDIM code).

    ``labels``: for a class-conditional network, the class of each sample ``(B,)`` (or one int for
    all), passed as ``model(x_t, t, labels)``; None leaves a conditional network at its null label.

    ``learned_variance``: the network outputs 2C channels for C data channels (Nichol & Dhariwal 2021,
    Sec. 3.1): the first C are the prediction in ``parameterization``, the last C are ``v_raw``, passed
    on in :class:`Prediction` (samplers that need only ε̂ and x̂_0 ignore it).
    """

    def __init__(self, model: torch.nn.Module, schedule: Schedule, parameterization: str = "eps",
                 clip_x0: tuple[float, float] | None = None, labels: Tensor | int | None = None,
                 learned_variance: bool = False):
        process.check_parameterization(parameterization)
        self.model = model
        self.schedule = schedule
        self.parameterization = parameterization
        self.clip_x0 = clip_x0
        self.labels = labels
        self.learned_variance = bool(learned_variance)

    def with_labels(self, labels: Tensor | int | None) -> "ModelDenoiser":
        """The same network and schedule, conditioned on other labels."""
        return ModelDenoiser(self.model, self.schedule, self.parameterization, self.clip_x0, labels,
                             self.learned_variance)

    def predict(self, x_t: Tensor, t: Tensor, labels: Tensor | int | None = None) -> Prediction:
        """ε̂ and x̂_0 of the network for ``labels``, before clipping."""
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        x_in, time = process.model_input(self.schedule, x_t, t), self.schedule.model_time(t).to(x_t.device)
        if labels is None:
            output = self.model(x_in, time)
        else:
            y = torch.as_tensor(labels, device=x_t.device)
            output = self.model(x_in, time, y.expand(x_t.shape[0]) if y.ndim == 0 else y)
        v_raw = None
        if self.learned_variance:
            from .variational_bound import split_output
            output, v_raw = split_output(output, x_t.shape[1])
        eps, x0 = process.to_eps_x0(self.schedule, self.parameterization, x_t, t, output)
        return Prediction(eps=eps, x0=x0, v_raw=v_raw)

    def clip(self, x_t: Tensor, t: Tensor, pred: Prediction) -> Prediction:
        """Clamp x̂_0 into ``clip_x0`` and recompute ε̂ from it (no-op without a range)."""
        if self.clip_x0 is None:
            return pred
        t = as_time(t)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        x0 = pred.x0.clamp(*self.clip_x0)
        return Prediction(eps=process.x0_to_eps(self.schedule, x_t, t, x0), x0=x0, v_raw=pred.v_raw)

    def __call__(self, x_t: Tensor, t: Tensor) -> Prediction:
        return self.clip(x_t, t, self.predict(x_t, t, self.labels))
