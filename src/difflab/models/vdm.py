"""The learned noise schedule of variational diffusion models (Kingma et al. 2021, "Variational Diffusion Models",
Sec. 3.4 and Appx. H): γ(t) = −λ(t), the negative log-SNR, as a monotone network of t, and the network that carries
it beside the denoising network, so that the schedule is trained, averaged (EMA) and saved with the weights.

A network of t alone; what γ means (α_t² = sigmoid(−γ), σ_t² = sigmoid(γ)) is :class:`difflab.sde.LearnedSchedule`'s.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import softplus

Tensor = torch.Tensor


class MonotoneGamma(nn.Module):
    """γ(t) = γ_0 + (γ_1 − γ_0) (γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0)) with the monotone γ̃ of VDM (Appx. H: a linear layer plus
    a sigmoid layer of ``hidden`` units, every weight kept positive):

        γ̃(t) = w₁ t + (1/H) Σ_j w₃ⱼ (2 sigmoid(w₂ⱼ (2t − 1) + b₂ⱼ) − 1),   w = softplus(raw weights) > 0,

    so γ increases from γ_0 = ``gamma_min`` to γ_1 = γ_0 + softplus(·) > γ_0, both learned (the ends of the log-SNR
    range; Kingma et al. start at −13.3 and 5). It starts linear in t. Evaluated in the dtype of ``t`` (float64 for
    the schedule's coefficients)."""

    def __init__(self, gamma_min: float = -13.3, gamma_max: float = 5.0, hidden: int = 1024):
        super().__init__()
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_min)))
        width = float(gamma_max) - float(gamma_min)
        self.raw_width = nn.Parameter(torch.tensor(width + torch.log(-torch.expm1(torch.tensor(-width))).item()))
        self.raw_w1 = nn.Parameter(torch.tensor(1.0))
        self.raw_w2 = nn.Parameter(torch.zeros(hidden))
        self.b2 = nn.Parameter(torch.zeros(hidden))
        self.raw_w3 = nn.Parameter(torch.full((hidden,), -10.0))  # a tiny sigmoid part: γ starts linear in t

    def shape(self, t: Tensor) -> Tensor:
        """γ̃(t) normalised to [0, 1] on [0, 1]: increasing from 0 at t = 0 to 1 at t = 1."""
        ends = torch.stack([torch.zeros_like(t.flatten()[:1]), torch.ones_like(t.flatten()[:1])]).flatten()
        raw = self._unnormalised(torch.cat([ends, t.flatten()]))
        lo, hi, mid = raw[0], raw[1], raw[2:]
        return ((mid - lo) / (hi - lo)).reshape(t.shape)

    def _unnormalised(self, t: Tensor) -> Tensor:
        dtype = t.dtype
        w1 = softplus(self.raw_w1.to(dtype))
        w2, b2, w3 = softplus(self.raw_w2.to(dtype)), self.b2.to(dtype), softplus(self.raw_w3.to(dtype))
        h = 2 * torch.sigmoid((2 * t[:, None] - 1) * w2 + b2) - 1
        return w1 * t + (h * w3).mean(1)

    def ends(self, dtype=torch.float64) -> tuple[Tensor, Tensor]:
        """(γ_0, γ_1)."""
        g0 = self.gamma_0.to(dtype)
        return g0, g0 + softplus(self.raw_width.to(dtype))

    def forward(self, t: Tensor) -> Tensor:
        g0, g1 = self.ends(t.dtype)
        return g0 + (g1 - g0) * self.shape(t)


class LearnedScheduleNetwork(nn.Module):
    """A denoising network with its learned schedule γ beside it (:class:`MonotoneGamma` as ``gamma``): called, it is
    the network; the schedule only lends the run its coefficients."""

    def __init__(self, network: nn.Module, gamma: MonotoneGamma):
        super().__init__()
        self.network, self.gamma = network, gamma

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)

    def __getattr__(self, name: str):
        """The network's own attributes (``num_classes``, ``tokenizer``, ...) read through the wrapper."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("network"), name)
