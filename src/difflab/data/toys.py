"""Two-dimensional toy densities, each drawn with an explicit ``torch.Generator``.

Every sampler returns float32 points of shape ``(n, 2)`` in raw data coordinates (no
normalisation) and, on request, an int64 label per point naming the component it was drawn
from. The exact definitions are in the docstrings of the ``_sample_*`` functions; the tests
check the samples against those definitions, not against this code.
"""

from __future__ import annotations

import math

import torch

from difflab.errors import DifflabError

GAUSSIANS8_RADIUS = 2.0
GAUSSIANS8_STD = 0.1
GAUSSIANS8_CENTRES = torch.tensor(
    [
        [GAUSSIANS8_RADIUS * math.cos(k * math.pi / 4), GAUSSIANS8_RADIUS * math.sin(k * math.pi / 4)]
        for k in range(8)
    ],
    dtype=torch.float32,
)
"""(8, 2): centre k lies on the circle of radius 2 at angle k * 45 degrees, k = 0..7."""

SWISSROLL_SCALE = 10.0
SWISSROLL_NOISE = 0.1
MOONS_NOISE = 0.05
CHECKERBOARD_SQUARES = torch.tensor(
    [[i, j] for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0], dtype=torch.float32
)
"""(8, 2): lower-left corners (i, j) of the dark unit squares, those with i + j even."""

GAUSSIANS2_MEANS = torch.tensor([[-5.0, -5.0], [5.0, 5.0]])
GAUSSIANS2_WEIGHTS = (0.2, 0.8)
"""Song & Ermon 2019, Sec. 3.2.2: (1/5) N((−5, −5), I) + (4/5) N((5, 5), I), two modes far apart with unequal weights."""

TOY_DATASETS = ("8gaussians", "swissroll", "moons", "checkerboard", "2gaussians")


def _sample_8gaussians(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-weight mixture of 8 isotropic Gaussians.

    Component k (k = 0..7, probability 1/8 each) has mean
    ``2 * (cos(k*pi/4), sin(k*pi/4))`` and covariance ``0.1**2 * I``. Label: k.
    """
    k = torch.randint(0, 8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator) * GAUSSIANS8_STD
    return GAUSSIANS8_CENTRES[k] + noise, k


def _sample_swissroll(n: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
    """The 2-D swiss roll of Sohl-Dickstein et al. (2015), Fig. 1.

    That figure's roll is the (x, z) projection of ``sklearn.datasets.make_swiss_roll`` scaled
    down by 10. make_swiss_roll draws ``t = 1.5*pi*(1 + 2u)``, ``u ~ U(0, 1)``, and the point
    ``(t cos t, 21 v, t sin t) + noise * N(0, I_3)``; we keep x and z, use sklearn's default
    ``noise = 1.0`` and divide by 10, which gives exactly

        point = (t cos t, t sin t) / 10 + 0.1 * N(0, I_2),   t = 1.5*pi*(1 + 2u).

    The noise-free curve is an Archimedean spiral with radius t/10 from 0.47 to 1.41.
    No labels.
    """
    u = torch.rand(n, generator=generator)
    t = 1.5 * math.pi * (1.0 + 2.0 * u)
    curve = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / SWISSROLL_SCALE
    noise = torch.randn(n, 2, generator=generator) * SWISSROLL_NOISE
    return curve + noise, None


def _sample_moons(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles, as ``sklearn.datasets.make_moons`` defines them.

    The first ``n // 2`` points (label 0) lie on the outer moon ``(cos a, sin a)``, the other
    ``n - n // 2`` (label 1) on the inner moon ``(1 - cos a, 1 - sin a - 0.5)``, with
    ``a ~ U(0, pi)`` (sklearn spaces a evenly; we draw it) plus ``0.05 * N(0, I_2)`` noise.
    The outer moon is the upper half of the unit circle about (0, 0); the inner moon is the
    lower half of the unit circle about (1, 0.5). The points are then shuffled.
    """
    n_out = n // 2
    a = torch.rand(n, generator=generator) * math.pi
    outer = torch.stack([torch.cos(a[:n_out]), torch.sin(a[:n_out])], dim=1)
    inner = torch.stack([1.0 - torch.cos(a[n_out:]), 0.5 - torch.sin(a[n_out:])], dim=1)
    labels = torch.cat([torch.zeros(n_out, dtype=torch.int64), torch.ones(n - n_out, dtype=torch.int64)])
    x = torch.cat([outer, inner]) + torch.randn(n, 2, generator=generator) * MOONS_NOISE
    perm = torch.randperm(n, generator=generator)
    return x[perm], labels[perm]


def _sample_checkerboard(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform density on the 8 dark squares of a 4x4 checkerboard on [-2, 2]^2.

    The board has unit squares ``[i, i+1) x [j, j+1)`` for integers i, j in -2..1; a square
    is dark when ``i + j`` is even, so ``[-2, -1) x [-2, -1)`` is dark and so are the two
    squares touching the origin diagonally from it, ``[-1, 0) x [-1, 0)`` and ``[0, 1) x [0, 1)``
    (the parity of FFJORD's checkerboard, before its factor 2 zoom). Equivalently,
    ``floor(x) + floor(y)`` is even. Label: index of the square in ``CHECKERBOARD_SQUARES``.
    """
    k = torch.randint(0, 8, (n,), generator=generator)
    offset = torch.rand(n, 2, generator=generator)
    return CHECKERBOARD_SQUARES[k] + offset, k


def _sample_2gaussians(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Song & Ermon 2019's mixture (Sec. 3.2.2, Fig. 3): component 0 (probability 1/5) N((−5, −5), I), component 1
    (probability 4/5) N((5, 5), I). Label: the component."""
    k = (torch.rand(n, generator=generator) >= GAUSSIANS2_WEIGHTS[0]).long()
    return GAUSSIANS2_MEANS[k] + torch.randn(n, 2, generator=generator), k


_SAMPLERS = {
    "2gaussians": _sample_2gaussians,
    "8gaussians": _sample_8gaussians,
    "swissroll": _sample_swissroll,
    "moons": _sample_moons,
    "checkerboard": _sample_checkerboard,
}


def sample_toy_with_labels(
    name: str, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw ``n`` points of toy ``name`` and the component label of each (None for swissroll).

    Labels: 8gaussians the mixture component k, moons 0 (outer) / 1 (inner), checkerboard the
    dark square's index.
    """
    if name not in _SAMPLERS:
        raise DifflabError(f"unknown toy dataset {name!r}; expected one of {', '.join(TOY_DATASETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DifflabError(f"number of toy points n={n!r} must be a non-negative integer")
    if not isinstance(generator, torch.Generator):
        raise DifflabError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    x, labels = _SAMPLERS[name](n, generator)
    return x.to(torch.float32).contiguous(), labels


def sample_toy(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` points of toy ``name`` as float32 ``(n, 2)``; see the ``_sample_*`` docstrings."""
    return sample_toy_with_labels(name, n, generator)[0]
