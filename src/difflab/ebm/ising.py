"""Image denoising with an Ising model (the lecture's example; Bishop 2006, Sec. 8.3.3): a binary image x ∈ {−1, +1}
is recovered from a corrupted copy y by the energy

    E(x, y) = h Σ_i x_i − β Σ_{i~j} x_i x_j − η Σ_i x_i y_i      (Bishop 2006, Eq. 8.42)

over the 4-neighbour grid, p(x, y) ∝ exp(−E). Iterated conditional modes (ICM; Besag 1986) sets each pixel to the
value of lower energy given the rest, which never raises E; Gibbs sampling draws each pixel from
p(x_i = +1 | rest) = σ(2 (β Σ_{j~i} x_j + η y_i − h)). Both update the two colours of a checkerboard in turn, whose
pixels are conditionally independent given the other colour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DifflabError

Tensor = torch.Tensor
METHODS = ("icm", "gibbs")


def _check_spins(x: Tensor, name: str) -> Tensor:
    if x.ndim != 2 or not bool(((x == 1) | (x == -1)).all()):
        raise DifflabError(f"{name} must be a 2-D image of spins −1 and +1, got shape {tuple(x.shape)}"
                           f"{'' if x.ndim != 2 else ' with other values'}.")
    return x.double()


def neighbour_sum(x: Tensor) -> Tensor:
    """Σ_{j~i} x_j over the 4 neighbours of every pixel (free boundary)."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype)
    return F.conv2d(x[None, None], k[None, None], padding=1)[0, 0]


def energy(x: Tensor, y: Tensor, beta: float = 1.0, eta: float = 2.1, h: float = 0.0) -> float:
    """E(x, y) of Bishop 2006, Eq. 8.42 (each neighbouring pair counted once)."""
    x, y = x.double(), y.double()
    pairs = float((x[1:, :] * x[:-1, :]).sum() + (x[:, 1:] * x[:, :-1]).sum())
    return h * float(x.sum()) - beta * pairs - eta * float((x * y).sum())


def denoise(y: Tensor, beta: float = 1.0, eta: float = 2.1, h: float = 0.0, sweeps: int = 10, method: str = "icm",
            generator=None) -> Tensor:
    """Recover x from the corrupted spins ``y`` by ``sweeps`` checkerboard sweeps of ICM or Gibbs sampling, starting
    at x = y (Bishop's β = 1, η = 2.1, h = 0 by default). Returns x as spins (float64)."""
    y = _check_spins(torch.as_tensor(y), "the corrupted image")
    if method not in METHODS:
        raise DifflabError(f"Ising denoising method must be one of {', '.join(METHODS)}, got {method!r}.")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise DifflabError(f"Ising denoising needs sweeps >= 1, got {sweeps!r}.")
    rows, cols = torch.meshgrid(torch.arange(y.shape[0]), torch.arange(y.shape[1]), indexing="ij")
    colours = [(rows + cols) % 2 == 0, (rows + cols) % 2 == 1]
    x = y.clone()
    for _ in range(sweeps):
        for mask in colours:
            field = beta * neighbour_sum(x) + eta * y - h  # E(x_i = +1) − E(x_i = −1) = −2 · field
            if method == "icm":
                new = torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, x))
            else:
                p = torch.sigmoid(2.0 * field)
                new = torch.where(torch.rand(p.shape, generator=generator, dtype=p.dtype) < p, 1.0, -1.0)
            x = torch.where(mask, new, x)
    return x


def corrupt(x: Tensor, flip: float, generator=None) -> Tensor:
    """Flip each spin of ``x`` with probability ``flip`` (Bishop's 10% noise)."""
    x = _check_spins(torch.as_tensor(x), "the image")
    if not 0 <= flip < 0.5:
        raise DifflabError(f"the flip probability must be in [0, 0.5), got {flip!r}.")
    return torch.where(torch.rand(x.shape, generator=generator, dtype=x.dtype) < flip, -x, x)
