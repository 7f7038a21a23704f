"""Training objectives (Ho et al. 2020, Sec. 3.4; Salimans & Ho 2022 for v)."""

from __future__ import annotations

import torch

from . import process
from .random import randn
from .schedules import Schedule

Tensor = torch.Tensor


def uniform_timesteps(schedule: Schedule, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ Uniform{1, ..., T} (DDPM Algorithm 1, line 3)."""
    return torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(device)


def l_simple(model: torch.nn.Module, schedule: Schedule, x0: Tensor, parameterization: str = "eps",
             generator: torch.Generator | None = None) -> Tensor:
    """L_simple = E_{t, x_0, ε} ‖target − f_θ(x_t, t)‖², the per-example mean over dimensions
    (DDPM Eq. 14, Algorithm 1). The target is ε, x_0 or v = α_t ε − σ_t x_0 by ``parameterization``.
    Returns the per-example losses (B,); the training loss is their mean.
    """
    t = uniform_timesteps(schedule, x0.shape[0], generator, x0.device)
    eps = randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = process.q_sample(schedule, x0, t, eps)
    output = model(x_t, t.to(x0.dtype))
    goal = process.target(schedule, parameterization, x0, t, eps)
    return (output - goal).pow(2).flatten(1).mean(1)
