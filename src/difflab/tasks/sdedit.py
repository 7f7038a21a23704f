"""SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations").

A guide image (a stroke painting, a rough edit) is perturbed to an intermediate time t_0 by the forward process
and the reverse process is run from there (Algorithm 1 of the paper, with any registered sampler in place of
its SDE solver): small t_0 stays faithful to the guide, large t_0 gives realistic images that drift from it
(the realism-faithfulness trade-off of their Fig. 3).
"""

from __future__ import annotations

import torch

from ..process import q_sample
from ..random import randn
from ._common import sample_from, start_time, timesteps_from

Tensor = torch.Tensor


def perturb(schedule, guide: Tensor, t0, generator=None) -> Tensor:
    """x(t_0) = α_{t0} x_guide + σ_{t0} z, z ~ N(0, I) (SDEdit Algorithm 1, line 2, in the α, σ of the schedule)."""
    noise = randn(tuple(guide.shape), generator, guide.device, guide.dtype)
    return q_sample(schedule, guide, torch.full((guide.shape[0],), t0), noise)


def sdedit(denoiser, guide: Tensor, strength: float, sampler: str = "ddim", steps: int = 50, generator=None,
           **options) -> Tensor:
    """Edit ``guide`` (model coordinates) at strength t_0 ∈ (0, 1], the fraction of the schedule it is noised to
    (SDEdit Algorithm 1): perturb to t_0, then ``sampler`` from t_0 to 0 with its share of ``steps``. A strength
    below the least noisy time (half a timestep of a discrete schedule) returns the guide itself (t_0 → 0)."""
    schedule = denoiser.schedule
    t0 = start_time(schedule, strength)
    if float(t0) < float(schedule.t_min):
        return guide.clone()
    x = perturb(schedule, guide, t0, generator)
    return sample_from(denoiser, x, timesteps_from(schedule, t0, steps), sampler, generator, **options)


__all__ = ["perturb", "sdedit"]
