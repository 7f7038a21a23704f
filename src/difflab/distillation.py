"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models"):
a student learns to take in one deterministic DDIM step what its teacher takes in two, round after round, halving
the number of steps each time.

The student of N steps visits the teacher's 2N-step ``trailing`` times at even positions (the trailing times of N
steps are exactly those), so a student step τ_{2k} → τ_{2k+2} replaces the teacher's τ_{2k} → τ_{2k+1} → τ_{2k+2},
and the distilled model samples with the ordinary ``ddim`` sampler at N steps.
"""

from __future__ import annotations

import torch

from .samplers import spaced_timesteps
from .samplers._kernels import ddim_step

Tensor = torch.Tensor


def teacher_times(T: int, student_steps: int) -> Tensor:
    """The teacher's 2N trailing times (t = 1..T) followed by 0, the data: student step k goes from entry 2k to
    entry 2k + 2 through entry 2k + 1. Integer times, since round(T − 2k·T/2N) = round(T − k·T/N)."""
    return torch.cat([spaced_timesteps(T, 2 * student_steps, "trailing"), torch.zeros(1, dtype=torch.long)])


def _coefs(schedule, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    shape = (-1, *[1] * (like.ndim - 1))
    return (schedule.alpha(t).to(like.device, like.dtype).reshape(shape),
            schedule.sigma(t).to(like.device, like.dtype).reshape(shape))


def two_step_target(schedule, teacher, z_t: Tensor, t: Tensor, t_mid: Tensor, t_next: Tensor) -> Tensor:
    """Salimans & Ho 2022, Algorithm 2: two DDIM steps of the teacher, z_t → z_t' → z_t'', and the x̃ whose single DDIM
    step t → t'' from z_t lands on z_t'': x̃ = (z_t'' − (σ_t''/σ_t) z_t) / (α_t'' − (σ_t''/σ_t) α_t). Per-example
    times (B,); at t'' = 0 (σ = 0) this is z_t'' itself."""
    a_t, s_t = _coefs(schedule, t, z_t)
    a_m, s_m = _coefs(schedule, t_mid, z_t)
    a_n, s_n = _coefs(schedule, t_next, z_t)
    pred = teacher(z_t, t)
    z_mid = ddim_step(pred.x0, pred.eps, a_m, s_m)
    pred = teacher(z_mid, t_mid)
    z_next = ddim_step(pred.x0, pred.eps, a_n, s_n)
    ratio = s_n / s_t
    return (z_next - ratio * z_t) / (a_n - ratio * a_t)


def truncated_snr_weight(schedule, t: Tensor) -> Tensor:
    """Salimans & Ho 2022, Sec. 4 ("truncated SNR" weighting): the x-space loss weighted by max(α_t²/σ_t², 1), i.e.
    max(‖x − x̂‖², ‖ε − ε̂‖²), so that the weight stays finite at high SNR and nonzero at zero SNR."""
    a, s = schedule.alpha(t).double(), schedule.sigma(t).double()
    return torch.clamp(a**2 / s**2, min=1.0)
