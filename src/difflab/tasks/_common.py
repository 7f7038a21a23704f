"""What the tasks share: running a sampler over part of the schedule, and checking images against a model.

Every task starts the reverse process somewhere other than pure noise, or stops it early, and then hands the
rest to a registered sampler unchanged (``shared/DESIGN.md``: a task is a denoiser and a sampler, never a
sampler of its own).
"""

from __future__ import annotations

import torch

from ..errors import DifflabError
from ..samplers import check_denoiser, info, with_capability
from ..samplers import get as get_sampler

Tensor = torch.Tensor


def start_time(schedule, strength: float):
    """The time at a fraction ``strength`` in (0, 1] of the schedule: strength·T rounded to a timestep for a
    discrete schedule (0 when it rounds below the first step), strength·t_max for a continuous one."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise DifflabError(f"the strength t0 must be a number in (0, 1], got {strength!r}.")
    if schedule.discrete:
        return int(round(strength * schedule.T))
    return float(strength) * float(schedule.t_max)


def timesteps_from(schedule, t_start, steps: int) -> Tensor:
    """The decreasing times a sampler visits from ``t_start`` down to the least noisy time: ``steps`` is the
    count for the whole schedule, of which a run from t_start takes its share (at least one step), as
    diffusers' img2img "strength" does. Integer timesteps for discrete schedules (trailing spacing)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DifflabError(f"steps must be a positive integer, got {steps!r}.")
    t_max, t_min = float(schedule.t_max), float(schedule.t_min)
    if not t_min <= float(t_start) <= t_max:
        raise DifflabError(f"the start time {t_start} is outside the schedule's [{t_min:g}, {t_max:g}].")
    n = max(1, round(steps * float(t_start) / t_max))
    if schedule.discrete:
        ts = torch.round(float(t_start) - torch.arange(n, dtype=torch.float64) * (float(t_start) / n)).long()
        return torch.unique(ts.clamp(min=1)).flip(0)
    return torch.linspace(float(t_start), t_min, n, dtype=torch.float64) if n > 1 else torch.tensor([float(t_start)])


def sample_from(denoiser, x_t: Tensor, timesteps, sampler: str = "ddim", generator=None, callback=None,
                **options) -> Tensor:
    """Run ``sampler`` from x_t at ``timesteps[0]`` over ``timesteps`` down to t = 0 (model coordinates)."""
    fn = get_sampler(sampler)
    check_denoiser(sampler, denoiser)
    with torch.no_grad():
        return fn(denoiser, x_t, timesteps, generator=generator, callback=callback, **options)


class _Reached(Exception):
    def __init__(self, x: Tensor):
        self.x = x


class _StopAt:
    """A denoiser that hands back x when the sampler asks for a prediction at time ``stop``."""

    def __init__(self, denoiser, stop):
        self.inner, self.schedule, self.stop = denoiser, denoiser.schedule, float(stop)

    def __call__(self, x_t: Tensor, t):
        if float(t) == self.stop:
            raise _Reached(x_t)
        return self.inner(x_t, t)


def sample_between(denoiser, x_t: Tensor, timesteps, stop, sampler: str = "ddpm", generator=None, **options) -> Tensor:
    """Run ``sampler`` from x_t at ``timesteps[0]`` down to the time ``stop`` (one of the visited times after
    the first, or 0), returning x_stop. Only for the samplers registered as ``steppable``."""
    if not info(sampler)["steppable"]:
        raise DifflabError(f"sampler {sampler!r} cannot stop part-way; use one of {', '.join(with_capability('steppable'))}.")
    ts = [float(t) for t in timesteps]
    if float(stop) == 0:
        return sample_from(denoiser, x_t, timesteps, sampler, generator, **options)
    if float(stop) not in ts[1:]:
        raise DifflabError(f"the stop time {stop} is not among the visited times after the first.")
    try:
        sample_from(_StopAt(denoiser, stop), x_t, timesteps, sampler, generator, **options)
    except _Reached as reached:
        return reached.x
    raise AssertionError("the sampler never reached its stop time")  # pragma: no cover


def check_image(x: Tensor, shape: tuple, what: str) -> None:
    """Refuse images ``(B, *shape)`` of another size or channel count, naming them."""
    if not isinstance(x, Tensor) or x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        got = tuple(x.shape[1:]) if isinstance(x, Tensor) and x.ndim == len(shape) + 1 else \
            (tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__)
        raise DifflabError(f"the {what} has shape {got} but the model works on {'x'.join(map(str, shape))} images.")
