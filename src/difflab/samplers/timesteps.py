"""Which timesteps a sampler visits: a decreasing subsequence of {1..T}.

``spacing`` follows the names used by diffusers and Lin et al. 2024 ("Common diffusion noise
schedules and sample steps are flawed", Table 2), written for t = 1..T:
  * ``trailing`` (default): t_i = round(T − i·T/S), i = 0..S−1. Always starts at t = T, pure noise.
  * ``leading``: the DDIM paper's uniform choice, t_i = 1 + k·⌊T/S⌋ for k = S−1..0 (Song et al. 2021, Appx. C.2).
  * ``linspace``: S points evenly spaced from T down to 1 inclusive, rounded.
With S = T all three give T, T−1, ..., 1.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError

SPACINGS = ("trailing", "leading", "linspace")


def spaced_timesteps(T: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """A decreasing LongTensor of ``steps`` distinct timesteps in {1..T}."""
    check_steps(steps, T)
    if spacing == "trailing":
        ts = torch.round(T - torch.arange(steps, dtype=torch.float64) * (T / steps))
    elif spacing == "leading":
        ts = 1 + torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (T // steps)
    elif spacing == "linspace":
        ts = torch.round(torch.linspace(T, 1, steps, dtype=torch.float64))
    else:
        raise DifflabError(f"unknown timestep spacing {spacing!r}; expected one of {', '.join(SPACINGS)}.")
    return ts.long()


def check_steps(steps, T: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise DifflabError(f"steps must be an integer from 1 to T = {T}, got {steps!r}.")
