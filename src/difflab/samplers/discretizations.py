"""Step discretizations: which times a sampler visits, a decreasing sequence from the schedule's
noisiest time t_max down to its least noisy t_min (the sampler's last step then goes to t = 0,
the data).

For discrete schedules (t = 1..T) the uniform ones give integer timesteps, named as in diffusers
and Lin et al. 2024 ("Common diffusion noise schedules and sample steps are flawed", Table 2):
  * ``trailing`` (default): t_i = round(T − i·T/S), i = 0..S−1; always starts at t = T.
  * ``leading``: the DDIM paper's uniform choice, t = 1 + k·⌊T/S⌋, k = S−1..0 (Song et al. 2021, Appx. C.2).
  * ``linspace``: S points evenly spaced from T down to 1 inclusive, rounded.
The others may land between timesteps (fractional t, which a discrete schedule interpolates):
  * ``quadratic``: t_i evenly spaced in √t (DDIM, Appx. C.2, their "quadratic" selection).
  * ``karras``: σ̃ = σ/α evenly spaced in σ̃^{1/ρ}, ρ = 7, from σ_max = 80 or the schedule's largest σ̃ if
    smaller (Karras et al. 2022, "Elucidating the Design Space", Eq. 5 and Table 1); sampling still starts at
    the schedule's last time, so the first step goes from there to the grid's second point.
  * ``logsnr``: evenly spaced in the log-SNR λ (Lu et al. 2022, DPM-Solver, Sec. 3.3).
  * ``sections:90,60,50,30,20``: guided diffusion's respacing — [0, T) cut into equal sections and
    each section visited by its count of evenly spaced steps (Nichol & Dhariwal 2021, ``space_timesteps``);
    the counts must add up to the number of steps.
With S = T the three uniform choices all give T, T−1, ..., 1.
"""

from __future__ import annotations

import math

import torch

from ..consistency import KARRAS_SIGMA_MAX, level_times  # noqa: F401 (σ_max of EDM's Table 1, re-exported)
from ..errors import DifflabError
NAMES = ("trailing", "leading", "linspace", "quadratic", "karras", "logsnr", "sections")


def check_steps(steps, T: int | None = None) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or (T is not None and steps > T):
        bound = f"from 1 to T = {T}" if T is not None else ">= 1"
        raise DifflabError(f"steps must be an integer {bound}, got {steps!r}.")


