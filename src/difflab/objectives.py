"""Training objectives (Ho et al. 2020, Sec. 3.4; Salimans & Ho 2022 for v)."""

from __future__ import annotations

import torch

from . import process
from .random import randn
from .schedules import Schedule

Tensor = torch.Tensor


def uniform_timesteps(schedule: Schedule, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ Uniform{1, ..., T} for a discrete schedule (DDPM Algorithm 1, line 3); t ~ Uniform(t_min, 1)
    for a continuous SDE (Song et al. 2021, Eq. 7, with ε = t_min)."""
    where = generator.device if generator is not None else None  # draw where the generator lives (CPU or CUDA)
    if getattr(schedule, "discrete", False):
        return torch.randint(1, schedule.T + 1, (batch,), generator=generator, device=where).to(device)
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=where)
    return (schedule.t_min + (schedule.t_max - schedule.t_min) * u).to(device)


def noised_output(model: torch.nn.Module, schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor,
                  y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """x_t = α_t x_0 + σ_t ε ~ q(x_t | x_0) (DDPM Eq. 4) and the network's output on it, ``model(x_in, time[, y])``
    with the input scaled and the time given as the schedule shows them to the network; returns (x_t, output)."""
    x_t = process.q_sample(schedule, x0, t, eps)
    time = schedule.model_time(t).to(device=x0.device, dtype=x0.dtype)
    x_in = process.model_input(schedule, x_t, t)
    return x_t, (model(x_in, time) if y is None else model(x_in, time, y))


def l_simple(model: torch.nn.Module, schedule: Schedule, x0: Tensor, parameterization: str = "eps",
             generator: torch.Generator | None = None, t: Tensor | None = None, eps: Tensor | None = None,
             y: Tensor | None = None) -> Tensor:
    """L_simple = E_{t, x_0, ε} ‖target − f_θ(x_t, t)‖², the per-example mean over dimensions
    (DDPM Eq. 14, Algorithm 1). The target is ε, x_0 or v = α_t ε − σ_t x_0 by ``parameterization``.
    For a continuous SDE with the ε target this is denoising score matching with weight λ(t) = σ_t²
    (Song et al. 2021, Eq. 7: s_θ = −ε̂/σ_t). Returns the per-example losses (B,). ``t`` and ``eps``
    may be given (the distributed trainer draws them for the global batch and passes each rank its slice).
    ``y``: class labels for a class-conditional model, passed as ``model(x_t, t, y)``.
    """
    if t is None:
        t = uniform_timesteps(schedule, x0.shape[0], generator, x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
    _, output = noised_output(model, schedule, x0, t, eps, y)
    goal = process.target(schedule, parameterization, x0, t, eps)
    output = output.to(goal.dtype)  # a bf16 autocast output is compared in the target's precision
    if parameterization == "score":  # weight λ(σ) = σ² (Song & Ermon 2019, Eq. 6), so every level counts alike
        return (process.sigma(schedule, t, x0) * (output - goal)).pow(2).flatten(1).mean(1)
    return (output - goal).pow(2).flatten(1).mean(1)
