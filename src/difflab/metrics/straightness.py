"""The straightness of a flow's sampling paths (Liu et al. 2023, "Flow Straight and Fast", Sec. 2.3 and Eq. 8):

    S(Z) = ∫_0^1 E ‖(Z_1 − Z_0) − Ż_t‖² dt,

zero exactly when every path is a straight line travelled at constant speed, which one Euler step then solves
without error. Measured on the Euler solution of the flow ODE (DDIM on the straight path α = 1 − t, σ = t): Ż_t is
the velocity û = ε̂ − x̂_0 at each visited time, Z_1 − Z_0 the path's end-to-end displacement per unit time, both
averaged over dimensions so that datasets of different sizes compare.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError

Tensor = torch.Tensor


def straightness(denoiser, x_T: Tensor, steps: int = 100) -> tuple[float, Tensor]:
    """(S, the samples): S per dimension of the Euler paths of ``denoiser`` from the noise ``x_T`` in ``steps``
    uniform steps in t (Liu et al. 2023, Eq. 8), and where the paths end. ``denoiser`` must live on the flow path
    (:class:`~difflab.sde.FlowPath`)."""
    from ..samplers import sample

    schedule = denoiser.schedule
    if getattr(schedule, "name", None) != "flow":
        raise DifflabError(f"straightness is defined for flow models on the straight path (schedule 'flow'), not "
                           f"{getattr(schedule, 'name', schedule)!r}.")
    visits = []
    x0 = sample(denoiser, tuple(x_T.shape), sampler="ddim", steps=steps, x_T=x_T, discretization="linspace",
                callback=lambda i, t, x, pred: visits.append((float(t), (pred.eps - pred.x0).double())))
    t_max = visits[0][0]
    chord = (x_T.double() - x0.double()) / t_max  # dZ/dt of the straight line from Z_0 to Z_{t_max}
    times = [t for t, _ in visits] + [0.0]
    total = torch.zeros(x_T.shape[0], dtype=torch.float64, device=x_T.device)
    for i, (_, u) in enumerate(visits):
        total += (times[i] - times[i + 1]) * (chord - u).pow(2).flatten(1).mean(1)
    return float(total.mean()) / t_max, x0
