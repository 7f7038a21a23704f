"""Watching a sampling run: x_t and the predicted x̂_0 at every step, and samples that share a starting point.

Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", Sec. 4.3, Figs. 6, 7 and 10) show the progressive
x̂_0 of the reverse process (coarse features first, details last) and samples from p(x_0 | x_t) drawn from one
shared x_t: sharing x_t late in the chain fixes more of the image. Recording uses the sampler's ``callback``;
the continuations from x_t are the same sampler run from t (:func:`~difflab.tasks._common.sample_from`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DifflabError
from ..random import generators_from_seeds
from ..samplers import prior_std, sample
from ._common import sample_from, timesteps_from

Tensor = torch.Tensor


@dataclass
class Trajectory:
    """A recorded run: ``times`` visited, ``x_t`` (S + 1, B, ...) the states before every step and the final x_0,
    ``x0`` (S, B, ...) the denoiser's x̂_0 at every step."""

    times: list
    x_t: Tensor
    x0: Tensor


def record(denoiser, shape, sampler: str = "ddpm", steps: int = 50, generator=None, x_T: Tensor | None = None,
           **options) -> Trajectory:
    """Run ``sampler`` and keep x_t and x̂_0 at every step (the pictures of Ho et al. 2020, Fig. 6)."""
    times, states, preds = [], [], []

    def keep(i, t, x, pred):
        times.append(t)
        states.append(x.detach().clone())
        preds.append(pred.x0.detach().clone())

    final = sample(denoiser, tuple(shape), sampler=sampler, steps=steps, generator=generator, x_T=x_T, callback=keep,
                   **options)
    return Trajectory(times, torch.stack([*states, final]), torch.stack(preds))


def share_x_T(denoiser, x_T: Tensor, num: int, sampler: str = "ddpm", steps: int = 50, seed: int = 0,
              **options) -> Tensor:
    """``num`` samples of a stochastic sampler from one x_T (1, ...), each with its own noise (seeds seed..):
    returns (num, ...)."""
    if x_T.shape[0] != 1:
        raise DifflabError(f"share_x_T takes one x_T (1, ...), got a batch of {x_T.shape[0]}.")
    x = x_T.expand(num, *x_T.shape[1:]).contiguous()
    return sample(denoiser, tuple(x.shape), sampler=sampler, steps=steps, x_T=x, device=x.device,
                  generator=generators_from_seeds(range(seed, seed + num)), **options)


def share_from(denoiser, x_t: Tensor, t, num: int, sampler: str = "ddpm", steps: int = 50, seed: int = 0,
               **options) -> Tensor:
    """``num`` draws from p(x_0 | x_t) for one x_t (1, ...) at time t: the sampler run from t with its share of
    ``steps``, each draw with its own noise (Ho et al. 2020, Fig. 7 and Fig. 10). Returns (num, ...)."""
    if x_t.shape[0] != 1:
        raise DifflabError(f"share_from takes one x_t (1, ...), got a batch of {x_t.shape[0]}.")
    x = x_t.expand(num, *x_t.shape[1:]).contiguous()
    return sample_from(denoiser, x, timesteps_from(denoiser.schedule, t, steps), sampler,
                       generators_from_seeds(range(seed, seed + num)), **options)


def shared_rows(denoiser, x_T: Tensor, num: int, share_steps: list, sampler: str = "ddpm", steps: int = 50,
                seed: int = 0, **options) -> tuple[list, Tensor]:
    """Ho et al. 2020, Fig. 10: one run from x_T, and for each i in ``share_steps`` (indices into its visited
    times) ``num`` continuations from its x_t. Returns (the times t, (len(share_steps), num, ...))."""
    traj = record(denoiser, tuple(x_T.shape), sampler, steps, generators_from_seeds([seed + 10_000]), x_T=x_T, **options)
    rows, times = [], []
    for i in share_steps:
        if not 0 <= i < len(traj.times):
            raise DifflabError(f"share step {i} is outside the run's {len(traj.times)} steps.")
        times.append(traj.times[i])
        rows.append(share_from(denoiser, traj.x_t[i], traj.times[i], num, sampler, steps, seed, **options))
    return times, torch.stack(rows)


def columns(num_steps: int, count: int) -> list[int]:
    """``count`` step indices spread evenly over a run of ``num_steps`` steps, the first and the last included."""
    count = max(1, min(count, num_steps))
    return sorted({round(k * (num_steps - 1) / max(count - 1, 1)) for k in range(count)})


def save_grid(traj: Trajectory, path, to_data, count: int = 10) -> None:
    """A PNG: per sample, a row of x_t at ``count`` steps then the final x_0, and below it the row of x̂_0 at the
    same steps then x_0 again (Ho et al. 2020, Fig. 6). ``to_data`` maps model to data coordinates."""
    from ..plotting import save_image_grid

    cols = columns(len(traj.times), count)
    rows = []
    for b in range(traj.x_t.shape[1]):
        final = traj.x_t[-1, b]
        rows += [traj.x_t[i, b] for i in cols] + [final] + [traj.x0[i, b] for i in cols] + [final]
    save_image_grid(to_data(torch.stack(rows)), path, nrow=len(cols) + 1)


def save_animation(traj: Trajectory, path, to_data, duration_ms: int = 80, max_frames: int = 25,
                   levels: int = 16) -> None:
    """An animated GIF: a frame shows x_t (top row) and x̂_0 (bottom row) of every sample at a step, then the
    final samples held. At most ``max_frames`` steps are shown (evenly spaced, the first and last always), each
    for ``duration_ms`` × (steps per frame), in ``levels`` grey levels (:func:`~difflab.plotting.save_gif`):
    the early frames are mostly noise, which no GIF compresses, so this keeps a 50-step animation near 0.5 MB."""
    from ..plotting import image_grid, save_gif

    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
        raise DifflabError(f"max_frames must be an integer >= 2, got {max_frames!r}.")
    n, count = traj.x_t.shape[1], len(traj.times)
    shown = sorted({round(k * (count - 1) / (min(max_frames, count) - 1)) for k in range(min(max_frames, count))}) \
        if count > 1 else [0]
    frames = [image_grid(to_data(torch.cat([traj.x_t[i], traj.x0[i]])), nrow=n) for i in shown]
    frames += [image_grid(to_data(torch.cat([traj.x_t[-1], traj.x_t[-1]])), nrow=n)] * 10
    per_frame = max(1, round(count / len(shown)))
    save_gif(frames, path, duration_ms=duration_ms * per_frame, levels=levels)


def start_noise(denoiser, shape, generator=None, device=None) -> Tensor:
    """x_T ~ N(0, σ_max² I), as samplers start."""
    from ..random import randn

    return randn(tuple(shape), generator, device) * prior_std(denoiser.schedule)


__all__ = ["Trajectory", "record", "share_x_T", "share_from", "shared_rows", "columns", "save_grid",
           "save_animation", "start_noise"]
