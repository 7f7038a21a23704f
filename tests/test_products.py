"""Products (AND) and mixtures (OR) of energies against their closed forms, sampled by HMC."""

import math

import pytest
import torch

from difflab.ebm import mcmc
from difflab.ebm.products import mixture, product
from difflab.errors import DifflabError


def normal(m, s):
    return lambda x: -0.5 * ((x[:, 0] - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))


def test_the_product_of_two_gaussians_is_their_precision_weighted_gaussian():
    """N(−1, 1) · N(2, 0.5²) ∝ N(m, v) with 1/v = 1 + 4, m = v (−1 + 8)."""
    g = torch.Generator().manual_seed(0)
    x = mcmc.hmc(product(normal(-1, 1), normal(2, 0.5)), torch.zeros(20_000, 1, dtype=torch.float64), 30, 0.3,
                 generator=g).samples
    v = 1 / 5
    assert float(x.mean()) == pytest.approx(v * 7, abs=0.02)
    assert float(x.var()) == pytest.approx(v, rel=0.05)


def test_the_mixture_has_the_mixture_s_moments():
    """0.25 N(−1, 1) + 0.75 N(2, 0.5²): mean 1.25, variance Σ w (s² + m²) − mean²."""
    lp = mixture(normal(-1, 1), normal(2, 0.5), weights=[1, 3])
    u = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]
    assert float(torch.trapezoid(lp(u).exp(), u[:, 0])) == pytest.approx(1.0, abs=1e-8)  # normalised
    g = torch.Generator().manual_seed(0)
    x = mcmc.metropolis(lp, 3 * torch.randn(20_000, 1, generator=g, dtype=torch.float64), 300, 1.5, generator=g).samples
    mean = 0.25 * -1 + 0.75 * 2
    var = 0.25 * (1 + 1) + 0.75 * (0.25 + 4) - mean**2
    assert float(x.mean()) == pytest.approx(mean, abs=0.04)
    assert float(x.var()) == pytest.approx(var, rel=0.05)


def test_too_few_experts_or_bad_weights_are_refused():
    with pytest.raises(DifflabError, match="at least two"):
        product(normal(0, 1))
    with pytest.raises(DifflabError, match="2 positive weights"):
        mixture(normal(0, 1), normal(1, 1), weights=[1, 0])
