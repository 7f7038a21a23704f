"""Ising-model denoising against exact answers: ICM never raises the energy, Gibbs sampling's marginals equal the
enumerated ones on a 3×3 grid, and a corrupted image is recovered."""

import itertools

import pytest
import torch

from difflab.ebm import ising
from difflab.errors import DifflabError


def disc(n=32):
    r, c = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return torch.where((r - n / 2) ** 2 + (c - n / 2.5) ** 2 < (n / 3.5) ** 2, 1.0, -1.0).double()


def test_icm_never_raises_the_energy_and_recovers_the_image():
    x = disc(64)
    y = ising.corrupt(x, 0.1, torch.Generator().manual_seed(0))
    energies = [ising.energy(ising.denoise(y, sweeps=k), y) for k in range(1, 6)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(energies))
    assert ising.energy(ising.denoise(y, sweeps=1), y) < ising.energy(y, y)
    noisy_err = float((y != x).double().mean())
    err = float((ising.denoise(y) != x).double().mean())
    assert noisy_err > 0.08 and err < noisy_err / 2.5  # Bishop 2006, Fig. 8.30: 10% noise to about 4%


def test_gibbs_marginals_equal_the_enumerated_ones():
    """On a 3×3 grid, p(x_i = +1 | y) by summing exp(−E(x, y)) over all 512 x, against 3,000 independent chains of 15 Gibbs sweeps."""
    y = torch.tensor([[1, -1, 1], [1, 1, -1], [-1, 1, 1]], dtype=torch.float64)
    beta, eta, h = 0.6, 0.8, 0.1
    xs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=9)), dtype=torch.float64).reshape(-1, 3, 3)
    logp = torch.tensor([-ising.energy(x, y, beta, eta, h) for x in xs], dtype=torch.float64)
    p = torch.softmax(logp, 0)
    exact = ((xs == 1).double() * p[:, None, None]).sum(0)
    g = torch.Generator().manual_seed(0)
    n = 3000
    chains = torch.stack([ising.denoise(y, beta, eta, h, sweeps=15, method="gibbs", generator=g) for _ in range(n)])
    emp = (chains == 1).double().mean(0)
    torch.testing.assert_close(emp, exact, atol=0.035, rtol=0)


def test_bad_images_and_options_are_refused():
    with pytest.raises(DifflabError, match="2-D image of spins −1 and \\+1"):
        ising.denoise(torch.zeros(4, 4))
    with pytest.raises(DifflabError, match="method must be one of icm, gibbs"):
        ising.denoise(disc(8), method="sa")