def spaced_timesteps(T: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """A decreasing LongTensor of ``steps`` distinct integer timesteps in {1..T}."""
    check_steps(steps, T)
    if spacing == "trailing":
        ts = torch.round(T - torch.arange(steps, dtype=torch.float64) * (T / steps))
    elif spacing == "leading":
        ts = 1 + torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (T // steps)
    elif spacing == "linspace":
        ts = torch.round(torch.linspace(T, 1, steps, dtype=torch.float64))
    else:
        raise DifflabError(f"unknown timestep spacing {spacing!r}; expected trailing, leading or linspace.")
    return ts.long()


def section_timesteps(T: int, counts: list[int]) -> torch.Tensor:
    """Guided diffusion's respacing: [0, T) in len(counts) equal sections (the first ones one longer if
    T does not divide), each visited at ``count`` evenly spaced indices with a fractional stride that
    ends exactly at the section's last index; returned as decreasing timesteps i + 1."""
    size, extra = divmod(T, len(counts))
    start, chosen = 0, []
    for i, count in enumerate(counts):
        length = size + (1 if i < extra else 0)
        if count > length:
            raise DifflabError(f"a section of {length} timesteps cannot hold {count} steps.")
        if count == 0:
            start += length
            continue
        stride = (length - 1) / (count - 1) if count > 1 else 1.0
        chosen += [start + round(k * stride) for k in range(count)]
        start += length
    return torch.tensor(sorted(set(chosen), reverse=True), dtype=torch.long) + 1


def discretize(schedule, steps: int, name: str = "trailing", rho: float = 7.0, t_start: float | None = None) -> torch.Tensor:
    """The decreasing times a sampler visits (float64 for fractional ones, int64 for integer ones). ``t_start``
    (below t_max) starts them there instead, where a sampler picks up noise already carried down (a data Gaussian's
    flow, :mod:`difflab.data_gaussian`): the same rule over [t_min, t_start], in fractional times."""
    discrete = getattr(schedule, "discrete", False)
    base, _, arg = name.partition(":")
    if base not in NAMES:
        raise DifflabError(f"unknown discretization {name!r}; expected one of {', '.join(NAMES)} "
                           "(sections as 'sections:90,60,50,30,20').")
    check_steps(steps, schedule.T if discrete else None)
    t_max, t_min = float(schedule.t_max), float(schedule.t_min)
    if t_start is not None and float(t_start) < t_max:
        return _from(schedule, steps, base, rho, float(t_start))
    if steps == 1 and base != "sections":
        return torch.tensor([schedule.T if discrete else t_max])
    if base == "sections":
        if not discrete:
            raise DifflabError("the sections discretization applies to discrete schedules only.")
        try:
            counts = [int(c) for c in arg.split(",")]
        except ValueError:
            raise DifflabError(f"sections need comma-separated step counts, e.g. 'sections:90,60,50', got {name!r}.") from None
        if sum(counts) != steps or any(c < 0 for c in counts):
            raise DifflabError(f"section counts {counts} must be >= 0 and add up to steps = {steps}.")
        return section_timesteps(schedule.T, counts)
    if base in ("trailing", "leading", "linspace"):
        if discrete:
            return spaced_timesteps(schedule.T, steps, base)
        return torch.linspace(t_max, t_min, steps, dtype=torch.float64)
    return _continuous(schedule, steps, base, rho, t_max)


def _continuous(schedule, steps: int, base: str, rho: float, t_hi: float) -> torch.Tensor:
    """quadratic, logsnr or karras times from ``t_hi`` down to t_min, endpoints exact."""
    t_min = float(schedule.t_min)
    if base == "quadratic":
        return torch.linspace(math.sqrt(t_hi), math.sqrt(t_min), steps, dtype=torch.float64) ** 2
    lam_hi = float(schedule.lambda_(torch.tensor(t_min, dtype=torch.float64)))
    lam_lo = float(schedule.lambda_(torch.tensor(t_hi, dtype=torch.float64)))
    if base == "logsnr":
        ts = schedule.t_from_lambda(torch.linspace(lam_lo, lam_hi, steps, dtype=torch.float64))
    else:  # karras: σ̃ = exp(−λ/2) evenly spaced in σ̃^{1/ρ} from min(σ̃(t_hi), 80) (EDM's σ_max, Table 1)
        return level_times(schedule, steps, rho, t_hi).flip(0)
    ts[0], ts[-1] = t_hi, t_min  # exact endpoints despite round-off in the inverse
    return ts


def _from(schedule, steps: int, base: str, rho: float, t_start: float) -> torch.Tensor:
    """:func:`discretize`'s rule over [t_min, ``t_start``]: trailing as t_start·(1 − i/S) (the rule that gives
    T − i·T/S from t_max = T), linspace, quadratic, karras and logsnr on the shorter interval."""
    t_min = float(schedule.t_min)
    if not t_min < t_start:
        raise DifflabError(f"sampling cannot start at t = {t_start:g}, at or below the schedule's t_min = {t_min:g}.")
    if base in ("leading", "sections"):
        raise DifflabError(f"the {base} discretization is fixed to the schedule's integer steps from T; a start below "
                           "t_max takes trailing, linspace, quadratic, karras or logsnr.")
    if steps == 1:
        return torch.tensor([t_start], dtype=torch.float64)
    if base == "trailing":
        ts = t_start * (1 - torch.arange(steps, dtype=torch.float64) / steps)
        return ts.clamp(min=t_min)
    if base == "linspace":
        return torch.linspace(t_start, t_min, steps, dtype=torch.float64)
    return _continuous(schedule, steps, base, rho, t_start)
