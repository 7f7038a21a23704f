"""Contrastive divergence for energy-based models (the lecture's gradient ∇f(x_train) − ∇f(x_sample)): the
negative samples come from short MCMC chains on the current energy, started from noise (short-run; Nijkamp et al.
2019) or from a replay buffer of earlier chains' ends (persistent chains; Tieleman 2008, Du & Mordatch 2019).

For p_θ(x) = exp(−E_θ(x))/Z_θ the log-likelihood gradient is −∇_θ E_θ(x_data) + E_{p_θ}[∇_θ E_θ(x)] (the second term
is −∇_θ log Z_θ), so minimising E_θ(x⁺) − E_θ(x⁻) with x⁻ ~ p_θ (held fixed) follows it; Du & Mordatch add
α (E_θ(x⁺)² + E_θ(x⁻)²) to keep the energies' scale bounded.
"""

from __future__ import annotations

import torch

from ..errors import DifflabError
from .mcmc import evaluate, langevin_step

Tensor = torch.Tensor


def contrastive_divergence_loss(e_data: Tensor, e_model: Tensor, alpha: float = 0.0) -> Tensor:
    """Per example: E(x⁺) − E(x⁻) + α (E(x⁺)² + E(x⁻)²) (Du & Mordatch 2019, Eq. 2 and Sec. 3.3 for α); its gradient
    in θ is the CD estimate of the negative log-likelihood gradient. ``e_model`` is the energy of samples held
    fixed (no gradient flows through the chain)."""
    return e_data - e_model + alpha * (e_data**2 + e_model**2)


def short_run_langevin(energy, x: Tensor, noise: Tensor, step_size: float, noise_scale: float | None = None,
                       clamp: tuple[float, float] | None = None) -> Tensor:
    """K = len(noise) steps x ← x − τ ∇ₓE(x) + s z_k with the pre-drawn z_k (so a run resumes bit for bit), s = √(2τ)
    (unadjusted Langevin, :func:`difflab.ebm.mcmc.langevin_step`) unless ``noise_scale`` is given (Du & Mordatch
    2019 and Nijkamp et al. 2020 use a smaller noise than Langevin's, trading the sampler's law for short-run
    sharpness); ``clamp`` keeps images in range. Returns the chain's end, detached."""
    x = x.detach()
    for k in range(noise.shape[0]):
        _, grad = evaluate(lambda v: -energy(v), x, k, grad=True)  # ∇ log p = −∇E
        x = langevin_step(x, grad, step_size, noise[k], noise_scale)
        if clamp is not None:
            x = x.clamp(*clamp)
    return x.detach()


class ReplayBuffer:
    """Persistent chains (Du & Mordatch 2019, Sec. 3.1): ``size`` states; each batch restarts from a random one of
    them, or with probability ``reinit`` from fresh noise, and the chain's end is written back in its place."""

    def __init__(self, states: Tensor, reinit: float):
        if not 0 <= reinit <= 1:
            raise DifflabError(f"ebm.reinit (the share of chains restarted from noise) must be in [0, 1], got {reinit!r}.")
        self.states, self.reinit = states, reinit

    def starts(self, fresh: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(indices into the buffer, start states) for a batch of len(fresh) chains."""
        n = fresh.shape[0]
        idx = torch.randint(self.states.shape[0], (n,), generator=generator)
        restart = torch.rand(n, generator=generator) < self.reinit
        start = torch.where(restart.reshape(-1, *[1] * (fresh.ndim - 1)).to(fresh.device), fresh,
                            self.states[idx].to(fresh.device))
        return idx, start

    def store(self, idx: Tensor, ends: Tensor) -> None:
        self.states[idx] = ends.detach().to(self.states.device, self.states.dtype)
