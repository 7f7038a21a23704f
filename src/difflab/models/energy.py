"""Energy networks E_θ(x) -> one number per example: an MLP for points and a small convolutional net for images
(the energy-based models of Du & Mordatch 2019 and Nijkamp et al. 2020, at toy scale). Smooth activations (SiLU),
because samplers and score matching differentiate E in x. With ``noise_conditional`` the MLP also takes a noise
level σ (as log σ), E_θ(x, σ), the energy of the noised data at that level (Song & Ermon 2019's conditioning)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.errors import DifflabError

__all__ = ["EnergyMLP", "EnergyConvNet"]


def _check_int(kind: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DifflabError(f"{kind} option '{name}' must be an integer >= {minimum}, got {value!r}.")


class EnergyMLP(nn.Module):
    """E(x) = wᵀ SiLU(... SiLU(W₁ x)) + ‖x‖²/(2 s²) for x of shape (B, dim): ``depth`` hidden layers of width
    ``hidden`` and a Gaussian base N(0, s² I), s = ``base_std`` (None: none). The network alone can fall linearly
    without bound far from the data, where no chain visits, so that exp(−E) has no normaliser and long chains drift
    away; the base keeps exp(−E) integrable (on standardised data, s = 1 is the data's own scale: the network models the ratio to N(0, I))."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, noise_conditional: bool = False,
                 base_std: float | None = 1.0):
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("hidden", hidden, 1), ("depth", depth, 1)):
            _check_int("energy-mlp", name, value, low)
        if not isinstance(noise_conditional, bool):
            raise DifflabError(f"energy-mlp option 'noise_conditional' must be true or false, got {noise_conditional!r}.")
        if base_std is not None and (isinstance(base_std, bool) or not isinstance(base_std, (int, float))
                                     or not 0 < base_std < float("inf")):
            raise DifflabError(f"energy-mlp option 'base_std' must be a number > 0 or null, got {base_std!r}.")
        self.config = {"dim": dim, "hidden": hidden, "depth": depth, "noise_conditional": noise_conditional,
                       "base_std": base_std}
        self.base_std = base_std
        self.dim, self.noise_conditional = dim, noise_conditional
        widths = [dim + int(noise_conditional)] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DifflabError(f"energy-mlp input must have shape (B, {self.dim}), got {tuple(x.shape)}.")
        base = 0.0 if self.base_std is None else 0.5 * (x**2).sum(1) / self.base_std**2
        if self.noise_conditional:
            if sigma is None:
                raise DifflabError("a noise-conditional energy needs the noise level sigma.")
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
            x = torch.cat([x, torch.log(s)[:, None]], 1)
        h = x
        for layer in self.layers:
            h = F.silu(layer(h))
        return self.out(h)[:, 0] + base


class EnergyConvNet(nn.Module):
    """E(x) for images (B, C, H, W): 3×3 convolutions with SiLU, halving the resolution after the first, then a
    sum over positions and a linear read-out (a small version of Du & Mordatch 2019's ResNet energy)."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, channels: int = 32, depth: int = 3):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("image_size", image_size, 4),
                                 ("channels", channels, 1), ("depth", depth, 2)):
            _check_int("energy-conv", name, value, low)
        self.config = {"in_channels": in_channels, "image_size": image_size, "channels": channels, "depth": depth}
        self.shape = (in_channels, image_size, image_size)
        convs = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1)]
        convs += [nn.Conv2d(2 * channels, 2 * channels, 3, padding=1) for _ in range(depth - 2)]
        self.convs = nn.ModuleList(convs)
        self.out = nn.Linear(2 * channels, 1)

    def forward(self, x: Tensor, sigma=None) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise DifflabError(f"energy-conv input must have shape (B, {', '.join(map(str, self.shape))}), got "
                               f"{tuple(x.shape)}.")
        h = x
        for conv in self.convs:
            h = F.silu(conv(h))
        return self.out(h.sum((2, 3)))[:, 0]
